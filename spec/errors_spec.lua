-- Error codes and the retry policy, observed at the stand-in.
local qwenvl = require("qwenvl")
local standin = require("spec.support.standin")
local fx = require("spec.support.fixtures")
local unpack = table.unpack or unpack

describe("errors and retries", function()
  local srv, dir, png

  setup(function()
    srv = standin.start{}
    dir = fx.tmpdir()
    png = fx.png(dir .. "/a.png", 32, 32)
  end)
  teardown(function()
    srv:stop()
    fx.rm(dir)
  end)

  local function call(steps, extra)
    local model = standin.scenario_model("e", unpack(steps))
    local t = { prompt = "p", image = png, api_key = srv.key, base_url = srv.base_url,
                model = model, retry_backoff_s = 0.05 }
    for k, v in pairs(extra or {}) do t[k] = v end
    local res, err = qwenvl.chat(t)
    return res, err, srv:scenario(model)
  end

  -- Gaps between the arrivals of consecutive attempts.
  local function gaps(sc)
    local g = {}
    for i = 2, #sc.times do g[#g + 1] = sc.times[i] - sc.times[i - 1] end
    return g
  end

  it("429 then 503 then success returns the answer with attempts = 3", function()
    local res, err, sc = call{ "429", "503", "ok" }
    assert.is_nil(err)
    assert.matches("^STANDIN", res.text)
    assert.are.equal(3, res.attempts)
    assert.are.equal(3, sc.attempts)
  end)

  it("a 401 is code auth on the first attempt, never retried", function()
    local res, err, sc = call({ "401", "ok" }, { max_retries = 5 })
    assert.is_nil(res)
    assert.are.equal("auth", err.code)
    assert.are.equal(401, err.status)
    assert.are.equal("invalid_api_key", err.api_code)
    assert.is_false(err.retryable)
    assert.are.equal(1, err.attempts)
    assert.are.equal(1, sc.attempts)
    assert.is_string(err.request_id)
  end)

  it("maps every class of failure to its code", function()
    local cases = {
      { { "403" }, "auth", 403, 1 },
      { { "404" }, "not_found", 404, 1 },
      { { "400" }, "invalid_request", 400, 1 },
      { { "400dif" }, "content_filter", 400, 1 },
      { { "429" }, "rate_limited", 429, 3 },
      { { "500" }, "server", 500, 3 },
      { { "502html" }, "server", 502, 3 },
      { { "503" }, "server", 503, 3 },
      { { "504" }, "server", 504, 3 },
      { { "notjson" }, "bad_response", 200, 1 },
      { { "empty_choices" }, "bad_response", 200, 1 },
    }
    for _, c in ipairs(cases) do
      local res, err, sc = call(c[1])
      assert.is_nil(res, c[1][1])
      assert.are.equal(c[2], err.code, c[1][1])
      assert.are.equal(c[3], err.status, c[1][1])
      assert.are.equal(c[4], err.attempts, c[1][1])
      assert.are.equal(c[4], sc.attempts, c[1][1])
      assert.are.equal(c[4] > 1, err.retryable, c[1][1])
      assert.is_string(err.message)
      assert.is_true(#err.message > 0)
    end
  end)

  it("gives DashScope's own message and code, and a readable tostring", function()
    local _, err = call{ "429" }
    assert.are.equal("Requests rate limit exceeded, please try again later.", err.message)
    assert.are.equal("limit_requests", err.api_code)
    local s = tostring(err)
    assert.matches("^qwenvl: rate_limited: Requests rate limit exceeded", s)
    assert.matches("status=429", s)
    assert.matches("request_id=", s)
    assert.matches("attempts=3", s)
    assert.is_nil(s:find(srv.key, 1, true))
    local _, html = call{ "502html" }
    assert.matches("HTTP 502", html.message)
    assert.matches("<title>502", html.raw)
  end)

  it("waits retry_backoff_s * 2^n with jitter between attempts", function()
    local _, err, sc = call({ "500" }, { retry_backoff_s = 0.2 })
    assert.are.equal(3, err.attempts)
    local g = gaps(sc)
    assert.is_true(g[1] >= 0.15 and g[1] < 0.2 + 0.5, "first wait " .. g[1])
    assert.is_true(g[2] >= 0.30 and g[2] < 0.4 + 0.5, "second wait " .. g[2])
  end)

  it("honours Retry-After in seconds, as an HTTP date, and retry-after-ms", function()
    local res, _, sc = call({ "429ra=1", "ok" }, { retry_backoff_s = 0 })
    assert.are.equal(2, res.attempts)
    assert.is_true(gaps(sc)[1] >= 0.95, "Retry-After: 1 -> " .. gaps(sc)[1])
    res, _, sc = call({ "429ram=300", "ok" }, { retry_backoff_s = 0 })
    assert.are.equal(2, res.attempts)
    assert.is_true(gaps(sc)[1] >= 0.28 and gaps(sc)[1] < 0.9, "retry-after-ms -> " .. gaps(sc)[1])
    res, _, sc = call({ "429date=2", "ok" }, { retry_backoff_s = 0 })
    assert.are.equal(2, res.attempts)
    assert.is_true(gaps(sc)[1] >= 0.9, "HTTP date -> " .. gaps(sc)[1])
  end)

  it("does not wait for a Retry-After beyond max_retry_after_s", function()
    local _, err, sc = call({ "429ra=3600", "ok" })
    assert.are.equal("rate_limited", err.code)
    assert.are.equal(1, err.attempts)
    assert.are.equal(1, sc.attempts)
    assert.are.equal(3600, err.retry_after)
  end)

  it("stops early when the next wait would overrun timeout_s", function()
    local _, err, sc = call({ "503" }, { retry_backoff_s = 2, timeout_s = 1 })
    assert.are.equal("server", err.code)
    assert.are.equal(1, sc.attempts)
    assert.is_true(err.elapsed_s < 1)
  end)

  it("max_retries = 0 means one attempt", function()
    local _, err, sc = call({ "503", "ok" }, { max_retries = 0 })
    assert.are.equal(1, err.attempts)
    assert.are.equal(1, sc.attempts)
  end)

  it("retries connection failures, then reports them as network errors", function()
    local _, err = qwenvl.chat{ prompt = "p", image = png, api_key = "k",
      base_url = "http://127.0.0.1:1/v1", retry_backoff_s = 0.01 }
    assert.are.equal("network", err.code)
    assert.is_true(err.retryable)
    assert.are.equal(3, err.attempts)
    assert.is_nil(err.status)
    -- a reset before any response byte: on a reused keep-alive connection
    -- libcurl itself resends once on a fresh one, so count at the server
    local res, _, sc = call{ "reset", "ok" }
    assert.matches("^STANDIN", res.text)
    assert.are.equal(2, sc.attempts)
  end)

  it("times out as a whole within timeout_s", function()
    local _, err = call({ "slowheaders=3000" }, { timeout_s = 0.4 })
    assert.are.equal("timeout", err.code)
    assert.is_true(err.elapsed_s < 1.5)
  end)

  it("refuses bad input before sending anything", function()
    local before = srv:stats().chat_requests
    local notimg = fx.write(dir .. "/notes.txt", "hello, not an image")
    local cases = {
      { {}, "prompt" },
      { { prompt = "p" }, "image" },
      { { prompt = "p", image = dir .. "/missing.png" }, "image" },
      { { prompt = "p", image = notimg }, "image" },
      { { prompt = "p", image = "data:image/png,AAAA" }, "image" },
      { { prompt = "p", image = "data:text/plain;base64,AAAA" }, "image" },
      { { prompt = 3, image = png }, "prompt" },
      { { prompt = "p", image = png, temperature = 2 }, "temperature" },
      { { prompt = "p", image = png, max_tokens = 1.5 }, "max_tokens" },
      { { prompt = "p", image = png, detail = "ultra" }, "detail" },
      { { prompt = "p", image = png, tempreature = 1 }, "tempreature" },
    }
    for _, c in ipairs(cases) do
      local t = c[1]
      t.api_key, t.base_url = srv.key, srv.base_url
      local res, err = qwenvl.chat(t)
      assert.is_nil(res)
      assert.are.equal("invalid_request", err.code, c[2])
      assert.are.equal(c[2], err.field)
      assert.is_nil(err.status)
      assert.are.equal(0, err.attempts)
    end
    -- an image whose data URL would pass DashScope's 10 MiB limit
    local big = dir .. "/big.png"
    fx.write(big, fx.read(png) .. string.rep("\0", 8 * 1024 * 1024))
    local _, err = qwenvl.chat{ prompt = "p", image = big, api_key = srv.key,
      base_url = srv.base_url, resize = "off" }
    if err.field == "resize" then   -- built before resizing existed
      _, err = qwenvl.chat{ prompt = "p", image = big, api_key = srv.key, base_url = srv.base_url }
    end
    assert.are.equal("invalid_request", err.code)
    assert.matches("10 MiB", err.message)
    assert.are.equal(before, srv:stats().chat_requests)
    assert.has_error(function() qwenvl.chat("not a table") end)
  end)
end)
