#!/usr/bin/env lua
-- caption.lua: caption or tag a folder of images (sprites, screenshots,
-- textures) with Qwen-VL, several at a time, and write a JSON manifest.
-- An example of a game tool on the library: qwenvl.workflow.each sends
-- and verifies, qwenvl.job keeps every outcome on disk as it arrives.
--
--   lua5.4 examples/batch/caption.lua [options] <folder>
--
-- Run with --help for the options. Exit status: 0 all captioned, 2 some
-- failed (the manifest is still written) or another process is working on
-- the same manifest, 1 usage error, 130 interrupted (what finished is
-- kept; run again to do the rest).

-- From a checkout, use <repo>/lua and <repo>/build/<abi>.
do
  local script = (arg and arg[0]) or ""
  local root = (script:match("^(.*)/[^/]*$") or ".") .. "/../.."
  local abi = type(jit) == "table" and "luajit" or ("lua" .. (_VERSION:match("(%d+%.%d+)") or "5.4"))
  package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
  package.cpath = root .. "/build/" .. abi .. "/?.so;" .. package.cpath
end

local workflow = require("qwenvl.workflow")
local evidence = require("qwenvl.evidence")
local job_mod = require("qwenvl.job")
local sys = require("qwenvl.sys")

local USAGE = [[
usage: caption.lua [options] <folder>

Caption (or tag) every image in <folder> (png, jpg, jpeg, webp, gif, bmp,
tif, tiff, heic, avif) with Qwen-VL and write a JSON manifest: per image
its caption (and tags), size, format, SHA-256, or ok = false and the error.

  --mode caption|tags     a caption (default), or {caption, tags} checked
                          against a JSON Schema (one repair when it is not)
  --out FILE              manifest path (default <folder>/captions.json)
  --concurrency N         requests in flight (default 4)
  --rpm N                 requests per minute limit (default none)
  --model NAME            model (default: the module's)
  --prompt TEXT           override the prompt
  --recursive             include subfolders
  --fresh                 caption everything again (default: resume)
  --progress/--no-progress  progress line on stderr (default: if a tty)
  -h, --help              this text

Every outcome is written to <FILE>.job/journal.jsonl the moment it
arrives; run the same command again after Ctrl-C, a crash or failures and
only the images not yet captioned are sent (an image whose bytes changed
is captioned again). Credentials: DASHSCOPE_API_KEY (environment or
./.env) or ~/.alibabacloud/credentials; DASHSCOPE_REGION /
DASHSCOPE_BASE_URL choose the endpoint.

Exit status: 0 all captioned, 2 some failed (manifest still written) or
another process works on this manifest, 1 usage error, 130 interrupted.
]]

local EXTENSIONS = { png = true, jpg = true, jpeg = true, webp = true, gif = true,
                     bmp = true, tif = true, tiff = true, heic = true, avif = true }

local PROMPTS = {
  caption = "Write one short caption (at most 20 words) for this game asset or screenshot.",
  tags = "Describe this game asset or screenshot: a short caption and 3 to 10 lowercase tags"
    .. " (subject, style, colors, use).",
}

local TAGS_SCHEMA = {
  type = "object",
  properties = {
    caption = { type = "string", minLength = 1 },
    tags = { type = "array", items = { type = "string" } },
  },
  required = { "caption", "tags" },
}

local function usage(msg)
  io.stderr:write("caption.lua: ", msg, "\n", USAGE)
  os.exit(1)
end

local function parse(argv)
  local o = { mode = "caption", concurrency = 4 }
  local i = 1
  local function value()
    i = i + 1
    if argv[i] == nil then usage("missing value for " .. argv[i - 1]) end
    return argv[i]
  end
  while i <= #argv do
    local a = argv[i]
    if a == "--mode" then o.mode = value()
    elseif a == "--out" then o.out = value()
    elseif a == "--concurrency" then o.concurrency = tonumber(value())
    elseif a == "--rpm" then o.rpm = tonumber(value())
    elseif a == "--model" then o.model = value()
    elseif a == "--prompt" then o.prompt = value()
    elseif a == "--recursive" then o.recursive = true
    elseif a == "--fresh" then o.fresh = true
    elseif a == "--progress" then o.progress = true
    elseif a == "--no-progress" then o.progress = false
    elseif a == "-h" or a == "--help" then
      io.stdout:write(USAGE)
      os.exit(0)
    elseif a:sub(1, 2) == "--" then usage("unknown option " .. a)
    elseif o.folder then usage("one folder only")
    else o.folder = a end
    i = i + 1
  end
  if not o.folder then usage("no folder given") end
  if o.mode ~= "caption" and o.mode ~= "tags" then usage("--mode is caption or tags") end
  if not o.concurrency or o.concurrency < 1 or o.concurrency > 256 or o.concurrency % 1 ~= 0 then
    usage("--concurrency must be a whole number from 1 to 256")
  end
  if o.rpm ~= nil and (o.rpm ~= o.rpm or o.rpm < 0.001) then usage("--rpm must be at least 0.001") end
  o.folder = o.folder:gsub("/+$", "")
  if o.folder == "" then o.folder = "/" end
  o.out = o.out or (o.folder .. "/captions.json")
  if o.progress == nil then o.progress = sys.isatty(2) end
  return o
end

-- Image files under folder, sorted, as paths relative to it (names may
-- hold any character: listed with qwenvl.sys, not by parsing `ls`).
local function list_images(folder, recursive)
  local files = {}
  local function walk(rel)
    local dir = rel == "" and folder or (folder .. "/" .. rel)
    for _, name in ipairs(sys.list_dir(dir) or {}) do
      local r = rel == "" and name or (rel .. "/" .. name)
      local kind = sys.kind(folder .. "/" .. r)
      local ext = name:match("%.([%w]+)$")
      if kind == "file" and ext and EXTENSIONS[ext:lower()] then
        files[#files + 1] = r
      elseif kind == "directory" and recursive and name:sub(1, 1) ~= "." then
        walk(r)
      end
    end
  end
  walk("")
  table.sort(files)
  return files
end

-- The manifest entry of one outcome (also what the journal keeps).
local function entry_of(rel, mode, res, err)
  local e = { file = rel }
  if res then
    local img = res.images and res.images[1] or {}
    e.format, e.width, e.height = img.format, img.width, img.height
    e.bytes, e.sha256 = img.bytes, img.sha256
    e.model, e.usage, e.elapsed_s, e.attempts = res.model, res.usage, res.elapsed_s, res.attempts
    local v = res.verification
    if v and not v.ok then
      e.ok = false
      e.error = { code = "bad_response", message = "the answer is not the expected JSON: "
        .. table.concat(v.errors or {}, "; "), text = res.text }
    elseif mode == "tags" then
      e.ok = true
      e.caption, e.tags = res.json.caption, res.json.tags
    else
      e.ok = true
      e.caption = (res.text:gsub("^%s+", ""):gsub("%s+$", ""))
    end
  else
    e.ok = false
    e.error = { code = err.code, message = err.message, status = err.status,
                field = err.field, request_id = err.request_id, attempts = err.attempts }
  end
  return e
end

local function main(argv)
  local o = parse(argv)
  local t0, clock0 = os.time(), os.clock()
  local files = list_images(o.folder, o.recursive)
  if #files == 0 then io.stderr:write("caption.lua: no images in ", o.folder, "\n") end

  local identity = { kind = "caption.lua", mode = o.mode, prompt = o.prompt or PROMPTS[o.mode],
                     model = o.model, max_tokens = 256,
                     schema = o.mode == "tags" and TAGS_SCHEMA or nil }
  local job, jerr = job_mod.open(o.out .. ".job", identity, {
    fresh = o.fresh,
    on_warning = function(msg) io.stderr:write("caption.lua: warning: ", msg, "\n") end,
  })
  if not job then
    io.stderr:write("caption.lua: ", tostring(jerr.message), "\n")
    return 2
  end

  local paths = {}
  for i, rel in ipairs(files) do paths[i] = o.folder .. "/" .. rel end
  local ids = job_mod.image_ids(paths)
  local entries, keys, pending, pending_index = {}, {}, {}, {}
  for i, rel in ipairs(files) do
    keys[i] = job:key(ids[paths[i]])
    local kept = job:done(keys[i])
    if kept then
      entries[i] = kept
      entries[i].file = rel
    else
      pending[#pending + 1] = {
        prompt = identity.prompt, image = paths[i], model = o.model,
        max_tokens = identity.max_tokens, schema = identity.schema,
      }
      pending_index[#pending_index + 1] = i
    end
  end
  if #files - #pending > 0 then
    io.stderr:write(("caption.lua: %d of %d already captioned (%s), sending %d\n"):format(
      #files - #pending, #files, job.journal_path, #pending))
  end

  local done, failed = #files - #pending, 0
  local save_error
  local function on_item(k, res, err)
    local i = pending_index[k]
    local e = entry_of(files[i], o.mode, res, err)
    local ok, aerr = job:append(keys[i], e)
    if not ok then save_error = save_error or aerr end
    entries[i] = e
    done = done + 1
    if not e.ok then failed = failed + 1 end
    if o.progress then
      io.stderr:write(("\r\27[K[%d/%d] %d failed  %s"):format(done, #files, failed, files[i]))
      io.stderr:flush()
    end
  end

  -- the one place Ctrl-C is caught: the journal has what finished, and
  -- the manifest is written from it below
  local interrupted = false
  local ok_run, rerr = pcall(workflow.each, pending, {
    concurrency = o.concurrency, rpm = o.rpm, repair = 1, on_item = on_item,
    stop = function() return save_error ~= nil end,
  })
  if not ok_run then
    if not sys.is_interrupt(rerr) then job:close() error(rerr, 0) end
    interrupted = true
  end
  job:close()
  if o.progress and #files > 0 then io.stderr:write("\n") end

  local list, n_ok, n_missing = {}, 0, 0
  for i, rel in ipairs(files) do
    local e = entries[i]
    if not e then
      n_missing = n_missing + 1
      e = { file = rel, ok = false, error = { code = "not_sent", message = "not sent yet" } }
    end
    local m = {}
    for k, v in pairs(e) do
      if k ~= "t" and k ~= "job" and k ~= "key" and k ~= "at" then m[k] = v end
    end
    list[i] = m
    if m.ok then n_ok = n_ok + 1 end
  end
  local manifest = {
    format = "qwenvl.captions/1",
    folder = o.folder,
    mode = o.mode,
    model = o.model,
    generated_at = evidence.iso_time(os.time()),
    count = #files,
    ok = n_ok,
    failed = #files - n_ok,
    journal = job.journal_path,
    images = evidence.array(list),
  }
  local wok, werr = evidence.write_file(o.out,
    evidence.encode(evidence.redact(manifest), { indent = 2 }) .. "\n")
  if not wok then
    io.stderr:write("caption.lua: cannot write ", o.out, ": ", tostring(werr), "\n")
    return interrupted and 130 or 1
  end
  if interrupted then
    io.stderr:write(("caption.lua: interrupted: %d of %d captioned and kept in %s;"
      .. " run the same command again for the other %d\n"):format(n_ok, #files, o.out, #files - n_ok))
    return 130
  end
  if save_error then
    io.stderr:write("caption.lua: stopped sending: ", tostring(save_error), "\n")
    return 2
  end
  io.stderr:write(("caption.lua: %d/%d captioned, %d failed -> %s (%ds, cpu %.2fs)\n"):format(
    n_ok, #files, #files - n_ok, o.out, os.time() - t0, os.clock() - clock0))
  return n_ok == #files and 0 or 2
end

os.exit(main(arg or {}))
