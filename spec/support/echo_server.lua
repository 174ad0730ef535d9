-- A hostile test server that echoes the caller's API key back, for
-- spec/secrets_spec.lua (the stand-in never echoes it). One connection at a
-- time, Connection: close. Prints "PORT <n>" on stdout, serves until killed.
--   lua5.4 spec/support/echo_server.lua
-- The reply depends on the request's model:
--   echo-msg-<status>   {"error":{"message":"... <key> ...","code":"bad_key"}}
--   echo-code           400, the key as error.code
--   echo-rid            500, the key as x-request-id and body request_id
--   echo-html           502 text/html page holding the key
--   echo-stream-error   200 event stream: one delta, then an error event
--                       whose message holds the key
--   echo-ok             200 answer whose text holds the key
local socket = require("socket")

local server = assert(socket.bind("127.0.0.1", 0))
local _, port = server:getsockname()
io.stdout:write("PORT ", port, "\n")
io.stdout:flush()

local function reply(c, status, ctype, body, extra)
  local head = { ("HTTP/1.1 %d X"):format(status), "Content-Type: " .. ctype,
    "Content-Length: " .. #body, "Connection: close" }
  for _, h in ipairs(extra or {}) do head[#head + 1] = h end
  c:send(table.concat(head, "\r\n") .. "\r\n\r\n" .. body)
end

local function esc(s) return (s:gsub('[%c"\\]', "")) end

while true do
  local c = server:accept()
  c:settimeout(5)
  local headers, len = {}, 0
  local line = c:receive("*l")
  while line and line ~= "" do
    local k, v = line:match("^([^:]+):%s*(.*)$")
    if k then headers[k:lower()] = v end
    line = c:receive("*l")
  end
  len = tonumber(headers["content-length"] or "0") or 0
  local body = len > 0 and (c:receive(len) or "") or ""
  local key = esc((headers["authorization"] or ""):match("^Bearer (.*)$") or "")
  local model = body:match('"model"%s*:%s*"([^"]*)"') or ""
  local st = tonumber(model:match("^echo%-msg%-(%d+)$") or "")
  if st then
    reply(c, st, "application/json", ('{"error":{"message":"Incorrect API key provided: %s",'
      .. '"type":"invalid_request_error","code":"bad_key"},"request_id":"r-1"}'):format(key))
  elseif model == "echo-code" then
    reply(c, 400, "application/json", ('{"error":{"message":"bad","code":"%s"}}'):format(key))
  elseif model == "echo-rid" then
    reply(c, 500, "application/json", ('{"error":{"message":"oops"},"request_id":"%s"}'):format(key),
      { "x-request-id: " .. key })
  elseif model == "echo-html" then
    reply(c, 502, "text/html", "<html><body>gateway saw " .. key .. "</body></html>")
  elseif model == "echo-stream-error" then
    local ev = 'data: {"choices":[{"index":0,"delta":{"content":"partial "}}]}\n\n'
      .. ('data: {"error":{"message":"key %s refused","code":"data_inspection_failed"}}\n\n'):format(key)
    c:send("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: " .. #ev
      .. "\r\nConnection: close\r\n\r\n" .. ev)
  else
    reply(c, 200, "application/json", ('{"choices":[{"index":0,"finish_reason":"stop",'
      .. '"message":{"role":"assistant","content":"you sent %s"}}],"model":"m","usage":{}}'):format(key))
  end
  c:close()
end
