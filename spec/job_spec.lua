-- qwenvl.job (a batch job's journal on disk) and qwenvl.sys (the system
-- services under it), with LuaFileSystem and with the POSIX-command
-- fallbacks: journals survive torn writes and never mix jobs, the lock
-- excludes other processes (and is freed by kill -9), fsync comes in
-- groups, content ids follow the bytes, not the path.
local fx = require("spec.support.fixtures")
local proc = require("spec.support.proc")
local job = require("qwenvl.job")
local sys = require("qwenvl.sys")
local cjson = require("cjson")

local Q = proc.quote

local function lines_of(path)
  local t = {}
  for l in (fx.try_read(path) or ""):gmatch("[^\n]*\n") do t[#t + 1] = l end
  return t
end

for _, backend in ipairs({ "core", "lfs", "posix" }) do
  describe("qwenvl.job and qwenvl.sys (" .. backend .. ")", function()
    local dir
    setup(function()
      sys.use(backend)
      dir = fx.tmpdir()
    end)
    teardown(function()
      sys.use("core")
      fx.rm(dir)
    end)

    local n = 0
    local function jobdir()
      n = n + 1
      return dir .. "/job" .. n
    end

    it("uses the backend under test", function()
      assert.are.equal(backend, sys.backend())
    end)

    it("appends outcomes and reads them back; done() only for successes", function()
      local d = jobdir()
      local j = assert(job.open(d, { prompt = "p", model = "m" }))
      assert.matches("^%x+$", j.id)
      assert.are.equal(16, #j.id)
      assert(j:append(j:key("sha256:aa"), { ok = true, text = "one" }))
      assert(j:append(j:key("sha256:bb"), { ok = false, error = { code = "server" } }))
      assert(j:close())
      local k = assert(job.open(d, { model = "m", prompt = "p" }))   -- same identity, any key order
      assert.are.equal(j.id, k.id)
      assert.are.equal("one", k:done(k:key("sha256:aa")).text)
      assert.is_nil(k:done(k:key("sha256:bb")))
      assert.are.equal("server", k:lookup(k:key("sha256:bb")).error.code)
      -- the later outcome wins
      assert(k:append(k:key("sha256:bb"), { ok = true, text = "two" }))
      k:close()
      local l = assert(job.open(d, { prompt = "p", model = "m" }))
      assert.are.equal("two", l:done(l:key("sha256:bb")).text)
      l:close()
      -- every line is JSON: a header, a line per run, a line per outcome
      local kinds = {}
      for _, line in ipairs(lines_of(d .. "/journal.jsonl")) do
        kinds[#kinds + 1] = cjson.decode(line).t
      end
      assert.are.same({ "job", "run", "item", "item", "run", "item", "run" }, kinds)
    end)

    it("skips a torn last line with a warning, and appends after it on a line of its own", function()
      local d = jobdir()
      local j = assert(job.open(d, { prompt = "p" }))
      assert(j:append(j:key("sha256:aa"), { ok = true, text = "kept" }))
      j:close()
      local f = io.open(d .. "/journal.jsonl", "ab")
      f:write('{"t":"item","job":"' .. j.id .. '","key":"' .. j:key("sha256:bb") .. '","ok":tr')
      f:close()
      local warnings = {}
      local k = assert(job.open(d, { prompt = "p" }, { on_warning = function(m) warnings[#warnings + 1] = m end }))
      assert.are.equal(1, #warnings)
      assert.matches("the last line was cut short", warnings[1], 1, true)
      assert.are.equal("kept", k:done(k:key("sha256:aa")).text)
      assert.is_nil(k:lookup(k:key("sha256:bb")))
      assert(k:append(k:key("sha256:bb"), { ok = true, text = "again" }))
      k:close()
      local m = assert(job.open(d, { prompt = "p" }, { on_warning = function(w) warnings[#warnings + 1] = w end }))
      assert.are.equal("again", m:done(m:key("sha256:bb")).text)
      m:close()
      -- the torn line is still there, alone: later readers skip it the same way
      assert.are.equal(2, #warnings)
      assert.matches("line %d+ does not parse", warnings[2])
    end)

    it("never mixes in lines of another job (another prompt or model)", function()
      local d = jobdir()
      local a = assert(job.open(d, { prompt = "a" }))
      assert(a:append(a:key("sha256:aa"), { ok = true, text = "from a" }))
      a:close()
      local warnings = {}
      local b = assert(job.open(d, { prompt = "b" }, { on_warning = function(m) warnings[#warnings + 1] = m end }))
      assert.are_not.equal(a.id, b.id)
      assert.is_nil(b:done(b:key("sha256:aa")))
      -- even when the item key is forged to look the same
      assert.is_nil(b:lookup(a:key("sha256:aa")))
      assert.matches("belong to another job", warnings[1], 1, true)
      b:close()
    end)

    it("--fresh forgets earlier outcomes, for good", function()
      local d = jobdir()
      local j = assert(job.open(d, { prompt = "p" }))
      assert(j:append(j:key("sha256:aa"), { ok = true }))
      j:close()
      local k = assert(job.open(d, { prompt = "p" }, { fresh = true }))
      assert.is_nil(k:done(k:key("sha256:aa")))
      assert(k:append(k:key("sha256:bb"), { ok = true }))
      k:close()
      local l = assert(job.open(d, { prompt = "p" }))
      assert.is_nil(l:done(l:key("sha256:aa")))
      assert.is_truthy(l:done(l:key("sha256:bb")))
      l:close()
    end)

    it("fsyncs in groups of SYNC_EVERY lines and on close", function()
      local d = jobdir()
      local real = sys.fsync
      local calls = 0
      sys.fsync = function(...) calls = calls + 1 return real(...) end
      local ok, err = pcall(function()
        local j = assert(job.open(d, { prompt = "p" }))
        local at_open = calls
        assert.is_true(at_open >= 1)
        for i = 1, job.SYNC_EVERY - 1 do assert(j:append(j:key("sha256:" .. i), { ok = true })) end
        assert.is_true(calls - at_open <= 1)   -- at most a time-based one
        local before = calls
        for i = 1, job.SYNC_EVERY do assert(j:append(j:key("sha256:x" .. i), { ok = true })) end
        assert.is_true(calls > before)
        local before_close = calls
        assert(j:append(j:key("sha256:last"), { ok = true }))
        j:close()
        assert.is_true(calls > before_close)
      end)
      sys.fsync = real
      assert(ok, err)
    end)

    it("locks: a second opener in this process is refused with this pid", function()
      local d = jobdir()
      local j = assert(job.open(d, { prompt = "p" }))
      local k, err = job.open(d, { prompt = "p" })
      assert.is_nil(k)
      assert.are.equal("locked", err.code)
      assert.are.equal(sys.pid(), err.pid)
      j:close()
      local l = assert(job.open(d, { prompt = "p" }))
      l:close()
    end)

    it("locks against another process, names it, and is free again after kill -9", function()
      local d = jobdir()
      local script = dir .. "/holder.lua"
      fx.write(script, ([[
package.path = %q .. package.path
package.cpath = %q .. package.cpath
local sys = require("qwenvl.sys")
sys.use(%q)
local job = require("qwenvl.job")
local j = assert(job.open(%q, { prompt = "p" }))
io.open(%q, "w"):close()
while true do end
]]):format(proc.root .. "/lua/?.lua;", proc.root .. "/build/" .. proc.LUA .. "/?.so;",
        backend, d, d .. "/ready"))
      local p = proc.spawn({ proc.LUA, script })
      finally(function() p:cleanup() end)
      proc.until_true(function() return fx.try_read(d .. "/ready") end, 10, "the holder")
      local k, err = job.open(d, { prompt = "p" })
      assert.is_nil(k)
      assert.are.equal("locked", err.code)
      assert.are.equal(p.pid, err.pid)
      assert.matches("already running in process " .. p.pid, err.message, 1, true)
      p:signal("KILL")
      p:wait(5)
      p:cleanup()
      -- the kernel drops an fcntl lock; a lock folder of a dead pid is stale
      local l = assert(job.open(d, { prompt = "p" }))
      l:close()
    end)

    it("content ids follow the bytes: same bytes anywhere, changed bytes, URLs, missing files", function()
      local a = fx.write(dir .. "/a.png", "AAAA")
      local b = fx.write(dir .. "/b\nwith newline.png", "AAAA")
      local ids = job.image_ids({ a, b, "https://example.com/x.png", dir .. "/missing.png" })
      assert.are.equal("sha256:" .. fx.sha256(a), ids[a])
      assert.are.equal(ids[a], ids[b])
      assert.are.equal("url:https://example.com/x.png", ids["https://example.com/x.png"])
      assert.are.equal("missing:" .. dir .. "/missing.png", ids[dir .. "/missing.png"])
      fx.write(a, "AAAB")
      assert.are_not.equal(ids[a], job.image_ids({ a })[a])
    end)

    it("lists a folder without parsing ls (names with newlines), makes folders, hashes", function()
      local d = dir .. "/list"
      assert(sys.mkdir_p(d .. "/x/y"))
      assert.are.equal("directory", sys.kind(d .. "/x/y"))
      fx.write(d .. "/one\ntwo.png", "1")
      fx.write(d .. "/plain.png", "2")
      local names = assert(sys.list_dir(d))
      table.sort(names)
      assert.are.same({ "one\ntwo.png", "plain.png", "x" }, names)
      assert.are.equal("file", sys.kind(d .. "/one\ntwo.png"))
      assert.is_nil(sys.kind(d .. "/nope"))
      local ok, err = sys.mkdir_p(d .. "/plain.png/sub")
      assert.is_nil(ok)
      assert.is_string(err)
      assert.are.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", sys.sha256("abc"))
      assert.is_nil(sys.list_dir(d .. "/nope"))
    end)
  end)
end

describe("qwenvl.job on a full disk", function()
  local mnt
  setup(function()
    mnt = fx.tmpdir()
    local _, ok = fx.sh("mount -t tmpfs -o size=64k tmpfs " .. Q(mnt))
    if not ok then fx.rm(mnt); mnt = nil end
  end)
  teardown(function()
    if mnt then fx.sh("umount " .. Q(mnt)); fx.rm(mnt) end
  end)

  it("refuses to open when nothing can be written, and an append that fails says so", function()
    if not mnt then pending("cannot mount a tmpfs here (needs root)") return end
    local j = assert(job.open(mnt .. "/job", { prompt = "p" }))
    -- fill the disk
    fx.sh("dd if=/dev/zero of=" .. Q(mnt .. "/fill") .. " bs=4k count=100 2>/dev/null")
    local big = string.rep("x", 8192)
    local ok, err
    for i = 1, 20 do
      ok, err = j:append(j:key("sha256:" .. i), { ok = true, text = big })
      if not ok then break end
    end
    assert.is_nil(ok)
    assert.matches("cannot append to .*journal%.jsonl", err)
    j:close()
    local k, kerr = job.open(mnt .. "/job2", { prompt = "p" })
    assert.is_nil(k)
    assert.are.equal("io", kerr.code)
  end)
end)
