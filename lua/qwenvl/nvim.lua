-- qwenvl.nvim: ask Qwen VL about images from Neovim without blocking it.
--
--   require("qwenvl.nvim").setup{ model = "qwen3-vl-plus" }   -- all optional
--   :QwenVL describe [file]   describe an image (default: the path under the
--                             cursor) in a new answer buffer
--   :QwenVL ask {prompt}      continue the conversation of this answer buffer,
--                             or about the image under the cursor (in its
--                             latest answer buffer, else a new one)
--   :QwenVL new [prompt]      start that conversation over (same buffer)
--   :QwenVL cancel            cancel every running request
--
-- The module is found next to this file (build/luajit/qwenvl.so after
-- `make LUA=luajit`; see qwenvl.nvim.loader) and loaded on the first
-- command, not at startup. Answers stream into a scratch buffer
-- (qwenvl.nvim.view); the requests run on Neovim's event loop
-- (qwenvl.nvim.driver). :help qwenvl has the whole story; :checkhealth
-- qwenvl says what is missing.
--
-- An answer buffer is a conversation: its view holds a qwenvl.session
-- (the history, and the images encoded once) and the image it is about.
-- A request is a job: a handle from the session's s:start(), the view it
-- writes into. The turn joins the history when its answer is complete (a
-- canceled or failed one does not), so one question at a time per buffer.

local loader = require("qwenvl.nvim.loader")
local view_mod = require("qwenvl.nvim.view")
local driver_mod = require("qwenvl.nvim.driver")

local M = {}

