-- qwenvl.workflow: the original tool's workflow as a Lua API.
--
--   probe first (read-only), then the target call, verify, keep a record.
--
--   local wf = require("qwenvl.workflow")
--   local p, err = wf.probe{region = "intl"}
--   local result, record_path = wf.run({prompt = "...", image = "a.png",
--                                        schema = schema_table}, {repair = 1})
--   local v = wf.verify(result, schema_table)
--
-- See README.md ("Workflow API", "Evidence") for the full description.

local schema_mod = require("qwenvl.schema")
local evidence = require("qwenvl.evidence")

local ok_cjson, cjson = pcall(require, "cjson")
if not ok_cjson then cjson = nil end
local NULL = cjson and cjson.null

local M = {}

M.RECORD_FORMAT = "qwenvl.evidence/1"
M.default_repair = 1
M.REGION_HINT = "check the region/base URL"
-- a 12x12 white PNG: the image of the chat probe (VL models want one, and
-- reject images of 10 pixels or less)
M.PROBE_IMAGE = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAwAAAAMCAIAAADZF8uwAAAAEklEQVR42mP4TwRgGFU0GBUBAED3rmCGou5kAAAAAElFTkSuQmCC"

---------------------------------------------------------------------------
-- helpers

local core_override
--- Use `mod` instead of require("qwenvl") (for tests and embedding).
function M.set_core(mod) core_override = mod end

local function get_core(opts)
  if opts and opts.qwenvl then return opts.qwenvl end
  if core_override then return core_override end
  return require("qwenvl")
end
M.core = get_core

local gettime
do
  local ok, socket = pcall(require, "socket")
  if ok and type(socket) == "table" and type(socket.gettime) == "function" then
    gettime = socket.gettime
  else
    gettime = os.time
  end
end
--- Wall-clock seconds (sub-second when luasocket is present).
M.now = function() return gettime() end

local function round(x, digits)
  if type(x) ~= "number" then return x end
  local m = 10 ^ (digits or 3)
  return math.floor(x * m + 0.5) / m
end

local function copy(t)
  local c = {}
  if type(t) == "table" then
    for k, v in pairs(t) do
      if v ~= NULL then c[k] = v end
    end
  end
  return c
end

local function array(t) return evidence.array(t or {}) end

local CONN_FIELDS = { "api_key", "base_url", "region", "timeout_s", "connect_timeout_s" }

local function conn_opts(src)
  local c = {}
  for _, k in ipairs(CONN_FIELDS) do
    if src and src[k] ~= nil and src[k] ~= NULL then c[k] = src[k] end
  end
  return c
end

local err_mt = {
  __tostring = function(e)
    local s = tostring(e.code or "error") .. ": " .. tostring(e.message or "")
    return s
  end,
}

--- Make an error table in the core's shape (for errors raised here).
function M.error(code, message, fields)
  local e = fields or {}
  e.code = code
  e.message = message
  return setmetatable(e, err_mt)
end

local function as_error(err)
  if type(err) == "table" then return err end
  return M.error("api_error", tostring(err))
end

--- Plain-table copy of an error, for records and JSON output.
function M.error_info(err)
  if err == nil then return nil end
  if type(err) ~= "table" then return { code = "api_error", message = tostring(err) } end
  local info = {}
  for _, k in ipairs({ "code", "message", "status", "api_code", "request_id", "retryable",
                       "attempts", "field", "raw", "hint", "stage", "elapsed_s" }) do
    local v = err[k]
    if v ~= nil and v ~= NULL then info[k] = v end
  end
  return info
end

local function add_hint(err, hint)
  if type(err) ~= "table" or not hint then return end
  if err.hint then return end
  pcall(function()
    err.hint = hint
    local msg = tostring(err.message or "")
    if not msg:find(hint, 1, true) then
      err.message = (msg ~= "" and (msg .. " (hint: " .. hint .. ")") or hint)
    end
  end)
end

