-- qwenvl.sys: the few operating-system services the Lua workflow layer
-- needs and plain Lua lacks: listing a folder, creating folders, an
-- exclusive lock, fsync, SHA-256, the process id, and telling the
-- interpreter's interrupt (Ctrl-C) apart from other errors.
--
--   local sys = require("qwenvl.sys")
--   local names = sys.list_dir("assets")            -- no `ls` parsing
--   local lock, holder = sys.lock("job/lock")       -- nil, pid when held
--   sys.fsync(fh, path)                             -- after fh:flush()
--   local hex = sys.sha256("text"); local map = sys.sha256_files{...}
--
-- Where each comes from is decided once, here, and nowhere else:
--   * the core module, when it offers the service (q.fs.fsync,
--     q.fs.lock, q.sha256, q.sha256_file: asked for, not there yet);
--   * LuaFileSystem (lfs) when installed: lfs.dir, lfs.mkdir,
--     lfs.attributes, and lfs.lock, a kernel lock (fcntl F_SETLK) that the
--     kernel releases when the process dies, even by kill -9;
--   * else POSIX commands through io.popen: `find -print0` (names with
--     newlines survive), `mkdir`, `sync FILE` (GNU coreutils fsyncs the
--     file), `sha256sum -z`, and a lock folder holding the owner's pid
--     (stale when that pid is gone).
-- io.popen, never os.execute: system() ignores SIGINT in the caller while
-- the child runs, so a Ctrl-C then would be lost; with popen the
-- interpreter gets it like at any other moment.

local M = {}

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
M.shell_quote = shell_quote

---------------------------------------------------------------------------
-- interrupts

--- True when `e` is the interpreter's interrupt error (lua.c, luajit.c:
-- "interrupted!", with or without a position in front).
function M.is_interrupt(e)
  return type(e) == "string" and e:sub(-12) == "interrupted!"
end
local is_interrupt = M.is_interrupt

local unpack = table.unpack or unpack
local function pack(...) return { n = select("#", ...), ... } end

--- pcall that never catches the interrupt: a Ctrl-C raised while `f` runs
-- goes on up, as if there were no pcall.
function M.pcall(f, ...)
  local r = pack(pcall(f, ...))
  if not r[1] and is_interrupt(r[2]) then error(r[2], 0) end
  return unpack(r, 1, r.n)
end
local spcall = M.pcall

---------------------------------------------------------------------------
-- backends, chosen once

local lfs
do
  local ok, mod = spcall(require, "lfs")
  if ok and type(mod) == "table" then lfs = mod end
end
M.has_lfs = lfs ~= nil

--- For tests: use (or stop using) LuaFileSystem, to exercise both paths.
function M.set_lfs(on)
  if on then
    local ok, mod = spcall(require, "lfs")
    lfs = ok and type(mod) == "table" and mod or nil
  else
    lfs = nil
  end
  M.has_lfs = lfs ~= nil
end

local core_fs, core_sha256, core_sha256_file
local function use_core(on)
  core_fs, core_sha256, core_sha256_file = nil, nil, nil
  if not on then return end
  local ok, q = spcall(require, "qwenvl")
  if ok and type(q) == "table" then
    if type(q.fs) == "table" then core_fs = q.fs end
    core_sha256 = rawget(q, "sha256")
    core_sha256_file = rawget(q, "sha256_file")
  end
end
use_core(true)

--- Which services run: "core" (the C module's hashes, fsync and kernel
-- lock, with LuaFileSystem for folders when present), "lfs" or "posix"
-- (commands). The first that works is chosen at load; tests switch.
function M.backend()
  if core_fs then return "core" end
  return lfs and "lfs" or "posix"
end

function M.use(backend)
  use_core(backend == "core")
  M.set_lfs(backend ~= "posix")
end

--- Run a shell command, return its output and whether it exited 0.
local function run(cmd)
  local p = io.popen(cmd .. " 2>&1; echo \"<rc=$?>\"", "r")
  if not p then return "", false end
  local out = p:read("*a") or ""
  p:close()
  local body, rc = out:match("^(.*)<rc=(%d+)>%s*$")
  if not rc then return out, false end
  return body, rc == "0"
end
M.run = run

---------------------------------------------------------------------------
-- files and folders

--- "file", "directory", "other" or nil (missing), following symlinks.
function M.kind(path)
  if lfs then
    local mode = lfs.attributes(path, "mode")
    if mode == nil then return nil end
    if mode == "file" or mode == "directory" then return mode end
    return "other"
  end
  -- renaming a directory onto itself succeeds only when it exists
  if os.rename(path, path) then
    local f = io.open(path .. "/.", "r")
    if f then f:close() return "directory" end
    f = io.open(path, "rb")
    if f then
      -- reading a directory fails on Linux; a FIFO would block, but the
      -- rename test above already says it exists: treat as a file
      f:close()
      return "file"
    end
    return "other"
  end
  return nil
