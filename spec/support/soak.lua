-- spec/support/soak.lua: the soak workload of spec/soak_spec.lua, run in
-- a fresh interpreter so that what earlier specs left in the heap does not
-- blur its memory figures. Prints one line:
--   SOAK n=.. warm=.. seconds=.. rss0=.. rss1=.. fd0=.. fd1=.. sock0=.. sock1=.. in_flight=..
-- and exits non-zero when a request's outcome is not the one expected.
--   lua5.4 spec/support/soak.lua N
-- Or in-process (under the sanitizers, whose child would run unchecked):
--   require("spec.support.soak").run(N) -> the same figures, as a table
local standin = require("spec.support.standin")
local fx = require("spec.support.fixtures")
local qwenvl = require("qwenvl")
local socket = require("socket")

local M = {}

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

function M.run(N)
  local srv = standin.start {}
  local dir = fx.tmpdir()
  local png = fx.png(dir .. "/a.png", 24, 16)

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

  local warm = math.max(100, math.floor(N / 10))
  run(1, warm)
  settle()
  local rss0, fd0, sock0 = rss_kib(), fds()
  local t0 = socket.gettime()
  run(warm + 1, N)
  local dt = socket.gettime() - t0
  settle()
  local rss1, fd1, sock1 = rss_kib(), fds()
  local in_flight = srv:idle_stats(5).in_flight
  srv:stop()
  fx.rm(dir)
  return { n = N, warm = warm, seconds = dt, rss0 = rss0, rss1 = rss1, fd0 = fd0, fd1 = fd1,
           sock0 = sock0, sock1 = sock1, in_flight = in_flight }
end

if arg and arg[0] and arg[0]:match("soak%.lua$") then
  local f = M.run(tonumber(arg[1]) or 5000)
  print(("SOAK n=%d warm=%d seconds=%.3f rss0=%d rss1=%d fd0=%d fd1=%d sock0=%d sock1=%d in_flight=%d")
    :format(f.n, f.warm, f.seconds, f.rss0, f.rss1, f.fd0, f.fd1, f.sock0, f.sock1, f.in_flight))
end

return M
