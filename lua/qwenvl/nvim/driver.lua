-- qwenvl.nvim.driver: run qwenvl handles on Neovim's event loop.
--
--   local d = require("qwenvl.nvim.driver").new(qwenvl, { loop = "auto", tick_ms = 15 })
--   local job = d:add(handle, on_text(text, job), on_done(res, err, job))
--   d:cancel(job)  d:cancel_all()  d:count()  d.mode ("fd" | "timer")  d:close()
-- d:count() includes jobs whose on_done has not run yet, so when it is 0
-- every buffer shows its final state.
--
-- qwenvl.start() begins a transfer and returns at once; nothing here waits.
-- Two ways to know when to step the engine (qwenvl.step()):
--   fd     qwenvl.fd() is a descriptor that is readable when transfers have
--          socket work: a vim.loop poll handle watches it, and a one-shot
--          timer fires at qwenvl.timeout_ms() (curl timers, retry back-off).
--   timer  no descriptor (a poll()-based engine returns nil from fd()), or
--          setup{ loop = "timer" }: a one-shot timer re-armed after every
--          step at timeout_ms(), but never later than tick_ms while busy.
-- Both stop when nothing is in flight, so an idle editor pays nothing.
--
-- Steps run in luv callbacks, where most of vim.api may not be called.
-- Text read from the handles is collected per job and handed to on_text /
-- on_done from one vim.schedule()d flush: however many chunks arrive
-- between two turns of the main loop, each job gets one on_text call, so a
-- fast stream cannot flood the editor with buffer updates.

local uv = vim.uv or vim.loop

local M = {}

local function report(what, err)
  vim.notify(("QwenVL: %s failed: %s"):format(what, tostring(err)), vim.log.levels.ERROR)
end

function M.new(q, opts)
  opts = opts or {}
  local tick_ms = opts.tick_ms or 15
  local jobs, n = {}, 0       -- transfers the loop still steps
  local undelivered = 0       -- jobs whose on_done has not run yet
  local dirty, flush_pending = {}, false
  local poll, polling = nil, false
  local timer = assert(uv.new_timer())
  local d = { mode = "timer" }

  local fd = opts.loop ~= "timer" and q.fd() or nil
  if type(fd) == "number" and fd >= 0 then
    poll = uv.new_poll(fd)
    if poll then d.mode, d.fd = "fd", fd end
  end

  local function flush()
    flush_pending = false
    local list = dirty
    dirty = {}
    for job in pairs(list) do
      if job.chunk then
        local text = job.chunk
        job.chunk = nil
        local ok, err = pcall(job.on_text, text, job)
        if not ok then report("on_text", err) end
      end
      if job.finished and not job.reported then
        job.reported = true
        undelivered = undelivered - 1
        local ok, err = pcall(job.on_done, job.res, job.err, job)
        if not ok then report("on_done", err) end
      end
    end
  end

  local function mark(job)
    dirty[job] = true
    if not flush_pending then
      flush_pending = true
      vim.schedule(flush)
    end
  end

  local function finish(job, res, err)
    jobs[job] = nil
    n = n - 1
    job.finished, job.res, job.err = true, res, err
    pcall(job.h.close, job.h)
    mark(job)
  end

  local function collect(job)
    local res, err = job.h:poll()
    local text = job.h:read()
    if text and text ~= "" then
      job.chunk = (job.chunk or "") .. text
      mark(job)
    end
    if res ~= "pending" then finish(job, res, err) end
  end

  local drive -- forward

  local function rearm()
    timer:stop()
    if n == 0 then
      if polling then poll:stop() polling = false end
      return
    end
    local ok, ms = pcall(q.timeout_ms)
    if not ok then ms = nil end
    if d.mode == "fd" then
      if not polling then
        poll:start("r", function() drive() end)
        polling = true
      end
      if ms then timer:start(math.max(ms, 1), 0, drive) end
    else
      timer:start(math.max(math.min(ms or tick_ms, tick_ms), 1), 0, drive)
    end
  end

  drive = function()
    local ok, err = pcall(function()
      q.step()
      for job in pairs(jobs) do collect(job) end
    end)
    if not ok then
      -- the engine itself failed: end every job with that error
      for job in pairs(jobs) do
        pcall(job.h.cancel, job.h)
        finish(job, nil, "qwenvl: engine error: " .. tostring(err))
      end
    end
    rearm()
  end

  --- Watch a handle from qwenvl.start(). Callbacks run on the main loop.
  function d:add(h, on_text, on_done, fields)
    local job = fields or {}
    job.h, job.on_text, job.on_done = h, on_text or function() end, on_done or function() end
    jobs[job] = true
    n = n + 1
    undelivered = undelivered + 1
    rearm()
    return job
  end

  function d:cancel(job)
    if not jobs[job] then return false end
    pcall(job.h.cancel, job.h)
    drive()
    return true
  end

  function d:cancel_all()
    local k = 0
    for job in pairs(jobs) do
      pcall(job.h.cancel, job.h)
      k = k + 1
    end
    if k > 0 then drive() end
    return k
  end

  --- Jobs not finished, or finished with on_done still to run.
  function d:count() return undelivered end

  function d:running()
    local list = {}
    for job in pairs(jobs) do list[#list + 1] = job end
    return list
  end

  --- Cancel everything and release the loop handles (VimLeavePre).
  function d:close()
    self:cancel_all()
    timer:stop()
    if not timer:is_closing() then timer:close() end
    if poll then
      poll:stop()
      if not poll:is_closing() then poll:close() end
    end
  end

  return d
end

return M
