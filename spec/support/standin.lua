-- Helper for busted specs: start/stop the DashScope stand-in server
-- (spec/support/standin.py) and read what it recorded.
--
--   local standin = require("spec.support.standin")
--   local srv = standin.start{ key = "sk-standin-test", max_concurrent = nil }
--   srv.port, srv.base_url, srv.key, srv.pid
--   srv:scenario(name) ; srv:requests(scenario_or_nil) ; srv:stats() ; srv:reset()
--   srv:idle_stats([timeout]) (stats once nothing is in flight)
--   srv:stop()                                   -- idempotent
--   standin.scenario_model("retry", "429", "ok") -- "fault/retry-<unique>/429,ok"
--   standin.scenario_name(model)                 -- scenario part of a fault model
--   standin.http(method, url, body, headers, timeout) -> status, body, headers
--   srv:batch_control("clock", {advance_s = 5}) ; srv:batch_state()  -- Batch API side
--   standin.turns(body)   -- a chat body as {role, text, {image SHA-256s}} per message
--
-- Works on Lua 5.1/LuaJIT and 5.4.  Depends on luasocket and lua-cjson only.

local http = require("socket.http")
local socket = require("socket")
local ltn12 = require("ltn12")
local cjson = require("cjson")

local M = {}
M.DEFAULT_KEY = "sk-standin-test"
M.PREFIX = "/compatible-mode/v1"

local unpack = table.unpack or unpack

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- Directory of this file, so the helper works from any cwd.
local function this_dir()
  local src = debug.getinfo(1, "S").source
  if src:sub(1, 1) == "@" then
    local dir = src:sub(2):match("^(.*)/[^/]*$")
    return dir or "."
  end
  return "spec/support"
end

local function file_exists(path)
  local f = io.open(path, "r")
  if f then f:close() return true end
  return false
end

local function read_all(path)
  local f = io.open(path, "r")
  if not f then return "" end
  local s = f:read("*a") or ""
  f:close()
  return s
end

local function url_encode(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c)
    return string.format("%%%02X", c:byte())
  end))
end
M.url_encode = url_encode

