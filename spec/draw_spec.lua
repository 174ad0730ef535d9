-- qwenvl.draw_boxes: boxes, points and labels drawn onto a copy of a
-- picture as it is shown (EXIF orientation applied, its own size), checked
-- by its pixels (vips getpoint) and header; refusals, and no partial file.
local qwenvl = require("qwenvl")
local fx = require("spec.support.fixtures")
local V = require("spec.support.vision")

local RED, GREEN, BLUE = { 230, 25, 75 }, { 60, 180, 75 }, { 0, 130, 200 }

local function far(a, b) -- clearly another colour
  return math.abs(a[1] - b[1]) + math.abs(a[2] - b[2]) + math.abs(a[3] - b[3]) > 120
end

local function magic(path)
  local s = fx.read(path)
  if s:sub(1, 8) == "\137PNG\r\n\26\n" then return "png" end
  if s:sub(1, 3) == "\255\216\255" then return "jpeg" end
  if s:sub(1, 4) == "RIFF" and s:sub(9, 12) == "WEBP" then return "webp" end
  return "?"
end

local function leftovers(dir)
  local out = fx.sh("ls -A " .. fx.quote(dir))
  local n = 0
  for name in out:gmatch("[^\n]+") do if name:find("%.tmp%-") then n = n + 1 end end
  return n
end

local describe_vips = V.have_vips() and describe or function(name) pending(name .. " (needs libvips-tools)") end

