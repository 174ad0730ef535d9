-- qwenvl.workflow: the original tool's workflow as a Lua API.
--
--   probe first (read-only), then the target call, verify, keep a record.
--
--   local wf = require("qwenvl.workflow")
--   local p, err = wf.probe{region = "intl"}
--   local result, record_path = wf.run({prompt = "...", image = "a.png",
--                                        schema = schema_table}, {repair = 1})
--   local v = wf.verify(result, schema_table)
--   wf.each(requests, {on_item = function(i, result, err) end})   -- many
--
-- The core module is trusted to be whole (CORE_API.md): nothing here asks
-- whether a function exists. Errors are the core's (qwenvl.error); JSON is
-- pulled out of answers by the core's one rule (qwenvl.extract_json).
-- An interrupt (Ctrl-C) is never caught here: it goes on up.
-- See docs/cli.md and README.md ("Workflows") for the full description.

-- qwenvl.schema (and PCRE2 under it) loads when a schema is first used:
-- most runs have none, and a process per image pays for every module
local function schema_mod() return require("qwenvl.schema") end
local evidence = require("qwenvl.evidence")
local sys = require("qwenvl.sys")
local cjson = require("cjson")
local NULL = cjson.null

local M = {}

M.RECORD_FORMAT = "qwenvl.evidence/1"
M.PROBE_CACHE_FORMAT = "qwenvl.probe-cache/1"
M.PROBE_TTL_S = 600
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
  local ok, socket = sys.pcall(require, "socket")
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

local CONN_FIELDS = { "api_key", "base_url", "region", "timeout_s", "connect_timeout_s",
                      "proxy", "noproxy", "cainfo", "capath" }

local function conn_opts(src)
  local c = {}
  for _, k in ipairs(CONN_FIELDS) do
    if src and src[k] ~= nil and src[k] ~= NULL then c[k] = src[k] end
  end
  return c
end

--- An error table in the core's shape: qwenvl.error(code, message, fields).
function M.error(code, message, fields)
  return get_core().error(code, message, fields)
end

--- Plain-table copy of an error, for records and JSON output.
function M.error_info(err)
  if err == nil then return nil end
  if type(err) ~= "table" then return { code = "error", message = tostring(err) } end
  local info = {}
  for _, k in ipairs({ "code", "message", "status", "api_code", "request_id", "retryable",
                       "attempts", "field", "raw", "hint", "stage", "elapsed_s" }) do
    local v = err[k]
    if v ~= nil and v ~= NULL then info[k] = v end
  end
  return info
end

local function add_hint(err, hint)
  if err.hint then return end
  err.hint = hint
  local msg = tostring(err.message or "")
  if not msg:find(hint, 1, true) then
    err.message = (msg ~= "" and (msg .. " (hint: " .. hint .. ")") or hint)
  end
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
      add_hint(err, "no API key: set DASHSCOPE_API_KEY (environment or ./.env) or add dashscope_api_key to ~/.alibabacloud/credentials")
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

-- Where a request would go and where its key comes from (never the key).
local function config_of(q, conn)
  local cfg = q.config(conn)
  if cfg then return cfg end
  return { base_url = conn.base_url, region = conn.region }
end

---------------------------------------------------------------------------
-- probe

--- Read-only check of key, region and reachability: GET {base_url}/models,
-- or, where that is not available (404/405), the smallest possible chat.
-- opts: api_key, base_url, region, timeout_s, connect_timeout_s,
-- max_retries (default 0), model (for the chat fallback), qwenvl.
-- Returns {ok=true, region, base_url, latency_s, models=n, method,
-- request_id, key_source, probed_at} or nil, err (err.hint explains what
-- to check, err.stage is "probe").
function M.probe(opts)
  opts = opts or {}
  local q = get_core(opts)
  local conn = conn_opts(opts)
  conn.max_retries = opts.max_retries or 0
  local cfg = config_of(q, conn)
  local t0 = M.now()
  local method = "models"
  local res, err = q.list_models(conn)
  if not res and (err.code == "not_found" or err.status == 404 or err.status == 405) then
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
      res = { request_id = r.request_id, elapsed_s = r.elapsed_s,
              base_url = r.base_url, region = r.region }
      err = nil
    else
      err = e
    end
  end
  if not res then
    M.annotate_error(err, cfg)
    err.stage = err.stage or "probe"
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
    probed_at = evidence.iso_time(os.time()),
  }
