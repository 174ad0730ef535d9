-- Client-side resize (src/qv_resize.c, libvips) through qwenvl.chat against
-- the stand-in, which reports the format, size and EXIF orientation of the
-- image it received. Test images are made here with the vips CLI
-- (libvips-tools) and python3; noise comes from /dev/urandom through
-- `vips rawload`, so it is incompressible.
local qwenvl = require("qwenvl")
local fx = require("spec.support.fixtures")
local standin = require("spec.support.standin")
local cjson = require("cjson")

local LIMIT = 10485760   -- QV_DATA_URL_LIMIT
local DEFAULT_MAX_PIXELS = 2621440

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function sh(cmd)
  local p = io.popen(cmd .. " 2>&1; echo \"rc=$?\"")
  local s = p:read("*a")
  p:close()
  local body, rc = s:match("^(.-)rc=(%d+)%s*$")
  assert(tonumber(rc) == 0, "command failed: " .. cmd .. "\n" .. tostring(body))
  return body
end

local function have(cmd)
  local p = io.popen("command -v " .. cmd .. " 2>/dev/null")
  local s = p:read("*a")
  p:close()
  return s ~= ""
end

local read = fx.read

local write = fx.write

local function fsize(path) return #read(path) end

local function sha256(path)
  return sh("sha256sum " .. q(path)):match("^(%x+)")
end

local function b64len(n) return 4 * math.ceil(n / 3) end

-- vips CLI helpers ------------------------------------------------------

local function noise(dir, name, w, h, bands)
  local raw, v = dir .. "/" .. name .. ".raw", dir .. "/" .. name .. ".v"
  sh(("head -c %d /dev/urandom > %s"):format(w * h * bands, q(raw)))
  sh(("vips rawload %s %s %d %d %d"):format(q(raw), q(dir .. "/" .. name .. "0.v"), w, h, bands))
  sh(("vips copy %s %s --interpretation srgb"):format(q(dir .. "/" .. name .. "0.v"), q(v)))
  os.remove(raw)
  os.remove(dir .. "/" .. name .. "0.v")
  return v
end

-- A photo-like JPEG: blurred noise (sigma) saved at quality Q.
local function photo(dir, name, w, h, sigma, Q)
  local v = noise(dir, name, w, h, 3)
  local out = dir .. "/" .. name .. ".jpg"
  if sigma then
    sh(("vips gaussblur %s %s %g --precision integer"):format(q(v), q(dir .. "/" .. name .. "b.v"), sigma))
    os.remove(v)
    v = dir .. "/" .. name .. "b.v"
  end
  sh(("vips copy %s %s"):format(q(v), q(out .. "[Q=" .. (Q or 90) .. "]")))
  os.remove(v)
  return out
end

local function header(path)
  -- by field: the summary line starts with the path, and a temporary
  -- folder's random name may read "0x9" too
  local w, h = sh(("vipsheader -f width %s; vipsheader -f height %s"):format(q(path), q(path)))
    :match("^(%d+)\n(%d+)")
  return tonumber(w), tonumber(h)
end

-- JPEG with an EXIF APP1 carrying only Orientation (0x0112) = o.
local set_orientation = require("spec.support.vision").set_orientation

-- A copy of src (PNG, or WebP that libvips wrote) carrying an EXIF
-- orientation o: an eXIf chunk before IDAT, or an EXIF chunk flagged in a
-- VP8X header (the simple VP8/VP8L chunk is moved behind it).
local function set_orientation_in(kind, src, dst, o, w, h)
  local py = [[
import sys, struct, zlib
src, dst, o, kind, w, h = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
tiff = b'II\x2a\x00' + struct.pack('<I', 8) + struct.pack('<H', 1) \
     + struct.pack('<HHIHH', 0x0112, 3, 1, o, 0) + struct.pack('<I', 0)
d = open(src, 'rb').read()
if kind == 'png':
    c = tiff
    chunk = struct.pack('>I', len(c)) + b'eXIf' + c + struct.pack('>I', zlib.crc32(b'eXIf' + c))
    i = d.index(b'IDAT') - 4
    d = d[:i] + chunk + d[i:]
else:
    i, img = 12, None
    while i < len(d):
        t, n = d[i:i+4], int.from_bytes(d[i+4:i+8], 'little')
        if t in (b'VP8 ', b'VP8L'): img = d[i:i+8+n+(n&1)]
        i += 8 + n + (n & 1)
    vp8x = b'VP8X' + struct.pack('<I', 10) + bytes([0x08, 0, 0, 0]) \
         + (w - 1).to_bytes(3, 'little') + (h - 1).to_bytes(3, 'little')
    ex = b'EXIF' + struct.pack('<I', len(tiff)) + tiff
    body = b'WEBP' + vp8x + img + ex
    d = b'RIFF' + struct.pack('<I', len(body)) + body
open(dst, 'wb').write(d)
]]
  local script = os.tmpname()
  write(script, py)
  sh(("python3 %s %s %s %d %s %d %d"):format(q(script), q(src), q(dst), o, kind, w, h))
  os.remove(script)
  return dst
