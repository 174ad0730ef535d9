-- Pictures for the grounding, drawing and OCR specs, made and measured with
-- the vips CLI (libvips-tools) and python3:
--   local V = require("spec.support.vision")
--   V.marked(path, w, h [, orientation])  a black JPEG (or PNG by extension)
--       with a white rectangle where the stand-in's target is: the
--       fractions (0.25, 0.25)-(0.50, 0.75) of the pixels as stored; with
--       an EXIF orientation when given
--   V.shown_rect(path)   where that rectangle is in the picture as a viewer
--       shows it (libvips' autorot, then find_trim): x1, y1, x2, y2
--   V.shown_size(path)   the picture's width, height as shown
--   V.size(path)         width, height as stored (vipsheader)
--   V.pixel(path, x, y)  {r, g, b} (the first three bands)
-- Lua 5.1-5.4 and LuaJIT.
local fx = require("spec.support.fixtures")
local Q = fx.quote

local M = {}

local function sh(cmd)
  local out, ok = fx.sh(cmd)
  assert(ok, "command failed: " .. cmd .. "\n" .. out)
  return out
end
M.sh = sh

function M.have_vips()
  local _, ok = fx.sh("command -v vips && command -v vipsheader")
  return ok
end

-- The JPEG at src with an EXIF APP1 holding only Orientation = o, at dst.
function M.set_orientation(src, dst, o)
  local py = [[
import sys, struct
d = open(sys.argv[1], 'rb').read()
assert d[:2] == b'\xff\xd8'
tiff = b'MM\x00\x2a' + struct.pack('>I', 8) + struct.pack('>H', 1) \
     + struct.pack('>HHIHH', 0x0112, 3, 1, int(sys.argv[3]), 0) + struct.pack('>I', 0)
app1 = b'Exif\x00\x00' + tiff
seg = b'\xff\xe1' + struct.pack('>H', len(app1) + 2) + app1
open(sys.argv[2], 'wb').write(d[:2] + seg + d[2:])
]]
  sh("python3 -c " .. Q(py) .. " " .. Q(src) .. " " .. Q(dst) .. " " .. o)
  return dst
end

function M.marked(path, w, h, orientation)
  local v = path .. ".v"
  local x, y = math.floor(0.25 * w + 0.5), math.floor(0.25 * h + 0.5)
  local rw, rh = math.floor(0.5 * w + 0.5) - x, math.floor(0.75 * h + 0.5) - y
  sh(("vips black %s %d %d --bands 3"):format(Q(v), w, h))
  sh(("vips draw_rect %s 255 %d %d %d %d --fill"):format(Q(v), x, y, rw, rh))
  local plain = orientation and (path .. ".plain.jpg") or path
  sh(("vips copy %s %s"):format(Q(v), Q(plain)))
  os.remove(v)
  if orientation then
    M.set_orientation(plain, path, orientation)
    os.remove(plain)
  end
  return path
end

function M.size(path)
  -- by field: the summary line starts with the path, and a temporary
  -- folder's random name may read "0x9" too
  local w, h = sh(("vipsheader -f width %s; vipsheader -f height %s"):format(Q(path), Q(path)))
    :match("^(%d+)\n(%d+)")
  return tonumber(w), tonumber(h)
end

function M.shown_size(path)
  local v = path .. ".shown.v"
  sh(("vips autorot %s %s"):format(Q(path), Q(v)))
  local w, h = M.size(v)
  os.remove(v)
  return w, h
end

function M.shown_rect(path)
  local v = path .. ".shown.v"
  sh(("vips autorot %s %s"):format(Q(path), Q(v)))
  local out = sh(("vips find_trim %s --background 0 --threshold 100"):format(Q(v)))
  os.remove(v)
  local n = {}
  for d in out:gmatch("%-?%d+") do n[#n + 1] = tonumber(d) end
  return n[1], n[2], n[1] + n[3], n[2] + n[4]
end

function M.pixel(path, x, y)
  local out = sh(("vips getpoint %s %d %d"):format(Q(path), x, y))
  local t = {}
  for d in out:gmatch("[%d%.]+") do t[#t + 1] = math.floor(tonumber(d) + 0.5) end
  return { t[1], t[2], t[3] }
end

return M
