-- qwenvl.cli.common: what every `qwenvl` command shares: the output
-- streams, error values and exit codes, flag parsing, reading request and
-- schema files, and the workflow options that come from flags.
-- Each command is one module, lua/qwenvl/cli/<name>.lua, returning
-- {name, summary, help, flags, run(flags, positionals)}; lua/qwenvl/cli.lua
-- dispatches to them.

local evidence = require("qwenvl.evidence")
local workflow = require("qwenvl.workflow")
local sys = require("qwenvl.sys")
local cjson = require("cjson")
local NULL = cjson.null

local M = {}

-- 8: the answer arrived (and was paid for) but its record or --output
-- could not be written; 130: interrupted (Ctrl-C), what finished is kept
M.EXIT = { ok = 0, usage = 2, input = 3, auth = 4, rate = 5, api = 6, verify = 7, save = 8,
           interrupted = 130 }
local EXIT = M.EXIT

---------------------------------------------------------------------------
-- output (set by cli.main for each run)

M.out, M.err = io.stdout, io.stderr
-- what every line and file is scrubbed with (see evidence.redact): the
-- request of the command, once it is known
M.secrets = {}

local function scrub(s)
  return evidence.redact(s, M.secrets)
end
M.scrub = scrub

function M.say(s) M.out:write(scrub(s), "\n") end

function M.note(opts, s)
  if opts and opts.quiet then return end
  M.err:write(scrub(s), "\n")
end

function M.fail_line(cmd, s)
  s = tostring(s):gsub("[\r\n]+", " ")
  M.err:write(scrub("qwenvl " .. cmd .. ": " .. s), "\n")
end

--- JSON text of `v`, scrubbed, always valid UTF-8: one line, or indented
-- with `indent` (files).
function M.json_out(v, indent)
  return evidence.encode(evidence.redact(v, M.secrets), indent and { indent = 2 } or nil)
end

--- A path as one printable line (file names may hold newlines and tabs).
function M.printable(s)
  return (tostring(s):gsub("[%c\\]", function(ch)
    local map = { ["\n"] = "\\n", ["\t"] = "\\t", ["\r"] = "\\r", ["\\"] = "\\\\" }
    return map[ch] or string.format("\\x%02x", ch:byte())
  end))
end

--- Whether the stream `which` ("stdout" or "stderr") is a terminal.
function M.is_tty(which)
  local term = os.getenv("TERM")
  if not term or term == "" or term == "dumb" then return false end
  return sys.isatty(which == "stdout" and 1 or 2)
end

---------------------------------------------------------------------------
-- errors

function M.usage_error(msg) return { usage = true, message = msg } end
function M.input_error(msg) return { input = true, message = msg } end

--- Exit code for an error from the core / workflow.
function M.exit_code(err)
  if type(err) ~= "table" then return EXIT.api end
  if err.exit then return err.exit end
  if err.interrupted then return EXIT.interrupted end
  if err.usage then return EXIT.usage end
  if err.input then return EXIT.input end
  if err.save then return EXIT.save end
  if err.verify then return EXIT.verify end
  local c = err.code
  if c == "invalid_request" then return EXIT.input end
  if c == "auth" or err.status == 401 or err.status == 403 then return EXIT.auth end
  if c == "rate_limited" then return EXIT.rate end
  return EXIT.api
end

--- One readable line for an error.
function M.describe_error(err)
  if type(err) ~= "table" then return tostring(err) end
  if err.usage or err.input or err.verify or err.save or err.plain or err.interrupted then
    return tostring(err.message)
  end
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
M.COMMON_FLAGS = {
  help = "flag", h = "flag", model = "string", region = "string", ["base-url"] = "string",
  quiet = "flag", ["no-evidence"] = "flag", ["evidence-dir"] = "string",
  ["no-probe"] = "flag", ["timeout-s"] = "number", ["connect-timeout-s"] = "number",
  ["max-retries"] = "number", ["retry-backoff-s"] = "number",
}