end

-- A PNG that only declares w x h: IHDR, a token IDAT, IEND (a "bomb"
-- needs no more to be refused, since nothing is decoded).
local function png_header(dst, w, h)
  local py = [[
import sys, struct, zlib
def chunk(t, d): return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d))
ihdr = struct.pack('>IIBBBBB', int(sys.argv[2]), int(sys.argv[3]), 8, 0, 0, 0, 0)
open(sys.argv[1], 'wb').write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr)
  + chunk(b'IDAT', zlib.compress(b'\0' * 4096, 9)) + chunk(b'IEND', b''))
]]
  local script = os.tmpname()
  write(script, py)
  sh(("python3 %s %s %d %d"):format(q(script), q(dst), w, h))
  os.remove(script)
  return dst
end

-- The interpreter running this spec, and its module directory.
local function interp()
  if type(jit) == "table" then return "luajit", "build/luajit" end
  local v = _VERSION:match("%d+%.%d+")
  return "lua" .. v, "build/lua" .. v
end

-- Compile a test helper from spec/c with the C compiler; nil when none.
local function compile(out, args)
  if not have("cc") then return nil end
  local p = io.popen("cc " .. args .. " -o " .. q(out) .. " 2>&1; echo \"rc=$?\"")
  local s = p:read("*a")
  p:close()
  assert(s:match("rc=0%s*$"), "cannot compile " .. out .. ":\n" .. s)
  return out
end

-- what the stand-in saw: the JSON after "STANDIN "
local function seen(res)
  local j = assert(res.text:match("^STANDIN (.*)$"), res.text)
  return cjson.decode(j)
end

local function ratio(w, h) return w / h end

local describe_or_pending = (have("vips") and have("vipsheader")) and describe
  or function(name) pending(name .. " (needs libvips-tools)") end

