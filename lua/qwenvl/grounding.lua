-- qwenvl.grounding: boxes and points in an answer, in the pixels of the
-- picture the caller gave.
--
--   local q = require("qwenvl")
--   local g = require("qwenvl.grounding")
--   local res = assert(q.chat{ prompt = g.prompt("every cat"), image = "cats.jpg" })
--   for _, b in ipairs(assert(g.boxes(res))) do
--     if b.x1 then print(b.label, b.x1, b.y1, b.x2, b.y2) else print(b.label, b.x, b.y) end
--   end
--
-- The models answer JSON such as [{"bbox_2d": [x1, y1, x2, y2], "label":
-- "cat"}, {"point_2d": [x, y], "label": "eye"}] (fenced or bare, one
-- object or a list; objects found anywhere inside the value). Their
-- numbers are in one of two frames, by model family (g.family):
--
--   relative  0..1000 across the image, whatever its size: Qwen3-VL,
--             Qwen3.5 and later, the Qwen3-VL based qwen-vl-ocr
--             (2025-11-20) and names not known here
--   absolute  pixels of the image as the model saw it: the image as sent,
--             rescaled by the service's smart_resize (sides multiples of
--             the grid, the pixel count within [min_pixels, max_pixels]):
--             Qwen2.5-VL and the qwen-vl-max/-plus line (28-pixel grid;
--             32 for qwen-vl-max/-plus, their -latest and the 2025-08
--             snapshots, which the service tokenizes by 32x32), QVQ (28),
--             the older dated qwen-vl-ocr snapshots (28)
--
-- and are mapped back through everything qwenvl did to the picture:
-- result.images[i] says what was sent (width, height) and what the file
-- holds (original_width, original_height as stored, original_orientation
-- when EXIF says to turn it); result.request says which min_pixels /
-- max_pixels went beside the image and whether vl_high_resolution_images
-- was set. A rotated photo that qwenvl re-encoded was sent upright; one
-- sent as it is (resize = "off", or no libvips) was sent as stored, and
-- the service is taken to read its pixels as stored (it is not documented
-- to apply EXIF; the stand-in does not), so its boxes are turned with it.
--
-- Pure Lua over the core module (extract_json, error); Lua 5.1-5.4, LuaJIT.

local M = {}

local floor, sqrt, ceil = math.floor, math.sqrt, math.ceil

local function core(opts)
  return (opts and opts.qwenvl) or require("qwenvl")
end

---------------------------------------------------------------------------
-- model families

-- Qwen2.5-VL-era names the service tokenizes by 32x32 pixels (see the
-- notes in /shared/notes/dashscope-api.md, section 3.2).
local GRID32 = {
  ["qwen-vl-max"] = true, ["qwen-vl-max-latest"] = true, ["qwen-vl-max-2025-08-13"] = true,
  ["qwen-vl-plus"] = true, ["qwen-vl-plus-latest"] = true, ["qwen-vl-plus-2025-08-15"] = true,
}

-- The dated qwen-vl-ocr snapshots before the Qwen3-VL based 2025-11-20.
local function old_ocr(m)
  return m:match("^qwen%-vl%-ocr%-2024") or m:match("^qwen%-vl%-ocr%-2025%-0")
    or m == "qwen-vl-ocr-1028" or m == "qwen-vl-ocr-0413" or m == "qwen-vl-ocr-0828"
end

local is_ocr = require("qwenvl.ocr").is_ocr   -- one rule for what an OCR model is

-- Defaults in tokens of grid x grid pixels: min 4, max 1280 (Qwen2.5-VL,
-- documented 1,003,520 on the 28 grid; assumed the same token count on
-- the 32 grid), 2560 (Qwen3-VL, documented 2,621,440), OCR 3 and 8192
-- (documented 3,072 and 8,388,608); a per-image max_pixels, and
-- vl_high_resolution_images, reach at most 16384 tokens.
local function fam(name, coords, grid, min_tokens, max_tokens)
  return { name = name, coords = coords, grid = grid,
           min_pixels = min_tokens * grid * grid, max_pixels = max_tokens * grid * grid,
           max_pixels_cap = 16384 * grid * grid }
end

