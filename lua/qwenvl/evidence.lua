-- qwenvl.evidence: one JSON record per run, written atomically, never
-- containing the API key or inline base64 image data, and always valid
-- JSON (invalid UTF-8 from a server becomes U+FFFD).
--
--   local evidence = require("qwenvl.evidence")
--   local ok, err = evidence.check_dir(dir)        -- before anything is sent
--   local path, err = evidence.write(record, {dir = "...", secrets = request})
--
-- Records are named <UTC timestamp>-<short id>.json (for example
-- 20260102T030405Z-1a2b3c4d.json) under evidence.default_dir unless
-- opts.dir is given. The file is first written to <dir>/.<name>.tmp-<random>,
-- flushed and closed, then renamed into place; on any failure the temporary
-- file is removed, so an interrupted run never leaves a half-written record.
--
-- Redaction (evidence.redact) is applied to the whole record before it is
-- encoded. What is a secret comes from the core, qwenvl.scrub: the key a
-- request would use (request, environment, ./.env, credentials file; also
-- JSON- and URL-escaped) and credentials inside base_url and proxy URLs.
-- On top of that, heuristics for what the core cannot know: "sk-..."
-- key-like tokens, "Bearer ..." and "Authorization: <scheme> ..." values,
-- and the value of every field whose name (in any case) is a secret's
-- (api_key, Password, X-API-Key, Authorization, ...). Every inline data
-- URL ("data:<mime>;base64,<payload>") becomes
-- "data:<mime>;base64,<omitted N chars>".

local M = {}

local cjson = require("cjson")
local sys = require("qwenvl.sys")

M.default_dir = "output/alicloud-ai-multimodal-qwen-vl"

local NULL = cjson.null
local floor, huge = math.floor, math.huge
local concat, format = table.concat, string.format

---------------------------------------------------------------------------
-- JSON encoding (deterministic, optionally indented, always valid UTF-8)

local ARRAY_MT = { __jsontype = "array" }
local OBJECT_MT = { __jsontype = "object" }

--- Mark a table as a JSON array (so that an empty one encodes as []).
function M.array(t) return setmetatable(t or {}, ARRAY_MT) end
--- Mark a table as a JSON object (so that an empty one encodes as {}).
function M.object(t) return setmetatable(t or {}, OBJECT_MT) end

local function is_array(t)
  local mt = getmetatable(t)
  if mt then
    if mt == ARRAY_MT or mt.__jsontype == "array" then return true end
    if mt == OBJECT_MT or mt.__jsontype == "object" then return false end
    if cjson.array_mt and mt == cjson.array_mt then return true end
    if cjson.empty_array_mt and mt == cjson.empty_array_mt then return true end
  end
  local n = 0
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or k ~= floor(k) then return false end
    n = n + 1
  end
  if n == 0 then return false end
  for i = 1, n do if t[i] == nil then return false end end
  return true
end

local REPLACEMENT = "\239\191\189"   -- U+FFFD

