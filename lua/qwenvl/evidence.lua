-- qwenvl.evidence: one JSON record per run, written atomically, never
-- containing the API key or inline base64 image data.
--
--   local evidence = require("qwenvl.evidence")
--   local path, err = evidence.write(record, {dir = "...", secrets = {key}})
--
-- Records are named <UTC timestamp>-<short id>.json (for example
-- 20260102T030405Z-1a2b3c4d.json) under evidence.default_dir unless
-- opts.dir is given. The file is first written to <dir>/.<name>.tmp-<random>,
-- flushed and closed, then renamed into place; on any failure the temporary
-- file is removed, so an interrupted run never leaves a half-written record.
--
-- Redaction (evidence.redact) is applied to the whole record before it is
-- encoded: every string equal to a known secret, every "sk-..." key-like
-- token, every "Bearer ..." credential, and every value of a field named
-- api_key / apikey / authorization / password / secret is replaced; every
-- inline data URL ("data:<mime>;base64,<payload>") is replaced by
-- "data:<mime>;base64,<omitted N chars>".

local M = {}

local cjson = require("cjson")

M.default_dir = "output/alicloud-ai-multimodal-qwen-vl"
M.REDACTED = "[REDACTED]"

local NULL = cjson.null
local floor, huge = math.floor, math.huge
local concat, format = table.concat, string.format

---------------------------------------------------------------------------
-- JSON encoding (deterministic, optionally indented)

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

local ESC = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r",
              ["\t"] = "\\t", ["\b"] = "\\b", ["\f"] = "\\f" }