end

-- The probe's verdict is kept for a while, per endpoint and key: in this
-- process, and (opts.probe_cache) in a file of the user's cache folder,
-- so that one short command is one round trip, not two. Successes only;
-- the file name is a hash of the endpoint and of a fingerprint of the key,
-- never the key.

local probe_memo = {}

--- Forget which endpoints were probed in this process.
function M.reset_probe_cache() probe_memo = {} end

--- The folder of the probe cache: $XDG_CACHE_HOME/qwenvl, else
-- ~/.cache/qwenvl (nil without either).
function M.probe_cache_dir()
  local xdg = os.getenv("XDG_CACHE_HOME")
  if xdg and xdg:sub(1, 1) == "/" then return xdg .. "/qwenvl" end
  local home = os.getenv("HOME")
  if home and home ~= "" then return home .. "/.cache/qwenvl" end
  return nil
end

local function slurp(path) return evidence.read_file(path) or "" end

-- The cache file of an endpoint and key: named by a hash of the endpoint
-- and of what identifies the key without being it: the core's own
-- fingerprint when it offers one, else where the key comes from and what
-- holds it (the request's or environment's value, or the whole ./.env or
-- credentials file: a change anywhere in it only costs a fresh probe).
-- One hash, so one sha256sum at most per command.
local function cache_file(dir, cfg, conn)
  local src = cfg.key_source
  local material
  if type(cfg.key_fingerprint) == "string" then material = "fingerprint\0" .. cfg.key_fingerprint
  elseif src == "request" then material = tostring(conn.api_key)
  elseif src == "env" then material = os.getenv("DASHSCOPE_API_KEY") or ""
  elseif src == ".env" then material = slurp(".env")
  elseif src == "credentials" then
    material = slurp((os.getenv("HOME") or "") .. "/.alibabacloud/credentials") .. "\0"
      .. (os.getenv("ALIBABA_CLOUD_PROFILE") or "") .. "\0" .. (os.getenv("ALICLOUD_PROFILE") or "")
      .. "\0" .. slurp(".env")
  else
    return nil
  end
  local h = sys.sha256(tostring(cfg.base_url) .. "\n" .. tostring(src) .. "\0" .. material)
  return h and (dir .. "/probe-" .. h:sub(1, 32) .. ".json")
end

local function iso_to_epoch(s)
  local y, mo, d, h, mi, se = tostring(s):match("^(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)Z$")
  if not y then return nil end
  -- os.time reads a local time; the offset of UTC is measured, not assumed
  local t = { year = tonumber(y), month = tonumber(mo), day = tonumber(d),
              hour = tonumber(h), min = tonumber(mi), sec = tonumber(se), isdst = false }
  local now = os.time()
  local utc_now = os.time(os.date("!*t", now))
  return os.time(t) + (now - utc_now)
end

local function read_cached(path, ttl)
  local text = slurp(path)
  if text == "" then return nil end
  local ok, v = sys.pcall(cjson.decode, text)
  if not ok or type(v) ~= "table" or v.format ~= M.PROBE_CACHE_FORMAT or v.ok ~= true then return nil end
  local at = iso_to_epoch(v.probed_at)
  local age = at and (os.time() - at)
  if not age or age < -5 or age > ttl then return nil end
  v.format = nil
  v.cached = true
  v.age_s = math.max(0, age)
  for k, val in pairs(v) do if val == NULL then v[k] = nil end end
  if math.tointeger and type(v.models) == "number" then v.models = math.tointeger(v.models) or v.models end
  return v
