-- What an adversarial probe found inside a host (Neovim, nginx, a game
-- tool): memory errors in the binding, hangs after fork or a module
-- reload, leaks on a raise, the key in results, lost stream text, and
-- inputs that slipped through. Each case is one finding; each failed (or
-- crashed, or hung) before the fix. They run under ASan and valgrind too
-- (make check-asan, make check-valgrind).
local qwenvl = require("qwenvl")
local standin = require("spec.support.standin")
local fx = require("spec.support.fixtures")
local socket = require("socket")

local KEY = ("sk-SAFETY-%d%06d"):format(os.time(), math.random(0, 999999))

describe("safety", function()
  local srv, dir, png

  setup(function()
    srv = standin.start { key = KEY }
    dir = fx.tmpdir()
    png = fx.png(dir .. "/a.png", 32, 32)
  end)
  teardown(function()
    if srv then srv:stop() end
    if dir then fx.rm(dir) end
  end)

  local function req(t)
    t = t or {}
    t.api_key = t.api_key or KEY
    t.base_url = t.base_url or srv.base_url
    t.prompt = t.prompt or "describe"
    if t.image == nil and t.images == nil then t.image = png end
    if t.max_retries == nil then t.max_retries = 0 end
    return t
  end

  -- every string reachable from v, tostring of error tables included
  local function holds_key(v, seen)
    seen = seen or {}
    if type(v) == "string" then return v:find(KEY, 1, true) ~= nil end
    if type(v) ~= "table" or seen[v] then return false end
    seen[v] = true
    local mt = getmetatable(v)
    if mt and mt.__tostring and tostring(v):find(KEY, 1, true) then return true end
    for k, x in pairs(v) do
      if holds_key(k, seen) or holds_key(x, seen) then return true end
    end
    return false
  end

  describe("tostring(err)", function()
    it("keeps a message of any length whole, with its prefix (no luaL_Buffer misuse)", function()
      for _, n in ipairs({ 100, 1100, 2100, 70000 }) do
        local msg = ("m%05d-"):format(n) .. string.rep("x", n)
        local err = qwenvl.error("invalid_request", msg, { status = 400, api_code = "c",
          request_id = "r", attempts = 1 })
        local s = tostring(err)
        assert.equal("qwenvl: invalid_request: " .. msg ..
          " (status=400, api_code=c, request_id=r, attempts=1)", s)
      end
    end)

    it("of an on_delta that raises on an answer that came whole (a server that does not stream)", function()
      local model = standin.scenario_model("whole", "ok+nostream")
      local _, err = qwenvl.chat(req { model = model, stream = true,
                                       on_delta = function() error("no thanks", 0) end })
      assert.equal("callback", err.code)
      assert.equal("no thanks", err.message)
      assert.equal(1, err.attempts)
      assert.matches("attempts=1)", tostring(err), 1, true)
    end)

    it("of a long error raised by on_delta, and of a server's long error message", function()
      local long = string.rep("long on_delta error ", 200)
      local _, err = qwenvl.chat(req { stream = true, on_delta = function() error(long, 0) end })
      assert.equal("callback", err.code)
      assert.equal("qwenvl: callback: " .. long .. " (attempts=1)",
        (tostring(err):gsub("request_id=[^,)]*, ", "")))
    end)
  end)

  describe("methods called from inside a callback", function()
    it("h:close() inside on_delta stops the request and leaves the handle closed", function()
      local h
      h = assert(qwenvl.start(req { stream = true, model = standin.scenario_model("cl", "ok+sse_tiny"),
        on_delta = function() h:close() end }))
      local res, err = h:wait(10)
      assert.is_nil(res)
      assert.equal("closed", err.code)
      assert.equal("closed", h:status())
      h:close()                                   -- idempotent
      assert.equal("closed", select(2, h:poll()).code)
    end)

    it("h:cancel() inside on_delta ends it as canceled", function()
      local h
      h = assert(qwenvl.start(req { stream = true, coalesce_ms = 0,
        model = standin.scenario_model("cn", "stall=3000"), on_delta = function() h:cancel() end }))
      local res, err = h:wait(10)
      assert.is_nil(res)
      assert.equal("canceled", err.code)
      h:close()
    end)

    it("an on_delta that raised is never called again, not even for the held-back tail", function()
      -- the second chunk ends in "s", which the scrubber holds back (it may
      -- begin the key, "sk-..."); the stall keeps the answer open, so the
      -- raise happens first and the tail is flushed at the end
      local calls = 0
      local h = assert(qwenvl.start(req { stream = true, coalesce_ms = 0,
        model = standin.scenario_model("raise-once", "stall=300"),
        on_delta = function() calls = calls + 1 error("stop here") end }))
      local res, err
      local deadline = socket.gettime() + 10
      repeat
        res, err = h:poll()
        socket.sleep(0.01)
      until res ~= "pending" or socket.gettime() > deadline
      assert.is_nil(res)
      assert.equal("callback", err.code)
      assert.equal(1, calls)
      h:close()
    end)

    it("h:poll() and h:wait() inside on_delta return pending at once; h:read() works", function()
      local h, seen = nil, {}
      h = assert(qwenvl.start(req { stream = true, on_delta = function()
        seen[#seen + 1] = h:poll()
        seen[#seen + 1] = h:wait(5)
        local t = h:read()
        seen[#seen + 1] = type(t)
      end }))
      local res = assert(h:wait(10))
      assert.matches("^STANDIN", res.text)
      assert.equal("pending", seen[1])
      assert.equal("pending", seen[2])
      h:close()
    end)

    it("another request started and waited on inside on_delta completes", function()
      local inner
      local res = assert(qwenvl.chat(req { stream = true, on_delta = function()
        if not inner then inner = assert(qwenvl.chat(req { prompt = "inner" })) end
      end }))
      assert.matches("^STANDIN", res.text)
      assert.matches("inner", inner.text)
    end)

    it("h:close() in a poll loop between reads", function()
      local h = assert(qwenvl.start(req { stream = true }))
      for _ = 1, 200 do
        local r = h:poll()
        h:read()
        if r ~= "pending" then break end
        socket.sleep(0.005)
      end
      h:close()
      assert.equal("closed", h:status())
    end)
  end)

  describe("request tables read through metamethods", function()
    it("__index values are read once, kept alive, and sent as given", function()
      local model = standin.scenario_model("idx", "ok")
      local fields = req { model = model, system = string.rep("system text ", 10) }
      local calls = {}
      local proxy = setmetatable({}, { __index = function(_, k)
        calls[k] = (calls[k] or 0) + 1
        collectgarbage()                      -- frees anything not anchored
        local v = fields[k]
        -- a fresh (not interned) string every time
        if type(v) == "string" then return (v .. "#"):sub(1, -2) end
        return v
      end })
      local res = assert(qwenvl.chat(proxy))
      local rec = srv:requests(model)[1]
      assert.equal(model, rec.body.model)
      assert.equal(fields.system, rec.body.messages[1].content)
      for k, n in pairs(calls) do assert.equal(1, n, k .. " read " .. n .. " times") end
      assert.matches("^STANDIN", res.text)
    end)

    it("an __index that raises propagates its error", function()
      local bad = setmetatable({}, { __index = function(_, k)
        if k == "model" then error("boom from __index") end
        return req {}[k]
      end })
      local ok, e = pcall(qwenvl.chat, bad)
      assert.is_false(ok)
      assert.matches("boom from __index", e)
    end)

    it("a late read that raises leaks nothing: every field is read once, before C memory is held", function()
      -- 100 images of ~40 KB: each call reads ~4 MB into C buffers
      local img = fx.png(dir .. "/mid.png", 300, 300)
      local list = {}
      for i = 1, 100 do list[i] = img end
      local fields = req { images = list, resize = "off" }
      local function run()
        local reads = 0
        local t = setmetatable({}, { __index = function(_, k)
          if k == "extra" then
            reads = reads + 1
            if reads > 1 then error("boom on the second read") end
          end
          return fields[k]
        end })
        pcall(qwenvl.prepare, t)
      end
      -- a leak of what the call held is ~4 MB a call, 80 MB per 20; what
      -- earlier specs left in the heap can make the first round grow by
      -- fragmentation alone, so the second round is the one that counts
      local function round()
        for _ = 1, 20 do run() end
        collectgarbage(); collectgarbage()
        return fx.rss_mib()
      end
      for _ = 1, 3 do run() end
      local first = round()
      local grew = round() - first
      assert.is_true(grew < 30, "RSS grew by " .. grew .. " MiB over 20 calls")
    end)
  end)

  describe("fork", function()
    local ft
    setup(function() ft = fx.forktest(dir) end)

    it("a child touches nothing of the parent's: the parent's request completes", function()
      if not ft then return pending("no C compiler") end
      local model = standin.scenario_model("fork", "delay=600")
      local h = assert(qwenvl.start(req { model = model, timeout_s = 20 }))
      qwenvl.step()
      local pid = ft.fork()
      if pid == 0 then
        -- in the child: the inherited handle fails at once, a new one works
        local t0 = socket.gettime()
        local _, err = h:wait(5)
        local ok = err and err.code == "closed" and socket.gettime() - t0 < 1
        h:close()
        local r2 = qwenvl.chat(req { prompt = "child" })
        ft.exit((ok and r2 and r2.text:find("child", 1, true)) and 0 or 1)
      end
      local t0 = socket.gettime()
      local res, err = h:wait(20)
      assert.is_table(res, tostring(err))
      assert.is_true(socket.gettime() - t0 < 5, "the parent waited until its timeout")
      assert.equal(0, ft.wait(pid, 20))
      h:close()
    end)
  end)

  it("a module loaded twice: handles of the first keep working", function()
    local h = assert(qwenvl.start(req {}))
    package.loaded.qwenvl = nil
    local q2 = require("qwenvl")
    local h2 = assert(q2.start(req { prompt = "second" }))
    local res = assert(h:wait(10))
    local res2 = assert(h2:wait(10))
    assert.matches("^STANDIN", res.text)
    assert.matches("second", res2.text)
    h:close(); h2:close()
    package.loaded.qwenvl = qwenvl
  end)

  describe("the key echoed by a server", function()
    for _, step in ipairs({ "ok+echo=text", "ok+echo=id", "ok+echo=header", "ok+norid+echo=id",
                            "echo=delta", "401+echo=msg", "400+echo=code", "400+echo=escaped",
                            "error_event+echo=msg", "502html+echo=msg" }) do
      it(step .. ": nowhere in the result, the error or the deltas", function()
        for _, stream in ipairs({ false, true }) do
          local deltas = {}
          local res, err = qwenvl.chat(req { model = standin.scenario_model("echo", step),
            stream = stream, on_delta = function(t) deltas[#deltas + 1] = t end })
          assert.is_true(res ~= nil or err ~= nil)
          assert.is_false(holds_key(res), step .. " result")
          assert.is_false(holds_key(err), step .. " err")
          assert.is_nil(table.concat(deltas):find(KEY, 1, true), step .. " deltas")
          if res and step:find("text") then assert.truthy(res.text:find("[redacted]", 1, true)) end
        end
      end)
    end

    it("h:read() of a stream that echoes the key, split across chunks", function()
      local h = assert(qwenvl.start(req { model = standin.scenario_model("echo", "echo=delta+sse_tiny"),
        stream = true }))
      local got = {}
      repeat
        local r = h:poll()
        local t = h:read()
        if t then got[#got + 1] = t end
        socket.sleep(0.002)
      until r ~= "pending"
      local t = h:read()
      if t then got[#got + 1] = t end
      h:close()
      local all = table.concat(got)
      assert.is_nil(all:find(KEY, 1, true))
      assert.truthy(all:find("[redacted]", 1, true))
    end)
  end)

  it("a stream request answered with a plain JSON 200 reaches on_delta and h:read() as one delta", function()
    local got = {}
    local res = assert(qwenvl.chat(req { stream = true, model = standin.scenario_model("ns", "nostream"),
      on_delta = function(t, kind) got[#got + 1] = kind .. ":" .. t end }))
    assert.equal(1, #got)
    assert.equal("content:" .. res.text, got[1])
    local h = assert(qwenvl.start(req { stream = true, model = standin.scenario_model("ns", "nostream") }))
    local r2 = assert(h:wait(10))
    assert.equal(r2.text, (h:read()))
    h:close()
  end)

  describe("text that is not UTF-8", function()
    it("a prompt (or system) with invalid UTF-8 is refused locally, nothing sent", function()
      local before = srv:stats().chat_requests
      for field, v in pairs({ prompt = "bad \xff\xfe here", system = "bad \xc3" }) do
        local _, err = qwenvl.chat(req { [field] = v })
        assert.equal("invalid_request", err.code)
        assert.equal(field, err.field)
      end
      local _, err = qwenvl.chat(req { extra = { stop = "\xe2\x82" } })
      assert.equal("extra", err.field)
      assert.equal(before, srv:stats().chat_requests)
    end)
  end)

  it("a data URL whose MIME type is not what its bytes are is sent as what the bytes are", function()
    local jpg = fx.jpeg(dir .. "/m.jpg", 40, 30)
    local model = standin.scenario_model("mime", "ok")
    local res = assert(qwenvl.chat(req { model = model, image = "data:image/png;base64," .. fx.base64(jpg) }))
    assert.equal("jpeg", res.images[1].format)
    assert.equal("png", res.images[1].declared_format)
    local url = srv:requests(model)[1].body.messages[1].content[1].image_url.url
    assert.equal("image/jpeg", url.mime)
  end)

  describe("numbers are range-checked before they are converted", function()
    local huge, nan = 1e309, 0 / 0
    local cases = {
      { "max_tokens", huge }, { "max_tokens", nan }, { "max_tokens", 2 ^ 63 },
      { "quality", huge }, { "quality", 2 ^ 63 }, { "thinking_budget", 2 ^ 64 },
      { "max_response_bytes", 2 ^ 70 }, { "timeout_s", -huge }, { "max_side", 2 ^ 40 },
    }
    for _, c in ipairs(cases) do
      it(c[1] .. " = " .. tostring(c[2]) .. " is out of range, not 'must be an integer'", function()
        local _, err = qwenvl.prepare(req { [c[1]] = c[2] })
        assert.equal("invalid_request", err.code)
        assert.equal(c[1], err.field)
        assert.matches("out of range", err.message)
      end)
    end

    it("h:wait(1e300) and h:wait(nan) do not overflow", function()
      local h = assert(qwenvl.start(req {}))
      assert.is_table((h:wait(1e300)))
      assert.has_error(function() h:wait(nan) end)
      h:close()
    end)

    it("chat_many refuses rpm = 1e-300 and concurrency = 2^32 + 4 clearly", function()
      assert.has_error(function() qwenvl.chat_many({ req {} }, { rpm = 1e-300 }) end)
      local ok, e = pcall(qwenvl.chat_many, { req {} }, { concurrency = 2 ^ 32 + 4 })
      assert.is_false(ok)
      assert.matches("concurrency", e)
    end)
  end)

  it("after a chat_many of 64 at once, at most a handful of idle connections stay open", function()
    local reqs = {}
    for i = 1, 64 do reqs[i] = req { model = standin.scenario_model("pool", "delay=200"), prompt = "p" .. i } end
    local results, failures = qwenvl.chat_many(reqs, { concurrency = 64 })
    assert.equal(0, failures)
    assert.equal(64, #results)
    socket.sleep(0.2)
    local open = fx.connections_to(srv.port)
    assert.is_true(open <= 10, open .. " connections stayed open")
  end)

  describe("smaller findings", function()
    it("images = {a, nil, b} is refused (a hole would silently drop b)", function()
      local _, err = qwenvl.prepare(req { images = { png, nil, png } })
      assert.equal("images", err.field)
      assert.matches("hole", err.message)
    end)

    it("a 200 whose body is an error object keeps the service's code and message", function()
      local _, err = qwenvl.chat(req { model = standin.scenario_model("e200", "400dif+status=200") })
      assert.equal("content_filter", err.code)
      assert.equal("data_inspection_failed", err.api_code)
      assert.equal(200, err.status)
      assert.matches("inappropriate", err.message)
    end)

    it("a 5 MB schema does not slip past the prompt limit", function()
      local props = {}
      for i = 1, 60000 do props["field_" .. i] = { type = "string", description = string.rep("d", 60) } end
      local _, err = qwenvl.prepare(req { schema = { type = "object", properties = props } })
      assert.equal("invalid_request", err.code)
      assert.equal("schema", err.field)
    end)

    it("the key inside a local image path never appears in err.message", function()
      local _, err = qwenvl.prepare(req { image = dir .. "/" .. KEY .. ".png" })
      assert.equal("image", err.field)
      assert.is_false(holds_key(err))
    end)
  end)

  it("exports only luaopen_qwenvl: no qv_* name can clash with a host's symbols", function()
    local so = assert(package.searchpath("qwenvl", package.cpath))
    local out = fx.sh("nm -D --defined-only " .. so)
    local names = {}
    for kind, name in out:gmatch("%x+ (%a) ([%w_@%.]+)") do
      if kind:match("[TtDdBbRrVvWw]") and not name:match("^_") then names[#names + 1] = name end
    end
    assert.are.same({ "luaopen_qwenvl" }, names)
  end)
end)
