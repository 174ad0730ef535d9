-- qwenvl.cli.smoke: `qwenvl smoke` (the smoke test: non-empty text from the expected model).
local c = require("qwenvl.cli.common")
local workflow = require("qwenvl.workflow")
local evidence = require("qwenvl.evidence")
local EXIT = c.EXIT
local say, note = c.say, c.note
local usage_error, input_error = c.usage_error, c.input_error

local M = { name = "smoke", summary = "the smoke test: non-empty text from the expected model" }

M.flags = { image = "string", prompt = "string", ["max-tokens"] = "number" }

M.help = [[
Usage: qwenvl smoke --image PATH [--model NAME] [--prompt TEXT] [options]

The original smoke test: ask about one image and check that the answer
text is non-empty and comes from the expected model. Prints
{"status":"pass","output":{...}} on success (exit 0), or
{"status":"fail",...} (exit 7 when a check fails, else the error's code).

Options:
  --image PATH        the image (required)
  --model NAME        expected model (default qwen3-vl-plus)
  --prompt TEXT       default "Describe this image in one sentence."
  --region R, --base-url URL, --max-retries N, --retry-backoff-s S, --timeout-s S
  --no-probe, --no-evidence, --evidence-dir DIR, --quiet

Examples:
  qwenvl smoke --image ./tmp/vl_test_cat.png
  qwenvl smoke --image ./tmp/vl_test_cat.png --model qwen3-vl-flash --region intl
]]

function M.run(flags, pos)
  if #pos > 0 then return nil, usage_error("smoke takes no arguments (use --image PATH)") end
  if not flags.image then return nil, usage_error("smoke needs --image PATH") end
  local req = {
    prompt = flags.prompt or "Describe this image in one sentence.",
    image = flags.image,
    model = flags.model or "qwen3-vl-plus",
  }
  c.apply_common(req, flags)
  local ok, ierr = c.check_images(req)
  if not ok then return nil, ierr end
  local result, path, werr = workflow.run(req, c.wf_opts(flags, "smoke"))
  if not result then
    say(c.json_out({ status = "fail", error = c.describe_error(path) }))
    return nil, path
  end
  if werr then note(flags, "warning: evidence not written: " .. tostring(werr)) end
  local output = { text = result.text, model = result.model, usage = result.usage,
                   request_id = result.request_id }
  local problems = {}
  if type(result.text) ~= "string" or not result.text:find("%S") then
    problems[#problems + 1] = "empty response text"
  end
  local m = tostring(result.model or "")
  if m ~= req.model and m:sub(1, #req.model + 1) ~= req.model .. "-" then
    problems[#problems + 1] = "unexpected model " .. m .. " (expected " .. req.model .. ")"
  end
  if #problems > 0 then
    say(c.json_out({ status = "fail", reason = table.concat(problems, "; "), output = output, record = path }))
    return nil, { verify = true, message = "smoke test failed: " .. table.concat(problems, "; ") }
  end
  say(c.json_out({ status = "pass", output = output, record = path }))
  return EXIT.ok
end

return M
