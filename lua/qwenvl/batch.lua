-- qwenvl.batch: DashScope's Batch (file input) API as a job.
--
--   local qb = require("qwenvl.batch")
--   local job, err = qb.submit(requests, {completion_window = "24h"})
--   print(job.id)                       -- resume elsewhere: qb.open(job.id)
--   local ok, werr = job:wait{poll_s = 60, on_progress = function(st) end}
--   local results, failures = job:results()   -- input order, like chat_many
--
-- A job is one or more batches (one per 50,000 lines / 500 MB, per model
-- and thinking mode, per retry round) whose state lives in a folder of its
-- own (qwenvl.batch.store), so any process can carry it on. Each batch goes
-- through: written (the JSONL on disk) -> uploaded (POST /files) ->
-- created (POST /batches) -> settled (a terminal status) -> collected (the
-- output/error files on disk) -> done (remote files deleted unless
-- keep_remote). docs/batch.md is the reference.

local store = require("qwenvl.batch.store")
local lines = require("qwenvl.batch.lines")
local api_mod = require("qwenvl.batch.api")
local writer = require("qwenvl.batch.writer")
local job_mod = require("qwenvl.batch.job")
local evidence = require("qwenvl.evidence")

local M = {}

M.LIMITS = writer.LIMITS
M.DEFAULT_WINDOW = "24h"
M.DEFAULT_POLL_S = job_mod.DEFAULT_POLL_S
M.MAX_POLL_S = job_mod.MAX_POLL_S
M.Job = job_mod.Job

local function core(opts) return opts and opts.qwenvl or require("qwenvl") end
local io_error, err_fields = job_mod.io_error, job_mod.err_fields

--- "24h".."336h" or "1d".."14d", whole numbers only (notes section 4).
function M.window_hours(w)
  local n, unit = tostring(w or ""):match("^(%d+)([hd])$")
  if not n then return nil end
  local h = tonumber(n) * (unit == "d" and 24 or 1)
  if h < 24 or h > 336 then return nil end
  return h
end

local function check_metadata(q, md)
  if md == nil then return true end
  if type(md) ~= "table" then
    return nil, q.error("invalid_request", "metadata must be a table of strings", { field = "metadata" })
  end
  for k, v in pairs(md) do
    if type(k) ~= "string" or type(v) ~= "string" then
      return nil, q.error("invalid_request", "metadata must map strings to strings", { field = "metadata" })
    end
  end
  return true
end

---------------------------------------------------------------------------
-- submit, open, list

local function input_of(req)
  local c = {}
  for k, v in pairs(req) do
    if k ~= "api_key" and k ~= "on_delta" and type(v) ~= "function" then c[k] = v end
  end
  return c
end

-- One items.jsonl line: what evidence needs later about request i.
local function item_line(i, req, info, err)
  local t = { i = i }
  if type(req) == "table" then t.input = input_of(req) end
  if info then t.images = info.images; t.request = info.body end
  if err then t.error = err_fields(err) end
  local ok, s = pcall(store.json.encode, t)
  if not ok then s = store.json.encode({ i = i }) end
  return s
end

local function limits_of(opts)
  local l = {}
  for k, v in pairs(M.LIMITS) do l[k] = tonumber(opts[k]) or v end
  return l
end

