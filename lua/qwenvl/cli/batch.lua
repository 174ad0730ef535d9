-- qwenvl.cli.batch: `qwenvl batch` (one prompt over a directory or list of images).
local c = require("qwenvl.cli.common")
local workflow = require("qwenvl.workflow")
local evidence = require("qwenvl.evidence")
local EXIT = c.EXIT
local say, note = c.say, c.note
local usage_error, input_error = c.usage_error, c.input_error

local M = { name = "batch", summary = "one prompt over a directory or list of images" }

M.flags = {
  prompt = "string", ["json-mode"] = "flag", schema = "string", output = "string",
  ["print-response"] = "flag", concurrency = "number", ["max-tokens"] = "number",
  temperature = "number", detail = "string", system = "string", repair = "number",
}

M.help = [[
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
  local s, err = c.read_file(target)
  if not s then return nil, input_error("cannot read " .. target .. ": " .. tostring(err)) end
  local base = target:match("^(.*)/[^/]*$")
  local list, missing = {}, {}
  for line in (s .. "\n"):gmatch("([^\n]*)\n") do
    line = line:gsub("\r$", ""):gsub("^%s+", ""):gsub("%s+$", "")
    if line ~= "" and line:sub(1, 1) ~= "#" then
      if not c.is_remote(line) and line:sub(1, 1) ~= "/" and base then line = base .. "/" .. line end
      if not c.is_remote(line) and not c.file_exists(line) then missing[#missing + 1] = line end
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

function M.run(flags, pos)
  if #pos ~= 1 then return nil, usage_error("batch needs one DIR or LIST (see qwenvl batch --help)") end
  if not flags.prompt then return nil, usage_error("batch needs --prompt TEXT") end
  local images, ierr = M.batch_images(pos[1])
  if not images then return nil, ierr end
  local schema
  if flags.schema then
    local s, serr = c.load_schema_file(flags.schema)
    if s == nil then return nil, serr end
    schema = s
  end
  local requests = {}
  for i, img in ipairs(images) do
    local r = { prompt = flags.prompt, image = img, schema = schema }
    if flags["json-mode"] then r.json_mode = true end
    c.apply_common(r, flags)
    requests[i] = r
  end
  local progress = stderr_is_tty() and not flags.quiet
  local done, nok, nfail = {}, 0, 0
  local function tick(i, ok)
    if done[i] then return end
    done[i] = true
    if ok then nok = nok + 1 else nfail = nfail + 1 end
    if progress then
      c.err:write(string.format("\r\27[K[%d/%d] ok=%d failed=%d %s", nok + nfail, #requests, nok, nfail,
        tostring(images[i]):sub(-40)))
      c.err:flush()
    end
  end
  local opts = c.wf_opts(flags, "batch-item")
  opts.concurrency = flags.concurrency or 4
  opts.on_chat_result = function(i, res) tick(i, res ~= nil) end
  opts.on_result = function(i, item)
    tick(i, item.result ~= nil and (item.result.verification == nil or item.result.verification.ok))
  end
  opts.summary_extra = { prompt = flags.prompt, source = pos[1] }
  local items, spath, summary = workflow.run_many(requests, opts)
  if progress then c.err:write("\n") end
  if flags["print-response"] then
    say(c.json_out(summary))
  elseif not flags.quiet then
    for _, s in ipairs(summary.items) do
      local status = s.ok and "ok" or (s.error and ("error:" .. tostring(s.error.code)) or "invalid")
      local text = s.text and tostring(s.text):gsub("%s+", " "):sub(1, 100) or (s.error and s.error.message) or ""
      say(status .. "\t" .. tostring(s.image) .. "\t" .. text)
    end
  end
  if flags.output then
    local ok, oerr = c.write_output(flags.output, summary)
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

return M
