-- Soak: thousands of requests through one process, about 10% of them
-- faulty (retried 429/503/reset, a 200 that is not JSON, 401, streams,
-- a stream cut off, requests refused locally), mostly through chat_many
-- (concurrency 16) plus sequential chat and up to 16 handles at once. Resident memory and
-- open descriptors are measured after a warm-up and at the end and must
-- stay flat:
--
--   RSS growth  < 8 MiB      (after collectgarbage, VmRSS of /proc/self/status)
--   fd growth  <= 2          (descriptors other than sockets)
--   sockets    grow <= 16 + 4 (libcurl's pool: one per concurrent transfer;
--                             in a whole-suite run earlier specs' pooled
--                             connections are already there at the start)
--
-- The figures are printed (start/end RSS, fds, requests/s) for the README.
-- QWENVL_SOAK_N overrides the request count (default 5000; 300 under the
-- sanitizer and valgrind targets, where only the fd bound is checked for
-- ASan, whose quarantine holds freed memory on purpose).
local standin = require("spec.support.standin")
local fx = require("spec.support.fixtures")
local qwenvl = require("qwenvl")
local socket = require("socket")

local UNDER_ASAN = os.getenv("QWENVL_UNDER_ASAN") == "1"
local UNDER_VALGRIND = os.getenv("QWENVL_UNDER_VALGRIND") == "1"
local N = tonumber(os.getenv("QWENVL_SOAK_N") or "")
  or ((UNDER_ASAN or UNDER_VALGRIND) and 300 or 5000)
local RSS_BOUND_KIB = 8 * 1024
local FD_BOUND = 2
local SOCKET_BOUND = 16 + 4

local function rss_kib()
  local f = assert(io.open("/proc/self/status", "r"))
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)%s*kB"))
end

-- Open descriptors of this process: (all but sockets, sockets). Sockets
-- are libcurl's connection pool, which holds up to one connection per
-- concurrent transfer and shrinks when the server closes one, so they are
-- bounded by the pool size instead of compared.
local function fds()
  local f = assert(io.open("/proc/self/stat", "r"))
  local pid = f:read("*l"):match("^(%d+)")
  f:close()
  local p = assert(io.popen("ls -l /proc/" .. pid .. "/fd"))
  local other, sockets = 0, 0
  for line in p:lines() do
    if line:find("socket:%[") then sockets = sockets + 1
    elseif line:find(" %d+ %-> ") then other = other + 1 end
  end
  p:close()
  return other - 1, sockets     -- minus the popen pipe itself
end

local function settle()
  for _ = 1, 3 do collectgarbage("collect") end
end

describe("soak", function()
  local srv, dir, png

  setup(function()
    srv = standin.start {}
    dir = fx.tmpdir()
    png = fx.png(dir .. "/a.png", 24, 16)
  end)

  teardown(function()
    if srv then srv:stop() end
    if dir then fx.rm(dir) end
  end)

  -- one in ten requests is faulty; the kinds cycle
  local FAULTS = {
    { steps = { "429", "ok" } },
    { steps = { "503", "ok" } },
    { steps = { "reset", "ok" } },
    { steps = { "notjson" }, code = "bad_response" },
    { steps = { "401" }, code = "auth" },
    { steps = { "truncate", "ok" } },
    { steps = { "ok" }, stream = true },
    { steps = { "truncate" }, stream = true, code = "network" },
    { local_error = true, code = "invalid_request" },
    { steps = { "502html", "ok" } },
  }

  local function build(i)
    local req = { prompt = "soak " .. i, image = png, api_key = srv.key, base_url = srv.base_url,
      retry_backoff_s = 0.01, max_retries = 2, timeout_s = 30 }
    local expect
    if i % 10 == 0 then
      expect = FAULTS[math.floor(i / 10) % #FAULTS + 1]
      if expect.local_error then
        req.max_tokens = "many"
      else
        req.model = standin.scenario_model("soak", expect.steps)
        req.stream = expect.stream
      end
    end
    return req, expect
  end

  local function check(res, expect, i)
    local code = expect and expect.code
    if code then
      assert(type(res) == "table" and res.code == code,
        ("request %d: expected %s, got %s"):format(i, code, tostring(res and (res.code or res.text))))
    else
      assert(type(res) == "table" and res.code == nil and type(res.text) == "string",
        ("request %d failed: %s"):format(i, tostring(res)))
    end
  end

  -- n requests: 80% through chat_many (batches of 200, concurrency 16),
  -- 10% sequential chat, 10% handles polled together
  local function run(first, n)
    local i = first
    local last = first + n - 1
    while i <= last do
      -- a batch for chat_many
      local batch, expects = {}, {}
      local bn = math.min(200, last - i + 1)
      for k = 1, bn do batch[k], expects[k] = build(i + k - 1) end
      local results = qwenvl.chat_many(batch, { concurrency = 16 })
      for k = 1, bn do check(results[k], expects[k], i + k - 1) end
      i = i + bn
      -- sequential chat
      for _ = 1, math.min(25, last - i + 1) do
        local req, expect = build(i)
        local r, err = qwenvl.chat(req)
        check(r or err, expect, i)
        i = i + 1
      end
      -- up to 16 handles at once (the pool bound), waited on in turn
      local hs = {}
      for k = 1, math.min(16, last - i + 1) do
        local req, expect = build(i)
        local h, err = qwenvl.start(req)
        hs[k] = { h = h, err = err, expect = expect, i = i }
        i = i + 1
      end
      for _, x in ipairs(hs) do
        if x.h then
          local r, err = x.h:wait()
          x.h:close()
          check(r or err, x.expect, x.i)
        else
          check(x.err, x.expect, x.i)
        end
      end
    end
  end

  it(("%d requests with ~10%% faults keep RSS and descriptors flat"):format(N), function()
    local warm = math.max(100, math.floor(N / 10))
    run(1, warm)
    settle()
    local rss0, fd0, sock0 = rss_kib(), fds()
    local t0 = socket.gettime()
    run(warm + 1, N)
    local dt = socket.gettime() - t0
    settle()
    local rss1, fd1, sock1 = rss_kib(), fds()
    print(("\nsoak: %d requests (+%d warm-up) in %.1f s = %.0f req/s; RSS %.1f -> %.1f MiB (%+.2f); "
      .. "fds %d -> %d, sockets %d -> %d%s%s"):format(N, warm, dt, N / dt, rss0 / 1024, rss1 / 1024,
      (rss1 - rss0) / 1024, fd0, fd1, sock0, sock1, UNDER_ASAN and " [asan]" or "",
      UNDER_VALGRIND and " [valgrind]" or ""))
    assert.is_true(fd1 - fd0 <= FD_BOUND, ("fds grew from %d to %d"):format(fd0, fd1))
    assert.is_true(sock1 - sock0 <= SOCKET_BOUND, ("sockets grew from %d to %d"):format(sock0, sock1))
    if not UNDER_ASAN then
      assert.is_true(rss1 - rss0 < RSS_BOUND_KIB,
        ("RSS grew by %.2f MiB (bound %d MiB)"):format((rss1 - rss0) / 1024, math.floor(RSS_BOUND_KIB / 1024)))
    end
    -- the stand-in saw no request stuck open
    assert.equal(0, srv:stats().in_flight)
  end)
end)
