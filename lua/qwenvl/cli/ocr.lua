-- qwenvl.cli.ocr: `qwenvl ocr FILE...`: read the text in pictures with
-- the qwen-vl-ocr models (see qwenvl.ocr), as plain text or JSON lines.
local c = require("qwenvl.cli.common")
local workflow = require("qwenvl.workflow")
local ocr = require("qwenvl.ocr")
local EXIT = c.EXIT
local say, note = c.say, c.note
local usage_error, input_error = c.usage_error, c.input_error

local M = { name = "ocr", summary = "read the text in pictures (qwen-vl-ocr): plain text or JSON" }

M.flags = {
  json = "flag", task = "string", prompt = "string", ["no-notes"] = "flag",
  ["min-pixels"] = "number", ["max-pixels"] = "number", ["max-tokens"] = "number",
  temperature = "number", resize = "string", ["max-side"] = "number",
  ["image-format"] = "string", quality = "number", probe = "flag",
}

M.help = [[
Usage: qwenvl ocr FILE... [--json] [--task text|table|document|formula] [options]

Read the text in each picture (a local file or an http(s) URL; one
request per picture) with Qwen-OCR, as its guide documents for the
OpenAI-compatible mode: model qwen-vl-ocr, min_pixels 3,072 and
max_pixels 8,388,608 sent beside the image (a larger local picture is
downscaled to max_pixels first), at most 15.68 megapixels, one user
message without a system prompt. The built-in tasks of the native API
are asked for by their instructions (--task). The model is asked to
write [unreadable] where it cannot read and to end with a line of
confidence notes (NOTES: ...), which is split off.

Prints the text (several pictures: each under a "==> FILE <==" line);
the notes go to stderr. With --json, one line of JSON per picture:
  {"file":...,"text":...,"notes":...,"unreadable":N,"model":...,"usage":{...},
   "request_id":...,"record":...}
or {"file":...,"error":...} for a picture that failed.

Options:
  --json              JSON lines instead of text
  --task T            text (default), table (HTML), document (LaTeX),
                      formula (LaTeX)
  --prompt TEXT       your own instruction instead of the task's
  --no-notes          do not ask for [unreadable] marks and notes
  --model NAME        default qwen-vl-ocr (a snapshot: qwen-vl-ocr-2025-11-20)
  --min-pixels N, --max-pixels N   the scaling limits (defaults 3072, 8388608;
                      at most 15680000)
  --max-tokens N      default 4096; --temperature T
  --resize auto|off|always, --max-side N, --image-format F, --quality N
  --region R, --base-url URL, --max-retries N, --retry-backoff-s S, --timeout-s S
  --probe, --no-probe, --no-evidence, --evidence-dir DIR, --quiet

Exit codes: 0 every picture read, 2 usage, 3 bad input (no such file, a
refused option), 4-6 as for analyze (the first failure's); the other
pictures are still read.

Examples (from a checkout: examples/sample.png is a small test image):
  qwenvl ocr examples/sample.png
  qwenvl ocr examples/sample.png --json
  qwenvl ocr examples/sample.png --task table --no-notes
  qwenvl ocr examples/sample.png --model qwen-vl-ocr-2025-11-20 --json --region intl
]]

local FIELD_OF_FLAG = {
  task = "task", prompt = "prompt", ["min-pixels"] = "min_pixels", ["max-pixels"] = "max_pixels",
  ["max-tokens"] = "max_tokens", temperature = "temperature", resize = "resize",
  ["max-side"] = "max_side", ["image-format"] = "image_format", quality = "quality",
  model = "model", region = "region", ["base-url"] = "base_url", ["max-retries"] = "max_retries",
  ["retry-backoff-s"] = "retry_backoff_s", ["timeout-s"] = "timeout_s",
  ["connect-timeout-s"] = "connect_timeout_s",
}

local function options(flags)
  local o = {}
  for flag, field in pairs(FIELD_OF_FLAG) do
    if flags[flag] ~= nil then o[field] = flags[flag] end
  end
  if flags["no-notes"] then o.notes = false end
  return o
end

local function check(flags, pos)
  if #pos == 0 then return usage_error("ocr needs at least one FILE (see qwenvl ocr --help)") end
  if flags.task and not ocr.TASKS[flags.task] then
    return usage_error("--task must be text, table, document or formula (got " .. flags.task .. ")")
  end
  if flags.prompt and not flags.prompt:find("%S") then return usage_error("--prompt must not be empty") end
  for _, f in ipairs(pos) do
    if not c.is_remote(f) and not c.file_exists(f) then return input_error("image file not found: " .. f) end
  end
  return c.check_integer(flags, "max-tokens", 1, 131072)
    or c.check_integer(flags, "min-pixels", 1, 1e10) or c.check_integer(flags, "max-pixels", 1, 1e10)
    or c.check_probe_flags(flags)
end

function M.run(flags, pos)
  local uerr = check(flags, pos)
  if uerr then return nil, uerr end
  local opts = options(flags)
  local _, lerr = c.core()
  if lerr then return nil, lerr end
  -- every request is built (and what the OCR models refuse, refused)
  -- before anything is sent; each image is read when its turn comes
  local reqs = {}
  for i, f in ipairs(pos) do
    local req, err = ocr.request(f, opts)
    if not req then return nil, input_error(tostring(err.message)) end
    reqs[i] = req
  end
  c.secrets = reqs[1]
  local ok, oerr = c.check_evidence(flags)
  if not ok then return nil, oerr end
  local first_err, failed = nil, 0
  local wopts = c.wf_opts(flags, "ocr")
  for i, f in ipairs(pos) do
    local result, path, werr = workflow.run(reqs[i], wopts)
    wopts.probe = wopts.probe and true   -- "fresh" once: the others reuse it
    if not result then
      first_err, failed = first_err or path, failed + 1
      if flags.json then
        say(c.json_out({ file = f, error = c.describe_error(path) }))
      elseif #pos > 1 then
        c.fail_line("ocr", c.printable(f) .. ": " .. c.describe_error(path))
      end
    else
      local page = ocr.from_result(result)
      if flags.json then
        say(c.json_out({ file = f, text = page.text, notes = page.notes, unreadable = page.unreadable,
                         model = page.model, usage = page.usage, request_id = page.request_id,
                         finish_reason = page.finish_reason, record = path }))
      else
        if #pos > 1 then say("==> " .. c.printable(f) .. " <==") end
        say(page.text)
        if page.notes then note(flags, "notes: " .. page.notes) end
      end
      if page.finish_reason == "length" then
        note(flags, c.printable(f) .. ": the answer was cut at --max-tokens")
      end
      if path then note(flags, "record: " .. path) end
      if werr then
        first_err, failed = first_err or { save = true, message = "the answer arrived but its "
          .. "record was not written: " .. tostring(werr) }, failed + 1
      end
    end
  end
  c.out:flush()
  if not first_err then return EXIT.ok end
  if #pos == 1 then return nil, first_err end
  return nil, { plain = true, exit = c.exit_code(first_err), message = ("%d of %d pictures "
    .. "failed (the first: %s)"):format(failed, #pos, c.describe_error(first_err)) }
end

return M
