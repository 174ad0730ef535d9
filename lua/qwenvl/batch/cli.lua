-- qwenvl.batch.cli: the command-line side of qwenvl.batch, for bin/qwenvl
-- to hand over to:
--
--   qwenvl batch DIR|LIST --prompt P --batch-api [--completion-window 24h]
--                [--poll-s S] [--no-wait] [--keep-remote] [...]
--   qwenvl job list|status|wait|results|cancel|retry [ID] [--poll-s S] [...]
--
--   local bcli = require("qwenvl.batch.cli")
--   local code = bcli.main({"batch", "imgs/", "--prompt", "...", "--batch-api"},
--                          {stdout = f, stderr = g}, {batch_images = fn})
--
-- Output follows `qwenvl batch` (live): a line per image, or the summary
-- JSON with --print-response, the same JSON to --output, one evidence
-- record per image plus a summary. Exit codes are the CLI's: 0 ok, 2 usage,
-- 3 bad input, 4 auth, 5 rate limited, 6 other API failure (a batch that
-- expired or was cancelled, a job still running), 7 schema verification.

local qb = require("qwenvl.batch")
local record = require("qwenvl.batch.record")
local evidence = require("qwenvl.evidence")
local c = require("qwenvl.cli.common")
-- qwenvl.schema (and PCRE2 under it) loads when a schema is first used:
-- most runs have none, and a process per image pays for every module
local function schema_mod() return require("qwenvl.schema") end
local workflow = require("qwenvl.workflow")
local cjson = require("cjson")

local M = {}

-- the command's exit codes and errors (qwenvl.batch's errors carry none of
-- the fields that make the other codes)
M.EXIT = c.EXIT
local EXIT = M.EXIT
local usage_error, input_error = c.usage_error, c.input_error
M.exit_code = c.exit_code

---------------------------------------------------------------------------
-- flags

local CONN = {
  region = "string", ["base-url"] = "string", ["timeout-s"] = "number",
  ["connect-timeout-s"] = "number", ["max-retries"] = "number", ["retry-backoff-s"] = "number",
  ["job-dir"] = "string", quiet = "flag", help = "flag", h = "flag",
}
local OUTPUT = {
  ["print-response"] = "flag", output = "string", ["no-evidence"] = "flag",
  ["evidence-dir"] = "string", ["keep-remote"] = "flag",
}
local WAIT = { ["poll-s"] = "number", ["max-poll-s"] = "number", ["wait-timeout-s"] = "number" }

local merge = c.with

M.SPECS = {
  batch = merge(CONN, OUTPUT, WAIT, {
    ["batch-api"] = "flag", prompt = "string", ["json-mode"] = "flag", schema = "string",
    ["max-tokens"] = "number", temperature = "number", detail = "string", system = "string",
    model = "string", ["completion-window"] = "string", ["no-wait"] = "flag",
    ["max-line-bytes"] = "number", metadata = "list", ["no-probe"] = "flag",
    concurrency = "number", repair = "number",
  }),
  list = merge(CONN, { json = "flag" }),
  status = merge(CONN, { json = "flag" }),
  wait = merge(CONN, OUTPUT, WAIT),
  results = merge(CONN, OUTPUT),
  cancel = merge(CONN),
  retry = merge(CONN, OUTPUT, WAIT, { ["no-wait"] = "flag" }),
}

--- Parse args for `spec` (its flags alone): flags, positionals or nil, err.
function M.parse(spec, args, what)
  return c.parse(what, spec, args, true)
end

