-- qwenvl.batch.record: evidence for a batch job's results, one record per
-- request as live runs write them (qwenvl.workflow), plus where it ran: the
-- batch id, its custom_id and the input/output/error file ids; then a
-- summary record shaped like `qwenvl batch`'s.
--
--   local record = require("qwenvl.batch.record")
--   local paths, summary_path, summary = record.write(job, results, opts)
--
-- Builds on qwenvl.evidence (atomic, scrubbed writes) and qwenvl.workflow
-- (the shapes of results and errors in records). Per-request inputs come
-- from the job's items.jsonl, read one line at a time.

local evidence = require("qwenvl.evidence")
local workflow = require("qwenvl.workflow")
local store = require("qwenvl.batch.store")
local lines = require("qwenvl.batch.lines")

local M = {}
M.KIND = "batch-api-item"

-- the images of a request as its lines were built from them (a JSON array)
local function image_refs(input)
  return evidence.array(type(input) == "table" and lines.image_list(input) or {})
end
M.image_refs = image_refs

--- Each items.jsonl entry in input order: each(i, item).
function M.each_item(job, each)
  local f = io.open(job.dir .. "/items.jsonl", "rb")
  if not f then return nil, "the job has no items.jsonl" end
  for text in f:lines() do
    local ok, item = pcall(store.json.decode, text)
    if ok and type(item) == "table" and tonumber(item.i) then each(tonumber(item.i), item) end
  end
  f:close()
  return true
end

local function strip(v)
  if v == store.null then return nil end
  if type(v) == "table" then
    for k, x in pairs(v) do v[k] = strip(x) end
  end
  return v
end

--- One record for request i.
function M.build(job, i, res, item)
  local st = job.state
  local input = strip(item and item.input) or {}
  local ok = res.text ~= nil
  local v = ok and res.verification or nil
  local batch = {}
  for k, x in pairs(res.batch or {}) do batch[k] = x end
  batch.completion_window = st.completion_window
  local rec = {
    format = workflow.RECORD_FORMAT, kind = M.KIND, id = evidence.short_id(),
    status = not ok and "error" or (v and not v.ok) and "verification_failed" or "ok",
    created_at = evidence.iso_time(os.time()),
    tool = { name = "qwenvl", version = job.q.version, lua = _VERSION },
    endpoint = { base_url = st.base_url, region = st.region },
    prompt = input.prompt, input = input, image_refs = image_refs(input),
    images = strip(item and item.images), request = strip(item and item.request),
    batch = batch,
  }
  if ok then
    rec.response = { raw = res.raw, request_id = res.request_id }
    rec.result = workflow.normalized(res)
    rec.model, rec.usage, rec.request_id = res.model, res.usage, res.request_id
    rec.http_attempts = 1
    rec.verification = v
  else
    rec.error = workflow.error_info(res)
    if rec.error then rec.error.raw = nil end
    if res.raw then rec.response = { raw = res.raw, request_id = res.request_id } end
  end
  return rec
end

--- Write a record per request and a summary. opts: evidence_dir,
-- summary (false: none), summary_extra (merged into the summary).
-- Returns paths (per request), summary_path, summary; a write that failed
-- leaves its path nil and adds to summary.evidence_errors.
function M.write(job, results, opts)
  opts = opts or {}
  local dir = opts.evidence_dir or evidence.default_dir
  local secrets = { job.conn.api_key }
  local paths = {}
  local summary = {
    format = workflow.RECORD_FORMAT, kind = "batch-summary", mode = "batch-api",
    created_at = evidence.iso_time(os.time()), job_id = job.id,
    completion_window = job.state.completion_window,
    total = #results, ok = 0, failed = 0, verification_failed = 0,
    items = evidence.array(), batches = evidence.array(),
  }
  local errors = {}
  M.each_item(job, function(i, item)
    local res = results[i]
    if not res then return end
    local rec = M.build(job, i, res, item)
    if opts.evidence ~= false then
      local path, werr = evidence.write(rec, { dir = dir, id = rec.id, secrets = secrets })
      paths[i] = path
      if not path then errors[#errors + 1] = werr end
    end
    local s = { index = i, image = rec.image_refs[1], record = paths[i],
                custom_id = rec.batch.custom_id, batch_id = rec.batch.batch_id }
    if res.text ~= nil then
      local v = res.verification
      s.ok = v == nil or v.ok
      s.text, s.model, s.request_id = res.text, res.model, res.request_id
      if v and not v.ok then
        s.errors = v.errors
        summary.verification_failed = summary.verification_failed + 1
      end
    else
      s.ok = false
      s.error = workflow.error_info(res)
      if s.error then s.error.raw = nil end
    end
    if s.ok then summary.ok = summary.ok + 1 else summary.failed = summary.failed + 1 end
    summary.items[#summary.items + 1] = s
  end)
  for _, p in ipairs(job:parts(true)) do
    summary.batches[#summary.batches + 1] = {
      name = p.name, batch_id = p.batch_id, status = p.status or p.stage, lines = p.lines,
      request_counts = p.request_counts, input_file_id = p.input_file_id,
      output_file_id = p.output_file_id, error_file_id = p.error_file_id,
    }
  end
  if #errors > 0 then summary.evidence_errors = errors end
  for k, v in pairs(opts.summary_extra or {}) do summary[k] = v end
  local spath
  if opts.evidence ~= false and opts.summary ~= false then
    spath = evidence.write(summary, { dir = dir, secrets = secrets,
      name = evidence.timestamp(os.time()) .. "-" .. evidence.short_id() .. "-summary.json" })
  end
  summary.record = spath
  return paths, spath, summary
end

return M