local function encode_string(s)
  return '"' .. s:gsub('[%c"\\\127]', function(c)
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
-- pretty-prints. Keys are sorted, so output is deterministic.
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

local SECRET_FIELDS = {
  api_key = true, apikey = true, ["api-key"] = true, authorization = true,
  password = true, secret = true, dashscope_api_key = true, access_key_secret = true,
  ["x-api-key"] = true,
}

local function escape_pattern(s)
  return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0"))
end

-- "sk-" followed by at least 8 key characters, not inside a longer word
local SK_PATTERN = "%f[%w_]sk%-[%w_%-][%w_%-][%w_%-][%w_%-][%w_%-][%w_%-][%w_%-][%w_%-][%w_%-]*"

local function scrub_string(s, secrets)
  for _, key in ipairs(secrets) do
    if s:find(key, 1, true) then
      s = s:gsub(escape_pattern(key), M.REDACTED)
    end
  end
  s = s:gsub(SK_PATTERN, M.REDACTED)
  s = s:gsub("([Bb][Ee][Aa][Rr][Ee][Rr])%s+[^%s\"',;]+", "%1 " .. M.REDACTED)
  -- inline base64 data URLs (the core's "<omitted N chars>" form is kept)
  s = s:gsub("(data:[%w%.%+%-/]*;base64,)([A-Za-z0-9+/=_%-]+)", function(prefix, payload)
    return prefix .. "<omitted " .. #payload .. " chars>"
  end)
  -- JSON-escaped slashes inside raw bodies: data:image\/png;base64,...
  s = s:gsub("(data:[%w%.%+%-]*\\/[%w%.%+%-]*;base64,)([A-Za-z0-9+/=_%-]+)", function(prefix, payload)
    payload = payload:gsub("\\/", "/")
    return prefix .. "<omitted " .. #payload .. " chars>"
  end)
  return s
end

local function redact(v, secrets, seen)
  local t = type(v)
  if t == "string" then return scrub_string(v, secrets) end
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
    if type(k) == "string" then nk = scrub_string(k, secrets) end
    if type(k) == "string" and SECRET_FIELDS[k:lower()] and val ~= nil and val ~= NULL and val ~= false then
      copy[nk] = M.REDACTED
    else
      copy[nk] = redact(val, secrets, seen)
    end
  end
  local mt = getmetatable(v)
  if mt and (mt.__jsontype or mt == (cjson.array_mt or false) or mt == (cjson.empty_array_mt or false)) then
    setmetatable(copy, mt)
  end
  return copy
end

-- Secrets the process knows about: the request's key, the environment,
-- and ~/.alibabacloud/credentials.
local credentials_cache
local function credential_secrets()
  if credentials_cache then return credentials_cache end
  credentials_cache = {}
  local home = os.getenv("HOME")
  if home then
    local f = io.open(home .. "/.alibabacloud/credentials", "r")
    if f then
      for line in f:lines() do
        local k, v = line:match("^%s*([%w_]+)%s*=%s*(.-)%s*$")
        if k and v and v ~= "" and (k:lower():find("key") or k:lower():find("secret")) then
          v = v:gsub('^["\']', ""):gsub('["\']$', "")
          if #v >= 6 then credentials_cache[#credentials_cache + 1] = v end
        end
      end
      f:close()
    end
  end
  return credentials_cache
end

--- The list of secret strings to scrub: `extra` (string or list) plus
-- DASHSCOPE_API_KEY and keys from ~/.alibabacloud/credentials.
function M.secrets(extra)
  local list, seen = {}, {}
  local function push(s)
    if type(s) == "string" and #s >= 4 and not seen[s] then
      seen[s] = true
      list[#list + 1] = s
    end
  end
  if type(extra) == "string" then push(extra)
  elseif type(extra) == "table" then for _, s in ipairs(extra) do push(s) end end
  push(os.getenv("DASHSCOPE_API_KEY"))
  for _, s in ipairs(credential_secrets()) do push(s) end
  -- longest first, so a key that contains another is replaced whole
  table.sort(list, function(a, b) return #a > #b end)
  return list
end

--- Return a redacted deep copy of `v`. `secrets` is a string or a list of
-- strings; the environment's key is always included.
function M.redact(v, secrets)
  return redact(v, M.secrets(secrets), {})
end

---------------------------------------------------------------------------
-- files

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
M.shell_quote = shell_quote

local function exec_ok(cmd)
  local a, _, c = os.execute(cmd)
  if type(a) == "number" then return a == 0 end -- Lua 5.1 / LuaJIT without 5.2 compat
  return a == true and (c == nil or c == 0)
end
M.exec_ok = exec_ok

local function dir_exists(dir)
  -- renaming a directory onto itself succeeds only when it exists
  local ok = os.rename(dir, dir)
  if not ok then return false end
  local f = io.open(dir .. "/.", "r")
  if f then f:close(); return true end
  return false
end
M.dir_exists = dir_exists

--- Create `dir` and its parents if missing (lfs when available, else mkdir -p).
function M.mkdir_p(dir)
  if dir_exists(dir) then return true end
  local ok_lfs, lfs = pcall(require, "lfs")
  if ok_lfs and type(lfs) == "table" and lfs.mkdir then
    local path = dir:sub(1, 1) == "/" and "" or nil
    for part in dir:gmatch("[^/]+") do
      path = (path and (path .. "/") or "") .. part
      if not dir_exists(path) then lfs.mkdir(path) end
    end
    if dir_exists(dir) then return true end
  end
  if exec_ok("mkdir -p -- " .. shell_quote(dir) .. " 2>/dev/null") and dir_exists(dir) then
    return true
  end
  return nil, "cannot create directory " .. dir
end

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

--- Write `content` to `path` atomically: temporary file in the same
-- directory, flush, close, rename. Returns path or nil, err.
function M.write_file(path, content)
  local dir, name = path:match("^(.*)/([^/]+)$")
  if not dir then dir, name = ".", path end
  if dir == "" then dir = "/" end
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

--- Write one evidence record. opts: dir (default evidence.default_dir),
-- secrets (string or list of strings to scrub besides the environment's),
-- id (short id; random by default), time (os.time() value), name (the
-- file name, instead of <timestamp>-<id>.json).
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
  local okenc, text = pcall(M.encode, clean, { indent = 2 })
  if not okenc then return nil, "cannot encode record: " .. tostring(text) end
  return M.write_file(dir .. "/" .. name, text .. "\n")
end

return M
