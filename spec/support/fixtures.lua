-- Test images and small shell helpers for specs (Lua 5.1/LuaJIT and 5.4).
--   local fx = require("spec.support.fixtures")
--   local dir = fx.tmpdir()
--   fx.png(dir .. "/a.png", 64, 48)   fx.jpeg(dir .. "/a.jpg", 80, 60)
--   fx.sha256(path), fx.size(path), fx.read(path), fx.write(path, bytes)
local M = {}

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
M.quote = q

function M.sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1", "r"))
  local out = p:read("*a")
  local ok, _, code = p:close()
  if type(ok) == "number" then code = ok; ok = code == 0 end  -- Lua 5.1
  return out, ok == true or ok == 0, code
end

function M.tmpdir()
  local out = M.sh("mktemp -d /tmp/qwenvl-spec.XXXXXX")
  return (out:gsub("%s+$", ""))
end

function M.rm(path) M.sh("rm -rf " .. q(path)) end

function M.read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

-- The file's bytes, or nil when it cannot be read.
function M.try_read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

-- In place of a file handle (a command's stdout or stderr): keeps what is
-- written; b:text() is all of it.
function M.buffer()
  local b = { parts = {} }
  function b:write(...) for _, x in ipairs{ ... } do self.parts[#self.parts + 1] = tostring(x) end return self end
  function b:flush() return self end
  function b:text() return table.concat(self.parts) end
  return b
end

function M.write(path, bytes)
  local f = assert(io.open(path, "wb"))
  f:write(bytes)
  f:close()
  return path
end

function M.sha256(path)
  return (M.sh("sha256sum " .. q(path)):match("^(%x+)"))
end

function M.size(path) return #M.read(path) end

-- A real PNG (RGB, gradient), made with Python's zlib.
function M.png(path, w, h, alpha)
  local py = [[
import sys, zlib, struct
p, w, h, a = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
px = 4 if a else 3
rows = b"".join(b"\x00" + b"".join(bytes([x * 7 % 256, y * 5 % 256, 90] + ([200] if a else [])) for x in range(w)) for y in range(h))
ihdr = struct.pack(">IIBBBBB", w, h, 8, 6 if a else 2, 0, 0, 0)
open(p, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
]]
  local _, ok = M.sh("python3 -c " .. q(py) .. " " .. q(path) .. " " .. w .. " " .. h .. " " .. (alpha and 1 or 0))
  assert(ok, "could not make " .. path)
  return path
end

-- A real baseline JPEG, made with libvips' CLI.
function M.jpeg(path, w, h)
  local out, ok = M.sh(("vips gaussnoise %s %d %d && vips copy %s %s"):format(
    q(path .. ".v"), w, h, q(path .. ".v"), q(path .. "[Q=85]")))
  M.sh("rm -f " .. q(path .. ".v"))
  assert(ok, "could not make " .. path .. ": " .. out)
  return path
end

-- Base64 through coreutils (tests only).
function M.base64(path)
  return (M.sh("base64 -w0 " .. q(path)))
end

-- Run a Lua snippet in a fresh interpreter with env vars; returns output.
function M.lua(interp, env, code, cpath)
  local parts = { "env" }
  for k, v in pairs(env or {}) do parts[#parts + 1] = k .. "=" .. q(v) end
  parts[#parts + 1] = interp
  parts[#parts + 1] = "-e " .. q("package.cpath=" .. ("%q"):format(cpath) ..
    "..';'..package.cpath; package.path='./lua/?.lua;./?.lua;'..package.path")
  parts[#parts + 1] = "-e " .. q(code)
  return M.sh(table.concat(parts, " "))
end

-- For a describe block: a stand-in, a temp dir and a 32x32 PNG.
--   local env = fx.standin_env()
--   setup(env.start) teardown(env.stop)
-- env.req(t) fills in key, base URL, a prompt and the image.
function M.standin_env(opts)
  local env = {}
  function env.start()
    env.srv = require("spec.support.standin").start(opts or { key = "sk-standin-test" })
    env.dir = M.tmpdir()
    env.img = M.png(env.dir .. "/a.png", 32, 32)
  end
  function env.stop()
    if env.srv then env.srv:stop() end
    if env.dir then M.rm(env.dir) end
  end
  function env.req(t)
    t = t or {}
    t.api_key = t.api_key or env.srv.key
    t.base_url = t.base_url or env.srv.base_url
    t.prompt = t.prompt or "describe"
    if t.image == nil and t.images == nil then t.image = env.img end
    return t
  end
  return env
end

-- spec/c/forktest.c built for the running interpreter (fork/wait/_exit
-- for specs; no luaposix here), or nil when there is no C compiler.
function M.forktest(dir)
  local inc = type(jit) == "table" and "/usr/include/luajit-2.1"
    or "/usr/include/lua" .. _VERSION:match("%d+%.%d+")
  local out, ok = M.sh(("cc -std=c99 -shared -fPIC -I%s spec/c/forktest.c -o %s"):format(
    M.quote(inc), M.quote(dir .. "/forktest.so")))
  if not ok then return nil, out end
  local saved = package.cpath
  package.cpath = dir .. "/?.so;" .. package.cpath
  local mod = require("forktest")
  package.cpath = saved
  return mod
end

-- Resident memory of this process in MiB (Linux /proc).
function M.rss_mib()
  local s = M.try_read("/proc/self/status") or ""
  return (tonumber(s:match("VmRSS:%s*(%d+)")) or 0) / 1024
end

-- Established TCP connections to 127.0.0.1:port (from any local client).
function M.connections_to(port)
  local n = 0
  for _, f in ipairs({ "/proc/net/tcp", "/proc/net/tcp6" }) do
    local s = M.try_read(f) or ""
    for rem, st in s:gmatch("%s+%x+:%x+%s+%x+:(%x+)%s+(%x%x)") do
      if tonumber(rem, 16) == port and st == "01" then n = n + 1 end
    end
  end
  return n
end

-- The interpreter and module folder of the running suite. A suite run on
-- the poll() engine (build/<abi>-poll, `busted --run=poll`) gives its
-- subprocesses that build too; any other (the sanitizer builds need their
-- runtime preloaded) gives them the plain build/<abi>.
function M.interp()
  local interp = type(jit) == "table" and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
  local abi = interp
  local loaded = package.searchpath and package.searchpath("qwenvl", package.cpath)
  local dir = loaded and loaded:match("^(.-)/?qwenvl%.so$")
  if dir and dir:match("build/" .. abi:gsub("%p", "%%%0") .. "%-poll$") then
    return interp, dir .. "/?.so"
  end
  return interp, "./build/" .. abi .. "/?.so"
end

return M
