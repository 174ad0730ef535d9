-- qwenvl.cli: the `qwenvl` command (bin/qwenvl is a small launcher).
--
--   local cli = require("qwenvl.cli")
--   local code = cli.main({"analyze", "--prompt", "...", "--image", "a.png"})
--
-- Exit codes: 0 success, 2 usage error, 3 bad input (file, schema,
-- request), 4 auth/permission, 5 rate limited after retries, 6 other API or
-- network failure, 7 schema verification failed.

local evidence = require("qwenvl.evidence")
local schema_mod = require("qwenvl.schema")
local workflow = require("qwenvl.workflow")
local cjson = require("cjson")
local NULL = cjson.null

local M = {}

M.EXIT = { ok = 0, usage = 2, input = 3, auth = 4, rate = 5, api = 6, verify = 7 }
local EXIT = M.EXIT

---------------------------------------------------------------------------
-- output

local out_stream, err_stream = io.stdout, io.stderr

local function scrub(s)
  return evidence.redact(s, M.secrets)
end

local function say(s) out_stream:write(scrub(s), "\n") end
local function note(opts, s)
  if opts and opts.quiet then return end
  err_stream:write(scrub(s), "\n")
end
local function fail_line(cmd, s)
  s = tostring(s):gsub("[\r\n]+", " ")
  err_stream:write(scrub("qwenvl " .. cmd .. ": " .. s), "\n")
end

local function json_out(v)
  return evidence.encode(evidence.redact(v, M.secrets), { indent = 2 })
end

---------------------------------------------------------------------------
-- errors

local function usage_error(msg) return { usage = true, message = msg } end
local function input_error(msg) return { input = true, message = msg } end

--- Exit code for an error from the core / workflow.
function M.exit_code(err)
  if type(err) ~= "table" then return EXIT.api end
  if err.usage then return EXIT.usage end
  if err.input then return EXIT.input end
  local c = err.code
  if c == "invalid_request" then return EXIT.input end
  if c == "auth" or err.status == 401 or err.status == 403 then return EXIT.auth end
  if c == "rate_limited" then return EXIT.rate end
  return EXIT.api
end

