-- The Makefile's contracts with the machine (dry runs: nothing is built or
-- installed): `make demo` installs only what building and running the
-- demo needs, `make test` the development set on top; POLLER=poll builds
-- the poll() engine into a folder of its own.
local fx = require("spec.support.fixtures")

local function packages(out)
  local list = out:match("for p in ([^;]+); do")
  assert(list, "no package list in:\n" .. out)
  local set = {}
  for p in list:gmatch("%S+") do set[p] = true end
  return set
end

describe("Makefile", function()
  it("make demo installs the run set only (libcurl, Lua 5.4, lua-cjson, libvips)", function()
    local out, ok = fx.sh("make -n demo 2>&1")
    assert.is_true(ok, out)
    local set = packages(out)
    for _, p in ipairs({ "lua5.4", "lua-cjson", "libvips42", "libcurl4-openssl-dev", "build-essential" }) do
      assert.is_true(set[p] == true, p .. " missing from make demo's packages")
    end
    for _, p in ipairs({ "clang", "valgrind", "nginx-light", "libnginx-mod-http-lua", "neovim",
                         "lua-busted", "luarocks", "luajit2", "libvips-dev", "libclang-rt-14-dev" }) do
      assert.is_nil(set[p], p .. " is a development package: not for make demo")
    end
  end)

  it("make test installs the development set too", function()
    local out, ok = fx.sh("make -n deps 2>&1")
    assert.is_true(ok, out)
    local set = packages(out)
    for _, p in ipairs({ "lua5.4", "lua-cjson", "libvips42", "clang", "valgrind", "nginx-light",
                         "libnginx-mod-http-lua", "neovim", "lua-busted", "luarocks", "luajit2" }) do
      assert.is_true(set[p] == true, p .. " missing from make deps")
    end
    assert.matches("\n\ttest: deps\n", "\n\t" .. fx.read("Makefile"):gsub("\n", "\n\t"), 1, true)
  end)

  it("POLLER=poll builds with -DQV_WATCH_POLL into build/<abi>-poll", function()
    for _, abi in ipairs({ "lua5.4", "luajit" }) do
      local out, ok = fx.sh(("make -n -B LUA=%s POLLER=poll 2>&1"):format(abi))
      assert.is_true(ok, out)
      local line = out:match("[^\n]*src/qv_watch%.c[^\n]*")
      assert.is_string(line, out)
      assert.matches(" -DQV_WATCH_POLL ", line, 1, true)
      assert.matches(" -o build/" .. abi .. "-poll/qv_watch.o", line, 1, true)
      assert.matches(" -o build/" .. abi .. "-poll/qwenvl.so ", out, 1, true)
      local plain = fx.sh(("make -n -B LUA=%s 2>&1"):format(abi))
      assert.is_nil(plain:find("QV_WATCH_POLL", 1, true))
      assert.matches(" -o build/" .. abi .. "/qwenvl.so ", plain, 1, true)
    end
    local out, ok = fx.sh("make -n POLLER=kqueue 2>&1")
    assert.is_false(ok)
    assert.matches("POLLER=kqueue: leave it unset (epoll where it exists) or use POLLER=poll", out, 1, true)
  end)
end)
