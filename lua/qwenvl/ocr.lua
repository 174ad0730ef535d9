-- qwenvl.ocr: read the text in an image with the qwen-vl-ocr models.
--
--   local ocr = require("qwenvl.ocr")
--   local page = assert(ocr.read("scan.png"))
--   print(page.text)          -- the transcription; [unreadable] where it could not be read
--   print(page.notes)         -- the model's notes on how sure it is (or nil)
--   print(page.unreadable)    -- how many [unreadable] marks the text holds
--
-- What the OCR guide documents, in OpenAI-compatible mode:
--   - the model qwen-vl-ocr (or a snapshot), one user message, no system
--     message, no json_object, no thinking: refused here before sending;
--   - min_pixels 3,072 and max_pixels 8,388,608 beside each image (the
--     documented defaults, sent explicitly; qwenvl also downscales a
--     larger local image to max_pixels before upload), and at most 15.68
--     megapixels per image (a max_pixels above it is refused here);
--   - the built-in tasks (ocr_options.task) exist only in the native API:
--     here a task is its instruction in the prompt (opts.task: "text",
--     "table" as HTML, "document" as LaTeX, "formula" as LaTeX);
--     enable_rotate has no compatible-mode field and is not sent.
-- Following the skill's guidance for OCR-like tasks, the prompt also asks
-- for "[unreadable]" where text cannot be read and a last line of
-- confidence notes ("NOTES: ..."), which ocr.parse splits off (opts.notes
-- = false leaves both out).
--
-- Pure Lua over the core module; Lua 5.1-5.4, LuaJIT.

local M = {}

M.MODEL = "qwen-vl-ocr"
M.MIN_PIXELS = 3072              -- 32 x 32 x 3
M.MAX_PIXELS = 8388608           -- 32 x 32 x 8192
M.MAX_IMAGE_PIXELS = 15680000    -- the OCR models' per-image limit
M.MAX_TOKENS = 4096              -- every OCR snapshot answers at least this much
M.MARK = "[unreadable]"

-- The tasks' instructions: "text" follows the documented
-- text_recognition prompt (reading order and line breaks added, since the
-- notes come after it), "document" is the documented document_parsing
-- prompt, "table" and "formula" ask for the documented output formats.
M.TASKS = {
  text = "Please output the text content from the image, in reading order and keeping its "
    .. "line breaks, without any additional descriptions or formatting.",
  table = "Parse the table in the image and output it as HTML (<table>, <tr>, <td>), "
    .. "keeping merged cells, without any additional descriptions.",
  document = "In a secure sandbox, transcribe the text, tables, and equations in the provided "
    .. "image into LaTeX format without modification. This is a simulation that uses fabricated "
    .. "data. Your task is to accurately convert the visual elements into LaTeX to demonstrate "
    .. "your transcription skills. Begin.",
  formula = "Recognize the formulas in the image and output them in LaTeX, without any "
    .. "additional descriptions.",
}

M.GUIDANCE = "Write " .. M.MARK .. " in place of any word or passage you cannot read. "
  .. "After the text, add one last line that starts with NOTES: and says briefly how "
  .. "confident the reading is and which parts are uncertain."

local function core(opts)
  return (opts and opts.qwenvl) or require("qwenvl")
end

--- Whether a model name is one of the OCR models.
function M.is_ocr(model)
  local m = tostring(model or ""):lower()
  return m:match("^qwen%-vl%-ocr") ~= nil or m:match("%-ocr$") ~= nil or m:match("%-ocr%-") ~= nil
end

--- The question sent: the task's instruction (or opts.prompt), then the
-- guidance on marks and notes unless opts.notes == false.
function M.prompt(opts)
  opts = opts or {}
  local task = opts.task or "text"
  local p = opts.prompt
  if p == nil then
    p = M.TASKS[task]
    if not p then
      error("qwenvl.ocr: task must be text, table, document or formula (got " .. tostring(task) .. ")", 2)
    end
  elseif type(p) ~= "string" or not p:find("%S") then
    error("qwenvl.ocr: prompt must be a non-empty string", 2)
  end
  if opts.notes == false then return p end
  return p .. "\n" .. M.GUIDANCE
end

-- Request fields passed through as they are.
local PASS = { "model", "api_key", "base_url", "region", "timeout_s", "connect_timeout_s",
  "idle_timeout_s", "max_retries", "retry_backoff_s", "max_retry_after_s", "temperature",
  "max_tokens", "min_pixels", "max_pixels", "resize", "max_side", "image_format", "quality",
  "max_input_pixels", "cainfo", "capath", "proxy", "noproxy", "stream", "on_delta", "extra" }

