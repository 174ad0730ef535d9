-- :QwenVL describe [file]   describe an image (default: the path under the cursor)
-- :QwenVL ask {prompt}      ask about the image path under the cursor
-- :QwenVL cancel            cancel every running request
-- Requests never block the editor; see lua/qwenvl_nvim/init.lua.
if vim.g.loaded_qwenvl then return end
vim.g.loaded_qwenvl = true

vim.api.nvim_create_user_command("QwenVL", function(o)
  require("qwenvl_nvim").command(o.fargs)
end, {
  nargs = "+",
  complete = function(lead, line)
    if line:match("^%S+%s+%S*$") then
      return vim.tbl_filter(function(c) return c:find(lead, 1, true) == 1 end,
        { "describe", "ask", "cancel" })
    end
    return vim.fn.getcompletion(lead, "file")
  end,
})