local DEFAULTS = {
  model = nil,            -- default: the module's (qwen3-vl-plus)
  api_key = nil,          -- default: DASHSCOPE_API_KEY, then ~/.alibabacloud/credentials
  base_url = nil,         -- default: DASHSCOPE_BASE_URL, else region
  region = nil,           -- cn | intl | us | hk (default: DASHSCOPE_REGION, else cn)
  stream = true,
  request = {},           -- any other request fields (max_tokens, detail, ...)
  describe_prompt = "Describe this image in detail.",
  split = "vsplit",       -- how an answer buffer opens: vsplit | split | tabnew | none
  loop = "auto",          -- auto (qwenvl.fd() if there is one, else a timer) | timer
  tick_ms = 15,           -- timer loop: longest wait between steps while busy
  module = nil,           -- explicit path to qwenvl.so (default: build/luajit/ here)
  json = "auto",          -- auto (lua-cjson, else Neovim's vim.json) | cjson
  health_probe = false,   -- :checkhealth qwenvl also asks the endpoint (GET /models)
}
local CHOICES = {
  split = { vsplit = true, split = true, tabnew = true, none = true },
  loop = { auto = true, timer = true },
  json = { auto = true, cjson = true },
}
local CONN = { "model", "api_key", "base_url", "region" }

M.KEY_FIX = "set DASHSCOPE_API_KEY in the environment Neovim starts from, "
  .. "or setup{ api_key = ... }, or add dashscope_api_key to ~/.alibabacloud/credentials; "
  .. "keys are per region, see :help qwenvl-keys"

local config = vim.deepcopy(DEFAULTS)
local qwenvl, driver
local views = {}            -- buf -> view (with .image and .job)

local function notify(msg, level)
  vim.notify(msg, level or vim.log.levels.ERROR)
end

local function fail(msg)
  notify(msg)
  return nil, msg
end

local KNOWN = { model = true, api_key = true, base_url = true, region = true, module = true }
for k in pairs(DEFAULTS) do KNOWN[k] = true end

local function check_option(k, v)
  if not KNOWN[k] then
    error(("qwenvl.nvim: setup: unknown option %q (see :help qwenvl-setup)"):format(tostring(k)), 3)
  end
  if CHOICES[k] and not CHOICES[k][v] then
    local list = vim.tbl_keys(CHOICES[k])
    table.sort(list)
    error(("qwenvl.nvim: setup: %s = %q; expected one of %s"):format(k, tostring(v),
      table.concat(list, ", ")), 3)
  end
  if k == "tick_ms" and not (type(v) == "number" and v >= 1) then
    error("qwenvl.nvim: setup: tick_ms must be a number >= 1", 3)
  end
  if k == "request" and type(v) ~= "table" then
    error("qwenvl.nvim: setup: request must be a table of request fields", 3)
  end
end

--- Configure (any time; later calls add to earlier ones). Checks that the
--- module is built and says what to run when it is not; loads nothing.
function M.setup(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("qwenvl.nvim: setup{} takes a table", 2) end
  for k, v in pairs(opts) do
    check_option(k, v)
    config[k] = v
  end
  if driver and driver:count() == 0 and (opts.loop or opts.tick_ms) then
    driver:close()     -- the next request starts one with the new loop settings
    driver = nil
  end
  if not qwenvl then
    local found, err = loader.find({ module = config.module })
    if not found then notify(err, vim.log.levels.WARN) end
  end
  return M
end

--- The current options (a copy).
function M.options()
  return vim.deepcopy(config)
end

--- Load qwenvl.so now (the first load costs ~10 ms of dynamic linking warm;
--- call this from a VimEnter autocmd to keep it off the first command).
--- Returns the module, or nil and a message that says what to do.
function M.load()
  if qwenvl then return qwenvl, loader.info() end
  local q, info = loader.load({ module = config.module, json = config.json })
  if not q then return nil, info end
  qwenvl = q
  return q, info
end

local function engine()
  local q, err = M.load()
  if not q then return nil, err end
  if not driver then
    driver = driver_mod.new(q, { loop = config.loop, tick_ms = config.tick_ms })
  end
  return q
end

--- The connection fields requests use (setup's, over setup{ request }).
function M.connection()
  local conn = {}
  for k, v in pairs(config.request or {}) do conn[k] = v end
  for _, k in ipairs(CONN) do
    if config[k] ~= nil then conn[k] = config[k] end
  end
  return conn
end

--- Where requests go and which key they use: qwenvl.config() of the
--- connection (never the key). nil, message when there is no key.
function M.target(q)
  local conn = M.connection()
  local cfg, err = q.config({ api_key = conn.api_key, base_url = conn.base_url,
                              region = conn.region })
  if not cfg then return nil, tostring(err) end
  if not cfg.has_key then return nil, "qwenvl: no DashScope API key; " .. M.KEY_FIX end
  return cfg
end

local function footer(res)
  local u = res.usage or {}
  local parts = { tostring(res.model), ("%.2f s"):format(res.elapsed_s or 0),
                  ("%s tokens"):format(tostring(u.total_tokens or "?")) }
  if res.finish_reason == "length" then parts[#parts + 1] = "cut at max_tokens" end
  return "_" .. table.concat(parts, ", ") .. "_"
end

local function on_text(text, job)
  if not job.streaming then
    job.streaming = true
    job.view:status("_streaming..._")
  end
  job.view:append(text)
end

local function on_done(res, err, job)
  job.view.job = nil
  if res then
    job.view:finish(res.text or "", footer(res))
  elseif type(err) == "table" and err.code == "canceled" then
    job.view:finish(job.view:text(), "_canceled_")
  else
    job.view:finish(job.view:text(), "**error** " .. tostring(err))
    notify("QwenVL: " .. tostring(err))
  end
  if job.callback then job.callback(res, err, job) end
end

-- A buffer title for an image: data: URLs are too long to show.
local function label(image)
  if type(image) == "table" then return ("%d images"):format(#image) end
  image = tostring(image)
  if image:sub(1, 5) == "data:" then
    return ("%s (%d bytes inline)"):format(image:match("^data:([^;,]*)") or "data", #image)
  end
  return image
end

-- Fields of M.run's spec that are not request fields (LOCAL), and those
-- a conversation sets once, when it starts (SESSION).
local LOCAL = { title = true, view = true, buf = true, on_done = true, prompt = true }
local SESSION = { image = true, images = true, system = true }

local function forget_closed()
  for b, v in pairs(views) do
    if not v:valid() then views[b] = nil end
  end
end

-- A conversation: the connection fields and setup's request fields as
-- every turn's defaults; the images are encoded here, once.
local function new_session(q, spec)
  local opts = M.connection()
  for k in pairs(SESSION) do
    if spec[k] ~= nil then opts[k] = spec[k] end
  end
  return q.session(opts)
end

--- Start a request and show it in a buffer; returns the job ({h, view,
--- image, prompt}) or nil, message. spec: prompt; image (or images) and
--- system for a new conversation; any request fields (this question only);
--- title; buf (an answer buffer whose conversation to continue: its
--- history and images go along; image/images then add images to this
--- question); on_done(res, err, job) on the main loop.
function M.run(spec)
  local q, err = engine()
  if not q then return fail(err) end
  if type(spec.prompt) ~= "string" or spec.prompt == "" then
    return fail("QwenVL: a request needs a prompt")
  end
  local _, kerr = M.target(q)
  if kerr then return fail(kerr) end
  forget_closed()
  local v = spec.view or (spec.buf and views[spec.buf == 0 and vim.api.nvim_get_current_buf() or spec.buf])
  if v and not v:valid() then v = nil end
  if spec.buf and not v then return fail("QwenVL: buffer " .. tostring(spec.buf) .. " is not an answer buffer") end
  if v and v.job then
    return fail("QwenVL: an answer is still arriving in this buffer; wait for it, or :QwenVL cancel")
  end
  local s = v and v.session
  local turn = { stream = config.stream }
  for k, val in pairs(spec) do
    if not LOCAL[k] and not SESSION[k] then turn[k] = val end
  end
  if s then
    turn.image, turn.images = spec.image, spec.images
  else
    local from = v and { image = v.image, images = v.images } or spec
    local serr
    s, serr = new_session(q, { image = from.image, images = from.images, system = spec.system })
    if not s then return fail(tostring(serr)) end
  end
  local ok, h, serr = pcall(s.start, s, spec.prompt, turn)
  if not ok then return fail("QwenVL: " .. tostring(h)) end
  if not h then return fail(tostring(serr)) end
  if not v then
    v = view_mod.open(spec.title or label(spec.image or spec.images), config.split)
    v.image, v.images = spec.image, spec.images
  else
    v:show(config.split)
  end
  v.session = s
  v:section(spec.prompt)
  v:status("_waiting..._")
  views[v.buf] = v
  local job = driver:add(h, on_text, on_done,
    { view = v, image = v.image or v.images, prompt = spec.prompt, callback = spec.on_done })
  v.job = job
  return job
end

--- The conversation of an answer buffer (default: the current one): its
--- turns as qwenvl.session's s:history() gives them ({role, text,
--- images}), {} before the first answer, nil for another buffer.
function M.history(buf)
  if buf == nil or buf == 0 then buf = vim.api.nvim_get_current_buf() end
  local v = views[buf]
  if not v or not v:valid() then return nil end
  return v.session and v.session:history() or {}
end

--- Cancel one job, or every running request; returns how many.
function M.cancel(job)
  if not driver then return 0 end
  if job then return driver:cancel(job) and 1 or 0 end
  return driver:cancel_all()
end

--- Requests in flight.
function M.in_flight()
  return driver and driver:count() or 0
end

--- What runs where: {loaded, module = {path, abi, source, json, version},
--- loop = "fd" | "timer" | nil (no request yet), fd, in_flight}.
function M.status()
  return { loaded = qwenvl ~= nil, module = loader.info(), loop = driver and driver.mode,
           fd = driver and driver.fd, in_flight = M.in_flight() }
end

--- Cancel everything and release the loop handles (on VimLeavePre).
function M.shutdown()
  if driver then driver:close() driver = nil end
end

-- The image to use: an explicit argument, else the path or URL under the
-- cursor (relative paths against the buffer's folder, then the cwd).
function M.image_at(arg)
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

-- The latest answer buffer about `image` (one image), or nil.
local function view_for(image)
  forget_closed()
  local best
  for b, v in pairs(views) do
    if v.image == image and not v.images and (not best or b > best.buf) then best = v end
  end
  return best
end

-- The conversation a command is about: the current answer buffer, else the
-- latest one about the image under the cursor. Returns view, image.
local function conversation()
  local here = views[vim.api.nvim_get_current_buf()]
  if here and here:valid() then return here end
  local image = M.image_at()
  if not image then return nil end
  return view_for(image), image
end

--- Start the conversation of an answer buffer over (the same image; a new
--- session, so earlier turns are not sent); with a prompt, ask it. Outside
--- an answer buffer: the latest one about the image under the cursor, or a
--- new one. Returns the view (or the job with a prompt), or nil, message.
function M.new(prompt)
  local v, image = conversation()
  if not v and not image then
    return fail("QwenVL: new: put the cursor on an image path or URL, or run it in an answer buffer")
  end
  if v and v.job then
    return fail("QwenVL: an answer is still arriving in this buffer; wait for it, or :QwenVL cancel")
  end
  if v then
    if v.session then v:mark("_new conversation_") end
    v.session = nil
    v:show(config.split)
  else
    local q, err = engine()
    if not q then return fail(err) end
    v = view_mod.open(label(image), config.split)
    v.image = image
    views[v.buf] = v
  end
  if prompt and prompt ~= "" then return M.run{ view = v, prompt = prompt } end
  return v
end

local USAGE = "QwenVL: describe [file] | ask {prompt} | new [prompt] | cancel"

function M.command(args)
  local sub, rest = args[1], table.concat(args, " ", 2)
  if sub == "describe" then
    local image = M.image_at(rest)
    if not image then
      return fail("QwenVL: no image: give a file (:QwenVL describe cat.png) or put the cursor on a path or URL")
    end
    return M.run{ image = image, prompt = config.describe_prompt }
  elseif sub == "ask" then
    if rest == "" then return fail("QwenVL: ask needs a prompt (:QwenVL ask what colour is the car?)") end
    local v, image = conversation()
    if v then return M.run{ view = v, prompt = rest } end
    if not image then return fail("QwenVL: put the cursor on an image path or URL") end
    return M.run{ image = image, prompt = rest }
  elseif sub == "new" then
    return M.new(rest)
  elseif sub == "cancel" then
    local n = M.cancel()
    notify(("QwenVL: canceled %d request%s"):format(n, n == 1 and "" or "s"), vim.log.levels.INFO)
    return n
  end
  return fail(USAGE)
end

M.SUBCOMMANDS = { "describe", "ask", "new", "cancel" }

return M