--- `s` as valid UTF-8: each byte that does not begin a well-formed
-- sequence (RFC 3629: no overlong forms, no surrogates, nothing past
-- U+10FFFF) becomes U+FFFD. ASCII-only strings are returned as they are.
function M.valid_utf8(s)
  if not s:find("[\128-\255]") then return s end
  local out, start, i, n = {}, 1, 1, #s
  local byte = string.byte
  while i <= n do
    local c = byte(s, i)
    local len, lo, hi = 0, 0x80, 0xBF
    if c < 0x80 then len = 1
    elseif c >= 0xC2 and c <= 0xDF then len = 2
    elseif c >= 0xE0 and c <= 0xEF then
      len = 3
      if c == 0xE0 then lo = 0xA0 elseif c == 0xED then hi = 0x9F end
    elseif c >= 0xF0 and c <= 0xF4 then
      len = 4
      if c == 0xF0 then lo = 0x90 elseif c == 0xF4 then hi = 0x8F end
    end
    local ok = len > 0 and i + len - 1 <= n
    if ok and len > 1 then
      local c2 = byte(s, i + 1)
      ok = c2 >= lo and c2 <= hi
      for k = 2, len - 1 do
        local ck = byte(s, i + k)
        if ck < 0x80 or ck > 0xBF then ok = false end
      end
    end
    if ok then
      i = i + len
    else
      out[#out + 1] = s:sub(start, i - 1)
      out[#out + 1] = REPLACEMENT
      i = i + 1
      start = i
    end
  end
  if start == 1 then return s end
  out[#out + 1] = s:sub(start)
  return concat(out)
end

local ESC = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r",
              ["\t"] = "\\t", ["\b"] = "\\b", ["\f"] = "\\f" }
local function encode_string(s)
  return '"' .. M.valid_utf8(s):gsub('[%c"\\\127]', function(c)
    return ESC[c] or format("\\u%04x", c:byte())
  end) .. '"'
end

local function encode_number(n)
  if n ~= n or n == huge or n == -huge then return "null" end
  if n == floor(n) and n > -1e15 and n < 1e15 then return format("%d", n) end
  return format("%.14g", n)
end

local function encode(v, indent, level, seen, out)
  local t = type(v)
  if v == nil or v == NULL then out[#out + 1] = "null"
  elseif t == "boolean" then out[#out + 1] = tostring(v)
  elseif t == "number" then out[#out + 1] = encode_number(v)
  elseif t == "string" then out[#out + 1] = encode_string(v)
  elseif t == "table" then
    if seen[v] then out[#out + 1] = '"<cycle>"'; return end
    seen[v] = true
    local nl, pad, pad_in = "", "", ""
    if indent then
      nl = "\n"
      pad = string.rep(indent, level)
      pad_in = string.rep(indent, level + 1)
    end
    if is_array(v) then
      local n = #v
      if n == 0 then out[#out + 1] = "[]"
      else
        out[#out + 1] = "[" .. nl
        for i = 1, n do
          out[#out + 1] = pad_in
          encode(v[i], indent, level + 1, seen, out)
          if i < n then out[#out + 1] = "," end
          out[#out + 1] = nl
        end
        out[#out + 1] = pad .. "]"
      end
    else
      local keys = {}
      for k, val in pairs(v) do
        local tv = type(val)
        if tv ~= "function" and tv ~= "thread" and (tv ~= "userdata" or val == NULL) then
          keys[#keys + 1] = tostring(k)
        end
      end
      table.sort(keys)
      if #keys == 0 then out[#out + 1] = "{}"
      else
        out[#out + 1] = "{" .. nl
        for i, k in ipairs(keys) do
          local val = v[k]
          if val == nil then val = v[tonumber(k)] end
          out[#out + 1] = pad_in .. encode_string(k) .. (indent and ": " or ":")
          encode(val, indent, level + 1, seen, out)
          if i < #keys then out[#out + 1] = "," end
          out[#out + 1] = nl
        end
        out[#out + 1] = pad .. "}"
      end
    end
    seen[v] = nil
  else
    -- functions, userdata: not representable
    out[#out + 1] = "null"
  end
end

--- Encode a Lua value as JSON. opts.indent (string or number of spaces)
-- pretty-prints; without it the text is one line. Keys are sorted, so
-- output is deterministic; strings are made valid UTF-8.
function M.encode(v, opts)
  local indent = opts and opts.indent
  if type(indent) == "number" then indent = string.rep(" ", indent) end
  if indent == true then indent = "  " end
  local out = {}
  encode(v, indent or nil, 0, {}, out)
  return concat(out)
end

---------------------------------------------------------------------------
-- redaction

M.REDACTED = "[redacted]"   -- the core's mark, so a record reads the same throughout

-- field names (compared in lower case) whose values are secrets, whatever
-- they hold
local SECRET_FIELDS = {
  api_key = true, apikey = true, ["api-key"] = true, ["x-api-key"] = true,
  authorization = true, ["proxy-authorization"] = true, password = true,
  passwd = true, secret = true, client_secret = true, dashscope_api_key = true,
  access_key_secret = true, access_token = true, refresh_token = true,
  cookie = true, ["set-cookie"] = true,
}

local function escape_pattern(s)
  return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0"))
end

-- "sk-" followed by at least 8 key characters, not inside a longer word
local SK_PATTERN = "%f[%w_]sk%-[%w_%-][%w_%-][%w_%-][%w_%-][%w_%-][%w_%-][%w_%-][%w_%-][%w_%-]*"
local AUTHZ = "([Aa][Uu][Tt][Hh][Oo][Rr][Ii][Zz][Aa][Tt][Ii][Oo][Nn]\"?%s*[:=]%s*\"?)(%a+)%s+[^%s\"',;]+"

local function heuristics(s, literals)
  for _, key in ipairs(literals) do
    if s:find(key, 1, true) then s = s:gsub(escape_pattern(key), M.REDACTED) end
  end
  if s:find("sk-", 1, true) then s = s:gsub(SK_PATTERN, M.REDACTED) end
  s = s:gsub("([Bb][Ee][Aa][Rr][Ee][Rr])%s+[^%s\"',;]+", "%1 " .. M.REDACTED)
  s = s:gsub(AUTHZ, "%1%2 " .. M.REDACTED)   -- "Authorization: Basic dXNlcjpw"
  if s:find("data:", 1, true) then
    -- inline base64 data URLs (the core's "<omitted N chars>" form is kept)
    s = s:gsub("(data:[%w%.%+%-/]*;base64,)([A-Za-z0-9+/=_%-]+)", function(prefix, payload)
      return prefix .. "<omitted " .. #payload .. " chars>"
    end)
    -- JSON-escaped slashes inside raw bodies: data:image\/png;base64,...;
    -- the payload's own slashes are escaped too ("\/"), and any other
    -- escape ends it
    s = s:gsub("(data:[%w%.%+%-]*\\/[%w%.%+%-]*;base64,)([A-Za-z0-9+/=_%-\\]+)", function(prefix, payload)
      local rest = ""
      local e = payload:find("\\[^/]") or (payload:sub(-1) == "\\" and #payload)
      if e then payload, rest = payload:sub(1, e - 1), payload:sub(e) end
      payload = payload:gsub("\\/", "/")
      return prefix .. "<omitted " .. #payload .. " chars>" .. rest
    end)
  end
  return s
end

local function walk(v, literals, seen)
  local t = type(v)
  if t == "string" then return heuristics(v, literals) end
  if t ~= "table" then
    if t == "function" or t == "thread" then return nil end
    return v
  end
  if v == NULL then return v end
  if seen[v] then return seen[v] end
  local copy = {}
  seen[v] = copy
  for k, val in pairs(v) do
    local nk = k
    if type(k) == "string" then nk = heuristics(k, literals) end
    if type(k) == "string" and SECRET_FIELDS[k:lower()] and val ~= nil and val ~= NULL and val ~= false then
      copy[nk] = M.REDACTED
    else
      copy[nk] = walk(val, literals, seen)
    end
  end
  local mt = getmetatable(v)
  if mt and (mt.__jsontype or mt == (cjson.array_mt or false) or mt == (cjson.empty_array_mt or false)) then
    setmetatable(copy, mt)
  end
  return copy
end

local core
local function get_core()
  if core == nil then
    -- the module that cannot load cannot have sent anything: heuristics
    -- (and the environment's key, below) are all there is to scrub then
    local ok, q = sys.pcall(require, "qwenvl")
    core = ok and type(q) == "table" and q or false
  end
  return core or nil
end

local CONN_FIELDS = { "api_key", "base_url", "region", "proxy" }

-- The option sets to scrub with: what a request without options would use
-- (the environment's key, even when the request brought its own), the
-- request's own, and each extra string as a key (so its escaped forms go
-- too). Extra strings are also replaced literally, in case the core
-- refuses them as keys.
local function option_sets(opts)
  local sets, literals = { {} }, {}
  local extra
  if type(opts) == "string" then
    extra = { opts }
  elseif type(opts) == "table" then
    local req, any = {}, false
    for _, k in ipairs(CONN_FIELDS) do
      if type(opts[k]) == "string" then req[k] = opts[k]; any = true end
    end
    if any then sets[#sets + 1] = req end
    extra = opts.secrets
    if extra == nil and opts[1] ~= nil then extra = opts end   -- a plain list
    if type(extra) == "string" then extra = { extra } end
  end
  for _, s in ipairs(type(extra) == "table" and extra or {}) do
    if type(s) == "string" and #s >= 4 then literals[#literals + 1] = s end
  end
  -- longest first, so a key that contains another is replaced whole
  -- (by the core too: its sets are applied in this order)
  table.sort(literals, function(x, y) return #x > #y end)
  for _, s in ipairs(literals) do sets[#sets + 1] = { api_key = s } end
  return sets, literals
end

local function core_scrub(v, set)
  local q = get_core()
  if not q then return v end
  local r = q.scrub(v, set)
  if r ~= nil then return r end
  -- refused (a malformed field, or DASHSCOPE_REGION): field by field, and
  -- with an explicit region, so one bad value does not cost the rest
  for _, k in ipairs(CONN_FIELDS) do
    if set[k] ~= nil then
      local one = q.scrub(v, { [k] = set[k], region = k ~= "region" and "cn" or nil })
      if one ~= nil then v = one end
    end
  end
  local r2 = q.scrub(v, { region = "cn" })
  if r2 ~= nil then v = r2 end
  return v
end

--- A redacted deep copy of `v`. `opts`: the request (its api_key,
-- base_url, region and proxy say which secrets it would use), optionally
-- with `secrets`, a list of more strings to scrub; or a string, or a list
-- of strings. The key a request without options would use (environment,
-- ./.env, credentials file) is always scrubbed.
function M.redact(v, opts)
  local sets, literals = option_sets(opts)
  if not get_core() then
    local env = os.getenv("DASHSCOPE_API_KEY")
    if env and #env >= 4 then table.insert(literals, 1, env) end
  end
  for _, set in ipairs(sets) do v = core_scrub(v, set) end
  return walk(v, literals, {})
end

---------------------------------------------------------------------------
-- files

M.shell_quote = sys.shell_quote

function M.dir_exists(dir) return sys.kind(dir) == "directory" end

--- Create `dir` and its parents if missing. Returns true or nil, err.
function M.mkdir_p(dir) return sys.mkdir_p(dir) end

local random_seeded = false
local function random_hex(nbytes)
  local f = io.open("/dev/urandom", "rb")
  if f then
    local b = f:read(nbytes)
    f:close()
    if b and #b == nbytes then
      return (b:gsub(".", function(c) return format("%02x", c:byte()) end))
    end
  end
  if not random_seeded then
    math.randomseed(os.time() + floor((os.clock() * 1e6) % 1e6) + (tonumber(tostring({}):match("0x(%x+)") or "0", 16) or 0) % 100000)
    random_seeded = true
  end
  local t = {}
  for i = 1, nbytes do t[i] = format("%02x", math.random(0, 255)) end
  return concat(t)
end
M.random_hex = random_hex

--- A short random id (8 hex digits).
function M.short_id() return random_hex(4) end

--- UTC timestamps: compact (for names) and ISO 8601 (for contents).
function M.timestamp(t) return os.date("!%Y%m%dT%H%M%SZ", t) end
function M.iso_time(t) return os.date("!%Y-%m-%dT%H:%M:%SZ", t) end

local function split_path(path)
  local dir, name = path:match("^(.*)/([^/]+)$")
  if not dir then dir, name = ".", path end
  if dir == "" then dir = "/" end
  return dir, name
end

--- The bytes of the file at `path`, or nil, err.
function M.read_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local s = f:read("*a")
  f:close()
  return s
end

--- Write `content` to `path` atomically: temporary file in the same
-- directory, flush, close, rename. Returns path or nil, err.
function M.write_file(path, content)
  local dir, name = split_path(path)
  local tmp = dir .. "/." .. name .. ".tmp-" .. random_hex(4)
  local f, err = io.open(tmp, "wb")
  if not f then return nil, "cannot write " .. path .. ": " .. tostring(err) end
  local ok, werr = f:write(content)
  if ok then ok, werr = f:flush() end
  local cok, cerr = f:close()
  if not ok or not cok then
    os.remove(tmp)
    return nil, "cannot write " .. path .. ": " .. tostring(werr or cerr)
  end
  local rok, rerr = os.rename(tmp, path)
  if not rok then
    os.remove(tmp)
    return nil, "cannot rename into " .. path .. ": " .. tostring(rerr)
  end
  return path
end

-- A small file created and removed in `dir`: the folder takes new files.
local function probe_write(dir)
  local tmp = dir .. "/.qwenvl-write-check-" .. random_hex(4)
  local f, err = io.open(tmp, "wb")
  if not f then return nil, err end
  local ok, werr = f:write("{}\n")
  if ok then ok, werr = f:flush() end
  local cok, cerr = f:close()
  os.remove(tmp)
  if not ok or not cok then return nil, tostring(werr or cerr) end
  return true
end

--- Before anything is sent: can records be written to `dir`? Creates it
-- (and its parents) and writes and removes a small file. Returns true or
-- nil, err.
function M.check_dir(dir)
  dir = (dir or M.default_dir):gsub("/+$", "")
  if dir == "" then dir = "/" end
  local kind = sys.kind(dir)
  if kind ~= nil and kind ~= "directory" then
    return nil, "cannot write records to " .. dir .. ": it is not a folder"
  end
  local ok, err = sys.mkdir_p(dir)
  if not ok then return nil, err end
  local wok, werr = probe_write(dir)
  if not wok then return nil, "cannot write records to " .. dir .. ": " .. tostring(werr) end
  return true
end

--- Before anything is sent: can `path` be written (atomically) later?
-- Creates the missing parent folders (like the Python script's mkdir -p),
-- refuses a folder, and writes and removes a small file next to it.
-- Returns true or nil, err.
function M.check_file(path)
  if type(path) ~= "string" or path == "" then return nil, "no path" end
  if path:sub(-1) == "/" or sys.kind(path) == "directory" then
    return nil, "cannot write " .. path .. ": it is a folder"
  end
  local dir = split_path(path)
  local ok, err = sys.mkdir_p(dir)
  if not ok then return nil, "cannot write " .. path .. ": " .. tostring(err) end
  local wok, werr = probe_write(dir)
  if not wok then return nil, "cannot write " .. path .. ": " .. tostring(werr) end
  return true
end

--- Write one evidence record. opts: dir (default evidence.default_dir),
-- secrets (see redact: the request, or strings), id (short id; random by
-- default), time (os.time() value), name (the file name, instead of
-- <timestamp>-<id>.json).
-- Returns the record's path, or nil and an error string.
function M.write(record, opts)
  opts = opts or {}
  local dir = opts.dir or M.default_dir
  dir = dir:gsub("/+$", "")
  if dir == "" then dir = "/" end
  local ok, err = M.mkdir_p(dir)
  if not ok then return nil, err end
  local id = opts.id or M.short_id()
  local now = opts.time or os.time()
  local name = opts.name or (M.timestamp(now) .. "-" .. id .. ".json")
  local clean = M.redact(record, opts.secrets)
  local okenc, text = sys.pcall(M.encode, clean, { indent = 2 })
  if not okenc then return nil, "cannot encode record: " .. tostring(text) end
  return M.write_file(dir .. "/" .. name, text .. "\n")
end

return M
