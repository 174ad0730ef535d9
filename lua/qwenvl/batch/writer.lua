-- qwenvl.batch.writer: the JSONL input files of a round of batches, written
-- to disk one line at a time (a 500 MB file is never in memory).
--
--   local writer = require("qwenvl.batch.writer")
--   local w = writer.new(q, dir, round_no, limits)
--   w.add(group, line, index, info); local parts = w.finish()
--
-- Builds on qwenvl.batch.store (the compact lists of request numbers).

local store = require("qwenvl.batch.store")
local lines = require("qwenvl.batch.lines")

local M = {}

M.LIMITS = {
  max_lines = 50000,                -- requests per input file
  max_file_bytes = 500 * 1000 * 1000, -- 500 MB per input file
  max_line_bytes = 1000 * 1000,     -- newest guide: 1 MB per line (others: 6 MB)
  test_max_lines = 100,             -- batch-test-model
  test_max_file_bytes = 1000 * 1000,
}

local min = math.min

local function io_error(q, message) return q.error("io", message) end


--- A writer for round `round_no` in `dir`: w.add(group, line, index,
-- info) puts the line in the open part of its group (model + thinking
-- mode) and starts a new part when the next line would pass a limit;
-- w.finish() -> parts; w.abandon() removes what was written.
function M.new(q, dir, round_no, limits, first_part)
  local w = { parts = {}, groups = {}, files = {} }
  local count = first_part or 0

  local function close(g)
    local ok, err = g.f:close()
    if not ok then return nil, io_error(q, "cannot write " .. g.path .. ": " .. tostring(err)) end
    return true
  end

  function w.add(key, line, index, info)
    local g = w.groups[key]
    local test = info.endpoint == lines.TEST_URL
    local max_lines = test and min(limits.max_lines, limits.test_max_lines) or limits.max_lines
    local max_bytes = test and min(limits.max_file_bytes, limits.test_max_file_bytes)
      or limits.max_file_bytes
    if g and (g.part.lines + 1 > max_lines or g.part.bytes + #line + 1 > max_bytes) then
      local ok, err = close(g)
      if not ok then return nil, err end
      w.groups[key], g = nil, nil
    end
    if not g then
      count = count + 1
      local part = { name = ("r%d-p%03d"):format(round_no, count), model = info.model,
                     endpoint = info.endpoint, thinking = info.thinking, lines = 0, bytes = 0,
                     stage = "written", idx = {} }
      part.input = part.name .. ".jsonl"
      local path = dir .. "/" .. part.input
      local f, ferr = io.open(path, "wb")
      if not f then return nil, io_error(q, "cannot write " .. path .. ": " .. tostring(ferr)) end
      w.files[#w.files + 1] = path
      w.parts[#w.parts + 1] = part
      g = { part = part, f = f, path = path }
      w.groups[key] = g
    end
    local ok, werr = g.f:write(line, "\n")
    if not ok then return nil, io_error(q, "cannot write " .. g.path .. ": " .. tostring(werr)) end
    g.part.lines = g.part.lines + 1
    g.part.bytes = g.part.bytes + #line + 1
    g.part.idx[#g.part.idx + 1] = index
    return true
  end

  function w.finish()
    for key, g in pairs(w.groups) do
      w.groups[key] = nil
      local ok, err = close(g)
      if not ok then return nil, err end
    end
    for _, p in ipairs(w.parts) do
      p.items = store.ranges(p.idx)
      p.idx = nil
    end
    return w.parts
  end

  function w.abandon()
    for _, g in pairs(w.groups) do pcall(g.f.close, g.f) end
    for _, path in ipairs(w.files) do os.remove(path) end
  end

  return w
end


return M