M.HELP = {}
M.HELP.batch = [[
Usage: qwenvl batch DIR|LIST --prompt TEXT --batch-api [options]

Send the images to DashScope's Batch (file input) API: one JSONL line per
image, uploaded, run asynchronously within the completion window at half
the price of live calls (Beijing: qwen3-vl-plus, qwen3-vl-flash,
qwen-vl-ocr). Expect minutes to hours. The job lives in --job-dir, so
`qwenvl job wait ID` carries it on from anywhere.

  --completion-window W   24h (default) .. 336h, or 1d .. 14d
  --poll-s S              first poll interval while waiting (60; grows x1.5
                          while nothing changes, up to --max-poll-s 600)
  --wait-timeout-s S      stop waiting after S seconds (the job keeps running)
  --no-wait               submit, print the job id as the last line, exit 0
  --keep-remote           keep the uploaded and result files on the account
  --max-line-bytes N      per-line cap (1000000); bigger lines fail alone
  --metadata KEY=VALUE    batch metadata (repeatable)
  --job-dir DIR           where jobs live ($QWENVL_JOB_DIR, else
                          ~/.local/state/qwenvl/jobs)
  --prompt, --json-mode, --schema PATH, --model, --max-tokens, --temperature,
  --detail, --system, --output PATH, --print-response, --no-evidence,
  --evidence-dir DIR, --region, --base-url, --timeout-s (per HTTP call), --quiet

Examples:
  qwenvl batch ./samples --prompt "Describe this image in one sentence." --batch-api
  qwenvl batch ./scans.txt --prompt "Read the text" --model qwen-vl-ocr --batch-api --no-wait
]]
M.HELP.job = [[
Usage: qwenvl job list|status|wait|results|cancel|retry [ID] [options]

  list              the jobs in --job-dir (no network)
  status ID         ask the service; --json for the full picture
  wait ID           wait, then print the results (like qwenvl batch)
  results ID        print the results of a finished job
  cancel ID         cancel what still runs (finished requests are kept)
  retry ID          submit the failed and expired requests again as a new
                    batch of the same job, then wait (--no-wait: do not)

  --poll-s S, --max-poll-s S, --wait-timeout-s S, --print-response,
  --output PATH, --no-evidence, --evidence-dir DIR, --keep-remote,
  --job-dir DIR, --quiet, --json (list, status)

Examples:
  qwenvl job list
  qwenvl job wait job-20261129T101112Z-1a2b3c4d --poll-s 120
  qwenvl job retry job-20261129T101112Z-1a2b3c4d --print-response
]]

---------------------------------------------------------------------------
-- the run

local Run = {}
Run.__index = Run

function Run:say(s) self.out:write(evidence.redact(s, self.secrets), "\n") end
function Run:note(s)
  if self.flags.quiet then return end
  self.err:write(evidence.redact(s, self.secrets), "\n")
end
function Run:json_out(v)
  return evidence.encode(evidence.redact(v, self.secrets), { indent = 2 })
end

function Run:conn()
  local f = self.flags
  local o = { job_dir = f["job-dir"], region = f.region, base_url = f["base-url"],
              timeout_s = f["timeout-s"], connect_timeout_s = f["connect-timeout-s"],
              max_retries = f["max-retries"], retry_backoff_s = f["retry-backoff-s"],
              keep_remote = f["keep-remote"] or nil }
  for k, v in pairs(self.hooks.opts or {}) do o[k] = v end -- hosts and tests: sleep, clock
  return o
end