end

local function write_cached(dir, path, p)
  if not sys.mkdir_p(dir) then return end
  local rec = copy(p)
  rec.format = M.PROBE_CACHE_FORMAT
  rec.cached, rec.age_s = nil, nil
  evidence.write_file(path, evidence.encode(rec) .. "\n")   -- a cache: failures do not matter
end

--- The probe, cached. opts.probe: true (cached), "fresh" (always probe);
-- opts.probe_cache: true or a folder for the file cache (off by default);
-- opts.before_probe(): called when a probe is about to be sent; an error
-- it returns is returned instead; opts.probe_max_retries (default 0).
-- Returns the probe (with cached = true and age_s when it was kept) or
-- nil, err.
function M.cached_probe(req, opts)
  opts = opts or {}
  local q = get_core(opts)
  local conn = conn_opts(req)
  local cfg = config_of(q, conn)
  local memo_key = tostring(cfg.base_url or conn.base_url or ("region:" .. tostring(conn.region)))
    .. "\0" .. tostring(cfg.key_source) .. "\0" .. tostring(conn.api_key)
  local fresh = opts.probe == "fresh"
  if not fresh and probe_memo[memo_key] then
    local c = copy(probe_memo[memo_key])
    c.cached = true
    return c
  end
  local dir = opts.probe_cache
  if dir == true then dir = M.probe_cache_dir() end
  local path = type(dir) == "string" and cfg.base_url and cache_file(dir, cfg, conn) or nil
  if path and not fresh then
    local hit = read_cached(path, opts.probe_ttl_s or M.PROBE_TTL_S)
    if hit then
      probe_memo[memo_key] = hit
      return copy(hit)
    end
  end
  if opts.before_probe then
    -- a probe is about to be sent: the caller's last chance to refuse
    local e = opts.before_probe()
    if e then return nil, e end
  end
  local popts = copy(conn)
  popts.qwenvl = q
  popts.model = req.model
  popts.max_retries = opts.probe_max_retries
  local p, err = M.probe(popts)
  if not p then return nil, err end
  probe_memo[memo_key] = p
  if path then write_cached(dir, path, p) end
  return copy(p)
end

---------------------------------------------------------------------------
-- verify

