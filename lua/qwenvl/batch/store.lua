-- qwenvl.batch.store: where a batch job lives on this machine, so that
-- another process can resume it (qwenvl.batch.open) after a crash or a
-- `--no-wait`.
--
--   <job_dir>/<job id>/job.json        the state (never the API key), written
--                                      atomically after every step
--   <job_dir>/<job id>/items.jsonl     per request, in input order: the input
--                                      (without key), images, body with notes
--   <job_dir>/<job id>/rN-pMMM.jsonl   the input file of part MMM of round N
--   <job_dir>/<job id>/rN-pMMM.output.jsonl, .error.jsonl   the downloads
--
-- Builds on qwenvl.evidence (atomic writes, mkdir -p) and lua-cjson.

local evidence = require("qwenvl.evidence")
local cjson_mod = require("cjson")

local M = {}
M.FORMAT = "qwenvl.batch-job/1"

local cjson = cjson_mod.new and cjson_mod.new() or cjson_mod
M.json = cjson
M.null = cjson_mod.null

--- The default job folder: $QWENVL_JOB_DIR, else
-- ${XDG_STATE_HOME:-~/.local/state}/qwenvl/jobs.
function M.default_dir()
  local env = os.getenv("QWENVL_JOB_DIR")
  if env and env ~= "" then return env end
  local xdg = os.getenv("XDG_STATE_HOME")
  if xdg and xdg ~= "" then return xdg .. "/qwenvl/jobs" end
  local home = os.getenv("HOME")
  if home and home ~= "" then return home .. "/.local/state/qwenvl/jobs" end
  return ".qwenvl-jobs"
end

--- Job ids are names of folders: letters, digits, '-', '_' and '.'.
function M.valid_id(id)
  return type(id) == "string" and #id <= 128 and id:find("^[%w][%w%-_.]*$") ~= nil
end

function M.new_id()
  return "job-" .. evidence.timestamp(os.time()) .. "-" .. evidence.random_hex(4)
end

function M.dir_of(root, id)
  return (root:gsub("/+$", "")) .. "/" .. id
end

M.read = evidence.read_file

--- job.json of the job in `dir`, decoded, or nil, message.
function M.load(dir)
  local s, err = M.read(dir .. "/job.json")
  if not s then return nil, "no job here (" .. tostring(err) .. ")" end
  local ok, t = pcall(cjson.decode, s)
  if not ok or type(t) ~= "table" or t.format ~= M.FORMAT then
    return nil, "job.json is not a qwenvl batch job"
  end
  return t
end

function M.save(dir, state)
  local ok, text = pcall(cjson.encode, state)
  if not ok then return nil, "cannot encode the job state: " .. tostring(text) end
  return evidence.write_file(dir .. "/job.json", text .. "\n")
end

function M.mkdir(dir) return evidence.mkdir_p(dir) end

--- Remove a file we wrote (a failed job folder's leftovers).
function M.remove(path) os.remove(path) end

--- Every job folder under `root` (unsorted names).
function M.list(root)
  local names = {}
  if not evidence.dir_exists(root) then return names end
  local p = io.popen("ls -1A -- " .. evidence.shell_quote(root) .. " 2>/dev/null")
  if not p then return names end
  for name in p:lines() do
    if M.valid_id(name) then names[#names + 1] = name end
  end
  p:close()
  return names
end

---------------------------------------------------------------------------
-- sets of request numbers as "1-100,102,104-200" (small in job.json)

function M.ranges(list)
  local out, i = {}, 1
  while i <= #list do
    local j = i
    while j < #list and list[j + 1] == list[j] + 1 do j = j + 1 end
    out[#out + 1] = i == j and tostring(list[i]) or (list[i] .. "-" .. list[j])
    i = j + 1
  end
  return table.concat(out, ",")
end

function M.expand(s)
  local list = {}
  for a, b in tostring(s or ""):gmatch("(%d+)%-?(%d*)") do
    local x, y = tonumber(a), tonumber(b ~= "" and b or a)
    for v = x, y do list[#list + 1] = v end
  end
  return list
end

return M
