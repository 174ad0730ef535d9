-- qwenvl_nvim: ask Qwen-VL about images from Neovim without blocking it.
--
--   require("qwenvl_nvim").setup{
--     cpath = "/path/to/qwenvl/build/luajit/?.so",  -- where qwenvl.so is
--     model = "qwen3-vl-plus", stream = true,       -- any request fields:
--     request = { max_tokens = 512 },               --   api_key, base_url, ...
--   }
--   :QwenVL describe [file]    :QwenVL ask {prompt}    :QwenVL cancel
--
-- Neovim runs Lua 5.1 (LuaJIT): use the module built with `make LUA=luajit`
-- (it also loads in a PUC-5.1 Neovim). Alternatively put qwenvl.so in a
-- `lua/` folder on 'runtimepath'.
--
-- Event loop: qwenvl.start() begins a transfer; nothing waits. A vim.loop
-- poll handle watches qwenvl.fd() (an epoll fd that is readable when any
-- transfer has socket work) and a one-shot vim.loop timer fires at
-- qwenvl.timeout_ms() (curl timers, retry back-off). Either runs one
-- qwenvl.step() and polls the running handles. Both stop when nothing is in
-- flight, so an idle editor pays nothing. Buffer updates go through
-- vim.schedule (luv callbacks may not call most of vim.api).
local M = {}

local loop = vim.loop
local qwenvl
local jobs = {}          -- job -> true
local n_jobs = 0
local poll_handle, timer
local counter = 0

M.config = {
  cpath = nil,            -- extra package.cpath entry for qwenvl.so
  model = nil,
  stream = true,
  request = {},           -- extra request fields (api_key, base_url, ...)
  describe_prompt = "Describe this image in detail.",
  split = "vsplit",       -- how the scratch buffer opens: vsplit|split|tabnew|none
}

function M.setup(opts)
  for k, v in pairs(opts or {}) do M.config[k] = v end
  if M.config.cpath and not package.cpath:find(M.config.cpath, 1, true) then
    package.cpath = M.config.cpath .. ";" .. package.cpath
  end
  return M
end

local function engine()
  if not qwenvl then
    if M.config.cpath and not package.cpath:find(M.config.cpath, 1, true) then
      package.cpath = M.config.cpath .. ";" .. package.cpath
    end
    qwenvl = require("qwenvl")
  end
  return qwenvl
end

--- Load qwenvl.so now. The first load costs 0.05-0.25 s (dynamic linking
--- of libcurl/OpenSSL (and libvips when built with it) plus engine setup);
--- call this from your config (or a VimEnter autocmd) so the first
--- :QwenVL does not pay it.
function M.load()
  engine()
  return M
end

-- ---- scratch buffer ------------------------------------------------------

local function open_buffer(title)
  counter = counter + 1
  local buf = vim.api.nvim_create_buf(false, true)
  vim.api.nvim_buf_set_option(buf, "bufhidden", "hide")
  vim.api.nvim_buf_set_option(buf, "filetype", "markdown")
  pcall(vim.api.nvim_buf_set_name, buf, ("qwenvl://%d"):format(counter))
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, { "# " .. title, "", "_waiting..._" })
  if M.config.split ~= "none" then
    vim.cmd(M.config.split)
    vim.api.nvim_win_set_buf(0, buf)
  end
  return buf
end

local HEADER = 2  -- "# title", ""

