-- qwenvl.cli.probe: `qwenvl probe` (read-only check of key, region and endpoint).
local c = require("qwenvl.cli.common")
local workflow = require("qwenvl.workflow")
local EXIT = c.EXIT
local say = c.say
local usage_error = c.usage_error

local M = { name = "probe", summary = "read-only check of key, region and endpoint" }

M.flags = { json = "flag" }

M.help = [[
Usage: qwenvl probe [--region cn|intl|us|hk] [--base-url URL] [--json] [options]

Read-only check of key, region and reachability (GET {base_url}/models;
a one-token chat where that is not available). Prints region, endpoint,
latency and a verdict. Exit 0 when the key is accepted, 4 when it is
rejected (a key from one region is rejected by another: check the
region/base URL), 5 when rate limited, 6 on network/API failure.

Always probes afresh; a success is kept for 10 minutes (per endpoint
and key, in $XDG_CACHE_HOME/qwenvl or ~/.cache/qwenvl) so that the
commands that follow need not probe again.

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

local KEY_SOURCES = {
  request = "the request", env = "DASHSCOPE_API_KEY in the environment",
  [".env"] = "DASHSCOPE_API_KEY in ./.env", credentials = "~/.alibabacloud/credentials",
}

function M.run(flags, pos)
  if #pos > 0 then return nil, usage_error("probe takes no arguments") end
  local popts = {}
  c.apply_common(popts, flags)
  c.secrets = popts
  local q, lerr = c.core()
  if not q then return nil, lerr end
  -- always a fresh probe; its success is kept for the commands that follow
  local p, err = workflow.cached_probe(popts, { probe = "fresh", probe_cache = true,
                                                         probe_max_retries = flags["max-retries"] })
  if not p then
    if flags.json then
      say(c.json_out({ ok = false, error = workflow.error_info(err) }))
    else
      local cfg = q.config(popts) or {}
      if not flags.quiet then
        say("region:   " .. tostring(cfg.region))
        say("endpoint: " .. tostring(cfg.base_url))
      end
      say("verdict:  FAIL (" .. tostring(err.code) .. ")")
    end
    return nil, err
  end
  if flags.json then
    say(c.json_out(p))
  else
    if not flags.quiet then
      say("region:   " .. tostring(p.region))
      say("endpoint: " .. tostring(p.base_url))
      say(string.format("latency:  %.3f s", tonumber(p.latency_s) or 0))
      if p.models then say(string.format("models:   %d", p.models)) end
      if p.key_source then say("key:      from " .. (KEY_SOURCES[p.key_source] or tostring(p.key_source))) end
    end
    say("verdict:  OK (key accepted, endpoint reachable, read-only " .. (p.method == "chat" and "chat" or "GET /models") .. ")")
  end
  return EXIT.ok
end

return M
