-- Non-blocking handles: qwenvl.start, h:poll/wait/cancel/close/read/status,
-- qwenvl.fd/timeout_ms/step, in every state of a request.
--   busted spec/handle_spec.lua ; busted --run=luajit spec/handle_spec.lua

local qwenvl = require("qwenvl")
local standin = require("spec.support.standin")
local fx = require("spec.support.fixtures")
local socket = require("socket")

local now = socket.gettime

describe("qwenvl handles", function()
  local env = fx.standin_env()
  local req = env.req
  setup(env.start)
  teardown(env.stop)

  -- Poll until the handle settles; returns the final values and the count.
  local function drain(h, limit_s)
    local deadline, n = now() + (limit_s or 10), 0
    while true do
      local a, b = h:poll()
      n = n + 1
      if a ~= "pending" then return a, b, n end
      if now() > deadline then error("handle did not settle in time") end
      socket.sleep(0.002)
    end
  end

  -- Poll (without sleeping) until pred() is true or limit_s passes.
  local function poll_until(h, pred, limit_s)
    local deadline = now() + (limit_s or 5)
    while not pred() do
      local a = h:poll()
      if a ~= "pending" then return false end
      if now() > deadline then return false end
      socket.sleep(0.001)
    end
    return true
  end

  -- Run a Lua 5.4-only chunk (to-be-closed variables) without making the
  -- file unparsable for LuaJIT.
  local function load54(code)
    local f = assert(load(code, "=close54", "t", setmetatable({}, { __index = _G })))
    return f
  end

  describe("right after start (before connect)", function()
    it("start returns a handle in state running, without blocking", function()
      local t0 = now()
      local h = assert(qwenvl.start(req { model = standin.scenario_model("bc", "delay=300") }))
      assert.is_true(now() - t0 < 0.25)      -- the answer takes 300 ms: start did not wait
      assert.are.equal("userdata", type(h))
      assert.are.equal("running", h:status())
      assert.matches("^qwenvl.handle", tostring(h))
      h:close()
    end)

    it("invalid requests fail at start with nil, err and send nothing", function()
      local before = env.srv:stats().chat_requests
      local h, err = qwenvl.start(req { max_tokens = "many" })
      assert.is_nil(h)
      assert.are.equal("invalid_request", err.code)
      h, err = qwenvl.start(req { bogus_field = 1 })
      assert.is_nil(h)
      assert.are.equal("invalid_request", err.code)
      assert.are.equal(before, env.srv:stats().chat_requests)
    end)

    it("cancel: poll and wait then return nil, err with code canceled", function()
      local h = assert(qwenvl.start(req()))
      assert.is_true(h:cancel())
      local r, err = h:poll()
      assert.is_nil(r)
      assert.are.equal("canceled", err.code)
      assert.matches("canceled", tostring(err))
      r, err = h:wait(1)
      assert.is_nil(r)
      assert.are.equal("canceled", err.code)
      assert.are.equal("done", h:status())
      h:cancel()                              -- again: harmless
      r, err = h:poll()
      assert.are.equal("canceled", err.code)
      h:close()
    end)

    it("wait with no limit returns the result", function()
      local h = assert(qwenvl.start(req { prompt = "first" }))
      local r, err = h:wait()
      assert.is_nil(err)
      assert.matches('"prompt":"first"', r.text, 1, true)
      assert.are.equal(1, r.attempts)
      assert.are.equal(1, h:attempts())
      h:close()
    end)

    it("close right away frees it; the stand-in may or may not see it, nothing breaks", function()
      local h = assert(qwenvl.start(req()))
      h:close()
      assert.are.equal("closed", h:status())
      local r, err = h:poll()
      assert.is_nil(r)
      assert.are.equal("closed", err.code)
      -- the engine is idle again and still works
      local ok = assert(qwenvl.chat(req { prompt = "after close" }))
      assert.matches("after close", ok.text, 1, true)
    end)
  end)

  describe("mid-transfer", function()
    it("poll stays pending, cancel after ~50 ms ends it at once with canceled", function()
      local model = standin.scenario_model("mid", "delay=300")
      local h = assert(qwenvl.start(req { model = model }))
      local t0 = now()
      while now() - t0 < 0.05 do
        assert.are.equal("pending", h:poll())
        socket.sleep(0.005)
      end
      assert.are.equal("running", h:status())
      local t1 = now()
      h:cancel()
      local r, err = h:poll()
      assert.is_true(now() - t1 < 0.1)
      assert.is_nil(r)
      assert.are.equal("canceled", err.code)
      assert.is_nil(err.status)
      local r2, err2 = h:wait(0.5)
      assert.is_nil(r2)
      assert.are.equal("canceled", err2.code)
      h:close()
      -- the stand-in did get the request (it was mid-transfer)
      assert.are.equal(1, env.srv:scenario(model).attempts)
    end)

    it("close mid-transfer, then poll/wait/read report a closed handle", function()
      local h = assert(qwenvl.start(req { model = standin.scenario_model("midc", "delay=300") }))
      local t0 = now()
      while now() - t0 < 0.05 do h:poll(); socket.sleep(0.005) end
      h:close()
      assert.are.equal("closed", h:status())
      local r, err = h:poll()
      assert.is_nil(r)
      assert.are.equal("closed", err.code)
      r, err = h:wait(0.1)
      assert.is_nil(r)
      assert.are.equal("closed", err.code)
      local t, rs = h:read()
      assert.is_nil(t)
      assert.is_nil(rs)
      h:cancel()                              -- harmless on a closed handle
      h:close()
    end)

    it("wait(0.05) returns pending for a slow request, the result later", function()
      local h = assert(qwenvl.start(req { prompt = "slow", model = standin.scenario_model("w", "delay=300") }))
      local t0 = now()
      assert.are.equal("pending", h:wait(0.05))
      local waited = now() - t0
      assert.is_true(waited >= 0.04, "wait returned after " .. waited)
      assert.is_true(waited < 0.28, "wait returned after " .. waited)
      local r, err = h:wait(5)
      assert.is_nil(err)
      assert.matches('"prompt":"slow"', r.text, 1, true)
      assert.are.equal("done", h:status())
      h:close()
    end)

    -- Once the request is sent, curl has no timer due before the answer:
    -- the limit of wait itself must bound the wait, each time.
    it("wait(0.1) keeps returning pending while the answer is seconds away", function()
      local model = standin.scenario_model("wlong", "delay=5000")
      local h = assert(qwenvl.start(req { model = model }))
      for i = 1, 3 do
        assert.are.equal("pending", h:wait(0.1), "wait " .. i)
      end
      assert.are.equal("pending", h:wait(0))      -- 0: look, do not wait
      assert.are.equal("running", h:status())
      h:close()
    end)

    it("poll never sleeps: many fast iterations over a 300 ms request", function()
      local h = assert(qwenvl.start(req { model = standin.scenario_model("busy", "delay=300") }))
      local durations, n = {}, 0
      local r, err
      while true do
        local t0 = now()
        r, err = h:poll()
        n = n + 1
        durations[n] = now() - t0
        if r ~= "pending" then break end
      end
      assert.is_nil(err)
      assert.is_table(r)
      -- a sleeping poll (e.g. 50 ms per call) would give < 10 iterations
      assert.is_true(n > 200, "only " .. n .. " polls in 300 ms")
      table.sort(durations)
      local median = durations[math.floor(n / 2)]
      assert.is_true(median < 0.005, "median poll took " .. median .. " s")
      h:close()
    end)
  end)

  describe("during a back-off wait", function()
    local function start_backoff(extra)
      local t = req { model = standin.scenario_model("bo", "429", "ok"), retry_backoff_s = 0.5 }
      for k, v in pairs(extra or {}) do t[k] = v end
      local h = assert(qwenvl.start(t))
      assert.is_true(poll_until(h, function() return h:status() == "waiting" end, 5),
        "never saw status waiting")
      return h, t.model
    end

    it("status is waiting and timeout_ms reports the back-off timer", function()
      local h, model = start_backoff()
      local ms = qwenvl.timeout_ms()
      assert.is_number(ms)
      assert.is_true(ms > 0 and ms <= 1000, "timeout_ms " .. tostring(ms))
      assert.are.equal(1, h:attempts())
      assert.are.equal(1, env.srv:scenario(model).attempts)
      local r, err = h:wait(5)
      assert.is_nil(err)
      assert.are.equal(2, r.attempts)
      assert.are.equal(2, env.srv:scenario(model).attempts)
      h:close()
    end)

    it("poll during the wait returns pending at once (no sleeping out the back-off)", function()
      local h = start_backoff()
      local t0 = now()
      for _ = 1, 20 do assert.are.equal("pending", h:poll()) end
      assert.is_true(now() - t0 < 0.2)
      assert.are.equal("waiting", h:status())
      h:close()
    end)

    it("cancel during the wait: canceled, and no further attempt is made", function()
      local h, model = start_backoff()
      h:cancel()
      local r, err = h:poll()
      assert.is_nil(r)
      assert.are.equal("canceled", err.code)
      assert.are.equal("done", h:status())
      r, err = h:wait(1)
      assert.are.equal("canceled", err.code)
      socket.sleep(0.8)                       -- past the back-off
      qwenvl.step()
      assert.are.equal(1, env.srv:scenario(model).attempts)
      h:close()
    end)

    it("close during the wait: no further attempt is made", function()
      local h, model = start_backoff()
      h:close()
      assert.are.equal("closed", h:status())
      socket.sleep(0.8)
      qwenvl.step()
      assert.are.equal(1, env.srv:scenario(model).attempts)
    end)

    it("wait(0.05) during the back-off returns pending", function()
      local h = start_backoff()
      assert.are.equal("pending", h:wait(0.05))
      local r = assert(h:wait(5))
      assert.are.equal(2, r.attempts)
      h:close()
    end)
  end)

  describe("after completion", function()
    it("poll/wait keep returning the same result; cancel does not change it", function()
      local h = assert(qwenvl.start(req { prompt = "done" }))
      local r = assert(h:wait(5))
      assert.are.equal("done", h:status())
      assert.are.equal(r, (h:poll()))
      assert.are.equal(r, (h:wait(0)))
      h:cancel()
      assert.are.equal(r, (h:poll()))
      assert.are.equal("done", h:status())
      h:close()
      assert.are.equal("closed", h:status())
      local x, err = h:poll()
      assert.is_nil(x)
      assert.are.equal("closed", err.code)
    end)

    it("a failed request keeps returning the same error", function()
      local h = assert(qwenvl.start(req { model = standin.scenario_model("f", "401") }))
      local r, err = h:wait(5)
      assert.is_nil(r)
      assert.are.equal("auth", err.code)
      local r2, err2 = h:poll()
      assert.is_nil(r2)
      assert.are.equal(err, err2)
      h:cancel()
      assert.are.equal("auth", select(2, h:poll()).code)
      h:close()
    end)
  end)

  describe("close", function()
    it("is idempotent: twice, then __gc", function()
      local h = assert(qwenvl.start(req()))
      h:close()
      h:close()
      assert.are.equal("closed", h:status())
      h = nil
      collectgarbage()
      collectgarbage()
      assert.is_table(assert(qwenvl.chat(req())))
    end)

    it("__gc frees handles that were never closed (running and waiting)", function()
      for _ = 1, 20 do
        local h = assert(qwenvl.start(req { model = standin.scenario_model("gc", "delay=200") }))
        h:poll()
      end
      local hw = assert(qwenvl.start(req { model = standin.scenario_model("gcw", "429", "ok"),
        retry_backoff_s = 0.5 }))
      poll_until(hw, function() return hw:status() == "waiting" end, 5)
      hw = nil
      collectgarbage()
      collectgarbage()
      assert.are.equal(0, qwenvl.step())      -- nothing in flight any more
      assert.is_table(assert(qwenvl.chat(req())))
    end)

    if _VERSION == "Lua 5.4" and type(jit) ~= "table" then
      it("__close closes a handle leaving its scope (Lua 5.4)", function()
        local f = load54([[
          local qwenvl, req = ...
          local seen
          do
            local h <close> = assert(qwenvl.start(req()))
            seen = h
            assert(h:status() == "running")
          end
          return seen
        ]])
        local h = f(qwenvl, req)
        assert.are.equal("closed", h:status())
        h:close()
        local r, err = h:poll()
        assert.is_nil(r)
        assert.are.equal("closed", err.code)
        -- and on an error unwinding through the scope
        local g = load54([[
          local qwenvl, req, box = ...
          local h <close> = assert(qwenvl.start(req()))
          box.h = h
          error("boom")
        ]])
        local box = {}
        assert.is_false((pcall(g, qwenvl, req, box)))
        assert.are.equal("closed", box.h:status())
      end)
    end
  end)

  describe("event-loop integration", function()
    -- The engine this suite runs on: the poll() build (make POLLER=poll,
    -- busted --run=poll) lives in build/<abi>-poll; the others use epoll
    -- on Linux and poll() where there is no epoll.
    local loaded = package.searchpath and package.searchpath("qwenvl", package.cpath) or ""
    local linux = fx.sh("uname -s"):match("^Linux") ~= nil
    local want_engine = (loaded:find("%-poll/qwenvl%.so$") or not linux) and "poll" or "epoll"
    local poll_engine = want_engine == "poll"

    it("info().engine names the backend this build was made with", function()
      assert.are.equal(want_engine, qwenvl.info().engine)
    end)

    it("fd() is a stable non-negative integer (epoll), nil with poll()", function()
      local fd = qwenvl.fd()
      if poll_engine then
        assert.is_nil(fd)
        assert.is_nil(qwenvl.fd())
        return
      end
      assert.are.equal("number", type(fd))
      assert.are.equal(fd, math.floor(fd))
      assert.is_true(fd >= 0)
      assert.are.equal(fd, qwenvl.fd())
    end)

    it("timeout_ms is nil when idle and a number while a request waits in back-off", function()
      assert.are.equal(0, qwenvl.step())
      assert.is_nil(qwenvl.timeout_ms())
      local h = assert(qwenvl.start(req { model = standin.scenario_model("tm", "429", "ok"),
        retry_backoff_s = 0.5 }))
      assert.is_true(poll_until(h, function() return h:status() == "waiting" end, 5))
      local ms = qwenvl.timeout_ms()
      assert.is_number(ms)
      assert.is_true(ms >= 0 and ms <= 1000)
      assert.are.equal(1, qwenvl.step())
      assert(h:wait(5))
      h:close()
      assert.are.equal(0, qwenvl.step())
      assert.is_nil(qwenvl.timeout_ms())
    end)

    -- no fd with poll(): the case after this one is that engine's loop
    local it_fd = poll_engine and pending or it
    it_fd("a loop sleeping on fd()/timeout_ms() wakes for the answer without busy-looping", function()
      -- luasocket's select accepts any object with getfd(): watch the epoll fd
      local watched = { getfd = function() return qwenvl.fd() end, dirty = function() return false end }
      local h = assert(qwenvl.start(req { prompt = "loop", model = standin.scenario_model("loop", "delay=300") }))
      local n, r, err = 0, nil, nil
      local t0 = now()
      while true do
        r, err = h:poll()
        n = n + 1
        if r ~= "pending" then break end
        local ms = qwenvl.timeout_ms()
        socket.select({ watched }, nil, ms and ms / 1000 or 1)
        assert.is_true(now() - t0 < 10)
      end
      assert.is_nil(err)
      assert.matches('"prompt":"loop"', r.text, 1, true)
      assert.is_true(n < 30, n .. " wake-ups for one 300 ms request")
      h:close()
    end)

    it("a loop without fd() steps at min(timeout_ms(), tick) while busy, and sleeps each turn", function()
      -- The host loop docs/hosts.md gives for the poll() engine (and any
      -- host that will not watch the fd): step() says how many requests
      -- are in flight; while any is, sleep the tick or timeout_ms(),
      -- whichever is shorter. timeout_ms() alone is not enough there: it
      -- is curl's next timer, seconds away while a socket waits for bytes.
      local TICK = 0.02
      local h = assert(qwenvl.start(req { prompt = "tick", model = standin.scenario_model("tick", "delay=300") }))
      local n, busy, r, err = 0, 1, nil, nil
      local t0 = now()
      while busy > 0 do
        busy = qwenvl.step()
        r, err = h:poll()
        n = n + 1
        if r ~= "pending" then break end
        local ms = qwenvl.timeout_ms()
        socket.sleep(ms and math.min(ms / 1000, TICK) or TICK)
        assert.is_true(now() - t0 < 10, "no answer within 10 s")
      end
      local elapsed = now() - t0
      assert.is_nil(err)
      assert.matches('"prompt":"tick"', r.text, 1, true)
      assert.is_true(elapsed >= 0.3)
      -- every turn slept: at most one wake-up per sleep, and no sleep is
      -- shorter than the poll() build's own 10 ms tick (plus curl's short
      -- connect timers), however slow the machine
      local floor = qwenvl.info().engine == "poll" and 0.01 or TICK
      assert.is_true(n <= elapsed / floor + 5, ("%d wake-ups in %.3f s"):format(n, elapsed))
      h:close()
    end)

    it("many handles in flight complete independently", function()
      local specs = {}
      local steps = { { "delay=250" }, { "ok" }, { "delay=100" }, { "401" }, { "503", "ok" },
                      { "delay=50" }, { "400" }, { "reset", "ok" }, { "delay=150" }, { "ok" },
                      { "429", "ok" }, { "notjson" } }
      for i, s in ipairs(steps) do
        local m = standin.scenario_model("many" .. i, s)
        specs[i] = { h = assert(qwenvl.start(req { prompt = "handle " .. i, model = m,
          retry_backoff_s = 0.05 })), steps = s }
      end
      local left, deadline = #specs, now() + 15
      local order = {}
      while left > 0 do
        for i, s in ipairs(specs) do
          if not s.done then
            local a, b = s.h:poll()
            if a ~= "pending" then
              s.done, s.r, s.err = true, a, b
              left = left - 1
              order[#order + 1] = i
            end
          end
        end
        assert.is_true(now() < deadline, "handles did not finish")
        socket.sleep(0.002)
      end
      for i, s in ipairs(specs) do
        local first = s.steps[1]
        if first == "401" then
          assert.are.equal("auth", s.err.code)
        elseif first == "400" then
          assert.are.equal("invalid_request", s.err.code)
          assert.are.equal(400, s.err.status)
        elseif first == "notjson" then
          assert.are.equal("bad_response", s.err.code)
        else
          assert.is_nil(s.err, tostring(s.err))
          assert.matches('"prompt":"handle ' .. i .. '"', s.r.text, 1, true)
          assert.are.equal(#s.steps, s.r.attempts)
        end
        s.h:close()
      end
      -- the 250 ms one did not hold back the quick ones
      assert.are_not.equal(1, order[1])
      assert.are.equal(0, qwenvl.step())
    end)

    it("an error in one handle's on_delta cancels only that handle", function()
      local bad_calls, good = 0, {}
      local inside
      local h1 = assert(qwenvl.start(req { stream = true, prompt = "bad",
        on_delta = function()
          bad_calls = bad_calls + 1
          error("delta handler exploded")
        end }))
      local h2 = assert(qwenvl.start(req { stream = true, prompt = "good", model = standin.scenario_model("good", "sse_tiny"),
        on_delta = function(text, kind)
          assert(inside == "h2", "on_delta ran outside its own handle's poll")
          good[#good + 1] = text
          assert(kind == "content")
        end }))
      local r1, e1, r2, e2
      local deadline = now() + 10
      while r1 == nil or r2 == nil do
        if r1 == nil then
          inside = "h1"
          local a, b = h1:poll()
          if a ~= "pending" then r1, e1 = a or false, b end
        end
        if r2 == nil then
          inside = "h2"
          local a, b = h2:poll()
          if a ~= "pending" then r2, e2 = a or false, b end
        end
        inside = nil
        assert.is_true(now() < deadline)
        socket.sleep(0.002)
      end
      assert.is_false(r1)
      assert.are.equal("callback", e1.code)
      assert.matches("delta handler exploded", e1.message, 1, true)
      assert.are.equal(1, bad_calls)
      assert.is_nil(e2, tostring(e2))
      assert.matches('"prompt":"good"', r2.text, 1, true)
      assert.are.equal(r2.text, table.concat(good))
      h1:close()
      h2:close()
    end)
  end)
end)
