-- qwenvl.ngx: run qwenvl requests inside OpenResty / lua-nginx-module
-- request handlers without blocking the nginx worker.
--
--   local qv = require("qwenvl.ngx")
--   local res, err = qv.chat({ prompt = "Describe", image = url })
--   local res, err = qv.chat(req, { stream_to_client = true })  -- ngx.print deltas
--
-- How it works. qwenvl.start() begins a transfer on the module's engine
-- (curl multi + epoll) without waiting. nginx gives Lua no way to wait on
-- an arbitrary fd, so the engine is stepped from a timer:
--
--   * driver = "shared" (default): ONE driver per worker, a light thread
--     started with ngx.timer.at(0, ...) while requests are in flight. Each
--     tick it calls qwenvl.step() once, polls every waiting handle, moves
--     streamed text to the request's queue, and wakes that request's
--     coroutine through an ngx.semaphore. Request coroutines sleep on their
--     semaphore: they wake only when they have something to do. The driver
--     exits when nothing is in flight and is restarted on demand.
--   * driver = "sleep": the request's own coroutine polls its handle with
--     ngx.sleep between polls. Simple, but N requests cost N pollers.
--
-- Tick interval (both drivers): after a tick with progress the next sleep
-- is min_sleep_ms; each idle tick doubles it up to max_sleep_ms; it is never
-- longer than qwenvl.timeout_ms() (curl timers, retry back-off, idle limits).
--
-- Cost: with the defaults (1 ms .. 20 ms) a worker with requests in flight
-- wakes between 50 and 1000 times per second IN TOTAL (not per request):
-- ~50/s while every request waits on the model, more only while bytes
-- arrive. Each wake-up is one epoll_wait(0) per handle poll plus Lua
-- bookkeeping (microseconds). An idle worker wakes 0 times. Each request
-- coroutine wakes once per delivered stream chunk and once at the end.
-- Added latency per event is at most max_sleep_ms.
--
-- Do NOT require("qwenvl") in init_by_lua*: the engine's epoll fd would be
-- created in the master and shared by all forked workers. This module loads
-- qwenvl lazily, on first use inside a worker (and refuses the init phase).
-- Building the request (reading a local image file, base64) is synchronous;
-- prefer http(s) image URLs for large images under load.

local M = {}

M.config = {
  min_sleep_ms = 1,     -- sleep after a tick that made progress
  max_sleep_ms = 20,    -- cap while nothing happens
  wait_slice_s = 60,    -- how long a request waits on its semaphore per turn
}

local stats = { ticks = 0, wakeups = 0, driver_starts = 0, requests = 0, max_in_flight = 0 }

local qwenvl            -- the C module, loaded lazily in a worker
local semaphore         -- ngx.semaphore, loaded lazily
local waiting = {}      -- entry -> true: requests the shared driver serves
local n_waiting = 0
local driver_running = false

local function engine()
  if not qwenvl then
    if ngx.get_phase() == "init" then
      error("qwenvl.ngx: do not load qwenvl in init_by_lua (its epoll fd would be"
        .. " shared by every forked worker); use it in a request or timer", 2)
    end
    qwenvl = require("qwenvl")
  end
  return qwenvl
end

--- The qwenvl C module, loaded in this worker.
function M.engine() return engine() end

--- Counters: ticks (driver loop turns), wakeups (request coroutine
--- resumptions), driver_starts, requests, max_in_flight.
function M.stats()
  local s = {}
  for k, v in pairs(stats) do s[k] = v end
  s.in_flight = n_waiting
  return s
end

function M.reset_stats()
  for k in pairs(stats) do stats[k] = 0 end
end

--- Override M.config fields (min_sleep_ms, max_sleep_ms, wait_slice_s).
function M.configure(opts)
  for k, v in pairs(opts or {}) do
    if M.config[k] == nil then error("qwenvl.ngx: unknown option " .. tostring(k), 2) end
    M.config[k] = v
  end
end

local function next_sleep(cur, progressed)
  local cfg = M.config
  if progressed then cur = cfg.min_sleep_ms
  else cur = math.min(cur * 2, cfg.max_sleep_ms) end
  local t = qwenvl.timeout_ms()
  local ms = cur
  if t and t < ms then ms = t end
  if ms < 0 then ms = 0 end
  return cur, ms
end

