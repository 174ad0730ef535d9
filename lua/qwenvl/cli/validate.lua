-- qwenvl.cli.validate: `qwenvl validate`, the Python skill's validation
-- step translated: the script compiled itself and wrote
-- output/alicloud-ai-multimodal-qwen-vl/validate.txt; here the module and
-- the Lua modules are loaded, the build is described (libcurl, TLS,
-- libvips) and where the key would come from (never the key), and that
-- report is written (atomically). Nothing is sent.
local c = require("qwenvl.cli.common")
local evidence = require("qwenvl.evidence")
local sys = require("qwenvl.sys")
local EXIT = c.EXIT
local say = c.say
local usage_error = c.usage_error

local M = { name = "validate", summary = "check the installation offline and write validate.txt" }

M.DEFAULT_OUTPUT = "output/alicloud-ai-multimodal-qwen-vl/validate.txt"

M.flags = { output = "string" }

M.help = [[
Usage: qwenvl validate [--output PATH] [--region R] [--base-url URL] [--quiet]

The skill's validation step, offline: load the qwenvl module and its Lua
modules, describe the build (libcurl and TLS versions, HTTP/2, whether
libvips is there to resize images) and where the key would come from
(never the key), and write that report to --output (default
output/alicloud-ai-multimodal-qwen-vl/validate.txt, atomically, folders
created). Exit 0 when everything loads, even without a key (the report
says where to put one); otherwise exit 6 with a one-line reason, and no
report is left behind (a stale one is removed).

Examples:
  qwenvl validate
  qwenvl validate --output output/validate.txt --quiet
]]

-- every module a command can load (the Neovim and OpenResty ones need
-- their hosts and are checked there: :checkhealth, the nginx example)
local LUA_MODULES = { "qwenvl.workflow", "qwenvl.evidence", "qwenvl.schema", "qwenvl.job",
                      "qwenvl.sys", "qwenvl.session", "qwenvl.grounding", "qwenvl.ocr",
                      "qwenvl.batch", "qwenvl.batch.cli", "qwenvl.cli", "qwenvl.cli.analyze",
                      "qwenvl.cli.annotate", "qwenvl.cli.batch", "qwenvl.cli.chat", "qwenvl.cli.job",
                      "qwenvl.cli.ocr", "qwenvl.cli.probe", "qwenvl.cli.smoke" }

local KEY_SOURCES = {
  request = "the request", env = "DASHSCOPE_API_KEY in the environment",
  [".env"] = "DASHSCOPE_API_KEY in ./.env", credentials = "dashscope_api_key in ~/.alibabacloud/credentials",
}

local function module_path()
  if not package.searchpath then return nil end
  return package.searchpath("qwenvl", package.cpath)
end

function M.run(flags, pos)
  if #pos > 0 then return nil, usage_error("validate takes no arguments") end
  local output = flags.output or M.DEFAULT_OUTPUT
  local conn = {}
  c.apply_common(conn, flags)
  c.secrets = conn
  local q, lerr = c.core()
  if not q then
    os.remove(output)
    return nil, { plain = true, message = lerr.message }
  end
  local lines = {}
  local function add(fmt, ...) lines[#lines + 1] = string.format(fmt, ...) end
  local info = q.info({ resize = true })
  add("qwenvl validate: ok")
  add("module:      qwenvl %s (%s)", tostring(q.version), tostring(module_path() or "loaded"))
  add("lua:         %s", _VERSION .. (type(jit) == "table" and (" (" .. tostring(jit.version) .. ")") or ""))
  add("libcurl:     %s, TLS %s, HTTP/2 %s, engine %s", tostring(info.curl), tostring(info.tls),
    info.http2 and "yes" or "no", tostring(info.engine))
  add("libvips:     %s", info.resize and "available (large images are resized before upload)"
    or "not available (images are sent as they are; over 10 MiB refused)")
  local failed = {}
  for _, name in ipairs(LUA_MODULES) do
    local ok, err = sys.pcall(require, name)
    if not ok then failed[#failed + 1] = name .. ": " .. tostring(err):gsub("%s+", " ") end
  end
  if #failed > 0 then
    os.remove(output)
    return nil, { plain = true, message = "cannot load " .. table.concat(failed, "; ") }
  end
  add("lua modules: %d loaded (%s)", #LUA_MODULES, table.concat(LUA_MODULES, ", "))
  add("files:       %s", sys.has_lfs and "LuaFileSystem (kernel locks for batch jobs)"
    or "POSIX commands (lock folders for batch jobs)")
  local cfg, cerr = q.config(conn)
  if cfg then
    add("endpoint:    %s (region %s)", tostring(cfg.base_url), tostring(cfg.region))
    if cfg.has_key then
      add("key:         found, from %s (not shown)", KEY_SOURCES[cfg.key_source] or tostring(cfg.key_source))
    else
      add("key:         none: set DASHSCOPE_API_KEY (environment or ./.env) or add"
        .. " dashscope_api_key to ~/.alibabacloud/credentials")
    end
  else
    add("endpoint:    not usable: %s", c.describe_error(cerr))
  end
  add("checked at:  %s", evidence.iso_time(os.time()))
  local text = table.concat(lines, "\n") .. "\n"
  local ok, oerr = c.check_output(output)
  if not ok then return nil, oerr end
  local wok, werr = evidence.write_file(output, c.scrub(text))
  if not wok then return nil, { plain = true, message = "cannot write " .. output .. ": " .. tostring(werr) } end
  if not flags.quiet then c.out:write(c.scrub(text)) end
  say("written to " .. output)
  return EXIT.ok
end

return M
