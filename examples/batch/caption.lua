#!/usr/bin/env lua
-- caption.lua: caption or tag a folder of images (sprites, screenshots,
-- textures) with Qwen-VL, several at a time, and write a JSON manifest.
--
--   lua5.4 examples/batch/caption.lua [options] <folder>
--     --mode caption|tags     caption (default) or {caption, tags} as JSON
--     --out FILE              manifest path (default <folder>/captions.json)
--     --concurrency N         requests in flight (default 4)
--     --rpm N                 requests per minute limit (default none)
--     --model NAME            model (default: the module's)
--     --prompt TEXT           override the prompt
--     --recursive             include subfolders
--     --progress/--no-progress  progress line on stderr (default: if a tty)
--
-- Credentials: DASHSCOPE_API_KEY (and DASHSCOPE_REGION / DASHSCOPE_BASE_URL).
-- A failed image (unreadable, not an image, refused by the API, ...) is
-- recorded in the manifest with its error; the others are kept. The
-- manifest is written atomically (temp file + rename). Exit status: 0 all
-- captioned, 2 some failed (manifest still written), 1 usage error.

-- From a checkout, use <repo>/lua and <repo>/build/<abi>.
do
  local script = (arg and arg[0]) or ""
  local root = (script:match("^(.*)/[^/]*$") or ".") .. "/../.."
  local abi = type(jit) == "table" and "luajit" or ("lua" .. (_VERSION:match("(%d+%.%d+)") or "5.4"))
  package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
  package.cpath = root .. "/build/" .. abi .. "/?.so;" .. package.cpath
end

local qwenvl = require("qwenvl")
local cjson = require("cjson")

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
    caption = { type = "string" },
    tags = { type = "array", items = { type = "string" } },
  },
  required = { "caption", "tags" },
}

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function usage(msg)
  io.stderr:write("caption.lua: ", msg, "\n",
    "usage: caption.lua [--mode caption|tags] [--out FILE] [--concurrency N] [--rpm N]\n",
    "                   [--model NAME] [--prompt TEXT] [--recursive] [--[no-]progress] <folder>\n")
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
    elseif a == "--progress" then o.progress = true
    elseif a == "--no-progress" then o.progress = false
    elseif a == "-h" or a == "--help" then usage("help")
    elseif a:sub(1, 2) == "--" then usage("unknown option " .. a)
    elseif o.folder then usage("one folder only")
    else o.folder = a end
    i = i + 1
  end
  if not o.folder then usage("no folder given") end
  if o.mode ~= "caption" and o.mode ~= "tags" then usage("--mode is caption or tags") end
  if not o.concurrency or o.concurrency < 1 then usage("--concurrency must be >= 1") end
  o.folder = o.folder:gsub("/+$", "")
  if o.folder == "" then o.folder = "/" end
  o.out = o.out or (o.folder .. "/captions.json")
  if o.progress == nil then
    local r = os.execute("test -t 2")
    o.progress = r == true or r == 0
  end
  return o
end

-- Image files under folder, sorted, as paths relative to it.
local function list_images(folder, recursive)
  local cmd = ("find %s %s -type f -print"):format(q(folder), recursive and "" or "-maxdepth 1")
  local p = assert(io.popen(cmd, "r"))
  local files = {}
  for line in p:lines() do
    local ext = line:match("%.([%w]+)$")
    if ext and EXTENSIONS[ext:lower()] then
      files[#files + 1] = line:sub(#folder + 2)
    end
  end
  p:close()
  table.sort(files)
  return files
end

local function write_atomic(path, text)
  local tmp = ("%s.tmp-%d-%d"):format(path, os.time(), math.random(1, 1e9))
  local f, err = io.open(tmp, "wb")
  if not f then return nil, err end
  local ok, werr = f:write(text)
  local cok, cerr = f:close()
  if not ok or not cok then
    os.remove(tmp)
    return nil, werr or cerr
  end
  local rok, rerr = os.rename(tmp, path)
  if not rok then os.remove(tmp); return nil, rerr end
  return true
end

local function main(argv)
  local o = parse(argv)
  math.randomseed(os.time())
  local files = list_images(o.folder, o.recursive)
  if #files == 0 then
    io.stderr:write("caption.lua: no images in ", o.folder, "\n")
  end
  local requests = {}
  for i, rel in ipairs(files) do
    requests[i] = {
      prompt = o.prompt or PROMPTS[o.mode],
      image = o.folder .. "/" .. rel,
      model = o.model,
      max_tokens = 256,
      schema = o.mode == "tags" and TAGS_SCHEMA or nil,
    }
  end

  local done, failed, t0 = 0, 0, os.time()
  local clock0 = os.clock()
  local function progress(i, err)
    done = done + 1
    if err then failed = failed + 1 end
    if o.progress then
      io.stderr:write(("\r\27[K[%d/%d] %d failed  %s"):format(done, #files, failed, files[i]))
      io.stderr:flush()
    end
  end

  local results = qwenvl.chat_many(requests, {
    concurrency = o.concurrency, rpm = o.rpm,
    on_result = function(i, res, err) progress(i, (not res) or (res.code ~= nil and res.text == nil)) end,
  })
  if o.progress and #files > 0 then io.stderr:write("\n") end

  local entries, n_ok = {}, 0
  for i, rel in ipairs(files) do
    local r = results[i]
    local e = { file = rel }
    if type(r) == "table" and r.text ~= nil then
      local img = r.images and r.images[1] or {}
      e.ok = true
      e.format, e.width, e.height = img.format, img.width, img.height
      e.bytes, e.sha256 = img.bytes, img.sha256
      e.model, e.usage, e.elapsed_s, e.attempts = r.model, r.usage, r.elapsed_s, r.attempts
      if o.mode == "tags" then
        if type(r.json) == "table" then
          e.caption, e.tags = r.json.caption, r.json.tags
        else
          e.ok = false
          e.error = { code = "bad_response", message = "answer is not the expected JSON: "
            .. tostring(r.json_error), text = r.text }
        end
      else
        e.caption = (r.text:gsub("^%s+", ""):gsub("%s+$", ""))
      end
    else
      local err = type(r) == "table" and r or { code = "unknown", message = tostring(r) }
      e.ok = false
      e.error = { code = err.code, message = err.message, status = err.status,
                  field = err.field, request_id = err.request_id, attempts = err.attempts }
    end
    if e.ok then n_ok = n_ok + 1 end
    entries[i] = e
  end

  local manifest = {
    format = "qwenvl.captions/1",
    folder = o.folder,
    mode = o.mode,
    model = o.model,
    generated_at = os.date("!%Y-%m-%dT%H:%M:%SZ"),
    count = #files,
    ok = n_ok,
    failed = #files - n_ok,
    images = entries,
  }
  if #entries == 0 then manifest.images = cjson.empty_array or setmetatable({}, cjson.array_mt) end
  local ok, err = write_atomic(o.out, cjson.encode(manifest) .. "\n")
  if not ok then
    io.stderr:write("caption.lua: cannot write ", o.out, ": ", tostring(err), "\n")
    return 1
  end
  io.stderr:write(("caption.lua: %d/%d captioned, %d failed -> %s (%ds, cpu %.2fs)\n"):format(
    n_ok, #files, #files - n_ok, o.out, os.time() - t0, os.clock() - clock0))
  return n_ok == #files and 0 or 2
end

os.exit(main(arg or {}))