-- Pull what a handle has for us into entry e. Returns true on progress.
local function service(e)
  local progressed = false
  local res, err = e.h:poll()
  if e.stream then
    local text, reasoning = e.h:read()
    if text then e.chunks[#e.chunks + 1] = { text, "content" }; progressed = true end
    if reasoning and e.reasoning then
      e.chunks[#e.chunks + 1] = { reasoning, "reasoning" }
      progressed = true
    end
  end
  if res ~= "pending" then
    e.done, e.res, e.err = true, res, err
    progressed = true
  end
  return progressed
end

local function driver(premature)
  local cur = M.config.min_sleep_ms
  while n_waiting > 0 do
    stats.ticks = stats.ticks + 1
    if premature or ngx.worker.exiting() then
      for e in pairs(waiting) do e.h:cancel() end
    end
    qwenvl.step()
    local progressed = false
    for e in pairs(waiting) do
      if service(e) then
        progressed = true
        if e.done then
          waiting[e] = nil
          n_waiting = n_waiting - 1
        end
        e.sem:post(1)
      end
    end
    if n_waiting == 0 then break end
    local ms
    cur, ms = next_sleep(cur, progressed)
    if premature then ms = 0 end           -- timers cannot sleep at exit
    if ms > 0 or not premature then ngx.sleep(ms / 1000) end
  end
  driver_running = false
end

local function ensure_driver()
  if driver_running then return true end
  local ok, err = ngx.timer.at(0, driver)
  if not ok then return nil, err end
  driver_running = true
  stats.driver_starts = stats.driver_starts + 1
  return true
end

-- Deliver queued chunks; returns nil, err if the client went away.
local function deliver(e, opts)
  if #e.chunks == 0 then return true end
  local chunks = e.chunks
  e.chunks = {}
  for _, c in ipairs(chunks) do
    if opts.on_delta then
      local ok, cerr = pcall(opts.on_delta, c[1], c[2])
      if not ok then return nil, "on_delta: " .. tostring(cerr) end
    end
    if opts.stream_to_client then
      if not ngx.headers_sent and not ngx.header["Content-Type"] then
        ngx.header["Content-Type"] = "text/plain; charset=utf-8"
      end
      local ok, perr = ngx.print(c[1])
      if not ok then return nil, perr end
    end
  end
  if opts.stream_to_client then
    local ok, ferr = ngx.flush(true)
    if not ok then return nil, ferr end
  end
  return true
end

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

local function run_shared(h, opts)
  semaphore = semaphore or require("ngx.semaphore")
  local e = { h = h, sem = semaphore.new(0), chunks = {},
              stream = opts.stream_to_client or opts.on_delta ~= nil,
              reasoning = opts.include_reasoning }
  waiting[e] = true
  n_waiting = n_waiting + 1
  if n_waiting > stats.max_in_flight then stats.max_in_flight = n_waiting end
  local ok, terr = ensure_driver()
  if not ok then
    waiting[e] = nil
    n_waiting = n_waiting - 1
    return nil, terr
  end
  local abandoned = false
  while true do
    e.sem:wait(M.config.wait_slice_s)
    stats.wakeups = stats.wakeups + 1
    if not abandoned then
      local dok = deliver(e, opts)
      if not dok then abandoned = true; h:cancel() end
    end
    if e.done then break end
  end
  return e.res, e.err
end

local function run_sleep(h, opts)
  local e = { h = h, chunks = {}, stream = opts.stream_to_client or opts.on_delta ~= nil,
              reasoning = opts.include_reasoning }
  local cur = M.config.min_sleep_ms
  local abandoned = false
  while true do
    local progressed = service(e)
    if not abandoned and not deliver(e, opts) then abandoned = true; h:cancel() end
    if e.done then break end
    local ms
    cur, ms = next_sleep(cur, progressed)
    stats.wakeups = stats.wakeups + 1
    ngx.sleep(ms / 1000)
  end
  return e.res, e.err
end

--- Run one chat request from a request handler (content_by_lua*,
--- access_by_lua*, rewrite_by_lua*, ngx.timer, ngx.thread); yields, never
--- blocks the worker. Returns result or nil, err like qwenvl.chat.
--- opts:
---   stream_to_client  print content deltas with ngx.print + ngx.flush(true)
---                     as they arrive (sets req.stream = true)
---   on_delta(text, kind)  called in the request's coroutine per chunk
---   include_reasoning pass reasoning text to on_delta / the client too
---   driver            "shared" (default) or "sleep"
function M.chat(req, opts)
  opts = opts or {}
  local q = engine()
  if type(req) ~= "table" then error("qwenvl.ngx.chat: request table expected", 2) end
  if (opts.stream_to_client or opts.on_delta) and not req.stream then
    req = copy(req)
    req.stream = true
  end
  local h, err = q.start(req)
  if not h then return nil, err end
  stats.requests = stats.requests + 1
  local ok, res, rerr
  if opts.driver == "sleep" then
    ok, res, rerr = pcall(run_sleep, h, opts)
  else
    ok, res, rerr = pcall(run_shared, h, opts)
  end
  h:close()
  if not ok then error(res, 0) end
  return res, rerr
end

return M