describe_or_pending("client-side resize (libvips)", function()
  local srv, dir

  local function req(extra)
    local r = { prompt = "What is this?", api_key = srv.key, base_url = srv.base_url,
                max_retries = 0, retry_backoff_s = 0.01 }
    for k, v in pairs(extra or {}) do r[k] = v end
    return r
  end

  local function chat(extra)
    local res, err = qwenvl.chat(req(extra))
    assert(res, tostring(err))
    return res, seen(res).images[1]
  end

  -- a request refused before anything was sent
  local function refused(extra, field)
    local before = srv:stats().chat_requests
    local res, err = qwenvl.chat(req(extra))
    assert.is_nil(res)
    assert.are.equal("invalid_request", err.code)
    assert.are.equal(0, err.attempts or 0)
    if field then assert.are.equal(field, err.field) end
    assert.are.equal(before, srv:stats().chat_requests, "nothing must be sent")
    return err
  end

  setup(function()
    srv = standin.start {}
    dir = os.tmpname()
    os.remove(dir)
    sh("mkdir -p " .. q(dir))
  end)

  teardown(function()
    if srv then srv:stop() end
    if dir then sh("rm -rf " .. q(dir)) end
  end)

  describe("a large JPEG", function()
    local big
    setup(function() big = photo(dir, "big", 3000, 2000, 1.5, 90) end)

    it("is downscaled under max_pixels with the aspect ratio kept", function()
      local res, got = chat { image = big, max_pixels = 1000000 }
      local info = res.images[1]
      assert.is_true(info.resized)
      assert.are.equal(3000, info.original_width)
      assert.are.equal(2000, info.original_height)
      assert.are.equal(fsize(big), info.original_bytes)
      assert.are.equal(sha256(big), info.original_sha256)
      assert.are.equal("jpeg", got.format)
      assert.are.equal(info.width, got.width)
      assert.are.equal(info.height, got.height)
      assert.is_true(got.width * got.height <= 1000000, got.width .. "x" .. got.height)
      assert.is_true(got.width * got.height >= 0.97 * 1000000, "no needless shrinking")
      assert.is_true(math.abs(ratio(got.width, got.height) / 1.5 - 1) < 0.01)
      -- what was sent is what the result describes
      assert.are.equal(info.sha256, got.sha256)
      assert.are.equal(info.bytes, got.bytes)
      assert.is_true(info.bytes < info.original_bytes)
      -- the caller's max_pixels also goes to DashScope, beside image_url
      assert.are.equal(1000000, got.max_pixels)
      assert.are.equal(1000000, res.request.messages[1].content[1].max_pixels)
      assert.is_nil(res.request.messages[1].content[1].image_url.max_pixels)
      -- estimate: ceil(h/32)*ceil(w/32)+2, within the 1e6-pixel budget
      local t = math.ceil(got.height / 32) * math.ceil(got.width / 32)
      assert.are.equal(math.min(t, math.floor(1000000 / 1024)) + 2, info.image_tokens)
    end)

    it("honours max_side", function()
      local res, got = chat { image = big, max_side = 1000 }
      assert.are.equal(1000, got.width)
      assert.is_true(math.abs(got.height - 667) <= 1, tostring(got.height))
      assert.is_true(res.images[1].resized)
      assert.is_nil(got.max_pixels)    -- nothing given, nothing sent
    end)

    it("passes min_pixels through without resizing for it", function()
      local res, got = chat { image = big, max_pixels = 4000000, min_pixels = 200704 }
      assert.are.equal(200704, got.min_pixels)
      assert.are.equal(4000000, got.max_pixels)
      assert.is_true(got.width * got.height <= 4000000)
      assert.is_true(res.images[1].resized)
    end)

    it("encodes as image_format with quality", function()
      local res, got = chat { image = big, max_pixels = 500000, image_format = "webp", quality = 60 }
      assert.are.equal("webp", got.format)
      assert.are.equal("webp", res.images[1].format)
      assert.are.equal("jpeg", res.images[1].original_format)
      local _, lo = chat { image = big, max_pixels = 500000, quality = 40 }
      local _, hi = chat { image = big, max_pixels = 500000, quality = 95 }
      assert.is_true(lo.bytes < hi.bytes)
    end)

    it("goes through a data URL too", function()
      local url = "data:image/jpeg;base64," .. sh("base64 -w0 " .. q(big))
      local res, got = chat { image = url, max_pixels = 300000 }
      assert.are.equal("data_url", res.images[1].source)
      assert.is_true(res.images[1].resized)
      assert.is_true(got.width * got.height <= 300000)
      assert.are.equal(sha256(big), res.images[1].original_sha256)
      assert.matches("<omitted", res.request.messages[1].content[1].image_url.url)
    end)

    it("is sent as is with resize=\"off\"", function()
      local res, got = chat { image = big, resize = "off" }
      assert.is_false(res.images[1].resized)
      assert.are.equal(3000, got.width)
      assert.are.equal(sha256(big), got.sha256)
    end)
  end)

  it("sends a 24-megapixel photo with no option set, within the default budget", function()
    local p = photo(dir, "p24", 6000, 4000, 2.0, 90)
    local res, got = chat { image = p }
    local info = res.images[1]
    assert.is_true(info.resized)
    assert.are.equal(6000, info.original_width)
    assert.is_true(got.width * got.height <= DEFAULT_MAX_PIXELS)
    assert.is_true(got.width * got.height >= 0.97 * DEFAULT_MAX_PIXELS)
    assert.is_true(math.abs(ratio(got.width, got.height) / 1.5 - 1) < 0.01)
    assert.are.equal(2562, info.image_tokens)   -- capped at the model default
    assert.is_nil(got.max_pixels)
    os.remove(p)
  end)

  it("leaves a small JPEG untouched, byte for byte", function()
    local small = photo(dir, "small", 64, 48, nil, 80)
    local res, got = chat { image = small }
    local info = res.images[1]
    assert.is_false(info.resized)
    assert.are.equal(sha256(small), info.sha256)
    assert.are.equal(sha256(small), info.original_sha256)
    assert.are.equal(sha256(small), got.sha256)
    assert.are.equal(fsize(small), got.bytes)
    assert.are.equal(64, got.width)
    assert.are.equal(math.ceil(48 / 32) * math.ceil(64 / 32) + 2, info.image_tokens)
  end)

  it("re-encodes with resize=\"always\" but never upscales", function()
    local small = photo(dir, "small2", 64, 48, nil, 95)
    local res, got = chat { image = small, resize = "always", max_pixels = 100000000 }
    assert.is_true(res.images[1].resized)
    assert.are_not.equal(sha256(small), got.sha256)
    assert.are.equal(64, got.width)
    assert.are.equal(48, got.height)
  end)

  it("applies the EXIF orientation: a rotated photo arrives upright", function()
    local base = photo(dir, "rot", 400, 200, 1.0, 90)
    local rotated = set_orientation(base, dir .. "/rot6.jpg", 6)
    -- the stand-in sees the tag on the file as is
    local _, raw = chat { image = rotated, resize = "off" }
    assert.are.equal(6, raw.orientation)
    assert.are.equal(400, raw.width)
    local res, got = chat { image = rotated }
    assert.is_true(res.images[1].resized)
    assert.are.equal(6, res.images[1].original_orientation)
    assert.are.equal(200, got.width)       -- dimensions swapped
    assert.are.equal(400, got.height)
    assert.is_true(got.orientation == nil or got.orientation == cjson.null
                   or got.orientation == 1, tostring(got.orientation))
  end)

  it("keeps a PNG with alpha as PNG", function()
    local black = dir .. "/black.v"
    sh(("vips black %s 3000 2000 --bands 3"):format(q(black)))
    local png = dir .. "/alpha.png"
    sh(("vips bandjoin_const %s %s 128"):format(q(black), q(png)))
    local res, got = chat { image = png }
    assert.are.equal("png", got.format)
    assert.are.equal("png", res.images[1].format)
    assert.is_true(res.images[1].resized)
    assert.is_true(got.width * got.height <= DEFAULT_MAX_PIXELS)
    -- asked for JPEG, it is flattened and sent as JPEG
    local _, j = chat { image = png, image_format = "jpeg", max_pixels = 100000 }
    assert.are.equal("jpeg", j.format)
  end)

  describe("an image over the 10 MiB data URL limit", function()
    local noisy_png, noisy_jpg
    setup(function()
      -- 1600x1600 is under the pixel budget: only the byte limit applies
      local v = noise(dir, "a", 1600, 1600, 4)
      noisy_png = dir .. "/noise-alpha.png"
      sh(("vips copy %s %s"):format(q(v), q(noisy_png)))
      os.remove(v)
      noisy_jpg = photo(dir, "n100", 1600, 1600, nil, 100)
    end)

    it("is refused locally with resize=\"off\"", function()
      assert.is_true(b64len(fsize(noisy_png)) > LIMIT)
      local err = refused({ image = noisy_png, resize = "off" }, "image")
      assert.matches("10 MiB", err.message)
    end)

    it("now succeeds: a noise JPEG re-encoded at lower quality", function()
      assert.is_true(b64len(fsize(noisy_jpg)) > LIMIT)
      local res, got = chat { image = noisy_jpg }
      assert.is_true(res.images[1].resized)
      assert.are.equal(1600, got.width)    -- quality went down, not the size
      assert.is_true(b64len(got.bytes) + 30 <= LIMIT)
      local rec = srv:requests()
      assert.is_true(rec[#rec].raw_size < LIMIT + 4096)
    end)

    it("now succeeds: a noise PNG with alpha, kept PNG and made smaller", function()
      local res, got = chat { image = noisy_png }
      assert.is_true(res.images[1].resized)
      assert.are.equal("png", got.format)
      assert.is_true(got.width < 1600 and got.width == got.height)
      assert.is_true(b64len(got.bytes) + 30 <= LIMIT)
    end)
  end)

  describe("a corrupt file", function()
    it("that is not an image: a clear invalid_request, nothing sent", function()
      local f = dir .. "/garbage.jpg"
      write(f, string.rep("not an image at all ", 100))
      local err = refused({ image = f }, "image")
      assert.matches("not a supported image", err.message)
    end)

    it("that is a truncated JPEG needing a resize: a clear invalid_request, nothing sent", function()
      local big = photo(dir, "trunc", 3000, 2000, 1.5, 90)
      local data = read(big)
      local cut = dir .. "/truncated.jpg"
      write(cut, data:sub(1, math.floor(#data / 2)))
      local err = refused({ image = cut }, "image")
      assert.matches("cannot resize the image", err.message)
      assert.matches("[Pp]remature end", err.message)
    end)
  end)

  describe("EXIF orientation beyond JPEG (as libvips applies it)", function()
    it("turns a small PNG with an eXIf orientation upright", function()
      local png = fx.png(dir .. "/side.png", 400, 200)
      local rotated = set_orientation_in("png", png, dir .. "/side6.png", 6, 400, 200)
      local _, raw = chat { image = rotated, resize = "off" }
      assert.are.equal(400, raw.width)
      local res, got = chat { image = rotated }
      assert.is_true(res.images[1].resized)
      assert.are.equal(6, res.images[1].original_orientation)
      assert.are.equal(200, got.width)
      assert.are.equal(400, got.height)
    end)

    it("turns a small WebP with a flagged EXIF chunk upright", function()
      local webp = dir .. "/side.webp"
      sh(("vips copy %s %s"):format(q(fx.png(dir .. "/side-w.png", 400, 200)), q(webp .. "[strip]")))
      local rotated = set_orientation_in("webp", webp, dir .. "/side8.webp", 8, 400, 200)
      local res, got = chat { image = rotated }
      assert.is_true(res.images[1].resized)
      assert.are.equal(8, res.images[1].original_orientation)
      assert.are.equal(200, got.width)
      assert.are.equal(400, got.height)
    end)

    it("leaves an upright PNG as it is", function()
      local png = fx.png(dir .. "/up.png", 400, 200)
      local up = set_orientation_in("png", png, dir .. "/up1.png", 1, 400, 200)
      local res, got = chat { image = up }
      assert.is_false(res.images[1].resized)
      assert.are.equal(sha256(up), got.sha256)
    end)
  end)

  describe("libvips is loaded only for an image that needs work", function()
    -- a fresh interpreter: one chat, then is libvips in its address space?
    local function child(image)
      local lua, build = interp()
      local script = dir .. "/maps.lua"
      write(script, ([[
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = "./%s/?.so;" .. package.cpath
local res, err = require("qwenvl").chat { prompt = "p", image = arg[1],
  api_key = %q, base_url = %q, max_retries = 0 }
local f = assert(io.open("/proc/self/maps"))
local maps = f:read("*a")
f:close()
print(("MAPS %%s RESIZED %%s ERR %%s"):format(tostring(maps:find("libvips", 1, true) ~= nil),
  tostring(res and res.images[1].resized), err and err.message or "-"))
]]):format(build, srv.key, srv.base_url))
      local out = sh(("%s %s %s"):format(lua, q(script), q(image)))
      local maps, resized, err = out:match("MAPS (%a+) RESIZED (%a+) ERR ([^\n]*)")
      assert(maps, out)
      return maps == "true", resized, err
    end

    it("not for a small upright JPEG (libvips' own EXIF says orientation 1)", function()
      local small = photo(dir, "tiny", 80, 60, nil, 80)
      local mapped, resized = child(small)
      assert.is_false(mapped)
      assert.are.equal("false", resized)
    end)

    it("not for a small PNG", function()
      local mapped, resized = child(fx.png(dir .. "/tiny.png", 80, 60))
      assert.is_false(mapped)
      assert.are.equal("false", resized)
    end)

    it("not to refuse an image over the decode cap", function()
      local mapped, resized, err = child(png_header(dir .. "/bomb-maps.png", 65535, 65535))
      assert.is_false(mapped)
      assert.are.equal("nil", resized)
      assert.matches("max_input_pixels", err)
    end)

    it("but for a small rotated JPEG, which it turns (the check can fail)", function()
      local base = photo(dir, "tinyrot", 80, 60, nil, 80)
      local mapped, resized = child(set_orientation(base, dir .. "/tinyrot6.jpg", 6))
      assert.is_true(mapped)
      assert.are.equal("true", resized)
    end)
  end)

  describe("the decode cap (max_input_pixels)", function()
    it("refuses a PNG declaring 65535x65535 before decoding it", function()
      local bomb = png_header(dir .. "/bomb.png", 65535, 65535)
      local err = refused({ image = bomb }, "image")
      assert.matches("65535x65535", err.message)
      assert.matches("4294%.8 megapixels", err.message)
      assert.matches("limit of 100%.0 megapixels", err.message)
      assert.matches("raise max_input_pixels", err.message)
    end)

    it("counts an interlaced PNG twice (libvips decodes it whole)", function()
      local py = [[
import sys, struct, zlib
def chunk(t, d): return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d))
ihdr = struct.pack('>IIBBBBB', 8000, 7000, 8, 0, 0, 0, 1)
open(sys.argv[1], 'wb').write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) + chunk(b'IDAT', zlib.compress(b'\0' * 64)) + chunk(b'IEND', b''))
]]
      local f = dir .. "/il.png"
      sh("python3 -c " .. q(py) .. " " .. q(f))
      local err = refused({ image = f }, "image")
      assert.matches("8000x7000 %(56%.0 megapixels, counted twice", err.message)
    end)

    it("is the request field max_input_pixels: lower refuses, higher accepts", function()
      local big = png_header(dir .. "/cap.png", 4000, 3000)
      local err = refused({ image = big, max_input_pixels = 10000000 }, "image")
      assert.matches("12%.0 megapixels", err.message)
      assert.matches("limit of 10%.0 megapixels", err.message)
      local _, e2 = qwenvl.prepare { prompt = "p", image = big, api_key = "sk-test-0000",
        max_input_pixels = 0.5 }
      assert.are.equal("max_input_pixels", e2.field)
    end)

    it("does not apply when nothing is decoded (resize=\"off\")", function()
      local bomb = png_header(dir .. "/bomb-off.png", 65535, 65535)
      local res, got = chat { image = bomb, resize = "off" }
      assert.is_false(res.images[1].resized)
      assert.are.equal(65535, got.width)
    end)
  end)

  describe("the time cap (timeout_s, through qv_resize)", function()
    local tool
    setup(function()
      tool = compile(dir .. "/resize_check", "-std=c99 -D_POSIX_C_SOURCE=200809L " ..
        "-D_DEFAULT_SOURCE -Isrc spec/c/resize_check.c src/qv_resize.c src/qv_exif.c src/qv_file.c " ..
        "src/qv_image.c src/qv_buf.c -lm -lpthread -ldl")
    end)

    it("stops a resize that runs longer, with a clear error", function()
      if not tool then return pending("no C compiler") end
      local p = photo(dir, "slow", 6000, 4000, 2.0, 90)
      -- the default finishes; a cap far below the decode time stops it
      assert.matches("^ok 1982x1321 resized=1", sh(q(tool) .. " " .. q(p)))
      local out = sh(q(tool) .. " " .. q(p) .. " 0.001")
      assert.matches("^error: resizing the image was stopped after 0%.001 s, the time it is allowed", out)
      -- and max_input_pixels, for the lead's request field
      out = sh(q(tool) .. " " .. q(p) .. " 0 20000000")
      assert.matches("^error: the image is 6000x4000 %(24%.0 megapixels%), over the limit of 20%.0", out)
      os.remove(p)
    end)
  end)

  describe("in a child forked after libvips was started", function()
    local ft
    setup(function()
      local inc = type(jit) == "table" and "/usr/include/luajit-2.1"
        or "/usr/include/lua" .. _VERSION:match("%d+%.%d+")
      local so = compile(dir .. "/forktest.so", "-std=c99 -shared -fPIC -I" .. inc ..
        " spec/c/forktest.c")
      if so then
        local saved = package.cpath
        package.cpath = dir .. "/?.so;" .. package.cpath
        ft = require("forktest")
        package.cpath = saved
      end
    end)

    it("fails at once with a clear error, and the parent keeps resizing", function()
      if not ft then return pending("no C compiler") end
      local big = photo(dir, "forkbig", 3000, 2000, 1.5, 90)
      local base = photo(dir, "forkrot", 80, 60, nil, 80)
      local rot = set_orientation(base, dir .. "/forkrot6.jpg", 6)
      local small = photo(dir, "forksmall", 80, 60, nil, 80)
      local res = chat { image = big }                -- starts libvips here
      assert.is_true(res.images[1].resized)
      local report = dir .. "/child.txt"
      local pid = ft.fork()
      if pid == 0 then
        -- the child: never back into busted; report through a file
        local lines = {}
        local ok, err = pcall(function()
          local r, e = qwenvl.chat(req { image = big })
          lines[#lines + 1] = "big " .. (r and "ok" or (e.code .. " " .. e.message))
          r, e = qwenvl.chat(req { image = small })
          lines[#lines + 1] = "small " .. (r and tostring(r.images[1].resized) or e.message)
          r, e = qwenvl.chat(req { image = rot })
          lines[#lines + 1] = "rotated " .. (r and tostring(r.images[1].resized) or e.message)
        end)
        if not ok then lines[#lines + 1] = "child failed: " .. tostring(err) end
        local f = io.open(report, "w")
        if f then f:write(table.concat(lines, "\n"), "\n") f:close() end
        ft.exit(ok and 0 or 3)
      end
      -- a hang is a failure, not a stuck suite
      local code, why = ft.wait(pid, 120)
      assert.is_nil(why)
      local got = fx.try_read(report) or ""
      -- under valgrind the child's _exit runs a leak check that reports
      -- what the parent's threads held: its own exit code, 99
      if os.getenv("QWENVL_UNDER_VALGRIND") == "1" and code == 99 then code = 0 end
      assert.are.equal(0, code, got)
      assert.matches("big invalid_request image: cannot resize the image: libvips cannot " ..
        "resize in this process %(pid %d+%): it was started in process %d+, which then " ..
        "forked this one", got)
      assert.matches("resize before forking", got)
      -- what needs no libvips still works there; a rotation is left to the server
      assert.matches("\nsmall false\n", got)
      assert.matches("\nrotated false\n", got)
      -- the parent is unaffected
      local again = chat { image = big }
      assert.is_true(again.images[1].resized)
    end)
  end)

  describe("without libvips at run time", function()
    it("says what to install, and still sends what needs no resize", function()
      -- hide libvips in a private mount namespace (root and unshare only)
      local real = sh("readlink -f $(ldconfig -p | awk '/libvips\\.so\\.42 /{print $NF; exit}') || true")
        :gsub("%s+$", "")
      local _, ok = fx.sh("unshare -m true")
      if real == "" or not ok then return pending("needs unshare -m (root) and ldconfig") end
      local lua, build = interp()
      local big = photo(dir, "novips", 3000, 2000, 1.5, 90)
      local small = photo(dir, "novips-small", 80, 60, nil, 80)
      local script = dir .. "/novips.lua"
      write(script, ([[
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = "./%s/?.so;" .. package.cpath
local qwenvl = require("qwenvl")
for i = 1, #arg do
  local res, err = qwenvl.chat { prompt = "p", image = arg[i], api_key = %q,
    base_url = %q, max_retries = 0 }
  print(res and ("OK " .. tostring(res.images[1].resized)) or ("ERR " .. err.message))
end
]]):format(build, srv.key, srv.base_url))
      local out = sh(("unshare -m sh -c %s"):format(q(("mount --bind /dev/null %s && exec %s %s %s %s")
        :format(q(real), lua, q(script), q(small), q(big)))))
      assert.matches("^OK false\n", out)
      assert.matches("ERR image: cannot resize the image: libvips could not be loaded %(", out)
      assert.matches("resizing needs it: apt%-get install libvips42 %(Debian, Ubuntu%)", out)
      assert.matches("or set resize=\"off\"", out)
    end)
  end)

  describe("option checks", function()
    local small
    setup(function() small = photo(dir, "opt", 32, 32, nil, 80) end)
    for _, c in ipairs {
      { { resize = "sometimes" }, "resize" },
      { { resize = true }, "resize" },
      { { image_format = "gif" }, "image_format" },
      { { quality = 0 }, "quality" },
      { { quality = 101 }, "quality" },
      { { quality = 1.5 }, "quality" },
      { { max_pixels = 0 }, "max_pixels" },
      { { max_pixels = "many" }, "max_pixels" },
      { { max_side = -1 }, "max_side" },
      { { min_pixels = 0 }, "min_pixels" },
      { { min_pixels = 5000, max_pixels = 4000 }, "min_pixels" },
    } do
      it("refuses " .. cjson.encode(c[1]), function()
        local r = { image = small }
        for k, v in pairs(c[1]) do r[k] = v end
        refused(r, c[2])
      end)
    end
  end)
end)