--- One readable line for an error.
function M.describe_error(err)
  if type(err) ~= "table" then return tostring(err) end
  if err.usage or err.input or err.verify then return tostring(err.message) end
  local head = tostring(err.code or "error")
  local bits = {}
  if err.status and err.status ~= NULL then bits[#bits + 1] = "HTTP " .. tostring(err.status) end
  if err.api_code and err.api_code ~= NULL and err.api_code ~= "" then bits[#bits + 1] = tostring(err.api_code) end
  if #bits > 0 then head = head .. " (" .. table.concat(bits, ", ") .. ")" end
  local s = head .. ": " .. tostring(err.message or "")
  if err.field and err.field ~= NULL then s = s .. " [field " .. tostring(err.field) .. "]" end
  if err.hint and not tostring(err.message or ""):find(err.hint, 1, true) then
    s = s .. " (hint: " .. err.hint .. ")"
  end
  if err.attempts and err.attempts ~= NULL and tonumber(err.attempts) and tonumber(err.attempts) > 1 then
    s = s .. " after " .. tostring(err.attempts) .. " attempts"
  end
  if err.request_id and err.request_id ~= NULL then s = s .. " [request_id " .. tostring(err.request_id) .. "]" end
  if err.record_path then s = s .. " [record " .. tostring(err.record_path) .. "]" end
  return (s:gsub("[\r\n]+", " "))
end

---------------------------------------------------------------------------
-- argument parsing

-- spec: name -> "flag" | "string" | "number" | "list"
local COMMON = {
  help = "flag", h = "flag", model = "string", region = "string", ["base-url"] = "string",
  quiet = "flag", ["no-evidence"] = "flag", ["evidence-dir"] = "string",
  ["no-probe"] = "flag", ["timeout-s"] = "number", ["connect-timeout-s"] = "number",
  ["max-retries"] = "number", ["retry-backoff-s"] = "number",
}

local SPECS = {
  analyze = {
    request = "string", file = "string", ["json-mode"] = "flag", schema = "string",
    output = "string", ["print-response"] = "flag", image = "list", prompt = "string",
    ["max-tokens"] = "number", temperature = "number", detail = "string", system = "string",
    repair = "number", ["dry-run"] = "flag",
  },
  probe = { json = "flag" },
  smoke = { image = "string", prompt = "string", ["max-tokens"] = "number" },
  batch = {
    prompt = "string", ["json-mode"] = "flag", schema = "string", output = "string",
    ["print-response"] = "flag", concurrency = "number", ["max-tokens"] = "number",
    temperature = "number", detail = "string", system = "string", repair = "number",
  },
}

--- Parse `args` for subcommand `cmd`. Returns flags, positionals or nil, err.
function M.parse(cmd, args)
  local spec = SPECS[cmd]
  local flags, pos = {}, {}
  local i = 1
  while i <= #args do
    local a = args[i]
    if a == "--" then
      for j = i + 1, #args do pos[#pos + 1] = args[j] end
      break
    end
    local name, val = a:match("^%-%-([%w%-]+)=(.*)$")
    if not name then name = a:match("^%-%-([%w%-]+)$") end
    if not name and a == "-h" then name = "h" end
    if name then
      local kind = spec[name] or COMMON[name]
      if not kind then return nil, usage_error("unknown option --" .. name .. " (see qwenvl " .. cmd .. " --help)") end
      if kind == "flag" then
        if val then return nil, usage_error("option --" .. name .. " takes no value") end
        flags[name] = true
      else
        if not val then
          i = i + 1
          val = args[i]
          if val == nil then return nil, usage_error("option --" .. name .. " needs a value") end
        end
        if kind == "number" then
          local n = tonumber(val)
          if not n then return nil, usage_error("option --" .. name .. " needs a number, got '" .. val .. "'") end
          flags[name] = n
        elseif kind == "list" then
          flags[name] = flags[name] or {}
          table.insert(flags[name], val)
        else
          flags[name] = val
        end
      end
    elseif a:sub(1, 1) == "-" and #a > 1 then
      return nil, usage_error("unknown option " .. a .. " (see qwenvl " .. cmd .. " --help)")
    else
      pos[#pos + 1] = a
    end
    i = i + 1
  end
  return flags, pos
end

---------------------------------------------------------------------------
-- input helpers

local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local s = f:read("*a")
  f:close()
  return s
end

local function is_remote(s)
  return type(s) == "string" and (s:match("^[Hh][Tt][Tt][Pp][Ss]?://") or s:match("^data:"))
end

local function file_exists(path)
  local f = io.open(path, "rb")
  if f then f:close(); return true end
  return false
end

local function strip_nulls(t)
  if type(t) ~= "table" then return t end
  for k, v in pairs(t) do if v == NULL then t[k] = nil end end
  return t
end

local function decode_json(s, what)
  local ok, v = pcall(cjson.decode, s)
  if not ok then return nil, input_error(what .. " is not valid JSON: " .. tostring(v)) end
  return v
end

local function load_schema_file(path)
  local s, err = read_file(path)
  if not s then return nil, input_error("cannot read schema file " .. path .. ": " .. tostring(err)) end
  local v, derr = decode_json(s, "schema file " .. path)
  if v == nil then return nil, derr end
  if type(v) ~= "table" and type(v) ~= "boolean" then
    return nil, input_error("schema file " .. path .. " must hold a JSON object")
  end
  return v
end

local function check_images(req)
  local list = {}
  if req.image ~= nil then list[#list + 1] = req.image end
  if type(req.images) == "table" then for _, i in ipairs(req.images) do list[#list + 1] = i end end
  for _, img in ipairs(list) do
    if type(img) == "string" and not is_remote(img) then
      if not file_exists(img) then
        return nil, input_error("image file not found: " .. img)
      end
    end
  end
  return true
end

-- shared request options from flags
local function apply_common(req, flags)
  local map = {
    model = "model", region = "region", ["base-url"] = "base_url",
    ["max-retries"] = "max_retries", ["retry-backoff-s"] = "retry_backoff_s",
    ["timeout-s"] = "timeout_s", ["connect-timeout-s"] = "connect_timeout_s",
    ["max-tokens"] = "max_tokens", temperature = "temperature", detail = "detail",
    system = "system",
  }
  for flag, field in pairs(map) do
    if flags[flag] ~= nil then req[field] = flags[flag] end
  end
end

local function wf_opts(flags, kind)
  return {
    probe = not flags["no-probe"],
    evidence = not flags["no-evidence"],
    evidence_dir = flags["evidence-dir"],
    repair = flags.repair,
    kind = kind,
    on_probe = function(p)
      if p.cached then return end
      note(flags, string.format("probe: ok (region %s, %s, %.3f s%s)", tostring(p.region),
        tostring(p.base_url), tonumber(p.latency_s) or 0,
        p.models and (", " .. p.models .. " models") or ""))
    end,
  }
end

local function normalized_output(result, path)
  local o = workflow.normalized(result)
  o.images = result.images
  o.verification = result.verification
  o.record = path
  o.base_url = result.base_url
  o.region = result.region
  return o
end

local function write_output(path, v)
  local ok, err = evidence.write_file(path, json_out(v) .. "\n")
  if not ok then return nil, input_error("cannot write --output " .. path .. ": " .. tostring(err)) end
  return true
end

---------------------------------------------------------------------------
-- help

M.HELP = {}

M.HELP.main = [[
Usage: qwenvl <command> [options]

Ask Qwen-VL vision models on Alibaba Cloud Model Studio (DashScope,
OpenAI-compatible mode) about images. The key comes from DASHSCOPE_API_KEY
or ~/.alibabacloud/credentials (dashscope_api_key); the region from
--region / DASHSCOPE_REGION (cn, intl, us, hk) or --base-url /
DASHSCOPE_BASE_URL.

Commands:
  analyze   ask about one or more images (probe, call, verify, record)
  probe     read-only check of key, region and endpoint
  smoke     the smoke test: non-empty text from the expected model
  batch     one prompt over a directory or list of images

Run 'qwenvl <command> --help' for options and examples.

Exit codes: 0 success, 2 usage error, 3 bad input (file, schema, request),
4 auth/permission, 5 rate limited after retries, 6 other API or network
failure, 7 schema verification failed.
]]

M.HELP.analyze = [[
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

M.HELP.probe = [[
Usage: qwenvl probe [--region cn|intl|us|hk] [--base-url URL] [--json] [options]

Read-only check of key, region and reachability (GET {base_url}/models;
a one-token chat where that is not available). Prints region, endpoint,
latency and a verdict. Exit 0 when the key is accepted, 4 when it is
rejected (a key from one region is rejected by another: check the
region/base URL), 5 when rate limited, 6 on network/API failure.

Options:
  --region R, --base-url URL, --timeout-s S, --connect-timeout-s S, --max-retries N
  --model NAME     model for the chat fallback
  --json           print the result as JSON
  --quiet          print only the verdict

Examples:
  qwenvl probe
  qwenvl probe --region intl
  qwenvl probe --base-url https://dashscope.aliyuncs.com/compatible-mode/v1 --json
]]

M.HELP.smoke = [[
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

M.HELP.batch = [[
Usage: qwenvl batch DIR|LIST --prompt TEXT [options]

Analyze many images with one prompt: every image file in DIR (png, jpg,
jpeg, webp, bmp, gif, tif, tiff, heic), or every line of the text file
LIST (paths relative to the list's directory, or URLs; blank lines and
#-comments are skipped). One probe, then the requests (concurrently when
the module has qwenvl.chat_many), one evidence record per image plus a
summary record. A progress line is shown on a terminal.

Options:
  --prompt TEXT           the question for every image (required)
  --concurrency N         parallel requests (default 4)
  --json-mode, --schema PATH, --repair N
  --model NAME, --max-tokens N, --temperature T, --detail D, --system TEXT
  --region R, --base-url URL, --max-retries N, --retry-backoff-s S, --timeout-s S
  --print-response        print the summary as JSON (default: one line per image)
  --output PATH           save the summary JSON to PATH
  --no-probe, --no-evidence, --evidence-dir DIR, --quiet

Exit code: 0 when every image succeeded, else the code of the first
failed image (in input order).

Examples:
  qwenvl batch ./samples --prompt "Describe this image in one sentence."
  qwenvl batch ./samples --prompt "Extract invoice fields" --schema ./samples/invoice.schema.json --concurrency 2
  qwenvl batch ./images.txt --prompt "Read the text" --print-response
]]

---------------------------------------------------------------------------
-- analyze

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
    local s, err = read_file(flags.file)
    if not s then return nil, input_error("cannot read request file " .. flags.file .. ": " .. tostring(err)) end
    local v, derr = decode_json(s, "request file " .. flags.file)
    if v == nil then return nil, derr end
    req = v
  elseif flags.request then
    local v, derr = decode_json(flags.request, "--request")
    if v == nil then return nil, derr end
    req = v
  end
  if type(req) ~= "table" or schema_mod.table_kind(req) == "array" then
    return nil, input_error("the request must be a JSON object")
  end
  strip_nulls(req)
  if flags.prompt then req.prompt = flags.prompt end
  if flags.image then
    if #flags.image == 1 then req.image = flags.image[1]; req.images = nil
    else req.images = flags.image; req.image = nil end
  end
  apply_common(req, flags)
  if flags["json-mode"] then req.json_mode = true end
  if flags.schema then
    local s, err = load_schema_file(flags.schema)
    if s == nil then return nil, err end
    req.schema = s
  elseif type(req.schema) == "string" then
    local s, err = schema_mod.load(req.schema)
    if s == nil then return nil, input_error("request schema: " .. tostring(err)) end
    req.schema = s
  end
  if type(req.prompt) ~= "string" or req.prompt == "" then
    return nil, input_error("the request has no prompt")
  end
  local ok, ierr = check_images(req)
  if not ok then return nil, ierr end
  return req
end

local function cmd_analyze(flags)
  local req, err = M.build_request(flags)
  if not req then return nil, err end
  M.secrets = { req.api_key }
  if flags["dry-run"] then
    local q = workflow.core()
    if type(q.prepare) ~= "function" then return nil, usage_error("--dry-run needs qwenvl.prepare") end
    local p, perr = q.prepare(req)
    if not p then return nil, perr end
    say(json_out({ url = p.url, body = p.body, images = p.images }))
    return EXIT.ok
  end
  local result, path, werr = workflow.run(req, wf_opts(flags, "analyze"))
  if not result then return nil, path end
  if werr then note(flags, "warning: evidence not written: " .. tostring(werr)) end
  local o = normalized_output(result, path)
  if flags["print-response"] then say(json_out(o))
  elseif not flags.quiet then say(result.text or "") end
  if flags.output then
    local ok, oerr = write_output(flags.output, o)
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

---------------------------------------------------------------------------
-- probe

local function cmd_probe(flags, pos)
  if #pos > 0 then return nil, usage_error("probe takes no arguments") end
  local popts = {}
  apply_common(popts, flags)
  local p, err = workflow.probe(popts)
  if not p then
    if flags.json then
      say(json_out({ ok = false, error = workflow.error_info(err) }))
    else
      local q = workflow.core()
      local cfg = type(q.config) == "function" and q.config(popts) or {}
      if not flags.quiet then
        say("region:   " .. tostring(cfg.region))
        say("endpoint: " .. tostring(cfg.base_url))
      end
      say("verdict:  FAIL (" .. tostring(err.code) .. ")")
    end
    return nil, err
  end
  if flags.json then
    say(json_out(p))
  else
    if not flags.quiet then
      say("region:   " .. tostring(p.region))
      say("endpoint: " .. tostring(p.base_url))
      say(string.format("latency:  %.3f s", tonumber(p.latency_s) or 0))
      if p.models then say("models:   " .. tostring(p.models)) end
      if p.key_source then say("key:      from " .. tostring(p.key_source)) end
    end
    say("verdict:  OK (key accepted, endpoint reachable, read-only " .. (p.method == "chat" and "chat" or "GET /models") .. ")")
  end
  return EXIT.ok
end

---------------------------------------------------------------------------
-- smoke

local function cmd_smoke(flags, pos)
  if #pos > 0 then return nil, usage_error("smoke takes no arguments (use --image PATH)") end
  if not flags.image then return nil, usage_error("smoke needs --image PATH") end
  local req = {
    prompt = flags.prompt or "Describe this image in one sentence.",
    image = flags.image,
    model = flags.model or "qwen3-vl-plus",
  }
  apply_common(req, flags)
  local ok, ierr = check_images(req)
  if not ok then return nil, ierr end
  local result, path, werr = workflow.run(req, wf_opts(flags, "smoke"))
  if not result then
    say(json_out({ status = "fail", error = M.describe_error(path) }))
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
    say(json_out({ status = "fail", reason = table.concat(problems, "; "), output = output, record = path }))
    return nil, { verify = true, message = "smoke test failed: " .. table.concat(problems, "; ") }
  end
  say(json_out({ status = "pass", output = output, record = path }))
  return EXIT.ok
end

---------------------------------------------------------------------------
-- batch

local IMAGE_EXT = { png = true, jpg = true, jpeg = true, webp = true, bmp = true, gif = true,
                    tif = true, tiff = true, heic = true }

--- The images of a batch: files in DIR, or lines of LIST. Returns list or nil, err.
function M.batch_images(target)
  if evidence.dir_exists(target) then
    local p = io.popen("ls -1A -- " .. evidence.shell_quote(target) .. " 2>/dev/null")
    if not p then return nil, input_error("cannot list " .. target) end
    local list = {}
    for name in p:lines() do
      local ext = name:match("%.([%w]+)$")
      if ext and IMAGE_EXT[ext:lower()] and name:sub(1, 1) ~= "." then
        list[#list + 1] = (target:gsub("/+$", "")) .. "/" .. name
      end
    end
    p:close()
    table.sort(list)
    if #list == 0 then return nil, input_error("no image files in " .. target) end
    return list
  end
  local s, err = read_file(target)
  if not s then return nil, input_error("cannot read " .. target .. ": " .. tostring(err)) end
  local base = target:match("^(.*)/[^/]*$")
  local list, missing = {}, {}
  for line in (s .. "\n"):gmatch("([^\n]*)\n") do
    line = line:gsub("\r$", ""):gsub("^%s+", ""):gsub("%s+$", "")
    if line ~= "" and line:sub(1, 1) ~= "#" then
      if not is_remote(line) and line:sub(1, 1) ~= "/" and base then line = base .. "/" .. line end
      if not is_remote(line) and not file_exists(line) then missing[#missing + 1] = line end
      list[#list + 1] = line
    end
  end
  if #missing > 0 then return nil, input_error("image file not found: " .. table.concat(missing, ", ")) end
  if #list == 0 then return nil, input_error("no images listed in " .. target) end
  return list
end

local function stderr_is_tty()
  local term = os.getenv("TERM")
  if not term or term == "" or term == "dumb" then return false end
  return evidence.exec_ok("test -t 2")
end

local function cmd_batch(flags, pos)
  if #pos ~= 1 then return nil, usage_error("batch needs one DIR or LIST (see qwenvl batch --help)") end
  if not flags.prompt then return nil, usage_error("batch needs --prompt TEXT") end
  local images, ierr = M.batch_images(pos[1])
  if not images then return nil, ierr end
  local schema
  if flags.schema then
    local s, serr = load_schema_file(flags.schema)
    if s == nil then return nil, serr end
    schema = s
  end
  local requests = {}
  for i, img in ipairs(images) do
    local r = { prompt = flags.prompt, image = img, schema = schema }
    if flags["json-mode"] then r.json_mode = true end
    apply_common(r, flags)
    requests[i] = r
  end
  local progress = stderr_is_tty() and not flags.quiet
  local done, nok, nfail = {}, 0, 0
  local function tick(i, ok)
    if done[i] then return end
    done[i] = true
    if ok then nok = nok + 1 else nfail = nfail + 1 end
    if progress then
      err_stream:write(string.format("\r\27[K[%d/%d] ok=%d failed=%d %s", nok + nfail, #requests, nok, nfail,
        tostring(images[i]):sub(-40)))
      err_stream:flush()
    end
  end
  local opts = wf_opts(flags, "batch-item")
  opts.concurrency = flags.concurrency or 4
  opts.on_chat_result = function(i, res) tick(i, res ~= nil) end
  opts.on_result = function(i, item)
    tick(i, item.result ~= nil and (item.result.verification == nil or item.result.verification.ok))
  end
  opts.summary_extra = { prompt = flags.prompt, source = pos[1] }
  local items, spath, summary = workflow.run_many(requests, opts)
  if progress then err_stream:write("\n") end
  if flags["print-response"] then
    say(json_out(summary))
  elseif not flags.quiet then
    for _, s in ipairs(summary.items) do
      local status = s.ok and "ok" or (s.error and ("error:" .. tostring(s.error.code)) or "invalid")
      local text = s.text and tostring(s.text):gsub("%s+", " "):sub(1, 100) or (s.error and s.error.message) or ""
      say(status .. "\t" .. tostring(s.image) .. "\t" .. text)
    end
  end
  if flags.output then
    local ok, oerr = write_output(flags.output, summary)
    if not ok then return nil, oerr end
  end
  if spath then note(flags, "summary: " .. spath) end
  note(flags, string.format("batch: %d ok, %d failed of %d", summary.ok, summary.failed, summary.total))
  for _, it in ipairs(items) do
    if it.err then return nil, it.err end
    local v = it.result and it.result.verification
    if v and not v.ok then
      return nil, { verify = true, message = "verification failed for " .. tostring(images[it.index]) }
    end
  end
  return EXIT.ok
end

---------------------------------------------------------------------------
-- main

local COMMANDS = { analyze = cmd_analyze, probe = cmd_probe, smoke = cmd_smoke, batch = cmd_batch }

--- Run the command line `args` (a list of strings). io: optional
-- {stdout=, stderr=} file handles. Returns the exit code.
function M.main(args, io_handles)
  args = args or {}
  out_stream = io_handles and io_handles.stdout or io.stdout
  err_stream = io_handles and io_handles.stderr or io.stderr
  M.secrets = {}
  local cmd = args[1]
  if cmd == nil then
    err_stream:write(M.HELP.main)
    return EXIT.usage
  end
  if cmd == "--help" or cmd == "-h" or cmd == "help" then
    local topic = args[2]
    out_stream:write(M.HELP[topic] or M.HELP.main)
    return EXIT.ok
  end
  if cmd == "--version" or cmd == "version" then
    local ok, q = pcall(workflow.core)
    out_stream:write("qwenvl " .. tostring(ok and type(q) == "table" and q.version or "?") .. "\n")
    return EXIT.ok
  end
  local fn = COMMANDS[cmd]
  if not fn then
    fail_line("", "unknown command '" .. tostring(cmd) .. "' (commands: analyze, probe, smoke, batch; see qwenvl --help)")
    return EXIT.usage
  end
  local rest = {}
  for i = 2, #args do rest[#rest + 1] = args[i] end
  local flags, pos = M.parse(cmd, rest)
  if not flags then
    fail_line(cmd, pos.message)
    return EXIT.usage
  end
  if flags.help or flags.h then
    out_stream:write(M.HELP[cmd])
    return EXIT.ok
  end
  local ok, code, err = pcall(fn, flags, pos)
  if not ok then
    fail_line(cmd, "internal error: " .. tostring(code))
    return EXIT.api
  end
  if code == nil then
    local e = err or {}
    fail_line(cmd, M.describe_error(e))
    if e.verify then return EXIT.verify end
    return M.exit_code(e)
  end
  out_stream:flush()
  return code
end

return M