--- The conventions of a model name: {name, coords = "relative" |
-- "absolute", grid, min_pixels, max_pixels, max_pixels_cap}.
function M.family(model)
  local m = tostring(model or ""):lower()
  if m:match("^qvq") then return fam("qvq", "absolute", 28, 4, 1280) end
  if is_ocr(m) then
    if old_ocr(m) then return fam("ocr", "absolute", 28, 3, 8192) end
    return fam("ocr", "relative", 32, 3, 8192)
  end
  if m:match("^qwen3%-vl") or m:match("^qwen3%.[5-9]") then
    return fam("qwen3-vl", "relative", 32, 4, 2560)
  end
  if GRID32[m] then return fam("qwen2.5-vl", "absolute", 32, 4, 1280) end
  if m:match("^qwen%-vl%-max") or m:match("^qwen%-vl%-plus") or m:match("^qwen2%.5%-vl") then
    return fam("qwen2.5-vl", "absolute", 28, 4, 1280)
  end
  return fam("other", "relative", 32, 4, 2560)
end

---------------------------------------------------------------------------
-- smart_resize: the size the model sees (qwen-vl-utils' rule)

-- Python's round(): half to even.
local function round_even(x)
  local f = floor(x)
  local d = x - f
  if d > 0.5 then return f + 1 end
  if d < 0.5 then return f end
  return (f % 2 == 0) and f or f + 1
end

--- (height, width) an image of height x width becomes before the model
-- sees it: each side rounded to a multiple of `grid`, then both scaled by
-- one square-root factor into [min_pixels, max_pixels] (floored when
-- shrinking, ceiled when growing); never below one grid.
function M.smart_resize(height, width, grid, min_pixels, max_pixels)
  local h = math.max(grid, round_even(height / grid) * grid)
  local w = math.max(grid, round_even(width / grid) * grid)
  if h * w > max_pixels then
    local beta = sqrt((height * width) / max_pixels)
    h = math.max(grid, floor(height / beta / grid) * grid)
    w = math.max(grid, floor(width / beta / grid) * grid)
  elseif h * w < min_pixels then
    local beta = sqrt(min_pixels / (height * width))
    h = ceil(height * beta / grid) * grid
    w = ceil(width * beta / grid) * grid
  end
  return h, w
end

---------------------------------------------------------------------------
-- prompts

local KINDS = { boxes = true, points = true, both = true }

--- The answer format the parser reads, to append to a question of one's
-- own. opts.kind: "boxes" (default), "points" or "both".
function M.instructions(opts)
  local kind = opts and opts.kind or "boxes"
  if not KINDS[kind] then
    error("qwenvl.grounding: kind must be boxes, points or both (got " .. tostring(kind) .. ")", 2)
  end
  local item
  if kind == "boxes" then
    item = '{"bbox_2d": [x1, y1, x2, y2], "label": "<what it is>"}'
  elseif kind == "points" then
    item = '{"point_2d": [x, y], "label": "<what it is>"}'
  else
    item = '{"bbox_2d": [x1, y1, x2, y2], "label": "<what it is>"} for each, plus '
      .. '{"point_2d": [x, y], "label": "<what it is>"} for its centre'
  end
  return "Answer with JSON only: a list with one object per instance found, " .. item
    .. ". Answer [] when there is none."
end

--- A question that makes the model answer in the shape boxes() reads:
-- prompt("every cat") or prompt("the red car", {kind = "both"}).
function M.prompt(what, opts)
  if type(what) ~= "string" or not what:find("%S") then
    error("qwenvl.grounding.prompt: what to find must be a non-empty string", 2)
  end
  what = what:gsub("^%s+", ""):gsub("%s+$", "")
  return "Locate " .. what .. " in the image. " .. M.instructions(opts)
end

---------------------------------------------------------------------------
-- parsing

local function num(v)
  return type(v) == "number" and v == v and v > -math.huge and v < math.huge
end

local function label_of(t)
  local l = t.label
  if type(l) == "string" then return l end
  if type(l) == "number" then return tostring(l) end
  return nil
end

-- Collect {kind, label, v = {...}} from every table under `v` that holds
-- bbox_2d or point_2d (a list of numbers of the right length).
local function collect(v, out, depth)
  if type(v) ~= "table" or depth > 16 then return end
  local box, pt = v.bbox_2d, v.point_2d
  if type(box) == "table" and #box == 4 and num(box[1]) and num(box[2]) and num(box[3]) and num(box[4]) then
    out[#out + 1] = { kind = "box", label = label_of(v), v = { box[1], box[2], box[3], box[4] } }
  end
  if type(pt) == "table" and #pt == 2 and num(pt[1]) and num(pt[2]) then
    out[#out + 1] = { kind = "point", label = label_of(v), v = { pt[1], pt[2] } }
  end
  if #v > 0 then
    for i = 1, #v do collect(v[i], out, depth + 1) end
  else
    for k, x in pairs(v) do
      if k ~= "bbox_2d" and k ~= "point_2d" then collect(x, out, depth + 1) end
    end
  end
end

-- Each balanced {...} at the top level of s (strings respected): the
-- answers that list objects one per line without a surrounding [].
local function objects_in(s)
  local list, depth, start, instr, esc = {}, 0, nil, false, false
  for i = 1, #s do
    local ch = s:sub(i, i)
    if instr then
      if esc then esc = false
      elseif ch == "\\" then esc = true
      elseif ch == '"' then instr = false end
    elseif ch == '"' then
      if depth > 0 then instr = true end
    elseif ch == "{" then
      if depth == 0 then start = i end
      depth = depth + 1
    elseif ch == "}" and depth > 0 then
      depth = depth - 1
      if depth == 0 then list[#list + 1] = s:sub(start, i) end
    end
  end
  return list
end

--- The boxes and points of an answer, in the model's own numbers:
-- {{kind = "box"|"point", label =, v = {x1, y1, x2, y2} | {x, y}}, ...},
-- or nil, err (bad_response) when the text holds no JSON at all.
function M.parse(text, opts)
  local q = core(opts)
  if type(text) ~= "string" then
    return nil, q.error("bad_response", "the answer has no text")
  end
  local out = {}
  local v = q.extract_json(text)
  if v ~= nil then
    collect(v, out, 0)
    return out
  end
  local any = false
  for _, s in ipairs(objects_in(text)) do
    local o = q.extract_json(s)
    if o ~= nil then
      any = true
      collect(o, out, 0)
    end
  end
  if not any then
    return nil, q.error("bad_response", "the answer holds no JSON with bbox_2d or point_2d")
  end
  return out
end

---------------------------------------------------------------------------
-- the frames an image went through

-- EXIF orientations that swap width and height.
local function swaps(o) return o == 5 or o == 6 or o == 7 or o == 8 end

-- (x, y) in an image of w x h as stored -> as displayed for orientation o.
local function orient(o, x, y, w, h)
  if o == 2 then return w - x, y
  elseif o == 3 then return w - x, h - y
  elseif o == 4 then return x, h - y
  elseif o == 5 then return y, x
  elseif o == 6 then return h - y, x
  elseif o == 7 then return h - y, w - x
  elseif o == 8 then return y, w - x
  end
  return x, y
end
M.orient = orient

-- The image_url parts of the body as sent, in order (result.images holds
-- the images in the same order).
local function image_parts(body)
  local parts = {}
  local msgs = type(body) == "table" and body.messages
  if type(msgs) ~= "table" then return parts end
  for _, m in ipairs(msgs) do
    if type(m) == "table" and type(m.content) == "table" then
      for _, p in ipairs(m.content) do
        if type(p) == "table" and p.type == "image_url" then parts[#parts + 1] = p end
      end
    end
  end
  return parts
end

local function posint(v) return type(v) == "number" and v >= 1 and v == floor(v) end

--- How image i of a result reached the model: {index, width, height (the
-- picture as displayed: the file turned by its EXIF orientation),
-- sent_width, sent_height, orientation (of the pixels sent: 1 when they
-- were sent upright), family, seen_width, seen_height (absolute families:
-- the size the model saw)} or nil, err. opts: image (index; default the
-- last), model, coords ("relative" | "absolute": overrides the family's),
-- width and height (the picture's size when the result does not know it:
-- an image given by URL).
function M.frame(result, opts)
  opts = opts or {}
  local q = core(opts)
  local images = type(result) == "table" and type(result.images) == "table" and result.images or {}
  local i = opts.image or #images
  local info = images[i]
  if opts.image ~= nil and (type(i) ~= "number" or info == nil) and #images > 0 then
    return nil, q.error("invalid_request", "the result has no image " .. tostring(i), { field = "image" })
  end
  info = info or {}
  local model = opts.model
  if type(model) ~= "string" then model = result.model end
  if type(model) ~= "string" and type(result.request) == "table" then model = result.request.model end
  local f = M.family(model)
  local coords = opts.coords or f.coords
  if coords ~= "relative" and coords ~= "absolute" then
    return nil, q.error("invalid_request", "coords must be relative or absolute", { field = "coords" })
  end
  local fr = { index = i, family = f.name, coords = coords, grid = f.grid }
  local sw, sh = info.width, info.height
  if opts.width or opts.height then
    if not (posint(opts.width) and posint(opts.height)) then
      return nil, q.error("invalid_request", "width and height must be positive integers", { field = "width" })
    end
    sw, sh = sw or opts.width, sh or opts.height
  end
  if not (posint(sw) and posint(sh)) then
    return nil, q.error("invalid_request", "the size of image " .. tostring(i)
      .. " is not known (an image given by URL): pass its width and height", { field = "width" })
  end
  fr.sent_width, fr.sent_height = sw, sh
  local o = tonumber(info.original_orientation) or 1
  -- a re-encoded image went upright; one sent as it is went as stored
  fr.orientation = (info.resized == true) and 1 or o
  if opts.width then
    fr.width, fr.height = opts.width, opts.height
  elseif posint(info.original_width) and posint(info.original_height) then
    if swaps(o) then fr.width, fr.height = info.original_height, info.original_width
    else fr.width, fr.height = info.original_width, info.original_height end
  else
    fr.width, fr.height = sw, sh
  end
  if coords == "absolute" then
    local part = image_parts(result.request)[i] or {}
    local high = type(result.request) == "table" and result.request.vl_high_resolution_images == true
    local cap = f.max_pixels_cap
    local maxp = high and cap or math.min(tonumber(part.max_pixels) or f.max_pixels, cap)
    local minp = math.min(tonumber(part.min_pixels) or f.min_pixels, maxp)
    fr.seen_height, fr.seen_width = M.smart_resize(sh, sw, f.grid, minp, maxp)
  end
  return fr
end

---------------------------------------------------------------------------
-- mapping

-- (x, y) in the model's numbers -> pixels of the displayed picture.
local function to_picture(fr, x, y)
  local fw, fh
  if fr.coords == "relative" then fw, fh = 1000, 1000
  else fw, fh = fr.seen_width, fr.seen_height end
  -- the frame the model's numbers are in is the image sent: as stored
  -- (turned by EXIF afterwards) or upright
  local sw, sh = fr.sent_width, fr.sent_height
  local px, py = x / fw * sw, y / fh * sh
  px, py = orient(fr.orientation, px, py, sw, sh)
  local dw, dh = sw, sh
  if swaps(fr.orientation) then dw, dh = sh, sw end
  return px / dw * fr.width, py / dh * fr.height
end
M.to_picture = to_picture

local function clamp(v, lo, hi)
  if v < lo then return lo elseif v > hi then return hi end
  return v
end

local function round(v) return floor(v + 0.5) end

--- The boxes and points of a result's answer, in pixels of the picture
-- the caller gave, as it is displayed (EXIF orientation applied):
-- {{label =, x1 =, y1 =, x2 =, y2 =}, {label =, x =, y =}, ...} (whole
-- pixels, x1 <= x2 and y1 <= y2, within the picture; edges are pixel
-- boundaries: a box over the whole picture is 0, 0, width, height), or
-- nil, err. The answer is result.text (or opts.text); opts as frame().
function M.boxes(result, opts)
  opts = opts or {}
  if type(result) ~= "table" then
    error("qwenvl.grounding.boxes: result must be a table (a qwenvl.chat result)", 2)
  end
  local items, err = M.parse(opts.text or result.text, opts)
  if not items then return nil, err end
  if #items == 0 then return {} end
  local fr, ferr = M.frame(result, opts)
  if not fr then return nil, ferr end
  local W, H = fr.width, fr.height
  local out = {}
  for _, it in ipairs(items) do
    local v = it.v
    if it.kind == "box" then
      local ax, ay = to_picture(fr, v[1], v[2])
      local bx, by = to_picture(fr, v[3], v[4])
      local x1, x2 = math.min(ax, bx), math.max(ax, bx)
      local y1, y2 = math.min(ay, by), math.max(ay, by)
      out[#out + 1] = { label = it.label,
        x1 = clamp(round(x1), 0, W), y1 = clamp(round(y1), 0, H),
        x2 = clamp(round(x2), 0, W), y2 = clamp(round(y2), 0, H) }
    else
      local x, y = to_picture(fr, v[1], v[2])
      out[#out + 1] = { label = it.label, x = clamp(round(x), 0, W), y = clamp(round(y), 0, H) }
    end
  end
  return out
end

return M
