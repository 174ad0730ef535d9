-- Helpers for the host integration tests (spec/hosts/*_test.lua):
-- absolute repo paths, free loopback ports, background processes.
local socket = require("socket")
local fx = require("spec.support.fixtures")

local M = {}
local q = fx.quote
M.quote = q
M.now = socket.gettime
M.sleep = socket.sleep

local function trim(s) return (s:gsub("%s+$", "")) end

M.root = trim(fx.sh("pwd"))

function M.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

function M.have(cmd)
  local _, ok = fx.sh("command -v " .. q(cmd))
  return ok
end

-- A loopback port nobody listens on right now.
function M.free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

function M.wait_port(port, timeout)
  local deadline = M.now() + (timeout or 10)
  while M.now() < deadline do
    local c = socket.tcp()
    c:settimeout(0.2)
    local ok = c:connect("127.0.0.1", port)
    c:close()
    if ok then return true end
    socket.sleep(0.05)
  end
  return false
end

-- Start `cmd` in the background (its output to log); returns the pid.
function M.spawn(cmd, log, env)
  local parts = {}
  for k, v in pairs(env or {}) do parts[#parts + 1] = k .. "=" .. q(v) end
  local line = ("%s exec %s >%s 2>&1 & echo $!"):format(
    #parts > 0 and ("export " .. table.concat(parts, " ") .. ";") or "", cmd, q(log))
  local out = fx.sh("(" .. line .. ")")
  return assert(tonumber(out:match("(%d+)")), "spawn failed: " .. out)
end

function M.alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat", "r")
  if not f then return false end
  local s = f:read("*a") or ""
  f:close()
  local st = s:match("%)%s+(%u)")
  return st ~= nil and st ~= "Z"
end

function M.kill(pid, sig)
  if not pid then return end
  fx.sh(("kill -%s %d"):format(sig or "TERM", pid))
  local deadline = M.now() + 5
  while M.alive(pid) and M.now() < deadline do socket.sleep(0.02) end
  if M.alive(pid) then fx.sh("kill -KILL " .. pid) end
end

-- Images for tests: n good PNGs in dir (64x48, big enough for the stand-in).
function M.pngs(dir, n, prefix)
  local list = {}
  for i = 1, n do
    list[i] = fx.png(("%s/%s%d.png"):format(dir, prefix or "img", i), 64 + i, 48)
  end
  return list
end

return M
