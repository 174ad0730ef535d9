-- qwenvl.batch.job: one job of batches and how it moves on. Each batch
-- (a "part") goes written -> uploaded -> created -> settled -> collected
-- -> done, and the job's state is saved after every step, so that any
-- process can carry it on (qwenvl.batch.open). docs/batch.md describes
-- the methods.
--
-- Builds on qwenvl.batch.api (the routes), .store (the folder), .writer
-- (retry rounds) and .results (reading the output).

local store = require("qwenvl.batch.store")
local api_mod = require("qwenvl.batch.api")
local writer = require("qwenvl.batch.writer")
local R = require("qwenvl.batch.results")
local evidence = require("qwenvl.evidence")

local M = {}

M.DEFAULT_POLL_S = 60
M.MAX_POLL_S = 600
M.POLL_GROWTH = 1.5
M.CREATE_ATTEMPTS = 3

local TERMINAL = { completed = true, failed = true, expired = true, cancelled = true }
local SETTLED_STAGE = { settled = true, collected = true, done = true, create_failed = true,
                        cancelled_local = true }
-- create failures after which the batch may exist all the same
local AMBIGUOUS = { timeout = true, network = true, server = true, bad_response = true }

local floor, min, max = math.floor, math.min, math.max

---------------------------------------------------------------------------
-- helpers

local gettime = os.time
do
  local ok, socket = pcall(require, "socket")
  if ok and type(socket) == "table" and type(socket.gettime) == "function" then
    gettime = socket.gettime
  end
end

-- In slices: luasocket's sleep resumes after a signal, so Ctrl-C (the
-- interpreter's hook, which runs between Lua instructions) would otherwise
-- wait for the whole poll interval.
local function default_sleep(s)
  if s <= 0 then return end
  local ok, socket = pcall(require, "socket")
  if ok and type(socket) == "table" and type(socket.sleep) == "function" then
    local t_end = gettime() + s
    while true do
      local left = t_end - gettime()
      if left <= 0 then return end
      socket.sleep(left < 0.25 and left or 0.25)
    end
  end
  os.execute(("sleep %.3f"):format(s))
end

local function nonempty(v)
  if type(v) == "string" and v ~= "" then return v end
  return nil
end

function M.io_error(q, message) return q.error("io", message) end

function M.err_fields(e)
  if type(e) ~= "table" then return { code = "server", message = tostring(e) } end
  return { code = e.code, message = e.message, status = e.status, api_code = e.api_code,
           request_id = e.request_id, field = e.field }
end

---------------------------------------------------------------------------
-- the job object

local Job = {}
Job.__index = Job
M.Job = Job
local err_fields, io_error = M.err_fields, M.io_error

--- The job of `state` (job.json, decoded) in folder `dir`. opts: the
-- connection options, keep_remote, sleep, clock, file_poll_s.
function M.new(q, dir, state, opts)
  opts = opts or {}
  local conn = api_mod.conn_of(opts)
  if conn.base_url == nil and conn.region == nil then conn.base_url = state.base_url end
  local self = setmetatable({
    q = q, dir = dir, state = state, id = state.id,
    api = api_mod.new(q, conn), conn = conn,
    sleep = opts.sleep or default_sleep, now = opts.clock or gettime,
    file_poll_s = opts.file_poll_s or 2,
    warnings = {},
  }, Job)
  if opts.keep_remote ~= nil then self.keep_remote = opts.keep_remote and true or false
  else self.keep_remote = state.keep_remote == true end
  return self
end

function Job:save()
  local ok, err = store.save(self.dir, self.state)
  if not ok then return nil, io_error(self.q, err) end
  return true
end

