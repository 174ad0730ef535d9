-- :QwenVL describe [file]   describe an image (default: the path under the cursor)
-- :QwenVL ask {prompt}      continue the conversation (this answer buffer's,
--                           or about the image under the cursor)
-- :QwenVL new [prompt]      start the conversation over
-- :QwenVL cancel            cancel every running request
-- Defines the command only; lua/qwenvl/nvim.lua (and qwenvl.so) load on
-- first use, so startup pays nothing. :help qwenvl, :checkhealth qwenvl.
if vim.g.loaded_qwenvl then return end
vim.g.loaded_qwenvl = true

if vim.fn.has("nvim-0.7") == 0 then
  vim.api.nvim_echo({ { "qwenvl: needs Neovim 0.7 or later", "ErrorMsg" } }, true, {})
  return
end

vim.api.nvim_create_user_command("QwenVL", function(o)
  require("qwenvl.nvim").command(o.fargs)
end, {
  nargs = "+",
  desc = "Ask Qwen VL about an image: describe [file] | ask {prompt} | new [prompt] | cancel",
  complete = function(lead, line)
    if line:match("^%S+%s+%S*$") then
      return vim.tbl_filter(function(c) return c:find(lead, 1, true) == 1 end,
        { "describe", "ask", "new", "cancel" })
    end
    if line:match("^%S+%s+describe%s") then return vim.fn.getcompletion(lead, "file") end
    return {}
  end,
})

vim.api.nvim_create_autocmd("VimLeavePre", {
  group = vim.api.nvim_create_augroup("qwenvl", { clear = true }),
  desc = "cancel running QwenVL requests",
  callback = function()
    local loaded = package.loaded["qwenvl.nvim"]
    if loaded then loaded.shutdown() end
  end,
})