--- Plain HTTP request with luasocket.  Returns status (number), body (string),
--- response headers (lowercased table).  Raises a clear error on transport
--- failure (connection refused, timeout...).
function M.http(method, url, body, headers, timeout)
  local chunks = {}
  local hdrs = {}
  for k, v in pairs(headers or {}) do hdrs[string.lower(k)] = v end
  if body ~= nil then
    hdrs["content-length"] = tostring(#body)
    hdrs["content-type"] = hdrs["content-type"] or "application/json"
  end
  local old = http.TIMEOUT
  http.TIMEOUT = timeout or 10
  local ok, res, code, rhdrs = pcall(http.request, {
    url = url,
    method = method,
    headers = hdrs,
    source = body and ltn12.source.string(body) or nil,
    sink = ltn12.sink.table(chunks),
    redirect = false,
  })
  http.TIMEOUT = old
  if not ok then
    error(string.format("standin: %s %s failed: %s", method, url, tostring(res)), 2)
  end
  if res == nil then
    error(string.format("standin: %s %s failed: %s", method, url, tostring(code)), 2)
  end
  return code, table.concat(chunks), rhdrs or {}
end

local function decode_or_error(what, status, body)
  if status ~= 200 then
    error(string.format("standin: %s returned HTTP %s: %s", what, tostring(status), body), 3)
  end
  local ok, obj = pcall(cjson.decode, body)
  if not ok then
    error(string.format("standin: %s returned invalid JSON (%s): %s", what, tostring(obj), body), 3)
  end
  return obj
end

--- Scenario part of a "fault/<scenario>/<steps>" model name (or the name itself).
function M.scenario_name(name)
  if type(name) == "string" and name:sub(1, 6) == "fault/" then
    local rest = name:sub(7)
    local scen = rest:match("^(.*)/[^/]*$")
    return scen or rest
  end
  return name
end

local counter = 0
local seeded = false
--- "fault/<name>-<unique suffix>/<steps joined by ,>".  Steps may be given as
--- varargs or as a single table.  Defaults to "ok".
function M.scenario_model(name, ...)
  local steps = { ... }
  if type(steps[1]) == "table" then steps = steps[1] end
  if #steps == 0 then steps = { "ok" } end
  if not seeded then
    seeded = true
    local seed = os.time() + math.floor((os.clock() * 1e6) % 1e6)
    pcall(math.randomseed, seed)
  end
  counter = counter + 1
  local suffix = string.format("%d%03d-%d-%d", os.time(), math.floor((socket.gettime() % 1) * 1000),
    counter, math.random(1, 999999))
  local parts = {}
  for i, s in ipairs(steps) do parts[i] = tostring(s) end
  return string.format("fault/%s-%s/%s", tostring(name or "s"), suffix, table.concat(parts, ","))
end

--- What the stand-in received in a chat body: per message {role, text,
--- {image SHA-256s}} (the text parts joined by newlines; the recorded
--- image_url of an image carries its sha256).
function M.turns(body)
  local list = {}
  for i, m in ipairs(body.messages) do
    local text, shas = m.content, {}
    if type(m.content) == "table" then
      local parts = {}
      for _, p in ipairs(m.content) do
        if p.type == "text" then parts[#parts + 1] = p.text
        elseif p.type == "image_url" then shas[#shas + 1] = p.image_url.url.sha256 end
      end
      text = table.concat(parts, "\n")
    end
    list[i] = { m.role, text, shas }
  end
  return list
end

-- ---------------------------------------------------------------------------
local Server = {}
Server.__index = Server

local function proc_state(pid)
  -- "R", "S", "Z", ... ; nil when the process is gone or /proc is unavailable.
  local s = read_all("/proc/" .. pid .. "/stat")
  if s == "" then return nil end
  return s:match("%)%s+(%u)")
end

function Server:url(path)
  return self.root_url .. path
end

function Server:get(path, timeout)
  return M.http("GET", self.root_url .. path, nil, nil, timeout)
end

function Server:post(path, body, headers, timeout)
  return M.http("POST", self.root_url .. path, body or "", headers, timeout)
end

function Server:auth_headers(extra)
  local h = { authorization = "Bearer " .. self.key }
  for k, v in pairs(extra or {}) do h[string.lower(k)] = v end
  return h
end

function Server:scenario(name)
  local s, b = self:get("/_standin/scenario/" .. url_encode(M.scenario_name(name)))
  return decode_or_error("scenario", s, b)
end

function Server:requests(scenario)
  local path = "/_standin/requests"
  if scenario ~= nil then
    path = path .. "?scenario=" .. url_encode(M.scenario_name(scenario))
  end
  local s, b = self:get(path)
  return decode_or_error("requests", s, b)
end

function Server:stats()
  local s, b = self:get("/_standin/stats")
  return decode_or_error("stats", s, b)
end

--- stats() once nothing is in flight (at most `timeout` s, default 10):
-- a client has its whole answer a moment before the handler thread gives
-- its slot back, so in_flight read right after an answer may still be 1.
function Server:idle_stats(timeout)
  local deadline = socket.gettime() + (timeout or 10)
  local st = self:stats()
  while st.in_flight ~= 0 and socket.gettime() < deadline do
    socket.sleep(0.02)
    st = self:stats()
  end
  return st
end

--- A control of the Batch and Files side (standin_batch.py): "config",
--- "clock", ... with the table t as its JSON body (none: an empty body).
--- Returns the decoded answer; raises unless HTTP 200.
function Server:batch_control(path, t)
  local s, b = self:post("/_standin/batch/" .. path, t and cjson.encode(t) or "")
  return decode_or_error("batch " .. path, s, b)
end

--- What the Batch and Files side holds and counted (uploads, batches, calls).
function Server:batch_state()
  local s, b = self:get("/_standin/batch/state")
  return decode_or_error("batch state", s, b)
end

function Server:reset()
  local s, b = self:post("/_standin/reset", "")
  return decode_or_error("reset", s, b)
end

function Server:alive()
  if self.stopped then return false end
  local st = proc_state(self.pid)
  return st ~= nil and st ~= "Z"
end

function Server:stderr()
  return self.log_path and read_all(self.log_path) or ""
end

function Server:stop()
  if self.stopped then return end
  self.stopped = true
  os.execute("kill " .. self.pid .. " >/dev/null 2>&1")
  -- Wait (up to 5 s) for it to exit; a zombie counts as exited.
  local deadline = socket.gettime() + 5
  while socket.gettime() < deadline do
    local st = proc_state(self.pid)
    if st == nil or st == "Z" then break end
    socket.sleep(0.02)
  end
  local st = proc_state(self.pid)
  if st ~= nil and st ~= "Z" then
    os.execute("kill -9 " .. self.pid .. " >/dev/null 2>&1")
  end
  if self.handle then
    pcall(self.handle.close, self.handle) -- reaps the child
    self.handle = nil
  end
  if self.log_path then
    os.remove(self.log_path)
    self.log_path = nil
  end
end

local function attach_gc(srv)
  -- Make sure the child is killed if the spec forgets stop() (Lua 5.4 runs
  -- finalizers at exit; on 5.1/LuaJIT the server also watches its parent).
  local function fin() pcall(Server.stop, srv) end
  if newproxy then
    local p = newproxy(true)
    getmetatable(p).__gc = fin
    srv._gc = p
  else
    setmetatable(srv, { __index = Server, __gc = fin })
    return srv
  end
  return setmetatable(srv, Server)
end

--- Start a stand-in.  opts: key, max_concurrent, host, python, script, verbose,
--- tls_cert, tls_key, plugins (list of route module names, see standin.py).
function M.start(opts)
  opts = opts or {}
  local key = opts.key or M.DEFAULT_KEY
  local host = opts.host or "127.0.0.1"
  local python = opts.python or os.getenv("STANDIN_PYTHON") or "python3"
  local script = opts.script
  if not script then
    script = this_dir() .. "/standin.py"
    if not file_exists(script) then script = "spec/support/standin.py" end
  end
  if not file_exists(script) then
    error("standin: cannot find " .. script, 2)
  end
  local log_path = os.tmpname()
  local args = { "exec", shell_quote(python), shell_quote(script), "--host", shell_quote(host),
    "--port", tostring(opts.port or 0), "--key", shell_quote(key) }
  if opts.max_concurrent and opts.max_concurrent > 0 then
    args[#args + 1] = "--max-concurrent"
    args[#args + 1] = tostring(math.floor(opts.max_concurrent))
  end
  if opts.verbose then args[#args + 1] = "--verbose" end
  for _, name in ipairs(opts.plugins or {}) do  -- route modules next to standin.py
    args[#args + 1] = "--plugin " .. shell_quote(name)
  end
  if opts.tls_cert then   -- HTTPS; records and health on a plain control port
    args[#args + 1] = "--tls-cert " .. shell_quote(opts.tls_cert)
    args[#args + 1] = "--tls-key " .. shell_quote(opts.tls_key or opts.tls_cert)
  end
  args[#args + 1] = "2>>" .. shell_quote(log_path)
  local cmd = table.concat(args, " ")
  local handle, perr = io.popen(cmd, "r")
  if not handle then
    os.remove(log_path)
    error("standin: cannot spawn " .. cmd .. ": " .. tostring(perr), 2)
  end
  local line = handle:read("*l")
  local port, pid = (line or ""):match("^PORT (%d+) PID (%d+)")
  local control = (line or ""):match(" CONTROL (%d+)")
  if not port then
    pcall(handle.close, handle)
    local errtext = read_all(log_path)
    os.remove(log_path)
    error(string.format("standin: server did not start (first line %q); stderr:\n%s",
      tostring(line), errtext), 2)
  end
  local srv = {
    handle = handle,
    pid = tonumber(pid),
    port = tonumber(port),
    host = host,
    key = key,
    log_path = log_path,
    root_url = string.format("http://%s:%s", host, control or port),
    stopped = false,
  }
  srv.base_url = string.format("%s://%s:%s", control and "https" or "http", host, port)
    .. M.PREFIX
  srv = attach_gc(srv)
  -- Wait until it answers (it already listens, so this is quick).
  local deadline = socket.gettime() + 10
  while true do
    local ok, status = pcall(M.http, "GET", srv.root_url .. "/_standin/health", nil, nil, 2)
    if ok and status == 200 then break end
    if socket.gettime() > deadline then
      srv:stop()
      error("standin: server on port " .. port .. " does not answer", 2)
    end
    socket.sleep(0.05)
  end
  return srv
end

M.Server = Server
M.json = cjson
M.unpack = unpack
return M
