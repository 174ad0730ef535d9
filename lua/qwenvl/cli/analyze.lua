-- qwenvl.cli.analyze: `qwenvl analyze`, the Python script's command: ask
-- about one or more images (probe, call, verify, record).
local c = require("qwenvl.cli.common")
local workflow = require("qwenvl.workflow")
-- qwenvl.schema (and PCRE2 under it) loads when a schema is first used:
-- most runs have none, and a process per image pays for every module
local function schema_mod() return require("qwenvl.schema") end

-- what cjson.decode gives for a JSON array: number keys only
local function is_list(t)
  local n = 0
  for k in pairs(t) do
    if type(k) ~= "number" then return false end
    n = n + 1
  end
  return n > 0
end
local EXIT = c.EXIT
local say, note = c.say, c.note
local usage_error, input_error = c.usage_error, c.input_error

local M = { name = "analyze", summary = "ask about one or more images (probe, call, verify, record)" }

M.flags = c.with({
  request = "string", file = "string", ["json-mode"] = "flag", schema = "string",
  output = "string", ["print-response"] = "flag", image = "list", prompt = "string",
  ["max-tokens"] = "number", temperature = "number", detail = "string", system = "string",
  repair = "number", ["dry-run"] = "flag", verbose = "flag", probe = "flag",
}, c.RESIZE_FLAGS)

