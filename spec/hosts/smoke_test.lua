-- Load-and-call smoke tests for the ABIs without a full suite run: each
-- build/<abi>/qwenvl.so is loaded in its own interpreter (a subprocess)
-- and makes one blocking and one non-blocking call against the stand-in.
-- Also: the LuaJIT-header build must load in PUC Lua 5.1 (Neovim may be
-- built with either), which holds as long as qv_compat.h keeps the module
-- off LuaJIT-only exports such as luaL_setfuncs.
local standin = require("spec.support.standin")
local fx = require("spec.support.fixtures")
local u = require("spec.hosts.util")

local CODE = [[
local qwenvl = require("qwenvl")
local res, err = qwenvl.chat{ prompt = "What is this?", image = IMAGE }
assert(res, tostring(err))
assert(res.text:sub(1, 8) == "STANDIN ", res.text)
local h = assert(qwenvl.start{ prompt = "again", image = IMAGE })
local r2, e2 = h:wait(10)
assert(type(r2) == "table", tostring(e2 or r2))
h:close()
local _, bad = qwenvl.chat{ prompt = "x" }
assert(bad and bad.code == "invalid_request", "expected invalid_request")
print("SMOKE-OK " .. _VERSION .. " " .. qwenvl.version)
]]

describe("load-and-call smoke test", function()
  local srv, dir, png

  setup(function()
    srv = standin.start{}
    dir = fx.tmpdir()
    png = fx.png(dir .. "/a.png", 64, 48)
  end)
  teardown(function()
    if srv then srv:stop() end
    if dir then fx.rm(dir) end
  end)

  local cases = {
    { interp = "lua5.1", abi = "lua5.1" },
    { interp = "lua5.3", abi = "lua5.3" },
    { interp = "lua5.1", abi = "luajit", why = "LuaJIT-header build in PUC 5.1" },
    { interp = "luajit", abi = "lua5.1", why = "5.1-header build in LuaJIT" },
  }
  for _, c in ipairs(cases) do
    it(("%s loads build/%s/qwenvl.so and calls%s"):format(c.interp, c.abi,
        c.why and (" (" .. c.why .. ")") or ""), function()
      local so = ("%s/build/%s/qwenvl.so"):format(u.root, c.abi)
      assert.is_true(u.exists(so), "missing " .. so .. ": run make LUA=" .. c.abi)
      local out, ok = fx.lua(c.interp, { DASHSCOPE_API_KEY = srv.key, DASHSCOPE_BASE_URL = srv.base_url },
        "IMAGE=" .. ("%q"):format(png) .. "\n" .. CODE, u.root .. "/build/" .. c.abi .. "/?.so")
      assert.is_true(ok, out)
      assert.matches("SMOKE%-OK Lua 5%.[13]", out)
    end)
  end

  -- the command and the Lua workflow layer on the other interpreters: the
  -- launcher picks the one named by QWENVL_LUA when its build exists
  for _, interp in ipairs({ "lua5.1", "lua5.3" }) do
    it(interp .. " runs bin/qwenvl analyze and a resumable batch", function()
      local so = ("%s/build/%s/qwenvl.so"):format(u.root, interp)
      assert.is_true(u.exists(so), "missing " .. so .. ": run make LUA=" .. interp)
      local work = dir .. "/cli-" .. interp
      fx.sh("mkdir -p " .. u.quote(work .. "/imgs"))
      fx.png(work .. "/imgs/a.png", 40, 30)
      fx.png(work .. "/imgs/b.png", 44, 30)
      local env = ("cd %s && env QWENVL_LUA=%s HOME=%s DASHSCOPE_API_KEY=%s DASHSCOPE_BASE_URL=%s %s/bin/qwenvl ")
        :format(u.quote(work), interp, u.quote(work), u.quote(srv.key), u.quote(srv.base_url), u.quote(u.root))
      local out, ok = fx.sh(env .. "analyze --prompt x --image imgs/a.png --print-response")
      assert.is_true(ok, out)
      assert.matches('"text":"STANDIN ', out, 1, true)
      out, ok = fx.sh(env .. "batch imgs --prompt x")
      assert.is_true(ok, out)
      out, ok = fx.sh(env .. "batch imgs --prompt x")
      assert.is_true(ok, out)
      assert.matches("2 of 2 already done", out, 1, true)
      out, ok = fx.sh(env .. "validate")
      assert.is_true(ok, out)
      assert.matches("lua: +Lua " .. interp:sub(4), fx.read(work .. "/output/alicloud-ai-multimodal-qwen-vl/validate.txt"))
    end)
  end
end)

-- Ctrl-C on the interpreters the busted suites do not run (interrupt_spec
-- covers Lua 5.4 and LuaJIT): a script blocked in qwenvl.chat ends as
-- interrupted, printing no result, and its transfer is cancelled.
describe("SIGINT to a script blocked in qwenvl.chat", function()
  local proc = require("spec.support.proc")
  local srv, dir

  setup(function()
    srv = standin.start{}
    dir = fx.tmpdir()
  end)
  teardown(function()
    if srv then srv:stop() end
    if dir then fx.rm(dir) end
  end)

  for _, interp in ipairs({ "lua5.1", "lua5.3" }) do
    it(interp .. " ends as interrupted", function()
      local model = standin.scenario_model("intr-" .. interp, "delay=5000")
      local script = dir .. "/intr-" .. interp .. ".lua"
      fx.write(script, ("package.cpath = %q .. package.cpath\nlocal q = require('qwenvl')\n" ..
        "local r, e = q.chat{ prompt = 'x', image = 'https://example.com/a.png', model = %q }\n" ..
        "print('RESULT', r, e and e.code)\n"):format(u.root .. "/build/" .. interp .. "/?.so;", model))
      local p = proc.spawn({ interp, script }, { cwd = dir,
        env = { DASHSCOPE_API_KEY = srv.key, DASHSCOPE_BASE_URL = srv.base_url, HOME = dir } })
      finally(function() p:cleanup() end)
      proc.until_true(function() return srv:stats().in_flight >= 1 end, 10, "the request")
      p:signal("INT")
      local code = p:wait(10)
      assert.are.equal(1, code, p.err)
      assert.matches("interrupted!", p.err, 1, true)
      assert.is_nil(p.out:find("RESULT", 1, true), "a result was printed: " .. p.out)
      assert.is_true(p.ended_at - p.signalled_at < 1)
      proc.until_true(function() return srv:stats().in_flight == 0 end, 10, "the client to leave")
    end)
  end
end)
