-- bench/util.lua: what the benchmarks share: the checkout they measure
-- (module paths into it and into its build), the exact request body qwenvl
-- sends, medians, and the summary lines bench/summary.lua reads. Loaded
-- by path, before any module can be found:
--
--   local util = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "bench")
--     .. "/util.lua")
--   util.use_checkout()              -- lua/, spec/support, build/<ABI>/qwenvl.so
--   util.ROOT, util.LUA_ABI          -- the checkout; lua5.4, luajit, ... ($BENCH_ABI)
--   util.body_for(qwenvl, req, image_path)   -- the body bytes, and the plan
--   util.median(list)
--   local s = util.summary(); s.add(figure, measured, goal, met); s.write(path)
--
-- Lua 5.1-5.4 and LuaJIT.

local M = {}

local function this_dir()
  local src = debug.getinfo(1, "S").source
  return src:sub(1, 1) == "@" and src:sub(2):match("^(.*)/[^/]*$") or "bench"
end
M.ROOT = this_dir() .. "/.."
M.LUA_ABI = os.getenv("BENCH_ABI") or (jit and "luajit") or ("lua" .. _VERSION:match("%d+%.%d+"))

--- Modules from this checkout (lua/, and spec/support for the stand-in)
-- and the core module built for this interpreter, ahead of any installed.
function M.use_checkout()
  local root = M.ROOT
  package.path = root .. "/?.lua;" .. root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
  package.cpath = root .. "/build/" .. M.LUA_ABI .. "/?.so;" .. package.cpath
end

--- The exact body qwenvl sends for req: plan.body is the very table qwenvl
-- encoded (same cjson, same key order), only an inline image is replaced
-- by a note; it is put back the way qwenvl writes it (raw base64 of the
-- file at image_path, no "\/" escapes). Without image_path, the body as
-- planned. Returns the body text and the plan.
function M.body_for(qwenvl, req, image_path)
  local cjson = require("cjson")
  local function encode(t)   -- as qwenvl does: "/" unescaped (cjson writes "\/")
    return (cjson.encode(t):gsub("\\/", "/"))
  end
  local plan = assert(qwenvl.prepare(req))
  if not image_path then return encode(plan.body), plan end
  local part = plan.body.messages[#plan.body.messages].content[1]
  local mime = part.image_url.url:match("^data:([^;]+);base64,")
  part.image_url.url = "QVBENCH-IMAGE-PLACEHOLDER"
  local json = encode(plan.body)
  local i, j = json:find('"QVBENCH-IMAGE-PLACEHOLDER"', 1, true)
  assert(i, "placeholder not found")
  local b64 = require("spec.support.fixtures").base64(image_path):gsub("%s", "")
  return json:sub(1, i) .. "data:" .. mime .. ";base64," .. b64 .. json:sub(j), plan
end

--- The median of a list of numbers (nil when empty).
function M.median(t)
  local c = {}
  for i, v in ipairs(t) do c[i] = v end
  table.sort(c)
  local n = #c
  if n == 0 then return nil end
  if n % 2 == 1 then return c[(n + 1) / 2] end
  return (c[n / 2] + c[n / 2 + 1]) / 2
end

--- Summary lines for bench/summary.lua: add(figure, measured, goal, met)
-- (measured and goal as text; met true, false or nil for "n/a"), then
-- write(path) (folders made; "-" writes nothing).
function M.summary()
  local lines = {}
  local s = {}
  function s.add(figure, measured, goal, met)
    local verdict = met == nil and "n/a" or (met and "met" or "MISSED")
    lines[#lines + 1] = table.concat({ figure, measured, goal, verdict }, "\t")
  end
  function s.write(path)
    if path == "-" then return end
    local fx = require("spec.support.fixtures")
    os.execute("mkdir -p " .. fx.quote(path:match("^(.*)/") or "."))
    fx.write(path, table.concat(lines, "\n") .. (#lines > 0 and "\n" or ""))
  end
  return s
end

return M
