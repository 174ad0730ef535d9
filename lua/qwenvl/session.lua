-- qwenvl.session: a conversation about one or more images.
--
--   local s = require("qwenvl").session{ image = "shot.png", model = "qwen3-vl-plus" }
--   local res, err = s:ask("What is on the left?")
--   res, err = s:ask("And on the right?")          -- the image is not sent again encoded anew
--   for _, t in ipairs(s:history()) do print(t.role, t.text) end
--
-- Built on qwenvl.chat{messages = ...}: each ask sends the history plus
-- the new question and, on success, appends both (a failed turn leaves the
-- history as it was). Images are read, resized and encoded once, when
-- first given (qwenvl.image); later turns send the encoded form again. The
-- history is kept under max_history_tokens (estimated as chat_many's tpm
-- does: image tokens from the pixel size, text / 4): the oldest turns go
-- first, never the images of the first turn unless keep_first = false.
-- See docs/api.md ("qwenvl.session").

local M = {}

local core = require("qwenvl")

local Session = {}
Session.__index = Session

-- Fields of the session itself; every other field is a chat default.
local OWN = { image = true, images = true, system = true, max_history_tokens = true,
              keep_first = true }
-- Fields a turn may not override (they are what a session is).
local FIXED = { messages = true, prompt = true, image = true, images = true, system = true }
-- Image fields that decide the encoding (passed to qwenvl.image).
local IMAGE_OPTS = { "resize", "max_pixels", "max_side", "image_format", "quality",
                     "min_pixels", "max_input_pixels", "detail" }