--- The images of DIR (image files, sorted) or LIST (one per line, # comments,
-- relative to the list's folder), as live `qwenvl batch` reads them. The
-- CLI may pass its own as hooks.batch_images.
M.batch_images = c.batch_images

-- Verify each answer against the schema or JSON mode of its request.
local function verify_all(job, results)
  local bad = 0
  record.each_item(job, function(i, item)
    local res = results[i]
    local input = type(item.input) == "table" and item.input or {}
    if res and res.text ~= nil and (input.schema ~= nil or input.json_mode == true) then
      local schema = input.schema
      if schema == cjson.null then schema = nil end
      res.verification = workflow.verify(res, schema, { json_mode = input.json_mode == true })
      if not res.verification.ok then bad = bad + 1 end
    end
  end)
  return bad
end

-- Results of a settled job: print, --output, evidence; the exit code.
function Run:report(job)
  local results, rerr = job:results()
  if not results then return nil, rerr end
  local bad_schema = verify_all(job, results)
  local f = self.flags
  local _, spath, summary = record.write(job, results, {
    evidence = not f["no-evidence"], evidence_dir = f["evidence-dir"],
  })
  if f["print-response"] then
    self:say(self:json_out(summary))
  elseif not f.quiet then
    for _, s in ipairs(summary.items) do
      local status = s.ok and "ok" or (s.error and ("error:" .. tostring(s.error.code)) or "invalid")
      local text = s.text and tostring(s.text):gsub("%s+", " "):sub(1, 100)
        or (s.error and s.error.message) or ""
      self:say(status .. "\t" .. tostring(s.image) .. "\t" .. text)
    end
  end
  if f.output then
    local ok, oerr = evidence.write_file(f.output, self:json_out(summary) .. "\n")
    if not ok then return nil, input_error(oerr) end
  end
  if spath then self:note("summary: " .. spath) end
  for _, w in ipairs(job.warnings) do self:note("warning: " .. w) end
  self:note(("job %s: %d ok, %d failed of %d"):format(job.id, summary.ok, summary.failed, summary.total))
  for _, r in ipairs(results) do
    if r.text == nil then return nil, r end
  end
  if bad_schema > 0 then
    return nil, { verify = true, message = ("verification failed for %d of %d answers"):format(
      bad_schema, #results) }
  end
  return EXIT.ok
end

function Run:progress(st)
  if self.flags.quiet or not self.tty then return end
  self.err:write(("\r\27[K[%s] %d/%d done, %d failed"):format(st.status, st.completed + st.failed,
    st.total, st.failed))
  self.err:flush()
end

-- --no-wait: print the job id (the last line) and leave the job running;
-- else wait for it and report.
function Run:wait_unless_asked(job)
  if self.flags["no-wait"] then
    self:say(job.id)
    return EXIT.ok
  end
  return self:wait_and_report(job)
end

function Run:wait_and_report(job)
  local f = self.flags
  self:note(("job %s: waiting (resume with: qwenvl job wait %s)"):format(job.id, job.id))
  local ok, err = job:wait{ poll_s = f["poll-s"], max_poll_s = f["max-poll-s"],
                            timeout_s = f["wait-timeout-s"],
                            on_progress = function(st) self:progress(st) end }
  if self.tty and not f.quiet then self.err:write("\n") end
  if not ok then return nil, err end
  return self:report(job)
end

local function load_schema(path)
  local s, err = c.read_file(path)
  if not s then return nil, input_error("cannot read schema file " .. path .. ": " .. tostring(err)) end
  local v, lerr = schema_mod().load(s)
  if v == nil then return nil, input_error("schema file " .. path .. ": " .. tostring(lerr)) end
  return v
end

function Run:batch(pos)
  local f = self.flags
  if not f["batch-api"] then
    return nil, usage_error("this is the Batch API path: add --batch-api (or use qwenvl batch without it)")
  end
  if #pos ~= 1 then return nil, usage_error("batch needs one DIR or LIST (see qwenvl batch --help)") end
  if not f.prompt then return nil, usage_error("batch needs --prompt TEXT") end
  if f.concurrency then return nil, usage_error("--concurrency does not apply with --batch-api (the service schedules the batch)") end
  if f.repair then return nil, usage_error("--repair needs live calls; it does not apply with --batch-api") end
  local images, ierr = (self.hooks.batch_images or M.batch_images)(pos[1])
  if not images then return nil, ierr end
  local schema
  if f.schema then
    local s, serr = load_schema(f.schema)
    if s == nil then return nil, serr end
    schema = s
  end
  local reqs = {}
  for i, img in ipairs(images) do
    reqs[i] = { prompt = f.prompt, image = img, schema = schema, model = f.model,
                max_tokens = f["max-tokens"], temperature = f.temperature, detail = f.detail,
                system = f.system, json_mode = f["json-mode"] or nil }
  end
  local metadata
  for _, kv in ipairs(f.metadata or {}) do
    local k, v = kv:match("^([^=]+)=(.*)$")
    if not k then return nil, usage_error("--metadata needs KEY=VALUE, got '" .. kv .. "'") end
    metadata = metadata or {}
    metadata[k] = v
  end
  local o = self:conn()
  o.completion_window = f["completion-window"]
  o.metadata = metadata
  o.max_line_bytes = f["max-line-bytes"]
  local job, err = qb.submit(reqs, o)
  if not job then
    if type(err) == "table" and err.job_id then
      self:note(("job %s exists but did not start completely; carry on with: qwenvl job wait %s")
        :format(err.job_id, err.job_id))
    end
    return nil, err
  end
  local st = job:summary()
  self:note(("job %s: %d requests in %d batch%s (%d refused locally)"):format(job.id, st.total,
    #st.parts, #st.parts == 1 and "" or "es", st.local_failed))
  return self:wait_unless_asked(job)
end

function Run:open(pos, what)
  if #pos ~= 1 then return nil, usage_error("job " .. what .. " needs a job ID (see qwenvl job --help)") end
  return qb.open(pos[1], self:conn())
end

function Run:job(sub, pos)
  local f = self.flags
  if sub == "list" then
    if #pos > 0 then return nil, usage_error("job list takes no ID") end
    local list = qb.list(self:conn())
    if f.json then
      self:say(self:json_out(evidence.array(list)))
    else
      for _, j in ipairs(list) do
        self:say(("%s\t%s\t%d/%d done\t%d failed\t%s"):format(j.id, j.status,
          j.completed + j.failed, j.total, j.failed, tostring(j.created_at)))
      end
    end
    return EXIT.ok
  end
  local job, err = self:open(pos, sub)
  if not job then return nil, err end
  if sub == "status" then
    local st, serr = job:status()
    if not st then return nil, serr end
    if f.json then
      self:say(self:json_out(st))
    else
      self:say(("%s\t%s\t%d/%d done\t%d failed"):format(job.id, st.status, st.completed + st.failed,
        st.total, st.failed))
      for _, p in ipairs(st.parts) do
        self:say(("  %s\t%s\t%s\t%d lines"):format(p.name, tostring(p.batch_id or "-"), p.status, p.lines))
      end
    end
    return EXIT.ok
  elseif sub == "wait" then
    return self:wait_and_report(job)
  elseif sub == "results" then
    return self:report(job)
  elseif sub == "cancel" then
    local ok, cerr = job:cancel()
    if not ok then return nil, cerr end
    self:note(("job %s: cancel requested; finished requests are kept (qwenvl job wait %s)"):format(
      job.id, job.id))
    return EXIT.ok
  elseif sub == "retry" then
    local n, rerr = job:retry_failed()
    if not n then return nil, rerr end
    if n == 0 then
      self:note(("job %s: nothing to retry"):format(job.id))
      if f["no-wait"] then self:say(job.id) return EXIT.ok end
      return self:report(job)
    end
    self:note(("job %s: %d request%s submitted again"):format(job.id, n, n == 1 and "" or "s"))
    return self:wait_unless_asked(job)
  end
  return nil, usage_error("unknown job command '" .. tostring(sub) .. "' (list, status, wait, results, cancel, retry)")
end

local function describe(err)
  if type(err) ~= "table" then return tostring(err) end
  if err.usage or err.input or err.verify then return tostring(err.message) end
  local s = tostring(err.code or "error")
  if err.status and err.status ~= cjson.null then s = s .. " (HTTP " .. tostring(err.status) .. ")" end
  s = s .. ": " .. tostring(err.message or "")
  if err.batch and err.batch.custom_id then
    s = s .. " [request " .. err.batch.custom_id .. (err.batch.batch_id and (", " .. err.batch.batch_id) or "") .. "]"
  end
  return (s:gsub("[\r\n]+", " "))
end
M.describe_error = describe

--- Run `args` (the whole command line after the program name: "batch ..."
-- with --batch-api, or "job ..."). io_handles: {stdout, stderr}; hooks:
-- {batch_images = fn(target), opts = {...} merged into qwenvl.batch's
-- options, tty = bool}. Returns the exit code.
function M.main(args, io_handles, hooks)
  args = args or {}
  hooks = hooks or {}
  local self = setmetatable({
    out = io_handles and io_handles.stdout or io.stdout,
    err = io_handles and io_handles.stderr or io.stderr,
    hooks = hooks, secrets = {}, tty = hooks.tty,
  }, Run)
  local cmd = args[1]
  local rest, spec, what, sub = {}, nil, nil, nil
  if cmd == "batch" then
    for i = 2, #args do rest[#rest + 1] = args[i] end
    spec, what = M.SPECS.batch, "batch"
  elseif cmd == "job" then
    sub = args[2]
    if sub == nil or sub == "--help" or sub == "-h" or sub == "help" then
      self.out:write(M.HELP.job)
      return sub and EXIT.ok or EXIT.usage
    end
    spec, what = M.SPECS[sub], "job " .. sub
    if not spec then
      self.err:write("qwenvl job: unknown command '" .. tostring(sub) .. "' (list, status, wait, results, cancel, retry)\n")
      return EXIT.usage
    end
    for i = 3, #args do rest[#rest + 1] = args[i] end
  else
    self.err:write("qwenvl: qwenvl.batch.cli runs 'batch ... --batch-api' and 'job ...'\n")
    return EXIT.usage
  end
  local flags, pos = M.parse(spec, rest, what)
  if not flags then
    self.err:write("qwenvl " .. what .. ": " .. pos.message .. "\n")
    return EXIT.usage
  end
  self.flags = flags
  if flags.help or flags.h then
    self.out:write(cmd == "batch" and M.HELP.batch or M.HELP.job)
    return EXIT.ok
  end
  local ok, code, err = pcall(function()
    if cmd == "batch" then return self:batch(pos) end
    return self:job(sub, pos)
  end)
  if not ok then
    -- Ctrl-C reaches the interpreter as its own error: let it through
    if tostring(code):find("interrupted!", 1, true) then error(code, 0) end
    self.err:write(evidence.redact("qwenvl " .. what .. ": internal error: " .. tostring(code), self.secrets) .. "\n")
    return EXIT.api
  end
  if code == nil then
    self.err:write(evidence.redact("qwenvl " .. what .. ": " .. describe(err), self.secrets) .. "\n")
    return M.exit_code(err)
  end
  self.out:flush()
  return code
end

return M
