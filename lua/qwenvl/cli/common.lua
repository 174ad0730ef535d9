-- qwenvl.cli.common: what every `qwenvl` command shares: the output
-- streams, error values and exit codes, flag parsing, reading request and
-- schema files, and the workflow options that come from flags.
-- Each command is one module, lua/qwenvl/cli/<name>.lua, returning
-- {name, summary, help, flags, run(flags, positionals)}; lua/qwenvl/cli.lua
-- dispatches to them.

local evidence = require("qwenvl.evidence")
local schema_mod = require("qwenvl.schema")
local workflow = require("qwenvl.workflow")
local cjson = require("cjson")
local NULL = cjson.null

local M = {}

M.EXIT = { ok = 0, usage = 2, input = 3, auth = 4, rate = 5, api = 6, verify = 7 }
local EXIT = M.EXIT

---------------------------------------------------------------------------
-- output (set by cli.main for each run)

M.out, M.err = io.stdout, io.stderr
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

function M.json_out(v)
  return evidence.encode(evidence.redact(v, M.secrets), { indent = 2 })
end

---------------------------------------------------------------------------
-- errors

function M.usage_error(msg) return { usage = true, message = msg } end
function M.input_error(msg) return { input = true, message = msg } end

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
M.COMMON_FLAGS = {
  help = "flag", h = "flag", model = "string", region = "string", ["base-url"] = "string",
  quiet = "flag", ["no-evidence"] = "flag", ["evidence-dir"] = "string",
  ["no-probe"] = "flag", ["timeout-s"] = "number", ["connect-timeout-s"] = "number",
  ["max-retries"] = "number", ["retry-backoff-s"] = "number",
}

--- Parse `args` against `spec` (the command's flags, then the common
-- ones). Returns flags, positionals or nil, err.
function M.parse(cmd, spec, args)
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
      local kind = spec[name] or M.COMMON_FLAGS[name]
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

function M.read_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local s = f:read("*a")
  f:close()
  return s
end

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
  local ok, v = pcall(cjson.decode, s)
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

-- request fields from flags, shared by every command that sends
local FIELD_OF_FLAG = {
  model = "model", region = "region", ["base-url"] = "base_url",
  ["max-retries"] = "max_retries", ["retry-backoff-s"] = "retry_backoff_s",
  ["timeout-s"] = "timeout_s", ["connect-timeout-s"] = "connect_timeout_s",
  ["max-tokens"] = "max_tokens", temperature = "temperature", detail = "detail",
  system = "system",
}

function M.apply_common(req, flags)
  for flag, field in pairs(FIELD_OF_FLAG) do
    if flags[flag] ~= nil then req[field] = flags[flag] end
  end
end

function M.wf_opts(flags, kind)
  return {
    probe = not flags["no-probe"],
    evidence = not flags["no-evidence"],
    evidence_dir = flags["evidence-dir"],
    repair = flags.repair,
    kind = kind,
    on_probe = function(p)
      if p.cached then return end
      M.note(flags, string.format("probe: ok (region %s, %s, %.3f s%s)", tostring(p.region),
        tostring(p.base_url), tonumber(p.latency_s) or 0,
        p.models and (", " .. p.models .. " models") or ""))
    end,
  }
end

function M.normalized_output(result, path)
  local o = workflow.normalized(result)
  o.images = result.images
  o.verification = result.verification
  o.record = path
  o.base_url = result.base_url
  o.region = result.region
  return o
end

function M.write_output(path, v)
  local ok, err = evidence.write_file(path, M.json_out(v) .. "\n")
  if not ok then return nil, M.input_error("cannot write --output " .. path .. ": " .. tostring(err)) end
  return true
end

return M