local function list_of(image, images)
  local l = {}
  if image ~= nil then l[#l + 1] = image end
  if type(images) == "table" then for i = 1, #images do l[#l + 1] = images[i] end end
  return l
end

-- Encode each image once: {url, info}. Returns the list or nil, err.
local function encode(self, sources, field)
  local out = {}
  local opts = {}
  for _, k in ipairs(IMAGE_OPTS) do opts[k] = self.defaults[k] end
  for i, src in ipairs(sources) do
    if type(src) ~= "string" then
      return nil, core.error("invalid_request", field .. " must be a string or a list of strings",
        { field = field })
    end
    local im, err = core.image(src, opts)
    if not im then
      err.field = field
      return nil, err
    end
    out[i] = im
  end
  return out
end

--- qwenvl.session(opts) -> session, or nil, err when an image cannot be used.
function M.new(opts)
  if type(opts) ~= "table" then error("qwenvl.session: opts must be a table", 2) end
  local self = setmetatable({ defaults = {}, turns = {}, first = nil }, Session)
  for k, v in pairs(opts) do
    if not OWN[k] then self.defaults[k] = v end
  end
  if opts.system ~= nil and type(opts.system) ~= "string" then
    error("qwenvl.session: system must be a string", 2)
  end
  self.system = opts.system
  self.max_history_tokens = opts.max_history_tokens
  self.keep_first = opts.keep_first ~= false
  local imgs, err = encode(self, list_of(opts.image, opts.images), "image")
  if not imgs then return nil, err end
  self.pending = imgs          -- go with the first question
  return self
end

-- Rough token cost of a turn (chat_many's tpm estimate).
local function turn_tokens(t)
  local n = #(t.text or "") / 4
  for _, im in ipairs(t.images or {}) do n = n + (im.info.image_tokens or 2562) end
  return n
end

-- The message of a stored turn.
local function message(t)
  if t.role == "assistant" or #t.images == 0 then
    return { role = t.role, content = t.text }
  end
  local content = {}
  for _, im in ipairs(t.images) do
    content[#content + 1] = { type = "image_url", image_url = { url = im.url } }
  end
  content[#content + 1] = { type = "text", text = t.text }
  return { role = t.role, content = content }
end

-- The turns that fit the budget: oldest exchanges dropped first; the
-- first turn's images stay (its text may go) unless keep_first is false.
local function fitting(self, new_turn)
  local turns = self.turns
  if not self.max_history_tokens then return turns end
  local budget = self.max_history_tokens - turn_tokens(new_turn)
  local total = 0
  for _, t in ipairs(turns) do total = total + turn_tokens(t) end
  if total <= budget then return turns end
  local kept, drop = {}, 1
  while total > budget and drop <= #turns do
    total = total - turn_tokens(turns[drop])
    drop = drop + 1
  end
  if self.keep_first and drop > 1 and #turns[1].images > 0 then
    -- the picture the conversation is about stays, as a bare turn
    kept[1] = { role = "user", text = "(earlier turns omitted)", images = turns[1].images }
  end
  for i = drop, #turns do kept[#kept + 1] = turns[i] end
  return kept
end

-- The request for a new question (and the turn to store on success).
local function prepare(self, prompt, turn_opts)
  if type(prompt) ~= "string" then error("session:ask: prompt must be a string", 3) end
  turn_opts = turn_opts or {}
  if type(turn_opts) ~= "table" then error("session:ask: turn options must be a table", 3) end
  for k in pairs(turn_opts) do
    if FIXED[k] and k ~= "image" and k ~= "images" then
      error("session:ask: " .. k .. " is set by the session", 3)
    end
  end
  local extra, err = encode(self, list_of(turn_opts.image, turn_opts.images), "image")
  if not extra then return nil, err end
  local images = {}
  for _, im in ipairs(self.pending or {}) do images[#images + 1] = im end
  for _, im in ipairs(extra) do images[#images + 1] = im end
  local turn = { role = "user", text = prompt, images = images }
  local messages = {}
  if self.system then messages[1] = { role = "system", content = self.system } end
  for _, t in ipairs(fitting(self, turn)) do messages[#messages + 1] = message(t) end
  messages[#messages + 1] = message(turn)
  local req = { messages = messages }
  for k, v in pairs(self.defaults) do req[k] = v end
  for k, v in pairs(turn_opts) do
    if k ~= "image" and k ~= "images" then req[k] = v end
  end
  -- the client-side resize was applied when the images were encoded; the
  -- per-image limits (min_pixels, max_pixels) and detail still go along
  for _, k in ipairs({ "resize", "max_side", "image_format", "quality", "max_input_pixels" }) do
    req[k] = nil
  end
  return req, turn
end

-- The result describes the images as the caller gave them (the encoded
-- form's own info lists only what was sent).
local function settle(self, turn, res)
  self.turns[#self.turns + 1] = turn
  self.turns[#self.turns + 1] = { role = "assistant", text = res.text or "", images = {} }
  self.pending = nil
  local infos = {}
  for _, im in ipairs(turn.images) do infos[#infos + 1] = im.info end
  if #infos > 0 then res.images = infos end
end

--- s:ask(prompt [, turn_opts]) -> result or nil, err.
function Session:ask(prompt, turn_opts)
  local req, turn = prepare(self, prompt, turn_opts)
  if not req then return nil, turn end
  local res, err = core.chat(req)
  if not res then return nil, err end
  settle(self, turn, res)
  return res
end

-- A handle that appends the turn when it completes with a result.
local Turn = {}
Turn.__index = function(t, k)
  local m = Turn[k]
  if m then return m end
  local h = rawget(t, "h")
  local f = h[k]
  if type(f) == "function" then return function(self, ...) return f(self.h, ...) end end
  return f
end

local function finish(t, res, err)
  if res ~= "pending" and res and not t.settled then
    t.settled = true
    settle(t.session, t.turn, res)
  end
  return res, err
end

function Turn:poll() return finish(self, self.h:poll()) end
function Turn:wait(s) return finish(self, self.h:wait(s)) end

--- s:start(prompt [, turn_opts]) -> a handle as qwenvl.start's (the turn
-- is appended when it completes), or nil, err.
function Session:start(prompt, turn_opts)
  local req, turn = prepare(self, prompt, turn_opts)
  if not req then return nil, turn end
  local h, err = core.start(req)
  if not h then return nil, err end
  return setmetatable({ h = h, session = self, turn = turn }, Turn)
end

--- s:history() -> the turns: {role, text, images = {info...}} (no base64).
function Session:history()
  local out = {}
  for i, t in ipairs(self.turns) do
    local infos = {}
    for j, im in ipairs(t.images or {}) do infos[j] = im.info end
    out[i] = { role = t.role, text = t.text, images = infos }
  end
  return out
end

--- s:reset(): forget the turns (the images of the session are asked
-- about again with the next question).
function Session:reset()
  local first = self.turns[1]
  if first and #first.images > 0 and not self.pending then self.pending = first.images end
  self.turns = {}
end

return M
