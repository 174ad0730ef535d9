-- qwenvl.cli.smoke: `qwenvl smoke` (the smoke test: non-empty text from the expected model).
local c = require("qwenvl.cli.common")
local workflow = require("qwenvl.workflow")
local EXIT = c.EXIT
local say, note = c.say, c.note
local usage_error = c.usage_error

local M = { name = "smoke", summary = "the smoke test: non-empty text from the expected model" }

M.flags = { image = "string", prompt = "string", ["max-tokens"] = "number", output = "string",
            probe = "flag" }

M.DEFAULT_OUTPUT = "output/alicloud-ai-multimodal-qwen-vl/smoke-test/result.json"

M.help = [[
Usage: qwenvl smoke --image PATH [--model NAME] [--prompt TEXT] [--output PATH] [options]

The original smoke test: ask about one image and check that the answer
text is non-empty and comes from the expected model. Saves the result to
--output (default output/alicloud-ai-multimodal-qwen-vl/smoke-test/result.json,
folders created) and prints {"status":"pass","output":"<that path>"}
(exit 0), or {"status":"fail",...} (exit 7 when a check fails, else the
error's code).

Options:
  --image PATH        the image (required)
  --model NAME        expected model (default qwen3-vl-plus)
  --prompt TEXT       default "Describe this image in one sentence."
  --output PATH       where the result goes
  --region R, --base-url URL, --max-retries N, --retry-backoff-s S, --timeout-s S
  --probe, --no-probe, --no-evidence, --evidence-dir DIR, --quiet

Examples (from a checkout: examples/sample.png is a small test image):
  qwenvl smoke --image examples/sample.png
  qwenvl smoke --image examples/sample.png --output output/smoke.json
  qwenvl smoke --image examples/sample.png --model qwen3-vl-flash --region intl
]]

function M.run(flags, pos)
  if #pos > 0 then return nil, usage_error("smoke takes no arguments (use --image PATH)") end
  if not flags.image then return nil, usage_error("smoke needs --image PATH") end
  local perr = c.check_probe_flags(flags)
  if perr then return nil, perr end
  local req = {
    prompt = flags.prompt or "Describe this image in one sentence.",
    image = flags.image,
    model = flags.model or "qwen3-vl-plus",
  }
  c.apply_common(req, flags)
  c.secrets = req
  local q, lerr = c.core()
  if not q then return nil, lerr end
  local output = flags.output or M.DEFAULT_OUTPUT
  local ok, oerr = c.check_output(output)
  if not ok then return nil, oerr end
  ok, oerr = c.check_evidence(flags)
  if not ok then return nil, oerr end
  local result, path, werr = workflow.run(req, c.wf_opts(flags, "smoke"))
  if not result then
    say(c.json_out({ status = "fail", error = c.describe_error(path) }))
    return nil, path
  end
  local problems = {}
  if type(result.text) ~= "string" or not result.text:find("%S") then
    problems[#problems + 1] = "empty response text"
  end
  local m = tostring(result.model or "")
  if m ~= req.model and m:sub(1, #req.model + 1) ~= req.model .. "-" then
    problems[#problems + 1] = "unexpected model " .. m .. " (expected " .. req.model .. ")"
  end
  local saved = c.normalized_output(result, path)
  saved.status = #problems == 0 and "pass" or "fail"
  saved.reason = #problems > 0 and table.concat(problems, "; ") or nil
  saved.expected_model = req.model
  local wok, wferr = c.write_output(output, saved)
  if not wok then
    say(c.json_out({ status = "fail", error = wferr.message }))
    return nil, wferr
  end
  if werr then
    say(c.json_out({ status = "fail", output = output, error = "record not written: " .. tostring(werr) }))
    return nil, { save = true, message = "the answer arrived but its record was not written: " .. tostring(werr) }
  end
  if path then note(flags, "record: " .. path) end
  if #problems > 0 then
    say(c.json_out({ status = "fail", reason = table.concat(problems, "; "), output = output, record = path }))
    return nil, { verify = true, message = "smoke test failed: " .. table.concat(problems, "; ") }
  end
  say(c.json_out({ status = "pass", output = output }))
  return EXIT.ok
end

return M