function Job:parts(all)
  local out = {}
  local rounds = self.state.rounds
  for r = all and 1 or #rounds, #rounds do
    for _, p in ipairs(rounds[r].parts) do out[#out + 1] = p end
  end
  return out
end

-- What a batch object says about a part.
function Job:absorb(part, b)
  part.status = b.status
  local rc = type(b.request_counts) == "table" and b.request_counts or {}
  local function int(v) return floor(tonumber(v) or 0) end
  part.request_counts = { total = int(rc.total), completed = int(rc.completed),
                          failed = int(rc.failed) }
  part.output_file_id = nonempty(b.output_file_id) and api_mod.valid_id(b.output_file_id)
    and b.output_file_id or nil
  part.error_file_id = nonempty(b.error_file_id) and api_mod.valid_id(b.error_file_id)
    and b.error_file_id or nil
  local errs = type(b.errors) == "table" and b.errors.data
  if type(errs) == "table" then
    local list = {}
    for _, e in ipairs(errs) do
      if type(e) == "table" then
        list[#list + 1] = { code = nonempty(e.code), message = nonempty(e.message),
                            param = nonempty(e.param), line = tonumber(e.line) }
      end
    end
    part.errors = list
  end
end

function Job:upload_part(part)
  local f, err = self.api:upload(self.dir .. "/" .. part.input, self.id .. "-" .. part.input)
  if not f then return nil, err end
  part.input_file_id = f.id
  part.stage = "uploaded"
  local ok, serr = self:save()
  if not ok then return nil, serr end
  -- the Files FAQ: use a file only once it reads "processed"
  local polls = 0
  while f.status ~= nil and f.status ~= "processed" do
    if f.status == "error" or f.status == "deleted" or polls >= 60 then
      return nil, self.q.error(polls >= 60 and "timeout" or "server",
        ("the uploaded file %s is %s, not processed"):format(part.input_file_id, tostring(f.status)))
    end
    polls = polls + 1
    self.sleep(self.file_poll_s)
    f, err = self.api:get_file(part.input_file_id)
    if not f then return nil, err end
  end
  return true
end

function Job:metadata_for(part)
  local md = {}
  for k, v in pairs(self.state.metadata or {}) do md[k] = v end
  md.qwenvl_job = self.id
  md.qwenvl_part = part.name
  if md.ds_name == nil then md.ds_name = ("qwenvl %s %s"):format(self.id, part.name) end
  return md
end

function Job:adopt(part, b)
  part.batch_id = b.id
  part.stage = "created"
  self:absorb(part, b)
  return self:save()
end

-- POST /batches is not idempotent: after a failure that may have created
-- the batch anyway, look it up by its input file before creating another.
function Job:create_part(part)
  local q = self.q
  local last
  for attempt = 1, M.CREATE_ATTEMPTS do
    if part.create_attempted then
      local found, ferr = self.api:find(part.input_file_id)
      if not found then return nil, ferr end -- cannot tell: never create blindly
      if #found > 0 then
        local ok, serr = self:adopt(part, found[#found]) -- the oldest one
        if not ok then return nil, serr end
        return true
      end
    end
    part.create_attempted = true
    local ok, serr = self:save()
    if not ok then return nil, serr end
    local b, err = self.api:create{ input_file_id = part.input_file_id, endpoint = part.endpoint,
                                    completion_window = self.state.completion_window,
                                    metadata = self:metadata_for(part) }
    if b then
      ok, serr = self:adopt(part, b)
      if not ok then return nil, serr end
      return true
    end
    last = err
    local code = type(err) == "table" and err.code
    if code == "auth" then return nil, err end -- fix the key, then resume
    if not AMBIGUOUS[code] and code ~= "rate_limited" then
      -- refused for sure: nothing runs; drop the orphaned input file
      part.stage = "create_failed"
      part.create_error = err_fields(err)
      if not self.keep_remote then
        if self.api:delete_file(part.input_file_id) then part.input_deleted = true end
      end
      ok, serr = self:save()
      if not ok then return nil, serr end
      return true -- settled: its requests fail with this error
    end
    if attempt < M.CREATE_ATTEMPTS then
      self.sleep(max(tonumber(err.retry_after) or 0, 2 ^ (attempt - 1)))
    end
  end
  -- still unknown after the last attempt: one more look, then give up
  -- (the part stays "uploaded": open + wait carries on from here)
  local found = self.api:find(part.input_file_id)
  if found and #found > 0 then
    local ok, serr = self:adopt(part, found[#found])
    if not ok then return nil, serr end
    return true
  end
  return nil, last
end

function Job:refresh_part(part)
  local b, err = self.api:get(part.batch_id)
  if not b then return nil, err end
  local before = tostring(part.status) .. "/" .. tostring(part.request_counts and
    (part.request_counts.completed .. "/" .. part.request_counts.failed))
  self:absorb(part, b)
  if TERMINAL[b.status] then
    part.stage = "settled"
    local ok, serr = self:save()
    if not ok then return nil, serr end
    return true
  end
  local after = tostring(part.status) .. "/" .. part.request_counts.completed .. "/"
    .. part.request_counts.failed
  if after ~= before then
    local ok, serr = self:save()
    if not ok then return nil, serr end
  end
  return false
end

function Job:collect_part(part)
  for _, kind in ipairs{ "output", "error" } do
    local id = part[kind .. "_file_id"]
    if id and not part[kind .. "_path"] then
      local name = part.name .. "." .. kind .. ".jsonl"
      local ok, err = self.api:download(id, self.dir .. "/" .. name)
      if not ok then return nil, err end
      part[kind .. "_path"] = name
      local sok, serr = self:save()
      if not sok then return nil, serr end
    end
  end
  part.stage = "collected"
  local ok, serr = self:save()
  if not ok then return nil, serr end
  return true
end

-- Delete what `part` left on the account (which holds at most 10,000
-- files). True when nothing is left; a failure is kept as a warning.
function Job:delete_remote(part)
  part.deleted = part.deleted or {}
  local all = true
  for _, key in ipairs{ "input_file_id", "output_file_id", "error_file_id" } do
    local id = part[key]
    if id and not part.deleted[key] and not (key == "input_file_id" and part.input_deleted) then
      local ok, err = self.api:delete_file(id)
      if ok or (type(err) == "table" and err.code == "not_found") then
        part.deleted[key] = true
      else
        self.warnings[#self.warnings + 1] = ("could not delete %s: %s"):format(id, tostring(err))
        all = false
      end
    end
  end
  return all
end

-- Once the results are on disk; a failed deletion never costs the results
-- (job:clean() tries again).
function Job:clean_part(part)
  if not self.keep_remote then
    part.clean_pending = not self:delete_remote(part) or nil
  end
  part.stage = "done"
  local ok, serr = self:save()
  if not ok then return nil, serr end
  return true
end

--- Delete the remote files of every batch whose results are on disk, also
-- those kept with keep_remote. Returns true, or nil, err with err.warnings.
function Job:clean()
  local all = true
  for _, part in ipairs(self:parts(true)) do
    if part.stage == "done" or part.stage == "create_failed" or part.stage == "cancelled_local" then
      if self:delete_remote(part) then part.clean_pending = nil else all = false end
    end
  end
  local ok, serr = self:save()
  if not ok then return nil, serr end
  if not all then
    local e = self.q.error("server", "some remote files could not be deleted: "
      .. table.concat(self.warnings, "; "))
    e.warnings = self.warnings
    return nil, e
  end
  return true
end

local STEP = { written = "upload_part", uploaded = "create_part", created = "refresh_part",
               settled = "collect_part", collected = "clean_part" }

-- Move every part as far as it goes now. only: a set of stages to act on.
function Job:drive(only)
  for _, part in ipairs(self:parts(true)) do
    while true do
      local step = STEP[part.stage]
      if not step or (only and not only[part.stage]) then break end
      local changed, err = self[step](self, part)
      if changed == nil then return nil, err end
      if not changed then break end
    end
  end
  return true
end

local function agg_status(list)
  local seen, n = {}, 0
  for _, s in ipairs(list) do
    if not seen[s] then seen[s] = true; n = n + 1 end
  end
  if n == 1 then return list[1] end
  if n == 0 then return "completed" end
  for _, s in ipairs{ "pending", "cancelling", "in_progress", "finalizing", "validating" } do
    if seen[s] then
      return (s == "finalizing" or s == "validating") and "in_progress" or s
    end
  end
  for _, s in ipairs{ "failed", "cancelled", "expired", "completed" } do
    if seen[s] then return s end
  end
  return list[1]
end

local function part_status(part)
  if part.stage == "written" or part.stage == "uploaded" then return "pending" end
  if part.stage == "create_failed" then return "failed" end
  if part.stage == "cancelled_local" then return "cancelled" end
  return part.status or "validating"
end

--- The job at a glance from what is known locally (no request).
function Job:summary()
  local st = self.state
  local rounds = st.rounds
  local round = rounds[#rounds]
  local statuses, parts, settled = {}, {}, true
  local completed, failed, in_round = 0, 0, 0
  for _, p in ipairs(round.parts) do
    local s = part_status(p)
    statuses[#statuses + 1] = s
    local rc = p.request_counts or { total = 0, completed = 0, failed = 0 }
    completed = completed + rc.completed
    local f = rc.failed
    if (s == "failed" or (s == "cancelled" and not p.batch_id)) and f == 0 then f = p.lines end
    failed = failed + f
    in_round = in_round + p.lines
    parts[#parts + 1] = { name = p.name, batch_id = p.batch_id, status = s, stage = p.stage,
                          lines = p.lines, request_counts = p.request_counts,
                          input_file_id = p.input_file_id, output_file_id = p.output_file_id,
                          error_file_id = p.error_file_id }
  end
  for _, p in ipairs(self:parts(true)) do
    if not SETTLED_STAGE[p.stage] then settled = false end
  end
  local n_local = 0
  for _ in pairs(st.local_errors or {}) do n_local = n_local + 1 end
  -- items outside this round were settled by earlier rounds (or locally)
  completed = completed + max(0, st.n - in_round - n_local)
  failed = failed + n_local
  return { status = agg_status(statuses), total = st.n, completed = completed, failed = failed,
           settled = settled, job_id = self.id, round = #rounds, parts = parts,
           local_failed = n_local, completion_window = st.completion_window }
end

--- Ask the service about every running batch: {status, total, completed,
-- failed, settled, parts, ...} or nil, err.
function Job:status()
  local ok, err = self:drive({ created = true })
  if not ok then return nil, err end
  return self:summary()
end

function Job:settled()
  for _, p in ipairs(self:parts(true)) do
    if not SETTLED_STAGE[p.stage] then return false end
  end
  return true
end

function Job:finished()
  for _, p in ipairs(self:parts(true)) do
    if p.stage ~= "done" and p.stage ~= "create_failed" and p.stage ~= "cancelled_local" then
      return false
    end
  end
  return true
end

--- Wait until every batch has settled and its results are on disk.
-- o: poll_s (60; grows x1.5 while nothing changes, up to max_poll_s 600),
-- timeout_s (none: a batch always ends, by its window at the latest),
-- on_progress(status) after every look. Returns true or nil, err (a
-- timeout leaves the job running: wait again, or cancel).
function Job:wait(o)
  o = o or {}
  local poll = tonumber(o.poll_s) or M.DEFAULT_POLL_S
  local max_poll = max(poll, tonumber(o.max_poll_s) or M.MAX_POLL_S)
  local deadline = o.timeout_s and (self.now() + o.timeout_s)
  local interval, last_sig = poll, nil
  while true do
    local ok, err = self:drive()
    if not ok and not (type(err) == "table" and err.retryable) then return nil, err end
    local st = self:summary()
    if not ok then st.error = err end
    if o.on_progress then o.on_progress(st) end
    if ok and self:finished() then return true end
    if deadline and self.now() >= deadline then
      return nil, self.q.error("timeout", ("job %s is still %s after %gs (%d of %d done); it "
        .. "keeps running: wait again later (qwenvl job wait %s) or cancel it"):format(
        self.id, st.status, o.timeout_s, st.completed + st.failed, st.total, self.id),
        { retryable = true })
    end
    local sig = st.status .. ":" .. st.completed .. ":" .. st.failed
    if last_sig ~= nil then
      interval = sig ~= last_sig and poll or min(interval * M.POLL_GROWTH, max_poll)
    end
    last_sig = sig
    local s = interval
    if deadline then s = max(0, min(s, deadline - self.now())) end
    self.sleep(s)
  end
end

---------------------------------------------------------------------------
-- results

local function missing_error(q, part, window)
  local s = part.status
  if s == "expired" then
    return R.error(q, "expired", ("not run before the batch expired (completion_window %s); "
      .. "retry_failed() submits it again"):format(tostring(window)),
      { api_code = "batch_expired" })
  elseif s == "cancelled" then
    return R.error(q, "canceled", "not run: the batch was cancelled", { api_code = "batch_cancelled" })
  end
  return R.error(q, "bad_response", "the batch ended (" .. tostring(s)
    .. ") without a line for this request")
end

function Job:batch_info(part, round_no, i)
  return { job_id = self.id, batch_id = part.batch_id, custom_id = tostring(i), round = round_no,
           part = part.name, input_file_id = part.input_file_id,
           output_file_id = part.output_file_id, error_file_id = part.error_file_id }
end

-- The outcome of every request of `part` into out[i].
function Job:read_part(part, round_no, out, o)
  local q = self.q
  local idx = store.expand(part.items)
  local set = {}
  for k, i in ipairs(idx) do set[tostring(i)] = k end
  local mask = self.state.json_mask or ""
  local function put(i, v)
    v.batch = self:batch_info(part, round_no, i)
    out[i] = v
  end
  if part.stage == "create_failed" then
    local e = part.create_error or {}
    for _, i in ipairs(idx) do
      put(i, R.error(q, e.code or "server", "the batch could not be created: "
        .. tostring(e.message), { status = e.status, api_code = e.api_code,
                                   request_id = e.request_id }))
    end
    return true
  end
  if part.stage == "cancelled_local" then
    for _, i in ipairs(idx) do
      put(i, R.error(q, "canceled", "not run: the job was cancelled before this batch was created",
        { api_code = "batch_cancelled" }))
    end
    return true
  end
  if part.status == "failed" then -- validation: nothing ran
    local by_line, whole = {}, nil
    for _, e in ipairs(part.errors or {}) do
      if e.line and idx[e.line] then by_line[e.line] = by_line[e.line] or e
      elseif not whole then whole = e end
    end
    local first = whole or (part.errors or {})[1] or { message = "no reason given" }
    for k, i in ipairs(idx) do
      local e = by_line[k]
      if e then
        put(i, R.error(q, "invalid_request", ("line %d: %s"):format(k, tostring(e.message)),
          { api_code = e.code, field = e.param }))
      else
        put(i, R.error(q, "invalid_request", "the batch failed validation: "
          .. tostring(first.message), { api_code = first.code, field = first.param }))
      end
    end
    return true
  end
  local seen = {}
  for _, kind in ipairs{ "output", "error" } do
    local path = part[kind .. "_path"]
    if path then
      local n, rerr = R.read_file(self.dir .. "/" .. path, function(cid) return set[cid] ~= nil end,
        function(cid, obj, text)
          local i = idx[set[cid]]
          local res, err = R.from_line(q, obj, {
            wants_json = mask:sub(i, i) == "1", raw = o.raw and text or nil })
          -- an answer wins over a failure line for the same request
          if res or not (seen[i] and out[i] and out[i].text) then put(i, res or err) end
          seen[i] = true
        end)
      if not n then return nil, io_error(q, rerr) end
    end
  end
  for _, i in ipairs(idx) do
    if not seen[i] then put(i, missing_error(q, part, self.state.completion_window)) end
  end
  return true
end

--- One entry per request, in input order: a result (text, model, usage,
-- request_id, json/json_error, batch = {job_id, batch_id, custom_id, file
-- ids}) or an error table (code, message, status, api_code, batch).
-- Later rounds (retry_failed) replace what earlier ones said. o: raw (keep
-- each output line as result.raw). Returns results, failures or nil, err
-- (code "pending" while batches still run).
function Job:results(o)
  o = o or {}
  local q = self.q
  local ok, err = self:drive({ created = true, settled = true, collected = true })
  if not ok then return nil, err end
  if not self:settled() then
    local st = self:summary()
    return nil, q.error("pending", ("job %s is still %s (%d of %d done): wait for it first"):format(
      self.id, st.status, st.completed + st.failed, st.total), { retryable = true })
  end
  local out = {}
  for k, e in pairs(self.state.local_errors or {}) do
    local i = tonumber(k)
    out[i] = R.error(q, e.code or "invalid_request", e.message, { field = e.field })
    out[i].batch = { job_id = self.id }
  end
  for r, round in ipairs(self.state.rounds) do
    for _, part in ipairs(round.parts) do
      local rok, rerr = self:read_part(part, r, out, o)
      if not rok then return nil, rerr end
    end
  end
  local failures = 0
  for i = 1, self.state.n do
    if out[i] == nil then
      out[i] = R.error(q, "bad_response", "no outcome recorded for this request")
    end
    if out[i].text == nil then failures = failures + 1 end
  end
  -- strings from the server never carry the key
  out = q.scrub(out, self.conn)
  return out, failures
end

---------------------------------------------------------------------------
-- launching, cancelling, retrying

-- Upload and create every part of the newest round.
function Job:launch()
  local parts = self.state.rounds[#self.state.rounds].parts
  for _, part in ipairs(parts) do
    while part.stage == "written" or part.stage == "uploaded" do
      local step = part.stage == "written" and "upload_part" or "create_part"
      local ok, err = self[step](self, part)
      if not ok then return nil, err end
    end
    if part.stage == "create_failed" then
      local e = part.create_error or {}
      return nil, self.q.error(e.code or "server", "the batch could not be created: "
        .. tostring(e.message), { status = e.status, api_code = e.api_code,
                                   request_id = e.request_id })
    end
  end
  return true
end

--- Cancel every batch of the job that still runs (and any not created
-- yet). The service moves unstarted requests to the error file; wait()
-- and results() then give what finished. Returns true or nil, err.
function Job:cancel()
  local first_err
  for _, part in ipairs(self:parts(true)) do
    if part.stage == "written" or part.stage == "uploaded" then
      if part.stage == "uploaded" and part.create_attempted then
        -- it may exist: look before calling it never created
        local found = self.api:find(part.input_file_id)
        if found and #found > 0 then self:adopt(part, found[#found]) end
      end
      if part.stage ~= "created" then
        if part.input_file_id and not self.keep_remote then
          if self.api:delete_file(part.input_file_id) then part.input_deleted = true end
        end
        part.stage = "cancelled_local"
      end
    end
    if part.stage == "created" and not TERMINAL[part.status or ""] then
      local b, err = self.api:cancel(part.batch_id)
      if b then
        self:absorb(part, b)
      else
        -- refused, e.g. because it has just finished: look at it again
        local ok, rerr = self:refresh_part(part)
        if ok == nil and not first_err then first_err = rerr end
        if ok == false and not first_err then first_err = err end
      end
    end
  end
  local ok, serr = self:save()
  if not ok then return nil, serr end
  if first_err then return nil, first_err end
  return true
end

-- The line of request i as written in a part's input file (our own lines
-- start with {"custom_id":"<i>").
local function line_index(text)
  return tonumber(text:match('^{"custom_id":"(%d+)"'))
end

--- Submit again, as a new round of this job, every request whose outcome
-- is a failure of the service (failed, expired or cancelled lines, failed
-- batches); requests refused locally are not retried. results() then
-- merges. Returns the number of requests resubmitted (0: nothing to do) or
-- nil, err.
function Job:retry_failed()
  local q = self.q
  local results, rerr = self:results()
  if not results then return nil, rerr end
  local local_errors = self.state.local_errors or {}
  local want = {}
  local count = 0
  for i, r in ipairs(results) do
    if r.text == nil and not local_errors[tostring(i)] then
      want[i] = true
      count = count + 1
    end
  end
  if count == 0 then return 0 end
  local owner = {}
  for _, p in ipairs(self:parts(true)) do
    for _, i in ipairs(store.expand(p.items)) do owner[i] = p end
  end
  local round_no = #self.state.rounds + 1
  local writer = writer.new(q, self.dir, round_no, self.state.limits or writer.LIMITS)
  for _, p in ipairs(self:parts(true)) do
    local needed = false
    for _, i in ipairs(store.expand(p.items)) do
      if want[i] and owner[i] == p then needed = true; break end
    end
    if needed then
      local f, ferr = io.open(self.dir .. "/" .. p.input, "rb")
      if not f then
        writer.abandon()
        return nil, io_error(q, "cannot read " .. p.input .. ": " .. tostring(ferr))
      end
      for text in f:lines() do
        local i = line_index(text)
        if i and want[i] and owner[i] == p then
          local ok, werr = writer.add(tostring(p.model) .. "\0" .. tostring(p.thinking), text, i,
            { model = p.model, endpoint = p.endpoint, thinking = p.thinking })
          if not ok then f:close(); writer.abandon(); return nil, werr end
        end
      end
      f:close()
    end
  end
  local parts, ferr = writer.finish()
  if not parts then writer.abandon(); return nil, ferr end
  self.state.rounds[round_no] = { n = round_no, created_at = evidence.iso_time(os.time()),
                                  parts = parts }
  local ok, serr = self:save()
  if not ok then return nil, serr end
  local lok, lerr = self:launch()
  if not lok then return nil, lerr end
  return count
end


return M
