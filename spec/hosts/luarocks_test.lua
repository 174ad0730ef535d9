-- luarocks host: `make rock` packs the working tree into a source rock,
-- which `luarocks install --deps-mode=none` builds into clean temporary
-- trees for Lua 5.4 and 5.1 (LuaJIT's ABI), as a published rock would be
-- installed; then the installed module (and only it) chats with the
-- stand-in in the matching interpreters, resizes a large photo (libvips
-- found at run time: no headers at build time), the installed Lua
-- modules load, and the installed `qwenvl` command runs an analyze.
local standin = require("spec.support.standin")
local fx = require("spec.support.fixtures")
local u = require("spec.hosts.util")

local q = u.quote
local VERSIONS = { "5.4", "5.1" }

describe("a source rock (make rock) installed with luarocks", function()
  local srv, dir, png
  local built = {}

  setup(function()
    assert(u.have("luarocks"), "luarocks not installed")
    srv = standin.start{}
    dir = fx.tmpdir()
    png = fx.png(dir .. "/a.png", 64, 48)
    local rock_out, rock_ok = fx.sh("make --no-print-directory rock")
    assert(rock_ok, rock_out)
    local rock = assert(rock_out:match("(qwenvl%-[%w.]+%-%d+%.src%.rock)"), rock_out)
    -- both versions at once (-O0: this tests packaging, not the optimiser)
    local jobs = {}
    for _, v in ipairs(VERSIONS) do
      jobs[#jobs + 1] = ("(luarocks --lua-version=%s --tree=%s install --deps-mode=none %s " ..
        "CFLAGS='-O0 -fPIC' >%s 2>&1; echo $? >%s) &"):format(
        v, q(dir .. "/tree-" .. v), q("./" .. rock), q(dir .. "/log-" .. v), q(dir .. "/rc-" .. v))
    end
    local t0 = u.now()
    fx.sh(table.concat(jobs, " ") .. " wait")
    io.stderr:write(("\n[luarocks] install of %s for %s: %.1f s\n"):format(rock,
      table.concat(VERSIONS, " and "), u.now() - t0))
    for _, v in ipairs(VERSIONS) do
      built[v] = {
        rc = tonumber((fx.read(dir .. "/rc-" .. v):gsub("%s", ""))),
        log = fx.read(dir .. "/log-" .. v),
        tree = dir .. "/tree-" .. v,
      }
    end
  end)

  teardown(function()
    if srv then srv:stop() end
    if dir then fx.rm(dir) end
  end)

  -- Environment that sees the tree first, then the system (lua-cjson).
  local function env(v)
    local tree = built[v].tree
    return ("env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 -u LUA_INIT -u LUA_INIT_5_4 " ..
      "LUA_PATH=%s LUA_CPATH=%s PATH=%s DASHSCOPE_API_KEY=%s DASHSCOPE_BASE_URL=%s"):format(
      q(("%s/share/lua/%s/?.lua;%s/share/lua/%s/?/init.lua;;"):format(tree, v, tree, v)),
      q(("%s/lib/lua/%s/?.so;;"):format(tree, v)),
      q(tree .. "/bin:" .. (os.getenv("PATH") or "/usr/bin:/bin")),
      q(srv.key), q(srv.base_url))
  end

  local chat = [[
local qwenvl = require("qwenvl")
assert(qwenvl.version, "no version")
for _, m in ipairs{ "qwenvl.workflow", "qwenvl.schema", "qwenvl.evidence", "qwenvl.cli" } do
  require(m)
end
local res, err = qwenvl.chat{ prompt = "What is this?", image = IMAGE }
assert(res, tostring(err))
print("OK " .. _VERSION .. " " .. res.text:sub(1, 8))
]]

  it("the rockspec lists every C source and every Lua module of the checkout", function()
    -- a source left out builds a module that fails at require (undefined
    -- symbol), a Lua file left out fails at the first require of it
    local spec = fx.read("qwenvl-scm-1.rockspec")
    local listed = {}
    for src in spec:gmatch('"(src/[%w_]+%.c)"') do listed[src] = true end
    for src in fx.sh("ls src/*.c"):gmatch("src/[%w_]+%.c") do
      assert.is_true(listed[src] == true, src .. " is not in qwenvl-scm-1.rockspec's sources")
      listed[src] = nil
    end
    assert.are.same({}, listed)            -- and nothing that is gone
    for file in fx.sh("find lua/qwenvl -name '*.lua' | sort"):gmatch("[^\n]+") do
      local name = file:match("^lua/(.*)%.lua$"):gsub("/", ".")
      assert.matches(('["%s"] = "%s"'):format(name, file), spec, 1, true)
    end
  end)

  for _, v in ipairs(VERSIONS) do
    local interp = "lua" .. v

    describe("Lua " .. v, function()
      it("builds and installs the module, the Lua files and the command", function()
        local b = built[v]
        assert.are.equal(0, b.rc, b.log)
        assert.is_true(u.exists(("%s/lib/lua/%s/qwenvl.so"):format(b.tree, v)), b.log)
        local out = fx.sh("find lua/qwenvl -name '*.lua'")
        local n = 0
        for file in out:gmatch("lua/qwenvl/([%w_/]+)%.lua") do
          n = n + 1
          assert.is_true(u.exists(("%s/share/lua/%s/qwenvl/%s.lua"):format(b.tree, v, file)),
            "not installed: qwenvl/" .. file .. ".lua (add it to the rockspec)")
        end
        assert.is_true(n >= 4)
        assert.is_true(u.exists(b.tree .. "/bin/qwenvl"))
      end)

      it("exports only luaopen_qwenvl, built without the Makefile's -fvisibility", function()
        -- luarocks' builtin build takes no compiler flags from a rockspec:
        -- the headers hide the qv_* symbols themselves, so that another
        -- module in the host cannot interpose on them (or they on it)
        local so = ("%s/lib/lua/%s/qwenvl.so"):format(built[v].tree, v)
        local out, ok = fx.sh("nm -D --defined-only " .. q(so) .. " | awk '{print $3}'")
        assert.is_true(ok, out)
        assert.are.equal("luaopen_qwenvl\n", out)
      end)

      it("loads the installed module in " .. interp .. " and chats with the stand-in", function()
        local code = "IMAGE=" .. ("%q"):format(png) .. "\n" .. chat
        local out, ok = fx.sh(env(v) .. " " .. interp .. " -e " .. q(code))
        assert.is_true(ok, out)
        assert.matches("OK Lua " .. v:gsub("%.", "%%.") .. " STANDIN", out)
      end)

      if v == "5.1" then
        it("the 5.1 tree's module also loads and chats in LuaJIT", function()
          local code = "IMAGE=" .. ("%q"):format(png) .. "\n" .. chat
          local out, ok = fx.sh(env(v) .. " luajit -e " .. q(code))
          assert.is_true(ok, out)
          assert.matches("OK Lua 5%.1 STANDIN", out)
        end)
      end

      it("resizes a large photo with the installed module (libvips found at run time)", function()
        local photo = dir .. "/big-" .. v .. ".jpg"
        fx.jpeg(photo, 3000, 2000)
        local code = ([[
local qwenvl = require("qwenvl")
local res = assert(qwenvl.chat{ prompt = "p", image = %q })
local im = res.images[1]
print("RESIZED", tostring(im.resized), im.width * im.height <= 2621440, im.original_width)
]]):format(photo)
        local out, ok = fx.sh(env(v) .. " " .. (v == "5.1" and "luajit" or interp) .. " -e " .. q(code))
        assert.is_true(ok, out)
        assert.matches("RESIZED%s+true%s+true%s+3000", out)
      end)

      it("runs the installed qwenvl command: help and an analyze", function()
        local out, ok = fx.sh(env(v) .. " " .. q(built[v].tree .. "/bin/qwenvl") .. " --help")
        assert.is_true(ok, out)
        assert.matches("Usage: qwenvl", out)
        out, ok = fx.sh(("cd %s && %s %s analyze --prompt hello --image %s --no-evidence --no-probe")
          :format(q(dir), env(v), q(built[v].tree .. "/bin/qwenvl"), q(png)))
        assert.is_true(ok, out)
        assert.matches("STANDIN", out)
      end)
    end)
  end
end)
