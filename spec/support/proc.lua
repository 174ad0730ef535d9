-- Real processes for the command specs (Lua 5.1/LuaJIT and 5.4):
-- run `bin/qwenvl` or a script to completion, or start it in its own
-- process group (as a terminal would) to signal it while it works.
--
--   local proc = require("spec.support.proc")
--   local code, out, err = proc.run({ "lua5.4", "bin/qwenvl", "probe" }, { env = {...}, cwd = dir })
--   local p = proc.spawn({ "bin/qwenvl", "batch", ... }, { env = {...}, cwd = dir })
--   p:signal("INT")          -- to the whole group: kill -INT -- -PGID
--   local code = p:wait(10)  -- exit status; 128 + N when killed by signal N
--   p.out, p.err             -- what it printed (after wait)
--
-- spawn() goes through a small Python runner: the child is started with a
-- new session (its own process group, so a signal to the group reaches
-- only it) and the runner, outside that group, records its exit status.
-- A shell's `&` would not do: a non-interactive shell starts background
-- jobs with SIGINT ignored.
local fx = require("spec.support.fixtures")
local socket = require("socket")

local M = {}
local Q = fx.quote
M.quote = Q
M.now = socket.gettime
M.sleep = socket.sleep

M.root = (fx.sh("pwd"):gsub("%s+$", ""))
M.LUA = type(jit) == "table" and "luajit" or ("lua" .. _VERSION:match("(%d+%.%d+)"))
M.BIN = M.root .. "/bin/qwenvl"

local RUNNER = [[
import os, subprocess, sys
rc, out, err, pidf, cwd = sys.argv[1:6]
argv = sys.argv[6:]
p = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=open(out, "wb"),
                     stderr=open(err, "wb"), start_new_session=True)
with open(pidf + ".tmp", "w") as f:
    f.write(str(p.pid))
os.rename(pidf + ".tmp", pidf)
code = p.wait()
with open(rc + ".tmp", "w") as f:
    f.write(str(code if code >= 0 else 128 - code))
os.rename(rc + ".tmp", rc)
]]

local function env_argv(env)
  local argv = { "env", "-u", "DASHSCOPE_REGION", "-u", "DASHSCOPE_API_KEY", "-u", "DASHSCOPE_BASE_URL",
                 "-u", "XDG_CACHE_HOME" }
  for k, v in pairs(env or {}) do
    if v ~= false then argv[#argv + 1] = k .. "=" .. v end
  end
  return argv
end

local function cmdline(argv)
  local parts = {}
  for i, a in ipairs(argv) do parts[i] = Q(a) end
  return table.concat(parts, " ")
end

local function read(path)
  return fx.try_read(path)
end

--- Run argv to completion in cwd with env (the DASHSCOPE_* variables of
-- this process are removed first). Returns code, stdout, stderr.
function M.run(argv, opts)
  opts = opts or {}
  local full = env_argv(opts.env)
  for _, a in ipairs(argv) do full[#full + 1] = a end
  local out, err = os.tmpname(), os.tmpname()
  local cmd = "cd " .. Q(opts.cwd or M.root) .. " && " .. cmdline(full) .. " <" .. Q(opts.stdin or "/dev/null")
    .. " >" .. Q(out) .. " 2>" .. Q(err) .. "; echo $?"
  local code = tonumber(fx.sh(cmd):match("(%d+)%s*$"))
  local o, e = read(out) or "", read(err) or ""
  os.remove(out)
  os.remove(err)
  return code, o, e
end

local Proc = {}
Proc.__index = Proc

--- Start argv in its own process group. Returns a process object.
function M.spawn(argv, opts)
  opts = opts or {}
  local dir = fx.tmpdir()
  local self = setmetatable({ dir = dir, rc = dir .. "/rc", outf = dir .. "/out", errf = dir .. "/err",
                              pidf = dir .. "/pid" }, Proc)
  local runner = dir .. "/runner.py"
  fx.write(runner, RUNNER)
  local full = { "python3", runner, self.rc, self.outf, self.errf, self.pidf, opts.cwd or M.root }
  for _, a in ipairs(env_argv(opts.env)) do full[#full + 1] = a end
  for _, a in ipairs(argv) do full[#full + 1] = a end
  fx.sh(cmdline(full) .. " </dev/null >/dev/null 2>&1 &")
  local deadline = M.now() + 10
  while not self.pid and M.now() < deadline do
    self.pid = tonumber(read(self.pidf) or "")
    if not self.pid then M.sleep(0.01) end
  end
  assert(self.pid, "the process did not start")
  return self
end

--- Send signal `sig` ("INT", "KILL", ...) to the process group.
function Proc:signal(sig)
  self.signalled_at = M.now()
  fx.sh("kill -" .. sig .. " -" .. self.pid)
end

--- Whether it has ended.
function Proc:done()
  return read(self.rc) ~= nil
end

--- Wait up to `timeout` seconds; returns the exit status (nil on
-- timeout). Sets .out, .err, .ended_at.
function Proc:wait(timeout)
  local deadline = M.now() + (timeout or 30)
  while not self:done() and M.now() < deadline do M.sleep(0.005) end
  local rc = read(self.rc)
  if not rc then return nil end
  self.ended_at = self.ended_at or M.now()
  self.code = tonumber(rc)
  self.out, self.err = read(self.outf) or "", read(self.errf) or ""
  return self.code
end

--- Kill what is left and remove the temporary files (once; use it in
-- busted's finally()).
function Proc:cleanup()
  if self.cleaned then return end
  self.cleaned = true
  if not self:done() then
    fx.sh("kill -KILL -" .. self.pid .. " 2>/dev/null")
    self:wait(5)
  end
  fx.rm(self.dir)
end

--- Wait until f() returns a true value (polling), up to timeout seconds.
function M.until_true(f, timeout, what)
  local deadline = M.now() + (timeout or 20)
  while M.now() < deadline do
    local v = f()
    if v then return v end
    M.sleep(0.02)
  end
  error("timed out waiting for " .. tostring(what or "a condition"), 2)
end

return M
