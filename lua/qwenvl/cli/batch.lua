-- qwenvl.cli.batch: `qwenvl batch`: one prompt over a folder or a list of
-- images, as a durable job: every outcome goes to the job's journal the
-- moment it arrives (qwenvl.job), a re-run of the same command skips what
-- already succeeded, and Ctrl-C keeps what finished.
local c = require("qwenvl.cli.common")
local workflow = require("qwenvl.workflow")
local evidence = require("qwenvl.evidence")
local job_mod = require("qwenvl.job")
local sys = require("qwenvl.sys")
local EXIT = c.EXIT
local say, note = c.say, c.note
local usage_error, input_error = c.usage_error, c.input_error

local M = { name = "batch", summary = "one prompt over a folder or list of images (resumable)" }

M.flags = c.with({
  prompt = "string", ["json-mode"] = "flag", schema = "string", output = "string",
  ["print-response"] = "flag", concurrency = "number", rpm = "number", tpm = "number",
  ["max-tokens"] = "number", temperature = "number", detail = "string", system = "string",
  repair = "number", fresh = "flag", probe = "flag",
}, c.RESIZE_FLAGS)

M.help = [[
Usage: qwenvl batch DIR|LIST --prompt TEXT [options]

Analyze many images with one prompt: every image file in DIR (png, jpg,
jpeg, webp, bmp, gif, tif, tiff, heic, avif), or every line of the text
file LIST (paths relative to the list's folder, or URLs; blank lines and
#-comments are skipped; a missing file fails that image only). One probe,
then the requests, several at a time; one line per image on stdout as
each finishes, one evidence record per image as it finishes, and a
summary record at the end. A progress line is shown on a terminal.

The batch is a job kept in the evidence folder (jobs/<id>/journal.jsonl,
where <id> comes from the prompt, model and options): every outcome is
written there when it arrives. Run the same command again and the images
that already succeeded are skipped (an image whose bytes changed is done
again; failed ones are tried again); --fresh does everything again.
Ctrl-C stops at once, keeps what finished and exits 130. One process at a
time works on a job: a second one exits 2 and names the first.

Options:
  --prompt TEXT           the question for every image (required)
  --concurrency N         requests in flight, 1-256 (default 4)
  --rpm N, --tpm N        at most N requests / estimated tokens per minute
  --json-mode, --schema PATH, --repair N
  --model NAME, --max-tokens N, --temperature T, --detail D, --system TEXT
  --resize auto|off|always, --max-pixels N, --max-side N,
  --image-format jpeg|png|webp, --quality N
  --region R, --base-url URL, --max-retries N, --retry-backoff-s S, --timeout-s S
  --print-response        print the summary as JSON (default: one line per image)
  --output PATH           save the summary JSON to PATH (folders created)
  --fresh                 ignore earlier runs of this job: send everything
  --probe, --no-probe, --evidence-dir DIR, --quiet
  --no-evidence           write nothing: no records, no journal, no resuming
  --batch-api             send the images to DashScope's Batch API instead:
                          half the price, minutes to hours (its options:
                          batch --batch-api --help; jobs: job --help)

Exit code: 0 when every image succeeded, else the code of the first
failed image (in input order); 130 when interrupted; 8 when records could
not be written (sending stops).

Examples (from a checkout: examples/ holds sample.png and invoice.schema.json):
  qwenvl batch examples --prompt "Describe this image in one sentence."
  qwenvl batch examples --prompt "Extract invoice fields" --schema examples/invoice.schema.json --concurrency 2
  qwenvl batch examples --prompt "Describe this image" --rpm 60 --print-response --output output/batch.json
  qwenvl batch examples --prompt "Describe this image" --region intl --concurrency 8
]]

--- The images of a batch (DIR or LIST): see qwenvl.cli.common.batch_images.
M.batch_images = c.batch_images

-- Usage errors of the flags, before anything else happens.
local function check_flags(flags, pos)
  if #pos ~= 1 then return usage_error("batch needs one DIR or LIST (see qwenvl batch --help)") end
  if not flags.prompt then return usage_error("batch needs --prompt TEXT") end
  local e = c.check_integer(flags, "concurrency", 1, 256) or c.check_probe_flags(flags)
  if e then return e end
  for _, name in ipairs({ "rpm", "tpm" }) do
    local v = flags[name]
    if v ~= nil and (v ~= v or v < 0 or (name == "rpm" and v > 0 and v < 0.001)
                     or v > (name == "rpm" and 1e7 or 1e13)) then
      return usage_error(("--%s must be 0 (no limit) or a positive number%s (got %s)"):format(
        name, name == "rpm" and " of at least 0.001" or "", tostring(v)))
    end
  end
  if flags.repair ~= nil then
    e = c.check_integer(flags, "repair", 0, 10)
    if e then return e end
  end
  return nil
end

-- The request of every image, and what determines the answers: the job's
-- identity (the model as the core resolves it, so a changed default is a
-- new job).
local function build(flags, images, schema, q)
  local base = { prompt = flags.prompt, schema = schema }
  if flags["json-mode"] then base.json_mode = true end
  c.apply_common(base, flags)
  -- the options are checked with a tiny inline image: nothing is read or sent
  local probe_req = {}
  for k, v in pairs(base) do probe_req[k] = v end
  probe_req.image = workflow.PROBE_IMAGE
  local plan, perr = q.prepare(probe_req)
  if not plan then return nil, perr end
  local requests = {}
  for i, img in ipairs(images) do
    local r = {}
    for k, v in pairs(base) do r[k] = v end
    r.image = img
    requests[i] = r
  end
  local identity = {
    kind = "qwenvl batch", prompt = flags.prompt, model = plan.model, schema = schema,
    json_mode = base.json_mode, max_tokens = base.max_tokens, temperature = base.temperature,
    detail = base.detail, system = base.system, resize = base.resize, max_pixels = base.max_pixels,
    max_side = base.max_side, image_format = base.image_format, quality = base.quality,
  }
  return requests, identity, base
end

-- The journal's line for an item, and a summary item from such a line.
local function journal_entry(i, image, ids, item)
  local e = { index = i, image = image, images = ids, record = item.record }
  local res = item.result
  if res then
    local v = res.verification
    e.ok = v == nil or v.ok
    e.text, e.json, e.model, e.usage = res.text, res.json, res.model, res.usage
    e.request_id, e.elapsed_s = res.request_id, res.elapsed_s
    if v and not v.ok then e.errors = v.errors; e.verification_failed = true end
  else
    e.ok = false
    e.error = workflow.error_info(item.err)
    if e.error then e.error.raw = nil end
  end
  return e
end

local function summary_item(i, image, e, resumed)
  if not e then return { index = i, image = image, ok = false, unsent = true } end
  return { index = i, image = image, ok = e.ok, text = e.text, json = e.json, model = e.model,
           request_id = e.request_id, record = e.record, error = e.error, errors = e.errors,
           resumed = resumed or nil }
end

local function item_line(s)
  local status = s.ok and "ok" or (s.error and ("error:" .. tostring(s.error.code)))
    or (s.unsent and "unsent") or "invalid"
  local text = s.text and tostring(s.text):gsub("%s+", " "):sub(1, 100)
    or (s.error and tostring(s.error.message):gsub("%s+", " ")) or ""
  return status .. "\t" .. c.printable(s.image) .. "\t" .. text
end

-- The exit code of the first failed item, in input order.
local function items_code(items)
  for _, s in ipairs(items) do
    if not s.ok then
      if s.error then return c.exit_code(s.error), s end
      if s.errors then return EXIT.verify, s end
      return EXIT.api, s
    end
  end
  return EXIT.ok
end

function M.run(flags, pos)
  local uerr = check_flags(flags, pos)
  if uerr then return nil, uerr end
  local q, lerr = c.core()
  if not q then return nil, lerr end
  local images, ierr = M.batch_images(pos[1])
  if not images then return nil, ierr end
  local schema
  if flags.schema then
    local s, serr = c.load_schema_file(flags.schema)
    if s == nil then return nil, serr end
    schema = s
  end
  local requests, identity, base = build(flags, images, schema, q)
  if not requests then return nil, identity end
  c.secrets = base

  -- everything that can be refused is refused before anything is sent
  local ok, oerr = c.check_output(flags.output)
  if not ok then return nil, oerr end
  ok, oerr = c.check_evidence(flags)
  if not ok then return nil, oerr end
  local evdir = flags["evidence-dir"] or evidence.default_dir
  local job
  if not flags["no-evidence"] then
    local id = job_mod.identity_id(identity)
    local jerr
    job, jerr = job_mod.open(evdir .. "/jobs/" .. tostring(id), identity, {
      id = id, fresh = flags.fresh, secrets = base,
      on_warning = function(msg) note(flags, "warning: " .. msg) end,
    })
    if not job then
      if jerr.code == "locked" then return nil, usage_error(jerr.message) end
      return nil, input_error("cannot keep the job: " .. tostring(jerr.message))
    end
  end

  -- a plain pcall: the job is closed (journal synced, lock released) on
  -- every way out, the interrupt included, which then goes on up
  local ok_run, code, err = pcall(M.send, flags, pos, images, requests, job, evdir)
  if job then job:close() end
  if not ok_run then error(code, 0) end
  return code, err
end

-- Everything after the checks: probe, skip what is done, send the rest,
-- summarize from the journal. An interrupt is caught here (only here), to
-- keep what finished.
function M.send(flags, pos, images, requests, job, evdir)
  local n = #images
  local entries = {}            -- i -> the journal line (this run's or a kept one)
  local resumed = {}
  local keys = {}
  local ids = {}
  if job then
    ids = job_mod.image_ids(images)
    for i, img in ipairs(images) do
      keys[i] = job:key(ids[img])
      local e = job:done(keys[i])
      if e then entries[i] = e; resumed[i] = true end
    end
  end
  local pending, pending_index = {}, {}
  for i = 1, n do
    if not entries[i] then
      pending[#pending + 1] = requests[i]
      pending_index[#pending_index + 1] = i
    end
  end
  local skipped = n - #pending
  if job and skipped > 0 then
    note(flags, ("resuming job %s: %d of %d already done, skipped; sending %d (%s)"):format(
      job.id, skipped, n, #pending, job.journal_path))
  end
  local lines = not flags["print-response"] and not flags.quiet
  if lines then
    for i = 1, n do
      if resumed[i] then say(item_line(summary_item(i, images[i], entries[i], true))) end
    end
  end

  local progress = c.is_tty("stderr") and not flags.quiet
  local done, nok, nfail = skipped, skipped, 0
  local function tick(i, ok_item)
    done = done + 1
    if ok_item then nok = nok + 1 else nfail = nfail + 1 end
    if progress then
      c.err:write(string.format("\r\27[K[%d/%d] ok=%d failed=%d %s", done, n, nok, nfail,
        c.printable(images[i]):sub(-40)))
      c.err:flush()
    end
  end

  local opts = c.wf_opts(flags, "batch-item")
  opts.concurrency = flags.concurrency or 4
  opts.rpm, opts.tpm = flags.rpm, flags.tpm
  opts.summary = false
  local save_error
  opts.on_result = function(k, item)
    local i = pending_index[k]
    local e = journal_entry(i, images[i], job and { ids[images[i]] } or nil, item)
    if item.record_error then save_error = save_error or ("record not written: " .. tostring(item.record_error)) end
    if job then
      local aok, aerr = job:append(keys[i], e)
      if not aok then save_error = save_error or tostring(aerr) end
    end
    entries[i] = e
    tick(i, e.ok)
    if lines then
      if progress then c.err:write("\r\27[K") end
      say(item_line(summary_item(i, images[i], e)))
    end
    c.out:flush()
  end
  opts.stop = function() return save_error ~= nil end

  local started_wall = os.time()
  local probe_info, interrupted
  if #pending > 0 then
    -- the one place an interrupt is caught: what finished is in the
    -- journal already; the summary is written from it below
    local ok_send, perr = pcall(function()
      local first = pending[1]
      if opts.probe ~= false then
        local p, e = workflow.cached_probe(first, opts)
        if not p then return e end
        probe_info = p
        opts.on_probe(p)
        opts.probe = false     -- done: run_many must not probe again
        opts.record = { probe = p }
      end
      workflow.run_many(pending, opts)
    end)
    if not ok_send then
      if not sys.is_interrupt(perr) then error(perr, 0) end
      interrupted = true
    elseif perr then
      if progress then c.err:write("\n") end
      return nil, perr
    end
  end
  if progress then c.err:write("\n") end
  return M.finish(flags, pos, images, entries, resumed, job, evdir, started_wall, probe_info,
    skipped, save_error, interrupted)
end

function M.finish(flags, pos, images, entries, resumed, job, evdir, started_wall, probe_info,
                  skipped, save_error, interrupted)
  local n = #images
  local items = evidence.array()
  local summary = {
    format = workflow.RECORD_FORMAT, kind = "batch-summary", created_at = evidence.iso_time(started_wall),
    prompt = flags.prompt, source = pos[1], total = n, ok = 0, failed = 0, verification_failed = 0,
    skipped = skipped, unsent = 0, interrupted = interrupted or nil, probe = probe_info,
    job = job and job.id or nil, journal = job and job.journal_path or nil,
    concurrency = flags.concurrency or 4, items = items,
    timings = { started_at = evidence.iso_time(started_wall), finished_at = evidence.iso_time(os.time()) },
  }
  for i = 1, n do
    local s = summary_item(i, images[i], entries[i], resumed[i])
    items[i] = s
    if s.ok then summary.ok = summary.ok + 1
    elseif s.unsent then summary.unsent = summary.unsent + 1
    else summary.failed = summary.failed + 1 end
    if s.errors then summary.verification_failed = summary.verification_failed + 1 end
  end
  if flags["print-response"] then say(c.json_out(summary)) end
  local failure
  if not flags["no-evidence"] then
    local spath, werr = evidence.write(summary, { dir = evdir, secrets = c.secrets,
      name = evidence.timestamp(started_wall) .. "-" .. evidence.short_id() .. "-summary.json" })
    if spath then note(flags, "summary: " .. spath)
    else failure = { save = true, message = "summary not written: " .. tostring(werr) } end
  end
  if flags.output then
    local ok, oerr = c.write_output(flags.output, summary)
    if not ok then failure = failure or oerr end
  end
  note(flags, string.format("batch: %d ok, %d failed, %d not sent of %d%s", summary.ok, summary.failed,
    summary.unsent, n, skipped > 0 and string.format(" (%d done before)", skipped) or ""))
  if interrupted then
    local kept = summary.ok + summary.failed - skipped
    return nil, { interrupted = true, message = ("interrupted: kept the %d images that finished"
      .. " (%d of %d done in all)%s"):format(kept, summary.ok + summary.failed, n,
      job and ("; run the same command again to send the other " .. summary.unsent
        .. " (journal " .. job.journal_path .. ")") or "; --no-evidence: nothing kept on disk") }
  end
  if save_error then
    return nil, { save = true, message = "stopped sending: " .. save_error .. "; "
      .. summary.unsent .. " images not sent" .. (job and "; run the same command again to resume" or "") }
  end
  if failure then return nil, failure end
  local code, first = items_code(items)
  if code == EXIT.ok then return EXIT.ok end
  if first.error then
    return nil, { plain = true, exit = code,
                  message = c.printable(first.image) .. ": " .. c.describe_error(first.error) }
  end
  return nil, { verify = true, message = "verification failed for " .. c.printable(first.image) }
end

return M
