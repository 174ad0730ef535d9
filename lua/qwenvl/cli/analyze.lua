-- qwenvl.cli.analyze: `qwenvl analyze` (ask about one or more images (probe, call, verify, record)).
local c = require("qwenvl.cli.common")
local workflow = require("qwenvl.workflow")
local evidence = require("qwenvl.evidence")
local EXIT = c.EXIT
local say, note = c.say, c.note
local usage_error, input_error = c.usage_error, c.input_error

local M = { name = "analyze", summary = "ask about one or more images (probe, call, verify, record)" }

M.flags = {
  request = "string", file = "string", ["json-mode"] = "flag", schema = "string",
  output = "string", ["print-response"] = "flag", image = "list", prompt = "string",
  ["max-tokens"] = "number", temperature = "number", detail = "string", system = "string",
  repair = "number", ["dry-run"] = "flag",
}

M.help = [[
Usage: qwenvl analyze [--request JSON | --file PATH] [--prompt TEXT] [--image PATH|URL]...
                      [--json-mode] [--schema PATH] [--print-response] [--output PATH] [options]

Probe the endpoint (read-only, once), send the request, verify the answer,
and save an evidence record under output/alicloud-ai-multimodal-qwen-vl/.

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
Endpoint:
  --region cn|intl|us|hk  --base-url URL
Workflow and output:
  --print-response        print the normalized result as JSON on stdout
                          (otherwise the answer text is printed)
  --output PATH           also save the normalized result JSON to PATH
  --repair N              repair attempts on schema violations (default 1)
  --no-probe              skip the read-only probe
  --no-evidence           do not write an evidence record
  --evidence-dir DIR      where records go
  --dry-run               build and print the request body; send nothing
  --quiet                 no progress notes on stderr, no answer text

Examples:
  qwenvl analyze --request '{"prompt":"Summarize the main content in this image","image":"https://example.com/demo.jpg"}' --print-response
  qwenvl analyze --request '{"prompt":"Extract key information from the image","image":"./samples/invoice.png","model":"qwen3-vl-plus"}' --print-response
  qwenvl analyze --request '{"prompt":"Extract fields: title, amount, date","image":"./samples/invoice.png"}' --json-mode --print-response
  qwenvl analyze --request '{"prompt":"Extract invoice fields","image":"./samples/invoice.png"}' --schema ./samples/invoice.schema.json --print-response
  qwenvl analyze --prompt "What is in this picture?" --image ./samples/invoice.png --region intl
]]

--- Build the analyze request from flags. Returns req or nil, err.
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
  if type(req) ~= "table" or require("qwenvl.schema").table_kind(req) == "array" then
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
    local s, err = require("qwenvl.schema").load(req.schema)
    if s == nil then return nil, input_error("request schema: " .. tostring(err)) end
    req.schema = s
  end
  if type(req.prompt) ~= "string" or req.prompt == "" then
    return nil, input_error("the request has no prompt")
  end
  local ok, ierr = c.check_images(req)
  if not ok then return nil, ierr end
  return req
end

function M.run(flags)
  local req, err = M.build_request(flags)
  if not req then return nil, err end
  c.secrets = { req.api_key }
  if flags["dry-run"] then
    local q = workflow.core()
    if type(q.prepare) ~= "function" then return nil, usage_error("--dry-run needs qwenvl.prepare") end
    local p, perr = q.prepare(req)
    if not p then return nil, perr end
    say(c.json_out({ url = p.url, body = p.body, images = p.images }))
    return EXIT.ok
  end
  local result, path, werr = workflow.run(req, c.wf_opts(flags, "analyze"))
  if not result then return nil, path end
  if werr then note(flags, "warning: evidence not written: " .. tostring(werr)) end
  local o = c.normalized_output(result, path)
  if flags["print-response"] then say(c.json_out(o))
  elseif not flags.quiet then say(result.text or "") end
  if flags.output then
    local ok, oerr = c.write_output(flags.output, o)
    if not ok then return nil, oerr end
  end
  if path then note(flags, "record: " .. path) end
  local v = result.verification
  if v and not v.ok then
    local n = v.attempts and #v.attempts or 1
    return nil, { verify = true, message = "verification failed after " .. n .. " attempt" .. (n == 1 and "" or "s")
      .. ": " .. table.concat(v.errors or {}, "; ") .. (path and (" [record " .. path .. "]") or "") }
  end
  return EXIT.ok
end

return M