--- Add a hint to an error from the core, according to its class.
function M.annotate_error(err, cfg)
  if type(err) ~= "table" then return err end
  cfg = cfg or {}
  local where = ""
  if cfg.region or cfg.base_url then
    where = " (region " .. tostring(cfg.region or "?") .. ", " .. tostring(cfg.base_url or "?") .. ")"
  end
  if err.code == "auth" or err.status == 401 or err.status == 403 then
    if cfg.has_key == false then
      add_hint(err, "no API key: set DASHSCOPE_API_KEY or add dashscope_api_key to ~/.alibabacloud/credentials")
    elseif err.status == 403 then
      add_hint(err, "check the key's permissions, and the region/base URL" .. where)
    else
      add_hint(err, M.REGION_HINT .. ": a key from one region is rejected by another" .. where)
    end
  elseif err.code == "network" or err.code == "timeout" then
    add_hint(err, "check the network and the region/base URL" .. where)
  elseif err.code == "rate_limited" then
    add_hint(err, "rate limited after retries: lower the concurrency or raise --max-retries")
  end
  return err
end

---------------------------------------------------------------------------
-- probe

local probe_cache = {}

--- Forget which base URLs were probed in this process.
function M.reset_probe_cache() probe_cache = {} end

local function config_of(q, conn)
  if type(q.config) == "function" then
    local ok, cfg = pcall(q.config, conn)
    if ok and type(cfg) == "table" then return cfg end
  end
  return { base_url = conn.base_url, region = conn.region }
end

--- Read-only check of key, region and reachability: GET {base_url}/models,
-- or, where that is not available, the smallest possible chat.
-- opts: api_key, base_url, region, timeout_s, connect_timeout_s,
-- max_retries (default 0), model (for the chat fallback).
-- Returns {ok=true, region, base_url, latency_s, models=n, method,
-- request_id, key_source} or nil, err (err.hint explains what to check).
function M.probe(opts)
  opts = opts or {}
  local q = get_core(opts)
  local conn = conn_opts(opts)
  conn.max_retries = opts.max_retries or 0
  local cfg = config_of(q, conn)
  local t0 = M.now()
  local res, err, method
  if type(q.list_models) == "function" then
    method = "models"
    res, err = q.list_models(conn)
  end
  if not res and (method == nil or (type(err) == "table" and (err.code == "not_found" or err.status == 404 or err.status == 405))) then
    -- no model list here: the smallest possible chat
    method = "chat"
    local req = conn_opts(opts)
    req.prompt = "ping"
    req.image = M.PROBE_IMAGE
    req.max_tokens = 1
    req.max_retries = conn.max_retries
    req.model = opts.model
    local r, e = q.chat(req)
    if r then
      res = { count = nil, request_id = r.request_id, elapsed_s = r.elapsed_s,
              base_url = r.base_url, region = r.region }
      err = nil
    else
      err = e
    end
  end
  if not res then
    err = as_error(err)
    M.annotate_error(err, cfg)
    pcall(function() err.stage = err.stage or "probe" end)
    return nil, err
  end
  local n = res.count
  if n == nil and type(res.models) == "table" then n = #res.models end
  return {
    ok = true,
    method = method,
    region = res.region or cfg.region,
    base_url = res.base_url or cfg.base_url,
    latency_s = round(res.elapsed_s or (M.now() - t0), 3),
    models = n,
    request_id = res.request_id,
    key_source = cfg.key_source,
  }
end

local function cached_probe(q, req, opts)
  local conn = conn_opts(req)
  local cfg = config_of(q, conn)
  local key = tostring(cfg.base_url or conn.base_url or ("region:" .. tostring(conn.region)))
  local hit = probe_cache[key]
  if hit then
    local c = copy(hit)
    c.cached = true
    return c
  end
  local popts = copy(conn)
  popts.qwenvl = q
  popts.model = req.model
  local p, err = M.probe(popts)
  if not p then return nil, err end
  probe_cache[key] = p
  return copy(p)
end

---------------------------------------------------------------------------
-- verify