M.help = [[
Usage: qwenvl analyze [--request JSON | --file PATH] [--prompt TEXT] [--image PATH|URL]...
                      [--json-mode] [--schema PATH] [--print-response] [--output PATH] [options]

Probe the endpoint (read-only; a success is kept for 10 minutes), send the
request, verify the answer, and save an evidence record under
output/alicloud-ai-multimodal-qwen-vl/. Prints the answer text, or with
--print-response the result as one line of JSON.

Request:
  --request JSON          the request as JSON: prompt, image (URL, data: URL or
                          local path) or images, model, max_tokens, temperature,
                          detail, json_mode, schema, max_retries, retry_backoff_s
  --file PATH             read the request JSON from a file
  --prompt TEXT           the question (overrides the request's prompt)
  --image PATH|URL        an image; repeat for several (overrides the request's)
  --json-mode             ask for a JSON object (response_format json_object)
  --schema PATH           JSON Schema file: structured extraction, validated
                          locally, with a repair attempt on violations
  --model NAME            model (default qwen3-vl-plus)
  --max-tokens N, --temperature T, --detail auto|low|high, --system TEXT
  --max-retries N         retries on 429/5xx (default: the request's, else 2)
  --retry-backoff-s S     backoff base seconds (default: the request's, else 1.5)
  --timeout-s S, --connect-timeout-s S
Images (local files; URLs are sent as they are):
  --resize auto|off|always  shrink large images before upload (default auto)
  --max-pixels N, --max-side N   limits of the resized image
  --image-format jpeg|png|webp, --quality N   how a resized image is encoded
Endpoint:
  --region cn|intl|us|hk  --base-url URL
Workflow and output:
  --print-response        print the result as one line of JSON: text, model,
                          usage, json (with --json-mode/--schema), ...
                          (otherwise the answer text is printed)
  --verbose               with --print-response and --output: also the raw
                          response body and the request as sent
  --output PATH           also save the result JSON to PATH (folders created)
  --repair N              repair attempts on schema violations (default 1)
  --probe                 probe again now, not the verdict kept from before
  --no-probe              skip the read-only probe
  --no-evidence           do not write an evidence record
  --evidence-dir DIR      where records go
  --dry-run               build and print the request body; send nothing
  --quiet                 no progress notes on stderr, no answer text

The key: DASHSCOPE_API_KEY from the environment, else from ./.env, else
dashscope_api_key in ~/.alibabacloud/credentials. It is never printed.

Examples (from a checkout: examples/ holds sample.png and invoice.schema.json):
  qwenvl analyze --request '{"prompt":"Summarize the main content in this image","image":"https://example.com/demo.jpg"}' --print-response
  qwenvl analyze --request '{"prompt":"Extract key information from the image","image":"examples/sample.png","model":"qwen3-vl-plus"}' --print-response
  qwenvl analyze --request '{"prompt":"Extract fields: title, amount, date","image":"examples/sample.png"}' --json-mode --print-response
  qwenvl analyze --request '{"prompt":"Extract invoice fields","image":"examples/sample.png"}' --schema examples/invoice.schema.json --print-response
  qwenvl analyze --prompt "What is in this picture?" --image examples/sample.png --output output/answer.json
  qwenvl analyze --prompt "Read the text" --image examples/sample.png --resize always --max-side 512 --dry-run
  qwenvl analyze --prompt "What is in this picture?" --image examples/sample.png --region intl
]]

--- Build the analyze request from flags. Returns req or nil, err.
-- Images are not read here: the core checks them (qwenvl.prepare) before
-- anything is sent.
function M.build_request(flags)
  if flags.request and flags.file then
    return nil, usage_error("give --request or --file, not both")
  end
  if not flags.request and not flags.file and not flags.prompt then
    return nil, usage_error("a request is needed: --request JSON, --file PATH or --prompt TEXT (see qwenvl analyze --help)")
  end
  local req = {}
  if flags.file then
    local s, err = c.read_file(flags.file)
    if not s then return nil, input_error("cannot read request file " .. flags.file .. ": " .. tostring(err)) end
    local v, derr = c.decode_json(s, "request file " .. flags.file)
    if v == nil then return nil, derr end
    req = v
  elseif flags.request then
    local v, derr = c.decode_json(flags.request, "--request")
    if v == nil then return nil, derr end
    req = v
  end
  if type(req) ~= "table" or is_list(req) then
    return nil, input_error("the request must be a JSON object")
  end
  c.strip_nulls(req)
  if flags.prompt then req.prompt = flags.prompt end
  if flags.image then
    if #flags.image == 1 then req.image = flags.image[1]; req.images = nil
    else req.images = flags.image; req.image = nil end
  end
  c.apply_common(req, flags)
  if flags["json-mode"] then req.json_mode = true end
  if flags.schema then
    local s, err = c.load_schema_file(flags.schema)
    if s == nil then return nil, err end
    req.schema = s
  elseif type(req.schema) == "string" then
    local s, err = schema_mod().load(req.schema)
    if s == nil then return nil, input_error("request schema: " .. tostring(err)) end
    req.schema = s
  end
  if type(req.prompt) ~= "string" or req.prompt == "" then
    return nil, input_error("the request has no prompt")
  end
  return req
end

local function verification_error(v, path)
  local n = v.attempts and #v.attempts or 1
  return { verify = true, message = "verification failed after " .. n .. " attempt" .. (n == 1 and "" or "s")
    .. ": " .. table.concat(v.errors or {}, "; ") .. (path and (" [record " .. path .. "]") or "") }
end

function M.run(flags)
  local perr = c.check_probe_flags(flags)
  if perr then return nil, perr end
  local req, err = M.build_request(flags)
  if not req then return nil, err end
  c.secrets = req
  local q, lerr = c.core()
  if not q then return nil, lerr end
  if flags["dry-run"] then
    local p, derr = q.prepare(req)
    if not p then return nil, derr end
    say(c.json_out({ url = p.url, body = p.body, images = p.images }, true))
    return EXIT.ok
  end
  -- what can be refused is refused before anything is sent: the answer
  -- is paid for, and must have somewhere to go
  local ok, oerr = c.check_output(flags.output)
  if not ok then return nil, oerr end
  ok, oerr = c.check_evidence(flags)
  if not ok then return nil, oerr end

  local result, path, werr = workflow.run(req, c.wf_opts(flags, "analyze"))
  if not result then return nil, path end
  local o = c.normalized_output(result, path, flags.verbose)
  if flags["print-response"] then say(c.json_out(o))
  elseif not flags.quiet then say(result.text or "") end
  local failure
  if flags.output then
    local wok, wferr = c.write_output(flags.output, o)
    if not wok then failure = wferr end
  end
  if werr then
    failure = failure or { save = true, message = "the answer arrived but its record was not written: " .. tostring(werr) }
  end
  if path then note(flags, "record: " .. path) end
  if failure then return nil, failure end
  local v = result.verification
  if v and not v.ok then return nil, verification_error(v, path) end
  return EXIT.ok
end

return M