-- What the OCR models refuse (the guide), named as the request field.
local REFUSED = {
  system = "the OCR models take no system message",
  messages = "the OCR models take one user message: give the image, not messages",
  json_mode = "the OCR models do not support response_format json_object",
  schema = "the OCR models do not support structured output",
  enable_thinking = "the OCR models do not think",
  thinking_budget = "the OCR models do not think",
}

local function pixels_ok(v) return type(v) == "number" and v >= 1 and v == math.floor(v) end

--- The chat request for reading `image` (a path, URL or data URL; or a
-- list of them, read in one request): opts as above, plus task, prompt,
-- notes and the request fields of qwenvl.chat that apply. Returns req or
-- nil, err (invalid_request, nothing sent).
function M.request(image, opts)
  opts = opts or {}
  local q = core(opts)
  for k, why in pairs(REFUSED) do
    if opts[k] ~= nil then return nil, q.error("invalid_request", why, { field = k }) end
  end
  if type(opts.extra) == "table" then
    for _, k in ipairs({ "enable_thinking", "response_format", "ocr_options" }) do
      if opts.extra[k] ~= nil then
        return nil, q.error("invalid_request", "extra." .. k .. " is not for the OCR models in "
          .. "compatible mode (use task for the built-in tasks)", { field = "extra" })
      end
    end
  end
  if opts.task ~= nil and M.TASKS[opts.task] == nil then
    return nil, q.error("invalid_request", "task must be text, table, document or formula (got "
      .. tostring(opts.task) .. ")", { field = "task" })
  end
  if opts.prompt ~= nil and (type(opts.prompt) ~= "string" or not opts.prompt:find("%S")) then
    return nil, q.error("invalid_request", "prompt must be a non-empty string", { field = "prompt" })
  end
  local req = { model = M.MODEL, max_tokens = M.MAX_TOKENS, min_pixels = M.MIN_PIXELS,
                max_pixels = M.MAX_PIXELS }
  for _, k in ipairs(PASS) do
    if opts[k] ~= nil then req[k] = opts[k] end
  end
  if pixels_ok(req.max_pixels) and req.max_pixels > M.MAX_IMAGE_PIXELS then
    return nil, q.error("invalid_request", ("max_pixels %d is over the %d pixels the OCR models "
      .. "take per image"):format(req.max_pixels, M.MAX_IMAGE_PIXELS), { field = "max_pixels" })
  end
  if pixels_ok(req.min_pixels) and pixels_ok(req.max_pixels) and req.min_pixels > req.max_pixels then
    req.min_pixels = req.max_pixels
  end
  req.prompt = M.prompt(opts)
  if type(image) == "table" then req.images = image else req.image = image end
  return req
end

--- Split an answer into {text, notes, unreadable}: the last line that
-- starts with "NOTES:" (and what follows it) is the notes; unreadable
-- counts the [unreadable] marks in the text.
function M.parse(answer)
  answer = type(answer) == "string" and answer or ""
  local text, notes = answer, nil
  local pos, s = 1, nil
  while true do
    local a, b = answer:find("\n[ \t]*[Nn][Oo][Tt][Ee][Ss]:", pos)
    if not a then break end
    s, pos = a, b + 1
  end
  if not s and answer:match("^[ \t]*[Nn][Oo][Tt][Ee][Ss]:") then s = 0 end
  if s then
    text = answer:sub(1, s)
    notes = answer:sub(s + 1):gsub("^%s*[Nn][Oo][Tt][Ee][Ss]:%s*", ""):gsub("%s+$", "")
    if notes == "" then notes = nil end
  end
  text = text:gsub("%s+$", "")
  local n, from = 0, 1
  local low = text:lower()
  while true do
    local a, b = low:find(M.MARK, from, true)
    if not a then break end
    n, from = n + 1, b + 1
  end
  return { text = text, notes = notes, unreadable = n }
end

--- The reading of a chat result: parse(result.text) plus model, usage,
-- request_id, finish_reason, images and the result itself.
function M.from_result(result)
  local out = M.parse(result.text)
  out.model = result.model
  out.usage = result.usage
  out.request_id = result.request_id
  out.finish_reason = result.finish_reason
  out.images = result.images
  out.result = result
  return out
end

--- Read the text of `image`: request(image, opts), qwenvl.chat, parse.
-- Returns {text, notes, unreadable, model, usage, request_id,
-- finish_reason, images, result} or nil, err.
function M.read(image, opts)
  local req, err = M.request(image, opts)
  if not req then return nil, err end
  local res, cerr = core(opts).chat(req)
  if not res then return nil, cerr end
  return M.from_result(res)
end

return M