describe_vips("qwenvl.draw_boxes", function()
  local dir, black

  setup(function()
    dir = fx.tmpdir()
    black = dir .. "/black.png"
    V.sh(("vips black %s 400 300 --bands 3"):format(fx.quote(black)))
  end)
  teardown(function() if dir then fx.rm(dir) end end)

  it("draws box edges in the box colour, inside the box, and nothing outside", function()
    local out = dir .. "/boxes.png"
    local ok, info = qwenvl.draw_boxes(black, out, {
      { x1 = 100, y1 = 80, x2 = 200, y2 = 220, label = "cat" },
      { x1 = 250, y1 = 150, x2 = 350, y2 = 250, label = "dog" },
      { x1 = 20, y1 = 200, x2 = 60, y2 = 280, label = "cat" },
      { x1 = 300, y1 = 20, x2 = 380, y2 = 60, color = { 0, 130, 200 } },
    })
    assert.is_true(ok, tostring(info))
    assert.are.same({ 400, 300 }, { info.width, info.height })
    assert.are.equal(3, info.labels)
    assert.are.same({ 400, 300 }, { V.size(out) })
    assert.are.equal("png", magic(out))
    -- the first box: its outermost pixels are the box's, stroke 2 inside
    assert.are.same(RED, V.pixel(out, 100, 150))       -- left edge
    assert.are.same(RED, V.pixel(out, 101, 150))
    assert.are.same(RED, V.pixel(out, 199, 150))       -- right edge (x2 is a boundary)
    assert.are.same(RED, V.pixel(out, 150, 219))       -- bottom edge
    assert.are.same({ 0, 0, 0 }, V.pixel(out, 99, 150))
    assert.are.same({ 0, 0, 0 }, V.pixel(out, 200, 150))
    assert.are.same({ 0, 0, 0 }, V.pixel(out, 150, 220))
    assert.are.same({ 0, 0, 0 }, V.pixel(out, 150, 150)) -- inside
    -- another label, another colour; the same label, the same colour
    assert.are.same(GREEN, V.pixel(out, 250, 200))
    assert.are.same(RED, V.pixel(out, 20, 240))
    assert.are.same(BLUE, V.pixel(out, 300, 40))        -- its own colour
    -- the label sits on a box-coloured band just above the box
    local band = V.pixel(out, 102, 70)
    assert.is_false(far(band, RED) and far(band, { 255, 255, 255 }), "label band")
  end)

  it("draws points as a dot with a ring, and clips what crosses the edge", function()
    local out = dir .. "/points.png"
    local ok, info = qwenvl.draw_boxes(black, out, {
      { x = 200, y = 150, label = "centre" },
      { x1 = -50, y1 = -50, x2 = 50, y2 = 50 },
      { x1 = 0, y1 = 0, x2 = 400, y2 = 300 },
      { x1 = 500, y1 = 10, x2 = 600, y2 = 20, label = "outside" },
    })
    assert.is_true(ok, tostring(info))
    assert.are.same(RED, V.pixel(out, 200, 150))
    assert.are.same({ 255, 255, 255 }, V.pixel(out, 200, 150 + 2 * 2 + 2 + 1))  -- the ring
    assert.are.same(GREEN, V.pixel(out, 49, 20))         -- clipped box, right edge
    assert.are.same(GREEN, V.pixel(out, 0, 100))         -- the whole picture: x = 0 ...
    assert.are.same(GREEN, V.pixel(out, 399, 100))       -- ... and x = width - 1
    assert.are.same(GREEN, V.pixel(out, 200, 299))
    assert.are.equal(1, info.labels)                     -- the box outside is skipped
  end)

  it("keeps the picture's size and shows it as a viewer does (EXIF orientation)", function()
    local p = V.marked(dir .. "/rot.jpg", 600, 400, 6)
    local out = dir .. "/rot.png"
    local x1, y1, x2, y2 = V.shown_rect(p)
    local ok, info = qwenvl.draw_boxes(p, out, { { x1 = x1, y1 = y1, x2 = x2, y2 = y2, label = "mark" } })
    assert.is_true(ok, tostring(info))
    assert.are.same({ 400, 600 }, { V.size(out) })
    assert.are.same({ 400, 600, 600, 400, 6 }, { info.width, info.height, info.original_width,
      info.original_height, info.original_orientation })
    -- the box lies on the mark's edges: red there, white just inside
    local mid = math.floor((y1 + y2) / 2)
    assert.is_false(far(V.pixel(out, x1, mid), RED))
    assert.is_false(far(V.pixel(out, x2 - 1, mid), RED))
    assert.is_false(far(V.pixel(out, x1 + 4, mid), { 255, 255, 255 }))
    assert.is_false(far(V.pixel(out, x1 - 4, mid), { 0, 0, 0 }))
  end)

  it("writes JPEG and WebP by extension (flattening alpha for JPEG)", function()
    local rgba = fx.png(dir .. "/rgba.png", 64, 48, true)
    for ext, kind in pairs({ jpg = "jpeg", JPEG = "jpeg", webp = "webp", png = "png" }) do
      local out = dir .. "/alpha." .. ext
      assert.is_true((qwenvl.draw_boxes(rgba, out, { { x1 = 4, y1 = 4, x2 = 40, y2 = 40 } })))
      assert.are.equal(kind, magic(out), ext)
      assert.are.same({ 64, 48 }, { V.size(out) })
    end
  end)

  it("refuses bad input with nil, err and writes nothing", function()
    local cases = {
      { black, dir .. "/x.gif", {}, "invalid_request", "%.png, %.jpg" },
      { black, black, {}, "invalid_request", "overwritten" },
      { dir .. "/none.png", dir .. "/x.png", {}, "invalid_request", "cannot read" },
      { dir, dir .. "/x.png", {}, "invalid_request", "cannot read" },
      { fx.write(dir .. "/text.png", "not a picture"), dir .. "/x.png", {}, "invalid_request", "not a supported" },
      { black, dir .. "/x.png", { { x1 = 1, y1 = 2, x2 = 3 } }, "invalid_request", "boxes%[1%] needs" },
      { black, dir .. "/x.png", { { x = 1, y = 0 / 0 } }, "invalid_request", "finite" },
      { black, dir .. "/x.png", { {}, "box" }, "invalid_request", "boxes%[1%]" },
      { black, dir .. "/x.png", { { x = 1, y = 1 }, 7 }, "invalid_request", "boxes%[2%] must be a table" },
      { black, dir .. "/x.png", { { x = 1, y = 1, label = {} } }, "invalid_request", "label" },
      { black, dir .. "/x.png", { { x = 1, y = 1, color = { 1, 2, 300 } } }, "invalid_request", "color" },
      { black, dir .. "/no/such/dir/x.png", {}, "io", "cannot write" },
    }
    for i, c in ipairs(cases) do
      local ok, err = qwenvl.draw_boxes(c[1], c[2], c[3])
      assert.is_nil(ok, "case " .. i)
      assert.are.equal(c[4], err.code, "case " .. i .. ": " .. tostring(err))
      assert.matches(c[5], err.message)
    end
    assert.is_nil(fx.try_read(dir .. "/x.png"))
    assert.is_nil(fx.try_read(dir .. "/x.gif"))
    local many = {}
    for i = 1, 1001 do many[i] = { x = i % 400, y = 10 } end
    local ok, err = qwenvl.draw_boxes(black, dir .. "/x.png", many)
    assert.is_nil(ok)
    assert.are.equal("boxes", err.field)
    assert.are.equal(0, leftovers(dir))
  end)

  it("a read-only folder: an error, and no partial or temporary file", function()
    local ro = dir .. "/ro"
    V.sh("mkdir " .. fx.quote(ro) .. " && chmod 555 " .. fx.quote(ro))
    local ok, err = qwenvl.draw_boxes(black, ro .. "/x.png", {})
    -- root writes anywhere: then the file is whole
    if ok then
      assert.are.same({ 400, 300 }, { V.size(ro .. "/x.png") })
    else
      assert.are.equal("io", err.code)
      assert.is_nil(fx.try_read(ro .. "/x.png"))
    end
    assert.are.equal(0, leftovers(ro))
  end)

  it("checks without drawing (check = true), and raises on misuse", function()
    local ok, info = qwenvl.draw_boxes(black, dir .. "/never.png", {}, { check = true })
    assert.is_true(ok)
    assert.are.same({ 400, 300 }, { info.original_width, info.original_height })
    assert.is_nil(fx.try_read(dir .. "/never.png"))
    local none, err = qwenvl.draw_boxes(black, black, {}, { check = true })
    assert.is_nil(none)
    assert.matches("overwritten", err.message)
    assert.has_error(function() qwenvl.draw_boxes(black, dir .. "/x.png") end)
    assert.has_error(function() qwenvl.draw_boxes(nil, dir .. "/x.png", {}) end)
    assert.has_error(function() qwenvl.draw_boxes(black, dir .. "/x.png", {}, "check") end)
  end)

  it("escapes labels (Pango markup) and draws any UTF-8", function()
    local out = dir .. "/labels.png"
    local ok, info = qwenvl.draw_boxes(black, out, {
      { x1 = 10, y1 = 40, x2 = 100, y2 = 100, label = "<b>bold</b> & 'co'" },
      { x1 = 120, y1 = 40, x2 = 200, y2 = 100, label = "猫 \255\254 bad bytes\0nul" },
      { x1 = 220, y1 = 40, x2 = 300, y2 = 100, label = ("long "):rep(100) },
      { x1 = 320, y1 = 40, x2 = 380, y2 = 100, label = " \t " },   -- nothing to draw
    })
    assert.is_true(ok, tostring(info))
    assert.are.equal(3, info.labels)
    assert.is_nil(info.labels_failed)
  end)
end)
