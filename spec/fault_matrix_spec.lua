-- Fault matrix: every fault the stand-in can inject, with the exact
-- outcome (result after retries, or the error's code, status, attempts,
-- retryable), how many attempts reached the stand-in, and for Retry-After
-- the gap between arrivals. Each case runs three ways: the blocking
-- qwenvl.chat, a handle waited on (qwenvl.start + h:wait()), and a handle
-- polled in a loop (h:poll()).
--
--   busted --lua=lua5.4 spec/fault_matrix_spec.lua   (see Makefile for paths)
local standin = require("spec.support.standin")
local fx = require("spec.support.fixtures")
local qwenvl = require("qwenvl")
local socket = require("socket")

local BACKOFF = 0.05

local function one_of(allowed, v)
  if type(allowed) ~= "table" then return allowed == v end
  for _, a in ipairs(allowed) do if a == v then return true end end
  return false
end

local function closed_port()
  -- bind, note the port, close: nothing listens there afterwards
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return port
end

-- The three ways to run a request; each returns result or nil, err.
local RUNNERS = {
  chat = function(req) return qwenvl.chat(req) end,
  wait = function(req)
    local h, err = qwenvl.start(req)
    if not h then return nil, err end
    local r, e = h:wait()
    assert(r ~= "pending", "wait() without a limit returned pending")
    h:close()
    return r, e
  end,
  poll = function(req)
    local h, err = qwenvl.start(req)
    if not h then return nil, err end
    local deadline = socket.gettime() + 60
    local r, e
    repeat
      r, e = h:poll()
      if r == "pending" then socket.sleep(0.002) end
    until r ~= "pending" or socket.gettime() > deadline
    assert(r ~= "pending", "poll loop did not finish within 60 s")
    h:close()
    return r, e
  end,
}

local function gaps(times)
  local g = {}
  for i = 2, #times do g[#g + 1] = times[i] - times[i - 1] end
  return g
end

-- Each case: steps (stand-in faults per attempt), extra request fields,
-- and the expected outcome:
--   ok = true, attempts = n                      -> a result after n attempts
--   code, status, attempts, retryable            -> that error
--   arrivals = n (default: attempts)             -> attempts the stand-in saw
--   (attempts and arrivals may be lists of allowed values)
--   gap = {min, max}                             -> seconds between arrivals 1 and 2
--   partial = true                               -> err.text holds streamed text
local CASES = {
  -- reset before headers: on a reused keep-alive connection libcurl itself
  -- re-sends the request once on a fresh connection (see RELIABILITY.md),
  -- so a reset can cost one arrival without costing an attempt
  { name = "reset before headers, then ok", steps = { "reset", "ok" }, ok = true,
    attempts = { 1, 2 }, arrivals = 2 },
  { name = "reset before headers every time", steps = { "reset" },
    code = "network", attempts = 3, retryable = true, arrivals = { 3, 4 } },
  { name = "reset after headers, then ok", steps = { "reset_after_headers", "ok" }, ok = true, attempts = 2 },
  { name = "reset after headers every time", steps = { "reset_after_headers" },
    code = "network", status = 200, attempts = 3, retryable = true },
  { name = "truncated body, then ok", steps = { "truncate", "ok" }, ok = true, attempts = 2 },
  { name = "truncated body every time", steps = { "truncate" },
    code = "network", status = 200, attempts = 3, retryable = true },
  { name = "200 with a body that is not JSON (never retried)", steps = { "notjson", "ok" },
    code = "bad_response", status = 200, attempts = 1, retryable = false },
  { name = "502 HTML page, then ok", steps = { "502html", "ok" }, ok = true, attempts = 2 },
  { name = "502 HTML page every time", steps = { "502html" },
    code = "server", status = 502, attempts = 3, retryable = true, message = "HTTP 502" },
  { name = "429 without Retry-After, then ok", steps = { "429", "ok" }, ok = true, attempts = 2 },
  { name = "429 every time", steps = { "429" },
    code = "rate_limited", status = 429, attempts = 3, retryable = true },
  { name = "429 with Retry-After: 1", steps = { "429ra=1", "ok" }, ok = true, attempts = 2,
    gap = { 0.95, 2.0 } },
  { name = "429 with retry-after-ms: 200", steps = { "429ram=200", "ok" }, ok = true, attempts = 2,
    gap = { 0.19, 1.0 } },
  { name = "429 with an HTTP-date Retry-After (now + 1 s)", steps = { "429date=1", "ok" }, ok = true,
    attempts = 2, gap = { 0, 2.0 } },
  { name = "429 with Retry-After far beyond the budget: no retry", steps = { "429ra=3600", "ok" },
    code = "rate_limited", status = 429, attempts = 1, retryable = true, retry_after = 3600 },
  { name = "500, 503, 504 in a row: the last one is reported", steps = { "500", "503", "504" },
    code = "server", status = 504, attempts = 3, retryable = true },
  { name = "500 then ok", steps = { "500", "ok" }, ok = true, attempts = 2 },
  { name = "503 then ok", steps = { "503", "ok" }, ok = true, attempts = 2 },
  { name = "504 then ok", steps = { "504", "ok" }, ok = true, attempts = 2 },
  { name = "slow headers beyond timeout_s", steps = { "slowheaders=3000" }, req = { timeout_s = 0.5 },
    code = "timeout", attempts = 1, retryable = true, max_elapsed = 1.5 },
  { name = "stalled stream beyond idle_timeout_s", steps = { "stall=3000" },
    req = { stream = true, idle_timeout_s = 0.3 },
    code = "timeout", status = 200, attempts = 1, retryable = false, partial = true, max_elapsed = 2.0 },
  { name = "error event mid-stream (never retried)", steps = { "error_event", "ok" },
    req = { stream = true }, code = "content_filter", status = 200, attempts = 1, retryable = false,
    partial = true, api_code = "data_inspection_failed" },
  { name = "truncated stream after events (committed: not retried)", steps = { "truncate", "ok" },
    req = { stream = true }, code = "network", status = 200, attempts = 1, retryable = false,
    partial = true },
  { name = "stream reset after headers, then ok", steps = { "reset_after_headers", "ok" },
    req = { stream = true }, ok = true, attempts = 2 },
  { name = "oversized response beyond max_response_bytes", steps = { "oversize=300000", "ok" },
    req = { max_response_bytes = 100000 },
    code = "bad_response", status = 200, attempts = 1, retryable = false, message = "max_response_bytes" },
}