--- Decode JSON from a model's answer: the whole text, a ```json fenced
-- block, or the outermost {...} / [...] span. Returns value or nil, err.
function M.decode_json_text(text)
  if type(text) ~= "string" then return nil, "no text" end
  if not cjson then return nil, "cjson is not available" end
  local candidates = { text }
  local fenced = text:match("```[%w]*%s*\n(.-)\n?```")
  if fenced then candidates[#candidates + 1] = fenced end
  local a = text:find("[%[{]")
  if a then
    local close = text:sub(a, a) == "{" and "}" or "]"
    local b
    for i = #text, a, -1 do
      if text:sub(i, i) == close then b = i; break end
    end
    if b then candidates[#candidates + 1] = text:sub(a, b) end
  end
  local last
  for _, c in ipairs(candidates) do
    local ok, v = pcall(cjson.decode, c)
    if ok and type(v) == "table" then return v end
    last = v
  end
  return nil, tostring(last)
end

--- Verify a result. With a schema (table or JSON string), validate the
-- decoded JSON against it; with opts.json_mode, require JSON; otherwise
-- require non-empty text. Returns {ok=bool, mode="schema"|"json"|"text",
-- errors={...}} (and sets result.json when it had to decode the text).
function M.verify(result, schema, opts)
  opts = opts or {}
  local errors = array()
  if type(result) ~= "table" then
    errors[1] = "$: no result"
    return { ok = false, mode = "text", errors = errors }
  end
  local json_mode = opts.json_mode
  if json_mode == nil and type(result.request) == "table" then
    local rf = result.request.response_format
    json_mode = type(rf) == "table" and rf.type == "json_object"
  end
  if schema ~= nil or json_mode then
    local mode = schema ~= nil and "schema" or "json"
    local doc = result.json
    if doc == nil or doc == NULL then
      local derr
      doc, derr = M.decode_json_text(result.text)
      if doc == nil then
        errors[1] = "$: response is not valid JSON" .. (derr and (" (" .. derr .. ")") or "")
        return { ok = false, mode = mode, errors = errors }
      end
      pcall(function() result.json = doc end)
    end
    if schema == nil then return { ok = true, mode = mode, errors = errors } end
    local s, lerr = schema_mod.load(schema)
    if s == nil then
      errors[1] = "$: " .. tostring(lerr)
      return { ok = false, mode = mode, errors = errors }
    end
    local ok, errs = schema_mod.validate(doc, s)
    for i, e in ipairs(errs) do errors[i] = e end
    return { ok = ok, mode = mode, errors = errors }
  end
  local text = result.text
  if type(text) ~= "string" or not text:find("%S") then
    errors[1] = "$: empty response text"
    return { ok = false, mode = "text", errors = errors }
  end
  return { ok = true, mode = "text", errors = errors }
end

--- The prompt of a repair attempt: the original prompt, the violations,
-- and the previous answer.
function M.repair_prompt(prompt, errors, previous_text)
  local lines = { prompt, "",
    "Your previous answer did not satisfy the required JSON Schema. Problems found:" }
  for i, e in ipairs(errors or {}) do
    if i > 20 then lines[#lines + 1] = "- ... (" .. (#errors - 20) .. " more)"; break end
    lines[#lines + 1] = "- " .. e
  end
  if type(previous_text) == "string" and previous_text ~= "" then
    local t = previous_text
    if #t > 2000 then t = t:sub(1, 2000) .. "..." end
    lines[#lines + 1] = "Previous answer:"
    lines[#lines + 1] = t
  end
  lines[#lines + 1] = "Answer again with only the corrected JSON document."
  return table.concat(lines, "\n")
end

---------------------------------------------------------------------------
-- run

local function normalized(result)
  if type(result) ~= "table" then return nil end
  return {
    text = result.text, json = result.json, model = result.model, usage = result.usage,
    finish_reason = result.finish_reason, reasoning = result.reasoning,
    request_id = result.request_id, attempts = result.attempts, elapsed_s = result.elapsed_s,
  }
end
M.normalized = normalized

-- the request as the caller gave it, minus the key, with inline data URLs
-- shortened (evidence.redact shortens any that remain)
local function input_of(req)
  local c = copy(req)
  c.api_key = nil
  c.on_delta = nil
  return c
end

local function image_refs(req)
  local list = array()
  local function push(img)
    if type(img) == "string" then list[#list + 1] = img
    elseif type(img) == "table" then list[#list + 1] = img.url or img.path or img.image or img end
  end
  if req.image ~= nil then push(req.image) end
  if type(req.images) == "table" then for _, i in ipairs(req.images) do push(i) end end
  return list
end

local function attempt_entry(n, kind, prompt, result, err, verification, t0)
  local e = { n = n, kind = kind, prompt = prompt }
  if result then
    e.ok = verification and verification.ok
    e.errors = verification and verification.errors or array()
    e.text = result.text
    e.json = result.json
    e.model = result.model
    e.usage = result.usage
    e.finish_reason = result.finish_reason
    e.request_id = result.request_id
    e.http_attempts = result.attempts
    e.elapsed_s = result.elapsed_s or round(M.now() - t0, 3)
    e.request = result.request
    e.raw = result.raw
  else
    e.ok = false
    e.error = M.error_info(err)
    e.elapsed_s = round(M.now() - t0, 3)
  end
  return e
end

local function summary_of(entry)
  return { n = entry.n, kind = entry.kind, ok = entry.ok, errors = entry.errors or array(),
           request_id = entry.request_id, elapsed_s = entry.elapsed_s,
           error = entry.error and (tostring(entry.error.code) .. ": " .. tostring(entry.error.message)) or nil }
end

-- Verify `first` (the outcome of the first chat) and run repair attempts.
-- Returns result (the last answer, with .verification) or nil, err, plus
-- the list of attempt entries.
local function finish_attempts(q, req, schema, opts, first_result, first_err, t_first)
  local max_repair = opts.repair
  if max_repair == nil then max_repair = M.default_repair end
  if max_repair == false then max_repair = 0 end
  local entries = {}
  local result, err = first_result, first_err
  local cur_prompt = req.prompt
  local last_ok_result, verification
  local n, t0 = 1, t_first
  while true do
    local v
    if result then
      v = M.verify(result, schema, { json_mode = req.json_mode })
      last_ok_result, verification = result, v
    end
    entries[n] = attempt_entry(n, n == 1 and "initial" or "repair", cur_prompt, result, err, v, t0)
    if not result then break end
    if v.ok or v.mode == "text" or n > max_repair then break end
    -- repair attempt
    local rreq = copy(req)
    cur_prompt = M.repair_prompt(req.prompt, v.errors, result.text)
    rreq.prompt = cur_prompt
    n = n + 1
    t0 = M.now()
    result, err = q.chat(rreq)
  end
  if not last_ok_result then
    return nil, as_error(err), entries
  end
  local summaries = array()
  for i, e in ipairs(entries) do summaries[i] = summary_of(e) end
  last_ok_result.verification = {
    ok = verification.ok, mode = verification.mode, errors = verification.errors,
    attempts = summaries,
  }
  return last_ok_result, nil, entries
end

local function build_record(ctx)
  local q, req, result, err = ctx.q, ctx.req, ctx.result, ctx.err
  local cfg = ctx.cfg or {}
  local finished = M.now()
  local chat_s = 0
  for _, e in ipairs(ctx.entries or {}) do chat_s = chat_s + (tonumber(e.elapsed_s) or 0) end
  local status = "ok"
  if not result then status = "error"
  elseif result.verification and not result.verification.ok then status = "verification_failed" end
  local rec = {
    format = M.RECORD_FORMAT,
    kind = ctx.kind or "analyze",
    id = ctx.id,
    status = status,
    created_at = evidence.iso_time(ctx.started_wall),
    tool = { name = "qwenvl", version = q and q.version, lua = _VERSION },
    endpoint = { base_url = (result and result.base_url) or cfg.base_url,
                 region = (result and result.region) or cfg.region,
                 key_source = cfg.key_source },
    prompt = req.prompt,
    input = input_of(req),
    image_refs = image_refs(req),
    probe = ctx.probe or (ctx.probe_skipped and { skipped = true }) or nil,
    timings = {
      started_at = evidence.iso_time(ctx.started_wall),
      finished_at = evidence.iso_time(os.time()),
      total_s = round(finished - ctx.started, 3),
      probe_s = ctx.probe and not ctx.probe.cached and ctx.probe.latency_s or 0,
      chat_s = round(chat_s, 3),
    },
    attempts = array(ctx.entries),
  }
  if result then
    rec.images = result.images
    rec.request = result.request
    rec.response = { raw = result.raw, request_id = result.request_id }
    rec.result = normalized(result)
    rec.model = result.model
    rec.usage = result.usage
    rec.request_id = result.request_id
    rec.http_attempts = result.attempts
    rec.verification = result.verification
  else
    rec.error = M.error_info(err)
    if ctx.prepared then
      rec.images = ctx.prepared.images
      rec.request = ctx.prepared.body
    end
    if type(err) == "table" and err.raw then rec.response = { raw = err.raw, request_id = err.request_id } end
  end
  if ctx.extra then for k, v in pairs(ctx.extra) do rec[k] = v end end
  return rec
end

local function write_record(ctx, opts)
  if opts.evidence == false then return nil end
  local rec = build_record(ctx)
  local path, werr = evidence.write(rec, {
    dir = opts.evidence_dir or opts.dir, id = ctx.id,
    secrets = { ctx.req.api_key, opts.api_key },
  })
  return path, werr
end

local function try_prepare(q, req)
  if type(q.prepare) ~= "function" then return nil end
  local ok, p = pcall(q.prepare, req)
  if ok and type(p) == "table" then return p end
  return nil
end

local function load_schema(req)
  if req.schema == nil or req.schema == NULL then req.schema = nil; return nil end
  local s, err = schema_mod.load(req.schema)
  if s == nil then
    return nil, M.error("invalid_request", "schema: " .. tostring(err), { field = "schema" })
  end
  return s
end

--- Probe (once per process and base URL, unless opts.probe == false), then
-- qwenvl.chat, then verify (with opts.repair repair attempts, default 1),
-- then save the evidence record (unless opts.evidence == false).
-- opts: probe, repair, evidence, evidence_dir, kind, qwenvl, on_probe.
-- Returns result, record_path [, evidence_error] or nil, err (err.record_path
-- is the record of the failed run, err.stage is "probe", "request" or "chat").
function M.run(request, opts)
  opts = opts or {}
  if type(request) ~= "table" then
    return nil, M.error("invalid_request", "request must be a table", { field = "request" })
  end
  local q = get_core(opts)
  local req = copy(request)
  local ctx = { q = q, req = req, kind = opts.kind, id = evidence.short_id(),
                started = M.now(), started_wall = os.time(), extra = opts.record }
  ctx.cfg = config_of(q, conn_opts(req))

  local function fail(err, stage)
    err = as_error(err)
    pcall(function() err.stage = err.stage or stage end)
    M.annotate_error(err, ctx.cfg)
    ctx.err = err
    local path = write_record(ctx, opts)
    if path then pcall(function() err.record_path = path end) end
    return nil, err
  end

  local schema, serr = load_schema(req)
  if serr then return fail(serr, "request") end

  if opts.probe ~= false then
    local p, perr = cached_probe(q, req, opts)
    if not p then return fail(perr, "probe") end
    ctx.probe = p
    if opts.on_probe then opts.on_probe(p) end
  else
    ctx.probe_skipped = true
  end

  local t0 = M.now()
  local res, err = q.chat(req)
  if not res and type(err) == "table" and err.code == "invalid_request" then
    ctx.entries = { attempt_entry(1, "initial", req.prompt, nil, err, nil, t0) }
    return fail(err, "request")
  end
  if not res then ctx.prepared = try_prepare(q, req) end
  local result, ferr, entries = finish_attempts(q, req, schema, opts, res, err, t0)
  ctx.entries = entries
  if not result then return fail(ferr, "chat") end
  ctx.result = result
  local path, werr = write_record(ctx, opts)
  pcall(function() result.record_path = path end)
  return result, path, werr
end

--- One entry of qwenvl.chat_many's list -> result, err. Accepts both the
-- {result=...} / {err=...} form and a bare result or error table.
function M.split_many_entry(o)
  if type(o) ~= "table" then return nil, M.error("api_error", "no result") end
  if o.result ~= nil or o.err ~= nil then
    if o.result ~= nil then return o.result, nil end
    return nil, as_error(o.err)
  end
  if o.text == nil and o.code ~= nil and o.message ~= nil then return nil, o end
  return o, nil
end

--- Run many requests: one probe, then qwenvl.chat_many (when the module
-- has it; else one at a time), then per item verify/repair and a record;
-- then a summary record.
-- opts: as run, plus concurrency, on_result(i, item), summary (bool,
-- default true), summary_extra (table merged into the summary record).
-- Returns items, summary_path, summary where items[i] = {request, result,
-- err, record}.
function M.run_many(requests, opts)
  opts = opts or {}
  local q = get_core(opts)
  local started, started_wall = M.now(), os.time()
  local items = {}
  local n = #requests
  local probe_info, probe_err
  if opts.probe ~= false and n > 0 then
    probe_info, probe_err = cached_probe(q, copy(requests[1]), opts)
  end

  local function finish(i, res, err, t0)
    local req = copy(requests[i])
    local ctx = { q = q, req = req, kind = opts.kind or "batch-item", id = evidence.short_id(),
                  started = t0, started_wall = os.time(), probe = probe_info,
                  probe_skipped = opts.probe == false, extra = opts.record }
    ctx.cfg = config_of(q, conn_opts(req))
    local item = { index = i, request = requests[i] }
    local schema, serr = load_schema(req)
    local result, ferr, entries
    if serr then
      ferr, entries = serr, {}
    elseif probe_err then
      ferr, entries = probe_err, {}
    else
      if not res then ctx.prepared = try_prepare(q, req) end
      result, ferr, entries = finish_attempts(q, req, schema, opts, res, err, t0)
    end
    ctx.entries = entries
    if result then
      ctx.result = result
      item.result = result
    else
      ferr = as_error(ferr)
      M.annotate_error(ferr, ctx.cfg)
      ctx.err = ferr
      item.err = ferr
    end
    item.record = write_record(ctx, opts)
    if result then pcall(function() result.record_path = item.record end) end
    items[i] = item
    if opts.on_result then opts.on_result(i, item) end
  end

  if probe_err then
    for i = 1, n do finish(i, nil, probe_err, M.now()) end
  elseif type(q.chat_many) == "function" and n > 0 then
    local t0 = M.now()
    local outs = q.chat_many(requests, {
      concurrency = opts.concurrency,
      on_result = opts.on_chat_result and function(i, res, err)
        pcall(opts.on_chat_result, i, res, err)
      end or nil,
    })
    for i = 1, n do
      local res, err = M.split_many_entry(outs and outs[i])
      finish(i, res, err, t0)
    end
  else
    for i = 1, n do
      local t0 = M.now()
      local res, err = q.chat(requests[i])
      finish(i, res, err, t0)
    end
  end

  local summary = { format = M.RECORD_FORMAT, kind = "batch-summary",
                    created_at = evidence.iso_time(started_wall),
                    total = n, ok = 0, failed = 0, verification_failed = 0,
                    probe = probe_info, items = array(),
                    timings = { total_s = round(M.now() - started, 3),
                                started_at = evidence.iso_time(started_wall),
                                finished_at = evidence.iso_time(os.time()) },
                    concurrency = opts.concurrency,
                    used_chat_many = type(q.chat_many) == "function" }
  for i, it in ipairs(items) do
    local req = requests[i]
    local refs = image_refs(req)
    local s = { index = i, image = refs[1], record = it.record }
    if it.result then
      local v = it.result.verification
      s.ok = v == nil or v.ok
      s.request_id = it.result.request_id
      s.model = it.result.model
      s.text = it.result.text
      if v and not v.ok then
        s.errors = v.errors
        summary.verification_failed = summary.verification_failed + 1
      end
    else
      s.ok = false
      s.error = M.error_info(it.err)
      if s.error then s.error.raw = nil end
    end
    if s.ok then summary.ok = summary.ok + 1 else summary.failed = summary.failed + 1 end
    summary.items[i] = s
  end
  if opts.summary_extra then for k, v in pairs(opts.summary_extra) do summary[k] = v end end
  local spath
  if opts.evidence ~= false and opts.summary ~= false then
    local secrets = {}
    for _, r in ipairs(requests) do if type(r.api_key) == "string" then secrets[#secrets + 1] = r.api_key end end
    spath = evidence.write(summary, { dir = opts.evidence_dir or opts.dir, secrets = secrets,
                                      name = evidence.timestamp(started_wall) .. "-" .. evidence.short_id() .. "-summary.json" })
  end
  summary.record = spath
  return items, spath, summary
end

return M