--- Parse `args` against `spec` (the command's flags, then the common
-- ones; with `only`, the spec's alone). Returns flags, positionals or nil,
-- err.
function M.parse(cmd, spec, args, only)
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
      local kind = spec[name] or (not only and M.COMMON_FLAGS[name])
      if not kind then return nil, M.usage_error("unknown option --" .. name .. " (see qwenvl " .. cmd .. " --help)") end
      if kind == "flag" then
        if val then return nil, M.usage_error("option --" .. name .. " takes no value") end
        flags[name] = true
      else
        if not val then
          i = i + 1
          val = args[i]
          if val == nil then return nil, M.usage_error("option --" .. name .. " needs a value") end
        end
        if kind == "number" then
          local n = tonumber(val)
          if not n then return nil, M.usage_error("option --" .. name .. " needs a number, got '" .. val .. "'") end
          flags[name] = n
        elseif kind == "list" then
          flags[name] = flags[name] or {}
          table.insert(flags[name], val)
        else
          flags[name] = val
        end
      end
    elseif a:sub(1, 1) == "-" and #a > 1 then
      return nil, M.usage_error("unknown option " .. a .. " (see qwenvl " .. cmd .. " --help)")
    else
      pos[#pos + 1] = a
    end
    i = i + 1
  end
  return flags, pos
end

---------------------------------------------------------------------------
-- input helpers

M.read_file = evidence.read_file

function M.is_remote(s)
  return type(s) == "string" and (s:match("^[Hh][Tt][Tt][Pp][Ss]?://") or s:match("^data:"))
end

function M.file_exists(path)
  local f = io.open(path, "rb")
  if f then f:close(); return true end
  return false
end

function M.strip_nulls(t)
  if type(t) ~= "table" then return t end
  for k, v in pairs(t) do if v == NULL then t[k] = nil end end
  return t
end

function M.decode_json(s, what)
  local ok, v = sys.pcall(cjson.decode, s)
  if not ok then return nil, M.input_error(what .. " is not valid JSON: " .. tostring(v)) end
  return v
end

function M.load_schema_file(path)
  local s, err = M.read_file(path)
  if not s then return nil, M.input_error("cannot read schema file " .. path .. ": " .. tostring(err)) end
  local v, derr = M.decode_json(s, "schema file " .. path)
  if v == nil then return nil, derr end
  if type(v) ~= "table" and type(v) ~= "boolean" then
    return nil, M.input_error("schema file " .. path .. " must hold a JSON object")
  end
  return v
end

function M.check_images(req)
  local list = {}
  if req.image ~= nil then list[#list + 1] = req.image end
  if type(req.images) == "table" then for _, i in ipairs(req.images) do list[#list + 1] = i end end
  for _, img in ipairs(list) do
    if type(img) == "string" and not M.is_remote(img) then
      if not M.file_exists(img) then
        return nil, M.input_error("image file not found: " .. img)
      end
    end
  end
  return true
end

local IMAGE_EXT = { png = true, jpg = true, jpeg = true, webp = true, bmp = true, gif = true,
                    tif = true, tiff = true, heic = true, avif = true }

local function is_image_name(name)
  local ext = name:match("%.([%w]+)$")
  return ext ~= nil and IMAGE_EXT[ext:lower()] and name:sub(1, 1) ~= "."
end

--- The images of a batch (`qwenvl batch`, live or --batch-api): the image
-- files in DIR (listed without parsing `ls`: names may hold newlines), or
-- the lines of LIST. Returns the list (sorted for a folder, in order for a
-- list) or nil, err.
function M.batch_images(target)
  if sys.kind(target) == "directory" then
    local names, err = sys.list_dir(target)
    if not names then return nil, M.input_error("cannot list " .. target .. ": " .. tostring(err)) end
    local base = (target:gsub("/+$", ""))
    if base == "" then base = "/" end
    local list = {}
    for _, name in ipairs(names) do
      local path = (base == "/" and "" or base) .. "/" .. name
      if is_image_name(name) and sys.kind(path) == "file" then list[#list + 1] = path end
    end
    table.sort(list)
    if #list == 0 then return nil, M.input_error("no image files in " .. target) end
    return list
  end
  local s, err = M.read_file(target)
  if not s then return nil, M.input_error("cannot read " .. target .. ": " .. tostring(err)) end
  local base = target:match("^(.*)/[^/]*$")
  local list = {}
  for line in (s .. "\n"):gmatch("([^\n]*)\n") do
    line = line:gsub("\r$", ""):gsub("^%s+", ""):gsub("%s+$", "")
    if line ~= "" and line:sub(1, 1) ~= "#" then
      if not M.is_remote(line) and line:sub(1, 1) ~= "/" and base then line = base .. "/" .. line end
      list[#list + 1] = line
    end
  end
  if #list == 0 then return nil, M.input_error("no images listed in " .. target) end
  return list
end

-- request fields from flags, shared by every command that sends
local FIELD_OF_FLAG = {
  model = "model", region = "region", ["base-url"] = "base_url",
  ["max-retries"] = "max_retries", ["retry-backoff-s"] = "retry_backoff_s",
  ["timeout-s"] = "timeout_s", ["connect-timeout-s"] = "connect_timeout_s",
  ["max-tokens"] = "max_tokens", temperature = "temperature", detail = "detail",
  system = "system", resize = "resize", ["max-pixels"] = "max_pixels",
  ["max-side"] = "max_side", ["image-format"] = "image_format", quality = "quality",
}

-- the flags of image resizing, for the commands that send local images
M.RESIZE_FLAGS = {
  resize = "string", ["max-pixels"] = "number", ["max-side"] = "number",
  ["image-format"] = "string", quality = "number",
}

--- `flags` plus the entries of each extra table (for flag specs).
function M.with(flags, ...)
  local t = {}
  for k, v in pairs(flags) do t[k] = v end
  for _, extra in ipairs({ ... }) do
    for k, v in pairs(extra) do t[k] = v end
  end
  return t
end

function M.apply_common(req, flags)
  for flag, field in pairs(FIELD_OF_FLAG) do
    if flags[flag] ~= nil then req[field] = flags[flag] end
  end
end

--- nil, or a usage error when flag `name` is set and not an integer in
-- [lo, hi].
function M.check_integer(flags, name, lo, hi)
  local v = flags[name]
  if v == nil then return nil end
  if v ~= math.floor(v) or v < lo or v > hi then
    return M.usage_error(("--%s must be a whole number from %d to %d (got %s)"):format(
      name, lo, hi, tostring(v)))
  end
  return nil
end

--- The core module, or nil and an error saying why it does not load.
function M.core()
  local ok, q = sys.pcall(require, "qwenvl")
  if ok and type(q) == "table" then return q end
  return nil, { message = "cannot load the qwenvl module: " .. tostring(q):gsub("%s+", " ") }
end

--- Workflow options from flags. --probe forces a fresh probe; otherwise a
-- success is kept for ten minutes in the user's cache folder.
function M.wf_opts(flags, kind)
  local probe = true
  if flags["no-probe"] then probe = false elseif flags.probe then probe = "fresh" end
  return {
    probe = probe,
    probe_cache = true,
    evidence = not flags["no-evidence"],
    evidence_dir = flags["evidence-dir"],
    repair = flags.repair,
    kind = kind,
    on_probe = function(p) M.note(flags, M.probe_line(p)) end,
  }
end

--- One line about a probe.
function M.probe_line(p)
  local when = ""
  if p.cached then
    when = string.format(", kept from %s, %d s ago", tostring(p.probed_at), math.floor(tonumber(p.age_s) or 0))
  end
  return string.format("probe: ok (region %s, %s, %.3f s%s%s)", tostring(p.region),
    tostring(p.base_url), tonumber(p.latency_s) or 0,
    p.models and string.format(", %d models", p.models) or "", when)
end

--- Usage errors of --probe / --no-probe together.
function M.check_probe_flags(flags)
  if flags.probe and flags["no-probe"] then
    return M.usage_error("give --probe or --no-probe, not both")
  end
  return nil
end

--- What --print-response and --output hold: the Python script's keys
-- (text, model, usage, json when present) and the rest of the result;
-- the bulky raw body and request only with `verbose`.
function M.normalized_output(result, path, verbose)
  local o = workflow.normalized(result)
  o.images = result.images
  o.verification = result.verification
  o.record = path
  o.base_url = result.base_url
  o.region = result.region
  if verbose then
    o.raw = result.raw
    o.request = result.request
  end
  return o
end

--- Before anything is sent: --output PATH can be written (parents made).
function M.check_output(path)
  if not path then return true end
  local ok, err = evidence.check_file(path)
  if not ok then return nil, M.input_error("--output: " .. tostring(err)) end
  return true
end

--- Before anything is sent: records can be written (unless --no-evidence).
function M.check_evidence(flags)
  if flags["no-evidence"] then return true end
  local ok, err = evidence.check_dir(flags["evidence-dir"])
  if not ok then
    return nil, M.input_error(tostring(err) .. " (use --evidence-dir DIR, or --no-evidence)")
  end
  return true
end

--- Write --output PATH (atomically, indented JSON).
function M.write_output(path, v)
  local ok, err = evidence.write_file(path, M.json_out(v, true) .. "\n")
  if not ok then return nil, { save = true, message = "cannot write --output " .. path .. ": " .. tostring(err) } end
  return true
end

return M
