-- qwenvl.grounding: boxes and points found in answers (both conventions,
-- fenced or bare, one object or a list), mapped back to the pixels of the
-- picture the caller gave. Against the stand-in, whose target is always at
-- the fractions (0.25, 0.25)-(0.50, 0.75) of the image as it arrived: the
-- pictures here carry a white rectangle exactly there (in their pixels as
-- stored), and where a viewer shows it (libvips' autorot + find_trim) is
-- where every box must land, through qwenvl's downscale, the service's
-- smart_resize and the EXIF orientation.
local qwenvl = require("qwenvl")
local g = require("qwenvl.grounding")
local fx = require("spec.support.fixtures")
local V = require("spec.support.vision")
local standin = require("spec.support.standin")
local cjson = require("cjson")

local function near(want, got, tol, what)
  assert(type(got) == "number", (what or "value") .. " is not a number: " .. tostring(got))
  assert(math.abs(want - got) <= tol, ("%s: want %s, got %s (tolerance %s)"):format(
    what or "value", tostring(want), tostring(got), tostring(tol)))
end

local function near_box(b, x1, y1, x2, y2, tol, what)
  near(x1, b.x1, tol, (what or "") .. " x1")
  near(y1, b.y1, tol, (what or "") .. " y1")
  near(x2, b.x2, tol, (what or "") .. " x2")
  near(y2, b.y2, tol, (what or "") .. " y2")
end

-- a result as qwenvl.chat makes it, for the mapping alone
local function result(text, model, image, request)
  return { text = text, model = model, images = { image }, request = request or { model = model,
    messages = { { role = "user", content = { { type = "image_url", image_url = { url = "x" } },
                                              { type = "text", text = "q" } } } } } }
end

describe("qwenvl.grounding", function()
  describe("reading answers", function()
    local function parsed(text)
      local items = assert(g.parse(text))
      local out = {}
      for _, it in ipairs(items) do out[#out + 1] = { it.kind, it.label, it.v } end
      return out
    end

    it("takes a bare list, a fenced one, one object, and objects one per line", function()
      local want = { { "box", "cat", { 1, 2, 3, 4 } }, { "point", "eye", { 5, 6 } } }
      assert.are.same(want, parsed('[{"bbox_2d":[1,2,3,4],"label":"cat"},{"point_2d":[5,6],"label":"eye"}]'))
      assert.are.same(want, parsed('Here:\n```json\n[{"bbox_2d": [1, 2, 3, 4], "label": "cat"},\n'
        .. ' {"point_2d": [5, 6], "label": "eye"}]\n```\nDone.'))
      assert.are.same({ want[1] }, parsed('```json\n{"bbox_2d": [1, 2, 3, 4], "label": "cat"}\n```'))
      assert.are.same(want, parsed('{"bbox_2d": [1, 2, 3, 4], "label": "cat"}\n'
        .. '{"point_2d": [5, 6], "label": "eye"}'))
      -- wrapped in an object; a box and a point in one object
      assert.are.same({ { "box", "a", { 1, 2, 3, 4 } }, { "point", "a", { 2, 3 } } },
        parsed('{"objects": [{"bbox_2d": [1, 2, 3, 4], "point_2d": [2, 3], "label": "a"}]}'))
    end)

    it("skips what is not a box or a point, and keeps a missing label missing", function()
      assert.are.same({ { "box", nil, { 1, 2, 3, 4 } } },
        parsed('[{"bbox_2d":[1,2,3,4]},{"bbox_2d":[1,2,3]},{"bbox_2d":["1",2,3,4]},'
          .. '{"point_2d":[1]},{"label":"x"},{"bbox_2d":[1,2,3,4,5]}]'))
      assert.are.same({}, parsed("[]"))
      assert.are.same({}, parsed('{"answer": "there is no cat"}'))
    end)

    it("answers nil, bad_response for prose without JSON", function()
      local items, err = g.parse("There is no cat in this picture.")
      assert.is_nil(items)
      assert.are.equal("bad_response", err.code)
      items, err = g.boxes(result("I cannot see it.", "qwen3-vl-plus", { width = 10, height = 10 }))
      assert.is_nil(items)
      assert.are.equal("bad_response", err.code)
    end)
  end)

  describe("model families", function()
    it("relative for Qwen3-VL and later, absolute with the right grid for the rest", function()
      local cases = {
        { "qwen3-vl-plus", "relative", 32 }, { "qwen3-vl-flash-2026-01-22", "relative", 32 },
        { "qwen3-vl-235b-a22b-thinking", "relative", 32 }, { "qwen3.5-plus", "relative", 32 },
        { "qwen3.6-flash", "relative", 32 },
        { "qwen-vl-max", "absolute", 32 }, { "qwen-vl-plus-latest", "absolute", 32 },
        { "qwen-vl-max-2025-08-13", "absolute", 32 }, { "qwen-vl-plus-2025-08-15", "absolute", 32 },
        { "qwen-vl-max-2025-04-08", "absolute", 28 }, { "qwen-vl-plus-2025-01-25", "absolute", 28 },
        { "qwen2.5-vl-72b-instruct", "absolute", 28 }, { "qvq-max", "absolute", 28 },
        { "qwen-vl-ocr", "relative", 32 }, { "qwen-vl-ocr-2025-11-20", "relative", 32 },
        { "qwen-vl-ocr-latest", "relative", 32 }, { "qwen-vl-ocr-2025-04-13", "absolute", 28 },
        { "qwen-vl-ocr-2024-10-28", "absolute", 28 },
        { "something-new", "relative", 32 }, { nil, "relative", 32 },
      }
      for _, c in ipairs(cases) do
        local f = g.family(c[1])
        assert.are.equal(c[2], f.coords, tostring(c[1]))
        assert.are.equal(c[3], f.grid, tostring(c[1]))
      end
      assert.are.equal(1003520, g.family("qwen2.5-vl-7b-instruct").max_pixels)
      assert.are.equal(2621440, g.family("qwen3-vl-plus").max_pixels)
      assert.are.equal(8388608, g.family("qwen-vl-ocr").max_pixels)
      assert.are.equal(3072, g.family("qwen-vl-ocr").min_pixels)
      assert.are.equal(12845056, g.family("qvq-max").max_pixels_cap)
    end)

    it("smart_resize as the reference rounds (half to even, floor down, ceil up)", function()
      assert.are.same({ 700, 1008 }, { g.smart_resize(700, 1000, 28, 3136, 1003520) })
      assert.are.same({ 812, 1204 }, { g.smart_resize(2000, 3000, 28, 3136, 1003520) })
      assert.are.same({ 1988, 2996 }, { g.smart_resize(2000, 3000, 28, 3136, 12845056) })
      assert.are.same({ 56, 56 }, { g.smart_resize(20, 20, 28, 3136, 1003520) })
      -- 14/28 = 0.5 rounds to even (0), then one grid at least
      assert.are.same({ 28, 28 }, { g.smart_resize(14, 14, 28, 1, 1003520) })
      assert.are.same({ 56, 28 }, { g.smart_resize(42, 14, 28, 1, 1003520) })
    end)
  end)

  describe("prompts", function()
    it("asks for the JSON the parser reads", function()
      local p = g.prompt("  every cat ")
      assert.matches("^Locate every cat in the image%. ", p)
      assert.truthy(p:find('"bbox_2d": [x1, y1, x2, y2]', 1, true))
      assert.falsy(p:find("point_2d", 1, true))
      assert.truthy(p:find("Answer [] when there is none.", 1, true))
      assert.truthy(g.prompt("the eyes", { kind = "points" }):find('"point_2d": [x, y]', 1, true))
      local both = g.prompt("cats", { kind = "both" })
      assert.truthy(both:find("bbox_2d", 1, true) and both:find("point_2d", 1, true))
      assert.has_error(function() g.prompt("") end)
      assert.has_error(function() g.prompt(nil) end)
      assert.has_error(function() g.prompt("x", { kind = "circles" }) end)
    end)
  end)

  describe("mapping, without the network", function()
    local info = { width = 1982, height = 1321, original_width = 6000, original_height = 4000,
                   resized = true }

    it("relative answers scale to the original picture", function()
      local b = assert(g.boxes(result('[{"bbox_2d":[250,250,500,750],"label":"t"},'
        .. '{"point_2d":[375,500],"label":"c"}]', "qwen3-vl-plus", info)))
      assert.are.same({ label = "t", x1 = 1500, y1 = 1000, x2 = 3000, y2 = 3000 }, b[1])
      assert.are.same({ label = "c", x = 2250, y = 2000 }, b[2])
    end)

    it("absolute answers go through the service's resize of what was sent", function()
      -- 1982x1321 on the 28 grid within 1,003,520: 1204x812
      local b = assert(g.boxes(result('```json\n[{"bbox_2d":[301,203,602,609],"label":"t"}]\n```',
        "qwen2.5-vl-72b-instruct", info)))
      near_box(b[1], 1500, 1000, 3000, 3000, 3)
      -- the request's max_pixels beside the image, and vl_high_resolution_images
      local req = { model = "qwen2.5-vl-72b-instruct", messages = { { role = "user", content = {
        { type = "image_url", image_url = { url = "x" }, max_pixels = 200000 } } } } }
      local h, w = g.smart_resize(1321, 1982, 28, 3136, 200000)
      b = assert(g.boxes(result(('[{"bbox_2d":[%d,%d,%d,%d]}]'):format(w / 4, h / 4, w / 2, h * 3 / 4),
        "qwen2.5-vl-72b-instruct", info, req)))
      near_box(b[1], 1500, 1000, 3000, 3000, 6)
      req.vl_high_resolution_images = true
      h, w = g.smart_resize(1321, 1982, 28, 3136, 12845056)
      assert.are.same({ 1316, 1988 }, { h, w })
      b = assert(g.boxes(result(('[{"bbox_2d":[%d,%d,%d,%d]}]'):format(w / 4, h / 4, w / 2, h * 3 / 4),
        "qwen2.5-vl-72b-instruct", info, req)))
      near_box(b[1], 1500, 1000, 3000, 3000, 3)
      -- a small image grows to the min_pixels sent: 20x20 -> 224x224
      req = { model = "qwen2.5-vl-72b-instruct", messages = { { role = "user", content = {
        { type = "image_url", image_url = { url = "x" }, min_pixels = 50000 } } } } }
      b = assert(g.boxes(result('[{"bbox_2d":[56,56,112,168]}]', "qwen2.5-vl-72b-instruct",
        { width = 20, height = 20 }, req)))
      assert.are.same({ x1 = 5, y1 = 5, x2 = 10, y2 = 15 }, b[1])
    end)

    it("orders corners, keeps boxes within the picture, and takes overrides", function()
      local b = assert(g.boxes(result('[{"bbox_2d":[500,750,250,250]},{"bbox_2d":[-10,-5,1100,990]},'
        .. '{"point_2d":[1200,-3]}]', "qwen3-vl-plus", info)))
      assert.are.same({ x1 = 1500, y1 = 1000, x2 = 3000, y2 = 3000 }, b[1])
      assert.are.same({ x1 = 0, y1 = 0, x2 = 6000, y2 = 3960 }, b[2])
      assert.are.same({ x = 6000, y = 0 }, b[3])
      -- the convention forced, and a URL image's size given by the caller
      b = assert(g.boxes(result('[{"bbox_2d":[10,20,30,40]}]', "qwen3-vl-plus", { source = "url" }),
        { coords = "absolute", model = "qwen2.5-vl-7b-instruct", width = 56, height = 56 }))
      assert.are.same({ x1 = 10, y1 = 20, x2 = 30, y2 = 40 }, b[1])
      local none, err = g.boxes(result('[{"bbox_2d":[1,2,3,4]}]', "qwen3-vl-plus", { source = "url" }))
      assert.is_nil(none)
      assert.are.equal("invalid_request", err.code)
      assert.matches("not known", err.message)
      assert.are.same({}, assert(g.boxes(result("[]", "qwen3-vl-plus", { source = "url" }))))
      assert.has_error(function() g.boxes("text") end)
    end)

    it("turns boxes of an image sent as stored by its EXIF orientation", function()
      -- stored 600x400, sent so; the model's box (relative) covers the
      -- stored pixels (60,40)-(120,120); where each orientation shows them
      local want = {
        { 60, 40, 120, 120 }, { 480, 40, 540, 120 }, { 480, 280, 540, 360 }, { 60, 280, 120, 360 },
        { 40, 60, 120, 120 }, { 280, 60, 360, 120 }, { 280, 480, 360, 540 }, { 40, 480, 120, 540 },
      }
      for o = 1, 8 do
        local im = { width = 600, height = 400, original_width = 600, original_height = 400,
                     original_orientation = o > 1 and o or nil, resized = false }
        local b = assert(g.boxes(result('[{"bbox_2d":[100,100,200,300]}]', "qwen3-vl-plus", im)))
        assert.are.same({ x1 = want[o][1], y1 = want[o][2], x2 = want[o][3], y2 = want[o][4] }, b[1],
          "orientation " .. o)
        -- re-encoded upright (resized): the numbers are of the shown picture
        local up = { width = o >= 5 and 400 or 600, height = o >= 5 and 600 or 400,
                     original_width = 600, original_height = 400,
                     original_orientation = o > 1 and o or nil, resized = true }
        b = assert(g.boxes(result('[{"bbox_2d":[100,100,200,300]}]', "qwen3-vl-plus", up)))
        assert.are.same({ x1 = up.width / 10, y1 = up.height / 10, x2 = up.width / 5,
                          y2 = up.height * 3 / 10 }, b[1], "upright, orientation " .. o)
      end
    end)

    if V.have_vips() then
      it("turns them as libvips shows the picture (autorot)", function()
        local dir = fx.tmpdir()
        for o = 1, 8 do
          -- a white mark at the stored pixels (60,40)-(120,120)
          local v, p = dir .. "/m.v", dir .. "/m" .. o .. ".jpg"
          V.sh(("vips black %s 600 400 --bands 3 && vips draw_rect %s 255 60 40 60 80 --fill && "
            .. "vips copy %s %s"):format(v, v, v, dir .. "/plain.jpg"))
          V.set_orientation(dir .. "/plain.jpg", p, o)
          local x1, y1, x2, y2 = V.shown_rect(p)
          local im = { width = 600, height = 400, original_width = 600, original_height = 400,
                       original_orientation = o > 1 and o or nil, resized = false }
          local b = assert(g.boxes(result('[{"bbox_2d":[100,100,200,300]}]', "qwen3-vl-plus", im)))
          near_box(b[1], x1, y1, x2, y2, 2, "orientation " .. o)
        end
        fx.rm(dir)
      end)
    end
  end)

  local describe_vips = V.have_vips() and describe or function(name) pending(name .. " (needs libvips-tools)") end

  describe_vips("against the stand-in", function()
    local srv, dir

    setup(function()
      srv = standin.start { key = "sk-grounding-test" }
      dir = fx.tmpdir()
    end)
    teardown(function()
      if srv then srv:stop() end
      if dir then fx.rm(dir) end
    end)

    local function ask(image, model, extra)
      local req = { prompt = g.prompt("the target", { kind = "both" }), image = image, model = model,
                    api_key = srv.key, base_url = srv.base_url, max_retries = 0 }
      for k, v in pairs(extra or {}) do req[k] = v end
      return assert(qwenvl.chat(req))
    end

    local MODELS = { "qwen3-vl-plus", "qwen2.5-vl-72b-instruct", "qwen-vl-max", "qwen-vl-max-2025-04-08" }

    it("both conventions land on the target of a picture sent as it is", function()
      local p = V.marked(dir .. "/small.png", 1000, 700)
      local x1, y1, x2, y2 = V.shown_rect(p)
      assert.are.same({ 250, 175, 500, 525 }, { x1, y1, x2, y2 })
      for _, m in ipairs(MODELS) do
        local res = ask(p, m)
        assert.is_nil(res.images[1].resized == true and true or nil, m)
        local b = assert(g.boxes(res))
        assert.are.equal(2, #b, m)
        near_box(b[1], x1, y1, x2, y2, 1, m)
        assert.are.equal("target", b[1].label)
        near((x1 + x2) / 2, b[2].x, 1, m .. " point x")
        near((y1 + y2) / 2, b[2].y, 1, m .. " point y")
      end
      -- the answers really were in both conventions
      assert.matches('^%[{"bbox_2d":%[250,250,500,750%]', ask(p, "qwen3-vl-plus").text)
      assert.matches('^```json\n%[{"bbox_2d":%[252,175,504,525%]', ask(p, "qwen2.5-vl-72b-instruct").text)
    end)

    it("maps back to the original pixels of a downscaled 24-megapixel photo", function()
      local p = V.marked(dir .. "/p24.jpg", 6000, 4000)
      local x1, y1, x2, y2 = V.shown_rect(p)
      near_box({ x1 = x1, y1 = y1, x2 = x2, y2 = y2 }, 1500, 1000, 3000, 3000, 1, "the mark")
      -- each family once (a 24 MP resize is ~0.5 s, ~15 s under valgrind)
      for _, m in ipairs({ "qwen3-vl-plus", "qwen2.5-vl-72b-instruct", "qwen-vl-max" }) do
        local res = ask(p, m)
        local im = res.images[1]
        assert.is_true(im.resized, m)
        assert.are.equal(6000, im.original_width)
        assert.is_true(im.width * im.height <= 2621440 and im.width < 6000, m)
        local b = assert(g.boxes(res))
        near_box(b[1], x1, y1, x2, y2, 2, m)
        near(2250, b[2].x, 2, m .. " point x")
        near(2000, b[2].y, 2, m .. " point y")
      end
      -- the service's own limits sent with the image, and high resolution
      for _, extra in ipairs({ { max_pixels = 500000 }, { detail = "high" } }) do
        local res = ask(p, "qwen2.5-vl-7b-instruct", extra)
        local b = assert(g.boxes(res))
        near_box(b[1], x1, y1, x2, y2, 6, cjson.encode(extra))
      end
    end)

    -- qwenvl sends a rotated photo upright: the stand-in's target is then
    -- at the fractions of the picture as shown (not where the mark is,
    -- which is in the stored pixels)
    it("maps back to an EXIF-rotated 24-megapixel photo as it is shown", function()
      local p = V.marked(dir .. "/r24.jpg", 6000, 4000, 6)
      local sw, sh = V.shown_size(p)
      assert.are.same({ 4000, 6000 }, { sw, sh })
      for _, m in ipairs({ "qwen3-vl-plus", "qwen2.5-vl-72b-instruct" }) do
        local res = ask(p, m)
        local im = res.images[1]
        assert.are.equal(6, im.original_orientation)
        assert.is_true(im.resized and im.height > im.width, m)   -- sent upright
        local b = assert(g.boxes(res))
        near_box(b[1], 1000, 1500, 2000, 4500, 2, m)
        near(1500, b[2].x, 2, m .. " point x")
        near(3000, b[2].y, 2, m .. " point y")
      end
    end)

    -- sent as stored (resize = "off"), the stand-in's target is the mark:
    -- where libvips shows it is where the box must be
    it("every EXIF orientation, sent as stored or re-encoded upright", function()
      for o = 2, 8 do
        local p = V.marked(dir .. "/o" .. o .. ".jpg", 600, 400, o)
        local x1, y1, x2, y2 = V.shown_rect(p)
        local sw, sh = V.shown_size(p)
        for _, m in ipairs({ "qwen3-vl-plus", "qwen2.5-vl-72b-instruct" }) do
          local what = ("orientation %d, %s"):format(o, m)
          local res = ask(p, m, { resize = "off" })
          assert.are.equal(o, res.images[1].original_orientation, what)
          assert.is_false(res.images[1].resized, what)
          near_box(assert(g.boxes(res))[1], x1, y1, x2, y2, 2, what .. ", as stored")
          res = ask(p, m)
          assert.is_true(res.images[1].resized, what)
          near_box(assert(g.boxes(res))[1], sw / 4, sh / 4, sw / 2, sh * 3 / 4, 2, what .. ", upright")
        end
      end
    end)

    it("an earlier picture of a conversation, by index", function()
      local a = V.marked(dir .. "/a.png", 400, 200)
      local b = V.marked(dir .. "/b.png", 300, 300)
      local res = assert(qwenvl.chat { images = { a, b }, prompt = g.prompt("it"),
        model = "qwen2.5-vl-72b-instruct", api_key = srv.key, base_url = srv.base_url })
      -- the stand-in locates in the last picture; the default is the last
      near_box(assert(g.boxes(res))[1], 75, 75, 150, 225, 1)
      local fr = assert(g.frame(res, { image = 1 }))
      assert.are.same({ 400, 200 }, { fr.width, fr.height })
      local none, err = g.frame(res, { image = 3 })
      assert.is_nil(none)
      assert.are.equal("invalid_request", err.code)
    end)
  end)
end)