describe("fault matrix", function()
  local srv, dir, png

  setup(function()
    srv = standin.start {}
    dir = fx.tmpdir()
    png = fx.png(dir .. "/a.png", 16, 12)
  end)

  teardown(function()
    if srv then srv:stop() end
    if dir then fx.rm(dir) end
  end)

  local function request(model, extra)
    local req = { prompt = "describe", image = png, model = model, api_key = srv.key,
      base_url = srv.base_url, retry_backoff_s = BACKOFF, max_retries = 2, timeout_s = 20 }
    for k, v in pairs(extra or {}) do req[k] = v end
    return req
  end

  for _, how in ipairs({ "chat", "wait", "poll" }) do
    describe("(" .. how .. ")", function()
      for _, case in ipairs(CASES) do
        it(case.name, function()
          local model = standin.scenario_model("fm", case.steps)
          local t0 = socket.gettime()
          local r, err = RUNNERS[how](request(model, case.req))
          local elapsed = socket.gettime() - t0
          local sc = srv:scenario(model)
          if case.ok then
            assert.is_nil(err, tostring(err))
            assert.is_table(r)
            assert.is_true(one_of(case.attempts, r.attempts), "attempts " .. r.attempts)
            assert.matches("^STANDIN ", r.text)
          else
            assert.is_nil(r)
            assert.is_table(err, "expected an error table")
          end
          if not case.ok then
            assert.equal(case.code, err.code, tostring(err))
            assert.equal(case.status, err.status, tostring(err))
            assert.is_true(one_of(case.attempts, err.attempts), tostring(err))
            if case.retryable ~= nil then assert.equal(case.retryable, err.retryable, tostring(err)) end
            if case.message then assert.truthy(err.message:find(case.message, 1, true), err.message) end
            if case.api_code then assert.equal(case.api_code, err.api_code) end
            if case.retry_after then assert.equal(case.retry_after, err.retry_after) end
            if case.partial then
              assert.is_string(err.text, "partial text expected")
              assert.is_true(#err.text > 0)
              local head = err.text:sub(1, 8)
              assert.equal(("STANDIN "):sub(1, #head), head)   -- the answer's beginning
            end
            assert.matches("^qwenvl: " .. case.code, tostring(err))
          end
          -- attempts that reached the stand-in
          assert.is_true(one_of(case.arrivals or case.attempts, sc.attempts),
            ("the stand-in saw %d attempts"):format(sc.attempts))
          if case.gap then
            local g = gaps(sc.times)[1]
            assert.is_number(g)
            assert.is_true(g >= case.gap[1] and g <= case.gap[2],
              ("gap %.3f s not in [%g, %g]"):format(g, case.gap[1], case.gap[2]))
          end
          if case.max_elapsed then
            assert.is_true(elapsed < case.max_elapsed, ("took %.2f s"):format(elapsed))
          end
        end)
      end

      it("connection refused (a closed port): retried, then network", function()
        local port = closed_port()
        local before = srv:stats().chat_requests
        local r, err = RUNNERS[how](request(nil, { base_url = "http://127.0.0.1:" .. port .. "/v1" }))
        assert.is_nil(r)
        assert.equal("network", err.code, tostring(err))
        assert.is_nil(err.status)
        assert.equal(3, err.attempts)
        assert.is_true(err.retryable)
        assert.is_string(err.curl_error)
        assert.equal(before, srv:stats().chat_requests)
      end)

      it("max_retries = 0: one attempt, even for a retryable fault", function()
        local model = standin.scenario_model("fm0", "503", "ok")
        local r, err = RUNNERS[how](request(model, { max_retries = 0 }))
        assert.is_nil(r)
        assert.equal("server", err.code)
        assert.equal(1, err.attempts)
        assert.equal(1, srv:scenario(model).attempts)
      end)

      it("a budget too short for the back-off ends the call instead of sleeping past it", function()
        local model = standin.scenario_model("fmb", "503", "ok")
        local t0 = socket.gettime()
        local r, err = RUNNERS[how](request(model, { retry_backoff_s = 5, timeout_s = 1 }))
        assert.is_nil(r)
        assert.equal("server", err.code)
        assert.equal(1, err.attempts)
        assert.is_true(socket.gettime() - t0 < 1.5)
      end)
    end)
  end

  it("an oversized stream is refused by max_response_bytes", function()
    local model = standin.scenario_model("fmos", "oversize=300000")
    local r, err = qwenvl.chat(request(model, { stream = true, max_response_bytes = 100000 }))
    assert.is_nil(r)
    assert.equal("bad_response", err.code)
  end)
end)
