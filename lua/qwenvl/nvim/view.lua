-- qwenvl.nvim.view: the scratch buffer answers stream into.
--
--   local v = require("qwenvl.nvim.view").open("sprite.png", "vsplit")
--   v:section("Describe this image.")   -- a "> prompt" block; the answer follows
--   v:append("streamed text")           -- adds to the answer, keeps the footer
--   v:status("_streaming..._")          -- the footer line under the answer
--   v:finish(final_text, "_qwen3-vl-plus, 1.2 s, 300 tokens_")
--   v:mark("_new conversation_")        -- a line under everything
--
-- One buffer holds a title and then sections (prompt, answer, footer); a
-- later section goes under the earlier ones, which is how a conversation
-- about the same image reads. Only the last section changes. Streaming
-- appends to the answer's last line instead of rewriting the whole
-- answer, so long answers stay cheap.
-- The buffer is 'nomodifiable' except while this module writes it, so
-- edits cannot shift the lines the answer is written to.

local M = {}
local View = {}
View.__index = View

local counter = 0

local function split(text)
  return vim.split(text, "\n", { plain = true })
end

function View:valid()
  return vim.api.nvim_buf_is_valid(self.buf) and vim.api.nvim_buf_is_loaded(self.buf)
end

-- A buffer can be unloaded or cut short under a running answer (:bunload,
-- Neovim exiting): then there is nothing left to write to.
function View:write(first, last, lines)
  if not self:valid() then return end
  local n = vim.api.nvim_buf_line_count(self.buf)
  if first > n then return end
  vim.bo[self.buf].modifiable = true
  pcall(vim.api.nvim_buf_set_lines, self.buf, first, last, false, lines)
  vim.bo[self.buf].modifiable = false
end

function View:footer_lines()
  return self.foot and { "", self.foot } or {}
end

--- Start a section under what is there: the prompt, then an empty answer.
function View:section(prompt)
  local lines = { "" }
  for _, l in ipairs(split(prompt)) do lines[#lines + 1] = "> " .. l end
  lines[#lines + 1] = ""
  local n = vim.api.nvim_buf_line_count(self.buf)
  self:write(n, n, lines)
  self.start = n + #lines     -- 0-based index of the answer's first line
  self.nlines = 0
  self.foot = nil
  return self
end

--- A line under everything (e.g. where a conversation starts over); the
--- last section is done by then, so it stays as it is.
function View:mark(text)
  local n = vim.api.nvim_buf_line_count(self.buf)
  self:write(n, n, { "", text })
  return self
end

--- Set the footer line under the answer (nil removes it).
function View:status(text)
  self.foot = text
  self:write(self.start + self.nlines, -1, self:footer_lines())
end

--- Append streamed text to the answer.
function View:append(text)
  if not self:valid() or text == "" then return end
  local from = self.start + math.max(self.nlines - 1, 0)
  local last = ""
  if self.nlines > 0 then
    last = vim.api.nvim_buf_get_lines(self.buf, from, from + 1, false)[1] or ""
  end
  local lines = split(last .. text)
  local out = vim.list_extend(vim.list_extend({}, lines), self:footer_lines())
  self:write(from, -1, out)
  self.nlines = math.max(self.nlines - 1, 0) + #lines
end

--- Replace the answer with the final text and set the footer.
function View:finish(text, footer)
  self.foot = footer
  local lines = text ~= nil and text ~= "" and split(text) or {}
  self:write(self.start, -1, vim.list_extend(vim.list_extend({}, lines), self:footer_lines()))
  self.nlines = #lines
end

--- The answer as it stands.
function View:text()
  if not self:valid() or self.nlines == 0 then return "" end
  return table.concat(vim.api.nvim_buf_get_lines(self.buf, self.start,
    self.start + self.nlines, false), "\n")
end

--- Show the buffer in a window: split is "vsplit", "split", "tabnew" or "none".
function View:show(split_cmd)
  if split_cmd == "none" or not self:valid() then return end
  local win = vim.fn.bufwinid(self.buf)
  if win ~= -1 then return vim.api.nvim_set_current_win(win) end
  vim.cmd(split_cmd)
  vim.api.nvim_win_set_buf(0, self.buf)
end

--- A new scratch buffer titled `title`.
function M.open(title, split_cmd)
  counter = counter + 1
  local buf = vim.api.nvim_create_buf(false, true)
  vim.bo[buf].bufhidden = "hide"
  vim.bo[buf].swapfile = false
  vim.bo[buf].filetype = "markdown"
  pcall(vim.api.nvim_buf_set_name, buf, ("qwenvl://%d/%s"):format(counter,
    vim.fn.fnamemodify(title, ":t")))
  local v = setmetatable({ buf = buf, start = 1, nlines = 0 }, View)
  v:write(0, -1, { "# " .. title })
  v:show(split_cmd)
  return v
end

return M
