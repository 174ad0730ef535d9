-- qwenvl.cli.annotate: `qwenvl annotate`: ask where things are in a
-- picture, print the boxes as JSON lines in the picture's own pixels, and
-- draw them with their labels onto a copy of it.
local c = require("qwenvl.cli.common")
local workflow = require("qwenvl.workflow")
local grounding = require("qwenvl.grounding")
local EXIT = c.EXIT
local say, note = c.say, c.note
local usage_error, input_error = c.usage_error, c.input_error

local M = { name = "annotate", summary = "find things in a picture: boxes as JSON lines, drawn on a copy" }

M.flags = c.with({
  image = "string", prompt = "string", find = "string", out = "string", points = "flag",
  ["max-tokens"] = "number", temperature = "number", detail = "string", probe = "flag",
}, c.RESIZE_FLAGS)

M.DEFAULT_MAX_TOKENS = 2048   -- a list of boxes outgrows the usual 512

M.help = [[
Usage: qwenvl annotate --image FILE (--find WHAT | --prompt TEXT) --out PATH [options]

Ask the model where things are in a picture. Prints each box and point it
gives as one line of JSON, in pixels of FILE as it is displayed (its EXIF
orientation applied):
  {"label":"cat","x1":120,"y1":80,"x2":610,"y2":455}
  {"label":"eye","x":300,"y":170}
(edges are pixel boundaries: a box over the whole picture is 0,0,width,height),
and writes a copy of FILE with the boxes and labels drawn on it to PATH:
same size and orientation as FILE is shown; PNG, JPEG or WebP by PATH's
extension (JPEG is the fastest and smallest for photos). The model's
coordinates are mapped back through every resize: qwenvl's own downscale
and the service's (Qwen2.5-VL models answer in pixels of the image as
they saw it, Qwen3-VL ones relative to 0..1000).

Options:
  --image FILE        the picture (a local file: the copy is drawn from it)
  --find WHAT         what to locate ("every cat", "the red car"); the
                      question is built for you
  --prompt TEXT       your own question instead; the answer format is added
                      unless it already names bbox_2d or point_2d
  --points            ask for a point (point_2d) at the centre of each too
  --out PATH          the annotated copy (.png, .jpg, .jpeg or .webp)
  --model NAME        default qwen3-vl-plus
  --max-tokens N      default 2048; --temperature T; --detail auto|low|high
  --resize auto|off|always, --max-pixels N, --max-side N, --image-format F, --quality N
  --region R, --base-url URL, --max-retries N, --retry-backoff-s S, --timeout-s S
  --probe, --no-probe, --no-evidence, --evidence-dir DIR, --quiet

Exit codes: 0 success (also when nothing was found: no lines, the copy
is written), 3 bad input (no such picture, an output that is not
.png/.jpg/.webp or is the picture itself), 6 an answer without the JSON
asked for, 8 the answer arrived but the copy could not be written.

Examples (from a checkout: examples/sample.png is a small test image):
  qwenvl annotate --image examples/sample.png --find "every coloured square" --out output/sample-boxes.png
  qwenvl annotate --image examples/sample.png --prompt "Where is the brightest spot?" --points --out output/spot.jpg
  qwenvl annotate --image examples/sample.png --find "every person" --out output/people.jpg --model qwen2.5-vl-72b-instruct --region intl
]]

local function mentions_format(p)
  return p:find("bbox_2d", 1, true) or p:find("point_2d", 1, true)
end

--- The question sent, from --find / --prompt and --points.
function M.question(flags)
  local kind = flags.points and "both" or "boxes"
  if flags.find then return grounding.prompt(flags.find, { kind = kind }) end
  if mentions_format(flags.prompt) then return flags.prompt end
  return flags.prompt .. "\n" .. grounding.instructions({ kind = kind })
end

local function check_flags(flags, pos)
  if #pos > 0 then return usage_error("annotate takes no arguments (use --image FILE)") end
  if not flags.image then return usage_error("annotate needs --image FILE") end
  if not flags.out then return usage_error("annotate needs --out PATH (.png, .jpg or .webp)") end
  if flags.find and flags.prompt then return usage_error("give --find or --prompt, not both") end
  if not flags.find and not flags.prompt then
    return usage_error("annotate needs --find WHAT or --prompt TEXT")
  end
  if (flags.find or flags.prompt):find("%S") == nil then
    return usage_error("--find / --prompt must not be empty")
  end
  local ext = flags.out:lower():match("%.(%w+)$")
  if ext ~= "png" and ext ~= "jpg" and ext ~= "jpeg" and ext ~= "webp" then
    return input_error("--out must end in .png, .jpg, .jpeg or .webp (got " .. flags.out .. ")")
  end
  if c.is_remote(flags.image) then
    return input_error("--image must be a local file (the copy is drawn from it)")
  end
  if not c.file_exists(flags.image) then return input_error("image file not found: " .. flags.image) end
  return c.check_integer(flags, "max-tokens", 1, 131072) or c.check_probe_flags(flags)
end

function M.run(flags, pos)
  local uerr = check_flags(flags, pos)
  if uerr then return nil, uerr end
  local req = { prompt = M.question(flags), image = flags.image,
                max_tokens = flags["max-tokens"] or M.DEFAULT_MAX_TOKENS }
  c.apply_common(req, flags)
  c.secrets = req
  local q, lerr = c.core()
  if not q then return nil, lerr end
  -- what would stop the drawing stops the question, before it is paid for
  local ok, oerr = q.draw_boxes(flags.image, flags.out, {}, { check = true })
  if not ok then
    if oerr.code == "invalid_request" then return nil, input_error(oerr.message) end
    return nil, oerr
  end
  ok, oerr = c.check_output(flags.out)
  if not ok then return nil, oerr end
  ok, oerr = c.check_evidence(flags)
  if not ok then return nil, oerr end

  local result, path, werr = workflow.run(req, c.wf_opts(flags, "annotate"))
  if not result then return nil, path end
  if path then note(flags, "record: " .. path) end
  local boxes, berr = grounding.boxes(result)
  if not boxes then
    berr.message = tostring(berr.message) .. " (the answer: "
      .. tostring(result.text):sub(1, 200):gsub("%s+", " ") .. ")"
    return nil, berr
  end
  for _, b in ipairs(boxes) do say(c.json_out(b)) end
  if #boxes == 0 then note(flags, "nothing found: the copy has no boxes") end
  local drawn, info = q.draw_boxes(flags.image, flags.out, boxes)
  if not drawn then
    return nil, { save = true, message = "the answer arrived but " .. flags.out
      .. " could not be written: " .. tostring(info and info.message or info) }
  end
  if info and info.warning then note(flags, "warning: " .. info.warning) end
  note(flags, ("wrote %s (%dx%d, %d box%s)"):format(flags.out, info.width, info.height,
    #boxes, #boxes == 1 and "" or "es"))
  if werr then
    return nil, { save = true, message = "the answer arrived but its record was not written: "
      .. tostring(werr) }
  end
  return EXIT.ok
end

return M
