-- qwenvl.ngx: run qwenvl requests inside OpenResty / lua-nginx-module
-- request handlers without blocking the nginx worker on the network.
--
--   local qv = require("qwenvl.ngx")
--   local res, err = qv.chat({ prompt = "Describe", image = url })
--   local res, err = qv.chat(req, { stream_to_client = true })  -- ngx.print deltas
--   if not res then return qv.send_error(err) end   -- real status, or an [error] line
--
-- How it works. qwenvl.start() begins a transfer on the module's engine
-- (curl multi + epoll, or poll() where there is no epoll: `make
-- POLLER=poll`) without waiting. nginx gives Lua no way to wait on an
-- arbitrary fd, so the engine is stepped from a timer; qwenvl.fd() is
-- never used, so both engines work the same here:
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
-- The cap matters: while a socket waits for bytes, timeout_ms() is curl's
-- next timer, which can be seconds away.
--
-- Cost: with the defaults (1 ms .. 20 ms) a worker with requests in flight
-- wakes between 50 and 1000 times per second IN TOTAL (not per request):
-- ~50/s while every request waits on the model, more only while bytes
-- arrive. Each wake-up is one epoll_wait(0) or poll(0) per handle poll
-- plus Lua bookkeeping (microseconds). An idle worker wakes 0 times. Each
-- request coroutine wakes once per delivered stream chunk and once at the
-- end. Added latency per event is at most max_sleep_ms.
--
-- What does block the worker: building the request in qwenvl.start(), in
-- the calling request's coroutine. A local image file is read, sniffed and
-- base64-encoded (a few ms per MB), and one over the pixel budget is
-- resized with libvips: ~0.5 s for a 24 MP JPEG, 1-2 s at the 100 MP decode
-- cap, up to ~2-3 s for a 50 MP GIF / progressive JPEG / interlaced PNG.
-- Every other request of that worker waits meanwhile. http(s) image URLs
-- (fetched by the service) cost nothing; docs/hosts.md says what else to
-- do under load.
--
-- Do NOT require("qwenvl") in init_by_lua*: the engine (its curl multi, and
-- with epoll its descriptor) would be created in the master and inherited
-- by every forked worker. This module loads qwenvl lazily, on first use
-- inside a worker (and refuses the init phase).

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
      error("qwenvl.ngx: do not load qwenvl in init_by_lua (its engine would be"
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

-- Deliver queued chunks. Returns true, or nil and the error that ends
-- the request: on_delta raised ("callback"), or the client went away.
local function deliver(e, opts)
  if #e.chunks == 0 then return true end
  local chunks = e.chunks
  e.chunks = {}
  for _, c in ipairs(chunks) do
    if opts.on_delta then
      local ok, cerr = pcall(opts.on_delta, c[1], c[2])
      if not ok then return nil, qwenvl.error("callback", "on_delta: " .. tostring(cerr)) end
    end
    if opts.stream_to_client then
      if not ngx.headers_sent and not ngx.header["Content-Type"] then
        ngx.header["Content-Type"] = "text/plain; charset=utf-8"
      end
      local ok, perr = ngx.print(c[1])
      if not ok then return nil, qwenvl.error("canceled", "the client went away (" .. tostring(perr) .. ")") end
    end
  end
  if opts.stream_to_client then
    local ok, ferr = ngx.flush(true)
    if not ok then return nil, qwenvl.error("canceled", "the client went away (" .. tostring(ferr) .. ")") end
  end
  return true
end

-- After a tick: hand what arrived to the caller. A failure to deliver
-- stops the transfer and becomes the request's outcome, whatever the
-- service answers after it (e.stopped).
local function hand_over(e, opts)
  if e.stopped then return end
  local ok, why = deliver(e, opts)
  if not ok then
    e.stopped = why
    e.h:cancel()
  end
end

local function outcome(e)
  if e.stopped then return nil, e.stopped end
  return e.res, e.err
end

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

local function entry(h, opts)
  return { h = h, chunks = {}, stream = opts.stream_to_client or opts.on_delta ~= nil,
           reasoning = opts.include_reasoning }
end

local function run_shared(h, opts)
  semaphore = semaphore or require("ngx.semaphore")
  local e = entry(h, opts)
  e.sem = semaphore.new(0)
  waiting[e] = true
  n_waiting = n_waiting + 1
  if n_waiting > stats.max_in_flight then stats.max_in_flight = n_waiting end
  local ok, terr = ensure_driver()
  if not ok then
    waiting[e] = nil
    n_waiting = n_waiting - 1
    return nil, qwenvl.error("canceled", "qwenvl.ngx: cannot start the driver timer: " .. tostring(terr))
  end
  while true do
    e.sem:wait(M.config.wait_slice_s)
    stats.wakeups = stats.wakeups + 1
    hand_over(e, opts)
    if e.done then break end
  end
  return outcome(e)
end

local function run_sleep(h, opts)
  local e = entry(h, opts)
  local cur = M.config.min_sleep_ms
  while true do
    local progressed = service(e)
    hand_over(e, opts)
    if e.done then break end
    local ms
    cur, ms = next_sleep(cur, progressed)
    stats.wakeups = stats.wakeups + 1
    ngx.sleep(ms / 1000)
  end
  return outcome(e)
end

--- Run one chat request from a request handler (content_by_lua*,
--- access_by_lua*, rewrite_by_lua*, ngx.timer, ngx.thread); yields while
--- the request is in flight. Returns result or nil, err like qwenvl.chat.
--- opts:
---   stream_to_client  print content deltas with ngx.print + ngx.flush(true)
---                     as they arrive (sets req.stream = true); the response
---                     headers (status 200) go out with the first delta, so
---                     a failure before it can still get its own status:
---                     see send_error
---   on_delta(text, kind)  called in the request's coroutine per chunk; an
---                     error in it stops the request: err.code "callback"
---   include_reasoning pass reasoning text to on_delta / the client too
---   driver            "shared" (default) or "sleep"
--- err.code "canceled" with "the client went away" when ngx.print failed.
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

-- The HTTP status a client of this server gets for an error. The service's
-- refusals keep their meaning (a bad request, a key refused, rate limits);
-- what failed between us and the service is a bad gateway.
local STATUS = {
  invalid_request = 400,    -- refused before sending, or the service's 400
  content_filter = 400,     -- the input (or the answer) was refused
  auth = 401,               -- 403 (access denied) stays 403
  rate_limited = 429,
  timeout = 504,
  callback = 500,           -- on_delta raised: this server's own error
  canceled = 499,           -- nginx's "client closed request"
}

--- HTTP status for an error from chat: 400, 401/403, 429, 500, 504,
--- 499, else 502 (server, network, bad_response, not_found).
function M.http_status(err)
  local code = type(err) == "table" and err.code or nil
  if code == "auth" and err.status == 403 then return 403 end
  return STATUS[code] or 502
end

local function error_json(err)
  local cjson = require("cjson.safe")
  local e = type(err) == "table" and err or { code = "error", message = tostring(err) }
  return cjson.encode({ error = { code = e.code, message = e.message, request_id = e.request_id } })
end

--- Answer a failed chat to the client. Before the response headers went
--- out: the status from http_status (with Retry-After for a 429 that
--- carries one) and a JSON body {"error": {code, message, request_id}}.
--- After (a stream that failed midway): the headers are gone, so a last
--- line "\n[error] <code>: <message>\n" ends the body. Returns what
--- ngx.exit returns, for `return qv.send_error(err)`.
function M.send_error(err)
  local e = type(err) == "table" and err or { code = "error", message = tostring(err) }
  if ngx.headers_sent then
    ngx.print("\n[error] ", tostring(e.code), ": ", tostring(e.message), "\n")
    ngx.flush(true)
    return ngx.exit(ngx.OK)
  end
  local status = M.http_status(e)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  if status == 429 and tonumber(e.retry_after) then
    ngx.header["Retry-After"] = tostring(math.ceil(tonumber(e.retry_after)))
  end
  ngx.say(error_json(e))
  return ngx.exit(status)
end

return M
