-- qwenvl.chat_many: order, accounting, rate limits, concurrency, connection
-- reuse, descriptor leaks.
--   busted --lua=lua5.4 -m './lua/?.lua;./lua/?/init.lua;./?.lua' --cpath='./build/lua5.4/?.so' spec/many_spec.lua
--   busted --lua=luajit -m './lua/?.lua;./lua/?/init.lua;./?.lua' --cpath='./build/luajit/?.so' spec/many_spec.lua

local qwenvl = require("qwenvl")
local standin = require("spec.support.standin")
local fx = require("spec.support.fixtures")
local socket = require("socket")

local now = socket.gettime

-- Open descriptors of this process (the io.popen pipe is counted every time).
local function my_pid()
  local f = assert(io.open("/proc/self/stat", "r"))
  local s = f:read("*l")
  f:close()
  return s:match("^(%d+)")
end

local function count_fds(pid)
  local p = assert(io.popen("ls /proc/" .. pid .. "/fd"))
  local n = 0
  for _ in p:lines() do n = n + 1 end
  p:close()
  return n
end

describe("qwenvl.chat_many", function()
  local env = fx.standin_env()
  local req = env.req
  setup(env.start)
  teardown(env.stop)

  -- The fault mix: kind -> how to build the request and what must come back.
  local KINDS = {
    { name = "ok", steps = { "ok" }, attempts = 1 },
    { name = "429ok", steps = { "429", "ok" }, attempts = 2 },
    { name = "503ok", steps = { "503", "ok" }, attempts = 2 },
    { name = "401", steps = { "401" }, code = "auth", status = 401, attempts = 1 },
    { name = "400", steps = { "400" }, code = "invalid_request", status = 400, attempts = 1 },
    { name = "notjson", steps = { "notjson" }, code = "bad_response", status = 200, attempts = 1 },
    -- a reset on a reused keep-alive connection is retried by libcurl
    -- itself on a fresh one (the stand-in still sees two attempts), so
    -- result.attempts is 1 or 2 here
    { name = "resetok", steps = { "reset", "ok" }, attempts_in = { 1, 2 } },
    { name = "local", code = "invalid_request", attempts = 0, sent = 0,
      build = function(i) return req { prompt = "req " .. i, max_tokens = "lots" } end },
    { name = "delay", steps = { "delay=30" }, attempts = 1 },
    { name = "nottable", code = "invalid_request", sent = 0, field = "request",
      build = function() return "not a request" end },
  }

  local function build_batch(n)
    local requests, expect = {}, {}
    for i = 1, n do
      local k = KINDS[(i - 1) % #KINDS + 1]
      local e = { kind = k }
      if k.build then
        requests[i] = k.build(i)
      else
        e.model = standin.scenario_model("many-" .. k.name, k.steps)
        requests[i] = req { prompt = "req " .. i, model = e.model, retry_backoff_s = 0.05 }
      end
      expect[i] = e
    end
    return requests, expect
  end

  it("200 requests with injected faults: every one accounted for, in input order", function()
    local requests, expect = build_batch(200)
    local calls, count = {}, 0
    local results, failures = qwenvl.chat_many(requests, { concurrency = 16,
      on_result = function(i, res, err)
        count = count + 1
        calls[i] = calls[i] or {}
        calls[i][#calls[i] + 1] = { res = res, err = err }
      end })
    assert.are.equal(200, #results)
    assert.are.equal(200, count)
    local nfail = 0
    for i = 1, 200 do
      local k, got = expect[i].kind, results[i]
      assert.is_table(got, "lost entry " .. i)
      -- on_result: exactly once per index, with what results[i] holds
      assert.are.equal(1, calls[i] and #calls[i] or 0, "on_result calls for " .. i)
      local c = calls[i][1]
      if k.code then
        nfail = nfail + 1
        assert.are.equal(k.code, got.code, "index " .. i .. " (" .. k.name .. "): " .. tostring(got.code))
        assert.is_nil(c.res)
        assert.are.equal(got, c.err)
        assert.are.equal(k.status, got.status, "status at " .. i)
        if k.attempts then assert.are.equal(k.attempts, got.attempts, "attempts at " .. i) end
        if k.field then assert.are.equal(k.field, got.field) end
        assert.is_string(tostring(got))
      else
        assert.is_nil(got.code, "index " .. i .. " (" .. k.name .. "): " .. tostring(got))
        assert.are.equal(got, c.res)
        assert.is_nil(c.err)
        assert.is_truthy(got.text:find('"prompt":"req ' .. i .. '"', 1, true),
          "index " .. i .. " holds another answer: " .. got.text)
        if k.attempts_in then
          assert.is_truthy(got.attempts == k.attempts_in[1] or got.attempts == k.attempts_in[2],
            "attempts at " .. i .. ": " .. tostring(got.attempts))
        else
          assert.are.equal(k.attempts, got.attempts, "attempts at " .. i)
        end
      end
      if expect[i].model then
        assert.are.equal(#k.steps, env.srv:scenario(expect[i].model).attempts, "stand-in attempts at " .. i)
      end
    end
    assert.are.equal(nfail, failures)
    assert.are.equal(0, qwenvl.step())
  end)

  it("an empty list returns an empty list", function()
    local results, failures = qwenvl.chat_many({})
    assert.are.same({}, results)
    assert.are.equal(0, failures)
  end)

  it("on_result returning false starts nothing more: the rest end as canceled, unsent", function()
    local reqs = {}
    for i = 1, 10 do reqs[i] = req { model = standin.scenario_model("stop" .. i, "delay=50") } end
    local seen = 0
    local results, failures = qwenvl.chat_many(reqs, { concurrency = 2, on_result = function()
      seen = seen + 1
      if seen == 2 then return false end
    end })
    assert.equal(10, #results)
    assert.equal(10, seen)                 -- every entry reported, none lost
    local sent, canceled = 0, 0
    for i = 1, 10 do
      if env.srv:scenario(reqs[i].model).attempts > 0 then sent = sent + 1 end
      if results[i].code == "canceled" then canceled = canceled + 1 end
    end
    assert.is_true(sent <= 4, sent .. " requests were sent")
    assert.equal(10 - sent, canceled)
    assert.equal(canceled, failures)
  end)

  it("an error in on_result loses nothing", function()
    local requests = {}
    for i = 1, 6 do requests[i] = req { prompt = "req " .. i } end
    local seen = 0
    local results, failures = qwenvl.chat_many(requests, { concurrency = 3,
      on_result = function() seen = seen + 1; error("on_result exploded") end })
    assert.are.equal(6, seen)
    assert.are.equal(0, failures)
    for i = 1, 6 do assert.is_truthy(results[i].text:find('"prompt":"req ' .. i .. '"', 1, true)) end
  end)

  it("rpm is honoured at the stand-in (12 requests, rpm = 240)", function()
    local requests = {}
    for i = 1, 12 do requests[i] = req { prompt = "rpm " .. i } end
    env.srv:reset()
    local t0 = now()
    local results, failures = qwenvl.chat_many(requests, { concurrency = 8, rpm = 240 })
    local took = now() - t0
    assert.are.equal(0, failures)
    assert.are.equal(12, #results)
    local arrivals = env.srv:stats().arrivals
    assert.are.equal(12, #arrivals)
    table.sort(arrivals)
    local mean_gap = (arrivals[12] - arrivals[1]) / 11
    assert.is_true(mean_gap >= 0.9 * 0.25, "mean gap " .. mean_gap .. " s")
    for i = 2, 12 do
      assert.is_true(arrivals[i] - arrivals[i - 1] >= 0.15,
        "requests " .. (i - 1) .. " and " .. i .. " arrived " .. (arrivals[i] - arrivals[i - 1]) .. " s apart")
    end
    assert.is_true(took < 12 * 0.25 + 3, "took " .. took .. " s")
  end)

  it("tpm delays starts: only what fits the budget starts within the first seconds", function()
    -- chat_many blocks and the tpm window is a minute: run it in a child
    -- interpreter, stop it after 3 s, and count what reached the stand-in.
    -- Each request is estimated at ~104 tokens (1 image tile + 2, the prompt,
    -- max_tokens = 100); tpm = 250 lets two start, the third waits ~60 s.
    local interp, cpath = fx.interp()
    local code = [[
      local q = require("qwenvl")
      local rs = {}
      for i = 1, 4 do
        rs[i] = { prompt = "tpm", image = os.getenv("IMG"), api_key = os.getenv("KEY"),
                  base_url = os.getenv("BASE"), max_tokens = 100 }
      end
      local _, failures = q.chat_many(rs, { concurrency = 4, tpm = tonumber(os.getenv("TPM")) })
      print("finished " .. failures)
    ]]
    local vars = { IMG = env.img, KEY = env.srv.key, BASE = env.srv.base_url }
    env.srv:reset()
    vars.TPM = "250"
    local out = fx.lua("timeout 3 " .. interp, vars, code, cpath)
    assert.is_nil(out:find("finished", 1, true), out)
    assert.are.equal(2, env.srv:stats().chat_requests)
    -- control: a budget that fits them all lets all four through at once
    env.srv:reset()
    vars.TPM = "100000"
    out = fx.lua("timeout 10 " .. interp, vars, code, cpath)
    assert.matches("finished 0", out)
    assert.are.equal(4, env.srv:stats().chat_requests)
  end)

  it("runs concurrently: 32 × 300 ms with concurrency = 16 finish well under 32 × 300 ms", function()
    local requests = {}
    for i = 1, 32 do
      requests[i] = req { prompt = "slow " .. i, model = standin.scenario_model("conc", "delay=300") }
    end
    env.srv:reset()
    local t0 = now()
    local results, failures = qwenvl.chat_many(requests, { concurrency = 16 })
    local took = now() - t0
    assert.are.equal(0, failures)
    for i = 1, 32 do assert.is_truthy(results[i].text:find('"prompt":"slow ' .. i .. '"', 1, true)) end
    assert.is_true(took < 0.5 * 32 * 0.3, "took " .. took .. " s")
    local st = env.srv:stats()
    assert.is_true(st.max_in_flight <= 16, "max_in_flight " .. st.max_in_flight)
    assert.is_true(st.max_in_flight >= 2, "max_in_flight " .. st.max_in_flight)
  end)

  it("respects the concurrency cap", function()
    local requests = {}
    for i = 1, 20 do
      requests[i] = req { model = standin.scenario_model("cap", "delay=100") }
    end
    env.srv:reset()
    local _, failures = qwenvl.chat_many(requests, { concurrency = 4 })
    assert.are.equal(0, failures)
    local st = env.srv:stats()
    assert.is_true(st.max_in_flight <= 4, "max_in_flight " .. st.max_in_flight)
    assert.are.equal(20, st.chat_requests)
  end)

  it("works with a stand-in that caps concurrent connections (429 beyond it)", function()
    local capped = standin.start { key = "sk-standin-test", max_concurrent = 4 }
    local requests = {}
    for i = 1, 16 do
      requests[i] = req { prompt = "capped " .. i, base_url = capped.base_url,
        model = standin.scenario_model("capped", "delay=100"), retry_backoff_s = 0.05, max_retries = 6 }
    end
    local ok, results, failures = pcall(qwenvl.chat_many, requests, { concurrency = 4 })
    local st = capped:stats()
    capped:stop()
    assert.is_true(ok, tostring(results))
    assert.are.equal(0, failures)
    assert.is_true(st.max_in_flight <= 4)
  end)

  it("reuses connections across the batch", function()
    local requests = {}
    for i = 1, 64 do requests[i] = req { prompt = "reuse " .. i } end
    env.srv:reset()
    local _, failures = qwenvl.chat_many(requests, { concurrency = 8 })
    assert.are.equal(0, failures)
    local st = env.srv:stats()
    assert.are.equal(64, st.chat_requests)
    assert.is_true(st.connections <= 16, st.connections .. " connections for 64 requests")
  end)

  it("leaks no descriptors over 1000 requests", function()
    local pid = my_pid()
    local function batch(n)
      local requests = {}
      for i = 1, n do
        local r = (i % 10 == 3) and { "401" } or (i % 10 == 7) and { "reset", "ok" } or { "ok" }
        requests[i] = req { prompt = "fd " .. i, model = standin.scenario_model("fd", r),
          retry_backoff_s = 0.01 }
      end
      local results, failures = qwenvl.chat_many(requests, { concurrency = 8 })
      assert.are.equal(n, #results)
      return failures
    end
    batch(100)                                -- warm the connection cache
    collectgarbage()
    local before = count_fds(pid)
    local failures = batch(1000)
    assert.are.equal(100, failures)           -- the 401s, nothing else
    -- handles too: start and drop some, cancel some mid-flight
    for _ = 1, 20 do
      local h = assert(qwenvl.start(req { model = standin.scenario_model("fdc", "delay=200") }))
      h:poll()
      h:cancel()
    end
    collectgarbage()
    collectgarbage()
    assert.are.equal(0, qwenvl.step())
    local after = count_fds(pid)
    assert.is_true(after - before <= 2, "descriptors: " .. before .. " before, " .. after .. " after")
  end)
end)