end

function M.is_dir(path) return M.kind(path) == "directory" end

--- The entries of `dir` (names, not paths; no "." or ".."), unsorted,
-- or nil, err.
function M.list_dir(dir)
  if lfs then
    local ok, iter, state = spcall(lfs.dir, dir)
    if not ok then return nil, tostring(iter) end
    local names = {}
    for name in iter, state do
      if name ~= "." and name ~= ".." then names[#names + 1] = name end
    end
    return names
  end
  local out, ok = run("find " .. shell_quote(dir) .. " -mindepth 1 -maxdepth 1 -print0")
  if not ok then return nil, (out:gsub("%s+$", "")) end
  local names, prefix = {}, dir:gsub("/+$", "") .. "/"
  if dir:match("^/+$") then prefix = "/" end
  for p in out:gmatch("([^%z]+)%z") do
    names[#names + 1] = p:sub(#prefix + 1)
  end
  return names
end

--- Create `dir` and its parents. Returns true or nil, err.
function M.mkdir_p(dir)
  if M.kind(dir) == "directory" then return true end
  if lfs then
    local path = dir:sub(1, 1) == "/" and "" or nil
    local last
    for part in dir:gmatch("[^/]+") do
      path = (path and (path .. "/") or "") .. part
      if M.kind(path) == nil then
        local ok, err = lfs.mkdir(path)
        if not ok then last = err end
      end
    end
    if M.kind(dir) == "directory" then return true end
    return nil, "cannot create directory " .. dir .. (last and (": " .. tostring(last)) or "")
  end
  local out = run("mkdir -p -- " .. shell_quote(dir))
  if M.kind(dir) == "directory" then return true end
  return nil, "cannot create directory " .. dir .. ": " .. (out:gsub("%s+$", ""):gsub("^mkdir: ", ""))
end

--- fsync a file written through `fh` (flushed first), or by `path`.
-- Returns true or nil, err.
function M.fsync(fh, path)
  if fh then
    local ok, err = fh:flush()
    if not ok then return nil, err end
  end
  if core_fs and core_fs.fsync then return core_fs.fsync(fh or path) end
  if not path then return true end
  local out, ok = run("sync -- " .. shell_quote(path))
  if not ok then return nil, (out:gsub("%s+$", "")) end
  return true
end

---------------------------------------------------------------------------
-- process

local pid_cache
--- This process's id.
function M.pid()
  if pid_cache then return pid_cache end
  local f = io.open("/proc/self/stat", "r")
  if f then
    local s = f:read("*l") or ""
    f:close()
    pid_cache = tonumber(s:match("^(%d+)"))
  end
  if not pid_cache then
    -- the shell's parent is this process
    pid_cache = tonumber((run("echo $PPID")):match("(%d+)"))
  end
  return pid_cache
end

--- Whether process `pid` exists.
function M.alive(pid)
  pid = tonumber(pid)
  if not pid or pid <= 0 then return false end
  local f = io.open("/proc/" .. pid .. "/stat", "r")
  if f then
    local s = f:read("*l") or ""
    f:close()
    return s:match("%)%s+(%u)") ~= "Z"
  end
  if io.open("/proc/self/stat", "r") then return false end  -- /proc exists: gone
  local _, ok = run("kill -0 " .. pid)
  return ok
end

--- Whether descriptor `fd` (1 or 2) of this process is a terminal.
function M.isatty(fd)
  if lfs and lfs.symlinkattributes then
    -- /proc/self is this process when this process opens it
    local target = lfs.symlinkattributes("/proc/self/fd/" .. fd, "target")
    if type(target) == "string" then
      return target:match("^/dev/pts/") ~= nil or target:match("^/dev/tty") ~= nil
        or target:match("^/dev/console") ~= nil
    end
  end
  -- os.execute, not popen: the child must inherit the descriptor
  local a, _, c = os.execute("test -t " .. fd)
  if type(a) == "number" then return a == 0 end
  return a == true and (c == nil or c == 0)
end

---------------------------------------------------------------------------
-- locks

local Lock = {}
Lock.__index = Lock

local function read_pid(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local s = f:read("*a") or ""
  f:close()
  return tonumber(s:match("(%d+)"))
end

--- Take an exclusive lock named `path` without waiting. Returns a lock
-- (lock:release()), or nil, holder_pid (nil when unknown), err.
-- With lfs: an fcntl lock on the file `path`, released by the kernel when
-- this process ends however it ends; the file holds the owner's pid for
-- messages. Without: the folder `path`.d made with mkdir (atomic), holding
-- a pid file; a folder whose pid is gone is stale and taken over.
local held = {}  -- paths locked by this process: fcntl locks do not
                 -- exclude the process that holds them

function M.lock(path)
  local me = M.pid()
  if held[path] then return nil, me, nil end
  local lock, holder, err = M.lock_raw(path, me)
  if lock then held[path] = true end
  return lock, holder, err
end

function M.lock_raw(path, me)
  if core_fs and core_fs.lock then
    local h, holder, err = core_fs.lock(path)
    if not h then return nil, holder, err end
    return setmetatable({ core = h, path = path }, Lock)
  end
  if lfs then
    local probe = io.open(path, "a")          -- create it, never truncate
    if not probe then return nil, nil, "cannot create lock file " .. path end
    probe:close()
    local f, err = io.open(path, "r+")
    if not f then return nil, nil, "cannot open lock file " .. path .. ": " .. tostring(err) end
    local ok = lfs.lock(f, "w")
    if not ok then
      f:close()
      return nil, read_pid(path), nil
    end
    -- a fixed-width record: the file is never truncated, so a shorter pid
    -- must overwrite a longer one completely
    f:seek("set", 0)
    f:write(string.format("%-20d\n", me))
    f:flush()
    -- the lock lasts while this handle is open: closing any descriptor of
    -- the file drops an fcntl lock, so nothing else here opens it
    return setmetatable({ fh = f, lfs = lfs, path = path }, Lock)
  end
  local d = path .. ".d"
  for _ = 1, 2 do
    local _, ok = run("mkdir -- " .. shell_quote(d))
    if ok then
      local f = io.open(d .. "/pid", "w")
      if f then f:write(me, "\n") f:close() end
      return setmetatable({ dir = d, path = path }, Lock)
    end
    local holder = read_pid(d .. "/pid")
    if holder and M.alive(holder) and holder ~= me then return nil, holder, nil end
    if not holder and M.kind(d) ~= "directory" then
      return nil, nil, "cannot create lock " .. d
    end
    -- stale (its owner is gone), or being created right now: a pid file
    -- not written yet reads as stale only when the folder is old enough
    if not holder then
      return nil, nil, nil
    end
    os.remove(d .. "/pid")
    run("rmdir -- " .. shell_quote(d))
  end
  return nil, read_pid(d .. "/pid"), nil
end

function Lock:release()
  held[self.path] = nil
  if self.core then self.core:release() self.core = nil end
  if self.fh then
    self.lfs.unlock(self.fh)
    self.fh:close()
    self.fh = nil
  end
  if self.dir then
    os.remove(self.dir .. "/pid")
    run("rmdir -- " .. shell_quote(self.dir))
    self.dir = nil
  end
end

---------------------------------------------------------------------------
-- SHA-256

local function hex_of(s) return (s:match("^(%x+)")) end

--- SHA-256 of a string, as 64 hex digits. The text goes through a pipe,
-- never a command line or a file.
function M.sha256(s)
  if core_sha256 then return core_sha256(s) end
  local tmp = os.tmpname()
  local p = io.popen("sha256sum >" .. shell_quote(tmp), "w")
  if not p then os.remove(tmp) return nil, "cannot run sha256sum" end
  p:write(s)
  p:close()
  local f = io.open(tmp, "r")
  local out = f and f:read("*a") or ""
  if f then f:close() end
  os.remove(tmp)
  local h = hex_of(out)
  if not h or #h ~= 64 then return nil, "sha256sum failed" end
  return h
end

--- SHA-256 of many files at once: a table path -> hex (files that cannot
-- be read are absent).
function M.sha256_files(paths)
  local map = {}
  if core_sha256_file then
    for _, p in ipairs(paths) do map[p] = core_sha256_file(p) end
    return map
  end
  local i = 1
  while i <= #paths do
    -- commands of at most ~64 KiB of arguments
    local args, len = {}, 0
    while i <= #paths and (len < 65536 or #args == 0) do
      local q = shell_quote(paths[i])
      args[#args + 1] = q
      len = len + #q + 1
      i = i + 1
    end
    local p = io.popen("sha256sum -z -- " .. table.concat(args, " ") .. " 2>/dev/null", "r")
    if p then
      local out = p:read("*a") or ""
      p:close()
      -- with -z every record ends in NUL and names are not escaped
      for h, name in out:gmatch("(%x+) [ %*]([^%z]*)%z") do map[name] = h end
    end
  end
  return map
end

return M