--- Decode JSON from a model's answer by the core's rule (the whole text, a
-- ``` fence, the outermost braces). Returns value or nil, message.
function M.decode_json_text(text)
  if type(text) ~= "string" then return nil, "no text" end
  local v, err = get_core().extract_json(text)
  if v == nil then return nil, tostring(err and err.message or err) end
  return v
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
      result.json = doc
    end
    if schema == nil then return { ok = true, mode = mode, errors = errors } end
    local s, lerr = schema_mod().load(schema)
    if s == nil then
      errors[1] = "$: " .. tostring(lerr)
      return { ok = false, mode = mode, errors = errors }
    end
    local ok, errs = schema_mod().validate(doc, s)
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
-- attempts: one chat, verified, repaired

local function normalized(result)
  if type(result) ~= "table" then return nil end
  return {
    text = result.text, json = result.json, model = result.model, usage = result.usage,
    finish_reason = result.finish_reason, reasoning = result.reasoning,
    request_id = result.request_id, attempts = result.attempts, elapsed_s = result.elapsed_s,
  }
end
M.normalized = normalized

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

local function load_schema(q, req)
  if req.schema == nil or req.schema == NULL then req.schema = nil; return nil end
  local s, err = schema_mod().load(req.schema)
  if s == nil then
    return nil, q.error("invalid_request", "schema: " .. tostring(err), { field = "schema" })
  end
  return s
end

local function max_repairs(opts)
  local r = opts.repair
  if r == nil then r = M.default_repair end
  if r == false then r = 0 end
  return r
end

-- One item's attempts. :answer(res, err) takes the outcome of the latest
-- chat and says what next: "done", or "repair" with :next_request().
local Attempts = {}
Attempts.__index = Attempts

local function new_attempts(req, schema, repairs)
  return setmetatable({ req = req, schema = schema, repairs = repairs, n = 0,
                        prompt = req.prompt, entries = {}, t0 = M.now() }, Attempts)
end

function Attempts:answer(res, err)
  self.n = self.n + 1
  local v
  if res then
    v = M.verify(res, self.schema, { json_mode = self.req.json_mode })
    self.last_result, self.verification = res, v
  else
    self.last_err = err
  end
  self.entries[self.n] = attempt_entry(self.n, self.n == 1 and "initial" or "repair",
    self.prompt, res, err, v, self.t0)
  if res and not v.ok and v.mode ~= "text" and self.n <= self.repairs then
    self.prompt = M.repair_prompt(self.req.prompt, v.errors, res.text)
    return "repair"
  end
  return "done"
end

function Attempts:next_request()
  local r = copy(self.req)
  r.prompt = self.prompt
  self.t0 = M.now()
  return r
end

-- The outcome: the last answer (with .verification), or nil, err.
function Attempts:outcome()
  local result = self.last_result
  if not result then return nil, self.last_err end
  local summaries = array()
  for i, e in ipairs(self.entries) do summaries[i] = summary_of(e) end
  local v = self.verification
  result.verification = { ok = v.ok, mode = v.mode, errors = v.errors, attempts = summaries }
  return result, nil
end

---------------------------------------------------------------------------
-- records

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
M.image_refs = image_refs

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
    tool = { name = "qwenvl", version = q.version, lua = _VERSION },
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
  local secrets = copy(ctx.req)
  secrets.secrets = { opts.api_key }
  return evidence.write(rec, { dir = opts.evidence_dir or opts.dir, id = ctx.id, secrets = secrets })
end

local function prepared(q, req)
  local p = q.prepare(req)
  return p
end

local function new_ctx(q, req, opts, kind)
  local ctx = { q = q, req = req, kind = kind, id = evidence.short_id(),
                started = M.now(), started_wall = os.time(), extra = opts.record }
  ctx.cfg = config_of(q, conn_opts(req))
  return ctx
end

--- Before anything is sent: can the records of `opts` be written?
-- Returns true, or nil and an invalid_request error (field evidence_dir).
function M.check_evidence(opts)
  opts = opts or {}
  if opts.evidence == false then return true end
  local ok, err = evidence.check_dir(opts.evidence_dir or opts.dir)
  if ok then return true end
  return nil, get_core(opts).error("invalid_request", tostring(err), { field = "evidence_dir" })
end

---------------------------------------------------------------------------
-- run

--- Probe (cached: see cached_probe; opts.probe == false skips it), then
-- qwenvl.chat, then verify (with opts.repair repair attempts, default 1),
-- then save the evidence record (unless opts.evidence == false). The
-- evidence folder is checked before anything is sent.
-- opts: probe (true | "fresh" | false), probe_cache, repair, evidence,
-- evidence_dir, kind, qwenvl, on_probe, record (fields added to it).
-- Returns result, record_path [, evidence_error] or nil, err (err.record_path
-- is the record of the failed run, err.stage is "probe", "request" or "chat").
function M.run(request, opts)
  opts = opts or {}
  local q = get_core(opts)
  if type(request) ~= "table" then
    return nil, q.error("invalid_request", "request must be a table", { field = "request" })
  end
  local req = copy(request)
  local ctx = new_ctx(q, req, opts, opts.kind)

  local function fail(err, stage)
    err.stage = err.stage or stage
    M.annotate_error(err, ctx.cfg)
    ctx.err = err
    local path = write_record(ctx, opts)
    if path then err.record_path = path end
    return nil, err
  end

  local schema, serr = load_schema(q, req)
  if serr then return fail(serr, "request") end
  local okdir, derr = M.check_evidence(opts)
  if not okdir then derr.stage = "request"; return nil, derr end

  if opts.probe ~= false then
    local popts = copy(opts)
    -- a request that cannot be sent is refused before the probe goes out
    popts.before_probe = function()
      local _, perr = q.prepare(req)
      if perr then perr.stage = "request" end
      return perr
    end
    local p, perr = M.cached_probe(req, popts)
    if not p then return fail(perr, perr.stage or "probe") end
    ctx.probe = p
    if opts.on_probe then opts.on_probe(p) end
  else
    ctx.probe_skipped = true
  end

  local attempts = new_attempts(req, schema, max_repairs(opts))
  local res, err = q.chat(req)
  if not res and err.code == "invalid_request" then
    attempts:answer(nil, err)
    ctx.entries = attempts.entries
    return fail(err, "request")
  end
  while attempts:answer(res, err) == "repair" do
    res, err = q.chat(attempts:next_request())
  end
  local result, ferr = attempts:outcome()
  ctx.entries = attempts.entries
  if not result then
    ctx.prepared = prepared(q, req)
    return fail(ferr, "chat")
  end
  ctx.result = result
  local path, werr = write_record(ctx, opts)
  result.record_path = path
  return result, path, werr
end

---------------------------------------------------------------------------
-- many

--- Run many requests: qwenvl.chat_many over them, each answer verified
-- (its schema / json_mode) and repaired (opts.repair, default 1; repairs
-- run together after the first round), and opts.on_item(i, result, err,
-- attempts) called once per request as soon as its outcome is final, in
-- the order they finish. A request whose schema is malformed is not sent.
-- opts: concurrency, rpm, tpm, repair, on_item, qwenvl, and stop: a
-- function called after each on_item; when it returns true no further
-- request is started (those in flight finish), and the requests never
-- started are reported in the returned `unsent` list instead of on_item.
-- Returns {finished = n, unsent = {i...}, stopped = bool}. The
-- interrupt (Ctrl-C) is not caught: outcomes already given to on_item
-- are all there is.
function M.each(requests, opts)
  opts = opts or {}
  local q = get_core(opts)
  local repairs = max_repairs(opts)
  local n = #requests
  local items, finished, stopped = {}, 0, false
  local list = {}           -- the list given to chat_many now
  local list_index = {}     -- its entries' item numbers

  local function finish(i)
    local a = items[i]
    a.final = true
    finished = finished + 1
    local result, err = a:outcome()
    if opts.on_item then opts.on_item(i, result, err, a.entries) end
    -- chat_many starts nothing more once on_result returns false (below)
    if not stopped and opts.stop and opts.stop() then stopped = true end
  end

  local pending, unsent = {}, {}
  for i = 1, n do
    local req = copy(requests[i])
    local schema, serr = load_schema(q, req)
    items[i] = new_attempts(req, schema, repairs)
    items[i].schema_error = serr
  end
  for i = 1, n do
    local a = items[i]
    if stopped then unsent[#unsent + 1] = i
    elseif a.schema_error then a:answer(nil, a.schema_error); finish(i)
    else pending[#pending + 1] = i end
  end

  while #pending > 0 do
    if stopped then
      for _, i in ipairs(pending) do unsent[#unsent + 1] = i end
      break
    end
    list, list_index = {}, {}
    for k, i in ipairs(pending) do
      local a = items[i]
      list[k] = a.n == 0 and a.req or a:next_request()
      list_index[k] = i
    end
    local again = {}
    q.chat_many(list, {
      concurrency = opts.concurrency, rpm = opts.rpm, tpm = opts.tpm,
      on_result = function(k, res, err)
        local i = list_index[k]
        if stopped and not res and err.code == "canceled" and err.attempts == 0 then
          -- never started: chat_many was told to stop. A repair not sent
          -- leaves the answer it would have repaired, final as it stands.
          if items[i].n > 0 then finish(i) else unsent[#unsent + 1] = i end
          return false
        end
        if items[i]:answer(res, err) == "repair" and not stopped then
          again[#again + 1] = i
        else
          finish(i)
        end
        if stopped then return false end
      end,
    })
    -- a stop leaves the repairs it found waiting: final as they stand
    if stopped then
      for _, i in ipairs(again) do if not items[i].final then finish(i) end end
      again = {}
    end
    pending = again
  end
  return { finished = finished, unsent = unsent, stopped = stopped }
end

--- Run many requests with records: one probe (opts.probe; a failed probe
-- fails every item without sending), then M.each, with one evidence
-- record per item written as soon as the item is final (then
-- opts.on_result(i, item)), then a summary record.
-- opts: as run and each, plus on_result(i, item), summary (bool, default
-- true), summary_extra (table merged into the summary record).
-- Returns items, summary_path, summary where items[i] = {index, request,
-- result, err, record, record_error}.
function M.run_many(requests, opts)
  opts = opts or {}
  local q = get_core(opts)
  local started, started_wall = M.now(), os.time()
  local items = {}
  local n = #requests
  local probe_info, probe_err
  if opts.probe ~= false and n > 0 then
    probe_info, probe_err = M.cached_probe(copy(requests[1]), opts)
  end

  local function finish(i, res, err, entries)
    local req = copy(requests[i])
    local ctx = new_ctx(q, req, opts, opts.kind or "batch-item")
    ctx.probe, ctx.probe_skipped = probe_info, opts.probe == false
    ctx.entries = entries
    local item = { index = i, request = requests[i] }
    if res then
      ctx.result, item.result = res, res
    else
      M.annotate_error(err, ctx.cfg)
      if err.code ~= "invalid_request" and not probe_err then ctx.prepared = prepared(q, req) end
      ctx.err, item.err = err, err
    end
    item.record, item.record_error = write_record(ctx, opts)
    if res then res.record_path = item.record end
    items[i] = item
    if opts.on_result then opts.on_result(i, item) end
  end

  local outcome = { unsent = {} }
  if probe_err then
    for i = 1, n do finish(i, nil, probe_err, {}) end
  else
    outcome = M.each(requests, {
      qwenvl = q, concurrency = opts.concurrency, rpm = opts.rpm, tpm = opts.tpm,
      repair = opts.repair, stop = opts.stop,
      on_item = function(i, res, err, entries) finish(i, res, err, entries) end,
    })
  end

  local summary = { format = M.RECORD_FORMAT, kind = "batch-summary",
                    created_at = evidence.iso_time(started_wall),
                    total = n, ok = 0, failed = 0, verification_failed = 0, unsent = #outcome.unsent,
                    probe = probe_info, items = array(),
                    timings = { total_s = round(M.now() - started, 3),
                                started_at = evidence.iso_time(started_wall),
                                finished_at = evidence.iso_time(os.time()) },
                    concurrency = opts.concurrency }
  for i = 1, n do
    local it = items[i]
    local s = { index = i, image = image_refs(requests[i])[1] }
    if not it then
      s.ok = false
      s.unsent = true
    elseif it.result then
      local v = it.result.verification
      s.record = it.record
      s.ok = v == nil or v.ok
      s.request_id = it.result.request_id
      s.model = it.result.model
      s.text = it.result.text
      if v and not v.ok then
        s.errors = v.errors
        summary.verification_failed = summary.verification_failed + 1
      end
    else
      s.record = it.record
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
    spath = evidence.write(summary, { dir = opts.evidence_dir or opts.dir, secrets = requests[1],
                                      name = evidence.timestamp(started_wall) .. "-" .. evidence.short_id() .. "-summary.json" })
  end
  summary.record = spath
  return items, spath, summary
end

return M