--- Put `requests` (as for qwenvl.chat_many) into one job of batches and
-- start them. opts: base_url, api_key, region, completion_window ("24h",
-- up to "336h"/"14d"), metadata (strings), job_dir, max_line_bytes
-- (1,000,000), max_lines (50,000), max_file_bytes (500,000,000),
-- keep_remote, connection options (timeout_s, max_retries, cainfo, ...),
-- sleep (a function(seconds), for tests and hosts). Returns the job, or
-- nil, err (err.job_id when the job exists locally and open + wait can
-- carry it on; err.failures when no request could be used).
function M.submit(requests, opts)
  if type(requests) ~= "table" then error("qwenvl.batch.submit: requests must be a list", 2) end
  if opts ~= nil and type(opts) ~= "table" then error("qwenvl.batch.submit: opts must be a table", 2) end
  opts = opts or {}
  local q = core(opts)
  local conn = api_mod.conn_of(opts)
  local cfg, cerr = q.config(conn)
  if not cfg then return nil, cerr end
  if not cfg.has_key then
    return nil, q.error("auth", "no API key: set DASHSCOPE_API_KEY or pass api_key")
  end
  local window = opts.completion_window or M.DEFAULT_WINDOW
  if not M.window_hours(window) then
    return nil, q.error("invalid_request", ("completion_window %q: give whole hours or days "
      .. "between 24h and 336h (14d), e.g. \"24h\" or \"7d\""):format(tostring(window)),
      { field = "completion_window" })
  end
  local mok, merr = check_metadata(q, opts.metadata)
  if not mok then return nil, merr end
  if #requests == 0 then
    return nil, q.error("invalid_request", "no requests", { field = "requests" })
  end
  local limits = limits_of(opts)
  local root = opts.job_dir or store.default_dir()
  local id = store.new_id()
  local dir = store.dir_of(root, id)
  local dok, derr = store.mkdir(dir)
  if not dok then return nil, io_error(q, derr) end

  local state = {
    format = store.FORMAT, id = id, created_at = evidence.iso_time(os.time()),
    created_unix = os.time(), base_url = cfg.base_url, region = cfg.region,
    completion_window = window, metadata = opts.metadata, n = #requests,
    keep_remote = opts.keep_remote and true or nil, limits = limits, local_errors = {},
  }
  local items_path = dir .. "/items.jsonl"
  local items, ierr = io.open(items_path, "wb")
  if not items then return nil, io_error(q, "cannot write " .. items_path .. ": " .. tostring(ierr)) end
  local writer = writer.new(q, dir, 1, limits)
  local mask, failures = {}, {}
  local function abandon(e)
    writer.abandon()
    pcall(items.close, items)
    os.remove(items_path)
    os.remove(dir)
    return nil, e
  end
  for i = 1, #requests do
    local req = requests[i]
    local line, info
    if type(req) == "table" then
      local r = {}
      for k, v in pairs(req) do r[k] = v end
      for _, k in ipairs{ "api_key", "base_url", "region" } do -- the job's, for prepare
        if conn[k] ~= nil then r[k] = conn[k] end
      end
      line, info = lines.build(q, r, tostring(i), limits)
    else
      line, info = lines.build(q, req, tostring(i), limits)
    end
    if line then
      local ok, werr = writer.add(info.group, line, i, info)
      if not ok then return abandon(werr) end
      mask[i] = info.wants_json and "1" or "0"
      items:write(item_line(i, req, info), "\n")
    else
      state.local_errors[tostring(i)] = err_fields(info)
      failures[i] = info
      mask[i] = "0"
      items:write(item_line(i, req, nil, info), "\n")
    end
  end
  local parts, perr = writer.finish()
  if not parts then return abandon(perr) end
  local cok, cerr2 = items:close()
  if not cok then return abandon(io_error(q, "cannot write items.jsonl: " .. tostring(cerr2))) end
  if #parts == 0 then
    local first = failures[1] or select(2, next(failures))
    local e = q.error("invalid_request", ("none of the %d requests can go into a batch; request 1: %s")
      :format(#requests, tostring(first and first.message)), { field = first and first.field })
    e.failures = failures
    return abandon(e)
  end
  state.json_mask = table.concat(mask)
  state.rounds = { { n = 1, created_at = state.created_at, parts = parts } }
  local job = job_mod.new(q, dir, state, opts)
  local sok, serr = job:save()
  if not sok then return abandon(serr) end
  local lok, lerr = job:launch()
  if not lok then
    if type(lerr) == "table" then pcall(function() lerr.job_id = id end) end
    return nil, lerr
  end
  return job
end

--- The job `id` saved under opts.job_dir (default store.default_dir()),
-- ready to go on in this process. opts: as submit's connection options,
-- keep_remote, sleep. Returns the job or nil, err (code "not_found").
function M.open(id, opts)
  opts = opts or {}
  local q = core(opts)
  if not store.valid_id(id) then
    return nil, q.error("invalid_request", ("%q is not a job id"):format(tostring(id)), { field = "id" })
  end
  local root = opts.job_dir or store.default_dir()
  local dir = store.dir_of(root, id)
  local state, err = store.load(dir)
  if not state then
    return nil, q.error("not_found", ("job %s not found in %s: %s"):format(id, root, err))
  end
  return job_mod.new(q, dir, state, opts)
end

--- The jobs saved under opts.job_dir, oldest first: {id, created_at,
-- status, total, completed, failed, settled, dir} from what is on disk.
function M.list(opts)
  opts = opts or {}
  local q = core(opts)
  local root = opts.job_dir or store.default_dir()
  local out = {}
  for _, name in ipairs(store.list(root)) do
    local dir = store.dir_of(root, name)
    local state = store.load(dir)
    if state then
      local s = job_mod.new(q, dir, state, {}):summary()
      out[#out + 1] = { id = state.id, created_at = state.created_at, created_unix = state.created_unix,
                        status = s.status, total = s.total, completed = s.completed,
                        failed = s.failed, settled = s.settled, dir = dir }
    end
  end
  table.sort(out, function(a, b)
    if (a.created_unix or 0) ~= (b.created_unix or 0) then
      return (a.created_unix or 0) < (b.created_unix or 0)
    end
    return a.id < b.id
  end)
  return out
end

return M