local function show(job, body, footer)
  if not vim.api.nvim_buf_is_valid(job.buf) then return end
  local lines = vim.split(body, "\n", true)
  if footer then
    lines[#lines + 1] = ""
    lines[#lines + 1] = footer
  end
  vim.api.nvim_buf_set_lines(job.buf, HEADER, -1, false, lines)
end

-- ---- the driver ----------------------------------------------------------

local drive -- forward

local function stop_driver()
  if poll_handle then poll_handle:stop() end
  if timer then timer:stop() end
end

local function arm_timer()
  local ms = qwenvl.timeout_ms()
  timer:stop()
  if ms then timer:start(math.max(ms, 1), 0, drive) end
end

local function finish(job, res, err)
  jobs[job] = nil
  n_jobs = n_jobs - 1
  job.h:close()
  vim.schedule(function()
    if res then
      local u = res.usage or {}
      show(job, res.text or "", ("_%s, %.2f s, %s tokens_"):format(
        tostring(res.model), res.elapsed_s or 0, tostring(u.total_tokens or "?")))
    else
      show(job, job.text, "**error** " .. tostring(err))
    end
    if job.on_done then job.on_done(res, err, job) end
  end)
end

-- Runs in luv callbacks: no vim.api here except through vim.schedule.
drive = function()
  qwenvl.step()
  for job in pairs(jobs) do
    local res, err = job.h:poll()
    local text = job.h:read()
    if text then
      job.text = job.text .. text
      local snapshot = job.text
      vim.schedule(function() show(job, snapshot, "_streaming..._") end)
    end
    if res ~= "pending" then finish(job, res, err) end
  end
  if n_jobs == 0 then stop_driver() else arm_timer() end
end

local function start_driver()
  if not poll_handle then
    poll_handle = assert(loop.new_poll(qwenvl.fd()))
    timer = assert(loop.new_timer())
  end
  poll_handle:start("r", drive)
  arm_timer()
end

-- ---- requests ------------------------------------------------------------

--- Start a request; returns the job ({buf, h, text}) or nil, err.
--- opts: image, prompt, title, on_done(res, err, job), plus request fields.
function M.run(opts)
  local q = engine()
  local req = {}
  for k, v in pairs(M.config.request or {}) do req[k] = v end
  req.model = req.model or M.config.model
  req.stream = M.config.stream
  for k, v in pairs(opts) do
    if k ~= "title" and k ~= "on_done" then req[k] = v end
  end
  local h, err = q.start(req)
  if not h then
    vim.notify("QwenVL: " .. tostring(err), vim.log.levels.ERROR)
    return nil, err
  end
  local job = { h = h, text = "", on_done = opts.on_done }
  job.buf = open_buffer(opts.title or (req.prompt .. " (" .. tostring(req.image) .. ")"))
  jobs[job] = true
  n_jobs = n_jobs + 1
  start_driver()
  return job
end

function M.cancel_all()
  for job in pairs(jobs) do job.h:cancel() end
  if qwenvl and n_jobs > 0 then drive() end
end

function M.in_flight() return n_jobs end

-- The image to use: an explicit argument, else the path or URL under the
-- cursor (relative paths against the buffer's folder, then the cwd).
function M.image_at_cursor(arg)
  local p = arg
  if not p or p == "" then p = vim.fn.expand("<cfile>") end
  if not p or p == "" then return nil end
  if p:match("^https?://") or p:match("^data:") then return p end
  p = vim.fn.expand(p)
  local candidates = { p }
  local bufdir = vim.fn.expand("%:p:h")
  if bufdir ~= "" and p:sub(1, 1) ~= "/" then table.insert(candidates, 1, bufdir .. "/" .. p) end
  for _, c in ipairs(candidates) do
    if vim.fn.filereadable(c) == 1 then return vim.fn.fnamemodify(c, ":p") end
  end
  return nil
end

function M.command(args)
  local sub = args[1]
  if sub == "describe" then
    local image = M.image_at_cursor(table.concat(args, " ", 2))
    if not image then return vim.notify("QwenVL: no image file (give a path or put the cursor on one)", vim.log.levels.ERROR) end
    return M.run{ image = image, prompt = M.config.describe_prompt, title = "describe " .. image }
  elseif sub == "ask" then
    local prompt = table.concat(args, " ", 2)
    if prompt == "" then return vim.notify("QwenVL: ask needs a prompt", vim.log.levels.ERROR) end
    local image = M.image_at_cursor()
    if not image then return vim.notify("QwenVL: put the cursor on an image path or URL", vim.log.levels.ERROR) end
    return M.run{ image = image, prompt = prompt, title = prompt .. " (" .. image .. ")" }
  elseif sub == "cancel" then
    return M.cancel_all()
  end
  vim.notify("QwenVL: describe [file] | ask {prompt} | cancel", vim.log.levels.ERROR)
end

return M
