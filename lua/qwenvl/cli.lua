-- qwenvl.cli: the `qwenvl` command (bin/qwenvl is a small launcher).
--
--   local cli = require("qwenvl.cli")
--   local code = cli.main({"analyze", "--prompt", "...", "--image", "a.png"})
--
-- A dispatcher: each command is one module, lua/qwenvl/cli/<name>.lua,
-- returning {name, summary, help, flags, run(flags, positionals)}; run
-- returns an exit code, or nil and an error (see qwenvl.cli.common). A
-- module with main(args, io, hooks) takes its command line whole instead
-- (job: the Batch API, also `batch --batch-api`). To add a command, add
-- its module and its name to COMMANDS.
--
-- Exit codes: 0 success, 2 usage error, 3 bad input (file, schema,
-- request), 4 auth/permission, 5 rate limited after retries, 6 other API or
-- network failure, 7 schema verification failed, 8 the answer arrived but
-- could not be saved, 130 interrupted (Ctrl-C).

local c = require("qwenvl.cli.common")
local sys = require("qwenvl.sys")

local M = {}

local COMMANDS = { "analyze", "chat", "probe", "smoke", "batch", "job", "validate", "annotate", "ocr" }

M.EXIT = c.EXIT
M.exit_code = c.exit_code
M.describe_error = c.describe_error

local function command(name)
  for _, n in ipairs(COMMANDS) do
    if n == name then return require("qwenvl.cli." .. name) end
  end
  return nil
end

local function main_help()
  local lines = {}
  for _, n in ipairs(COMMANDS) do
    lines[#lines + 1] = string.format("  %-9s %s", n, command(n).summary)
  end
  return [[
Usage: qwenvl <command> [options]

Ask Qwen-VL vision models on Alibaba Cloud Model Studio (DashScope,
OpenAI-compatible mode) about images. The key comes from DASHSCOPE_API_KEY
in the environment, else in ./.env, else dashscope_api_key in
~/.alibabacloud/credentials (it is never printed); the region from
--region / DASHSCOPE_REGION (cn, intl, us, hk) or --base-url /
DASHSCOPE_BASE_URL (environment or ./.env).

Commands:
]] .. table.concat(lines, "\n") .. [[


Run 'qwenvl <command> --help' for options and examples.

Exit codes: 0 success, 2 usage error, 3 bad input (file, schema, request),
4 auth/permission, 5 rate limited after retries, 6 other API or network
failure, 7 schema verification failed, 8 the answer arrived but its record
or --output could not be written, 130 interrupted (Ctrl-C; what finished
is kept).
]]
end

--- Help texts by topic: HELP.main and HELP[<command>].
M.HELP = setmetatable({}, {
  __index = function(_, k)
    if k == "main" then return main_help() end
    local cmd = type(k) == "string" and command(k)
    return cmd and cmd.help or nil
  end,
})

--- Parse `args` for command `cmd`. Returns flags, positionals or nil, err.
function M.parse(cmd, args)
  return c.parse(cmd, command(cmd).flags, args)
end

--- Build the analyze request from flags. Returns req or nil, err.
function M.build_request(flags)
  return command("analyze").build_request(flags)
end

--- The images of a batch: files in DIR, or lines of LIST.
function M.batch_images(target)
  return command("batch").batch_images(target)
end

--- Run the command line `args` (a list of strings). io_handles: optional
-- {stdout=, stderr=} file handles. Returns the exit code.
function M.main(args, io_handles)
  args = args or {}
  c.out = io_handles and io_handles.stdout or io.stdout
  c.err = io_handles and io_handles.stderr or io.stderr
  c.secrets = {}
  local name = args[1]
  if name == nil then
    c.err:write(main_help())
    return c.EXIT.usage
  end
  if name == "--help" or name == "-h" or name == "help" then
    c.out:write(M.HELP[args[2]] or main_help())
    return c.EXIT.ok
  end
  if name == "--version" or name == "version" then
    local ok, q = sys.pcall(require, "qwenvl")
    c.out:write("qwenvl " .. tostring(ok and type(q) == "table" and q.version or "?") .. "\n")
    return c.EXIT.ok
  end
  local cmd = command(name)
  if name == "job" or (name == "batch" and command("job").wants(args)) then
    return command("job").main(args, { stdout = c.out, stderr = c.err },
      { batch_images = M.batch_images, tty = sys.isatty(2) })
  end
  if not cmd then
    c.fail_line("", "unknown command '" .. tostring(name) .. "' (commands: "
      .. table.concat(COMMANDS, ", ") .. "; see qwenvl --help)")
    return c.EXIT.usage
  end
  local rest = {}
  for i = 2, #args do rest[#rest + 1] = args[i] end
  local flags, pos = c.parse(name, cmd.flags, rest)
  if not flags then
    c.fail_line(name, pos.message)
    return c.EXIT.usage
  end
  if flags.help or flags.h then
    c.out:write(cmd.help)
    return c.EXIT.ok
  end
  local ok, code, err = pcall(cmd.run, flags, pos)
  if not ok then
    if sys.is_interrupt(code) then
      -- Ctrl-C: whatever the command keeps on disk it has kept by now
      c.fail_line(name, "interrupted")
      return c.EXIT.interrupted
    end
    c.fail_line(name, "internal error: " .. tostring(code))
    return c.EXIT.api
  end
  if code == nil then
    local e = err or {}
    c.fail_line(name, c.describe_error(e))
    if e.verify then return c.EXIT.verify end
    return c.exit_code(e)
  end
  c.out:flush()
  return code
end

return M
