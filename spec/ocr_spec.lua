-- qwenvl.ocr: requests as the OCR guide documents them for compatible
-- mode (checked against what arrived at the stand-in), refusals before
-- sending, and the answer split into text, notes and [unreadable] marks.
local ocr = require("qwenvl.ocr")
local fx = require("spec.support.fixtures")
local V = require("spec.support.vision")
local standin = require("spec.support.standin")

describe("qwenvl.ocr", function()
  describe("requests", function()
    it("has the documented defaults and asks for marks and notes", function()
      local req = assert(ocr.request("scan.png"))
      assert.are.equal("qwen-vl-ocr", req.model)
      assert.are.equal(3072, req.min_pixels)
      assert.are.equal(8388608, req.max_pixels)
      assert.are.equal(4096, req.max_tokens)
      assert.are.equal("scan.png", req.image)
      assert.is_nil(req.system)
      assert.is_nil(req.json_mode)
      assert.truthy(req.prompt:find(ocr.TASKS.text, 1, true) == 1)
      assert.truthy(req.prompt:find("[unreadable]", 1, true))
      assert.truthy(req.prompt:find("NOTES:", 1, true))
    end)

    it("takes a task, a prompt of one's own, no notes, and several images", function()
      local req = assert(ocr.request({ "a.png", "b.png" }, { task = "table", notes = false }))
      assert.are.equal(ocr.TASKS.table, req.prompt)
      assert.are.same({ "a.png", "b.png" }, req.images)
      assert.truthy(assert(ocr.request("a.png", { task = "document" })).prompt:find("LaTeX format", 1, true))
      req = assert(ocr.request("a.png", { prompt = "Only the totals.", model = "qwen-vl-ocr-2025-11-20",
        max_pixels = 1000000, min_pixels = 2000000, max_tokens = 100, api_key = "k" }))
      assert.truthy(req.prompt:find("^Only the totals%.\n"))
      assert.are.equal("qwen-vl-ocr-2025-11-20", req.model)
      assert.are.equal(1000000, req.max_pixels)
      assert.are.equal(1000000, req.min_pixels)    -- never above max_pixels
      assert.are.equal(100, req.max_tokens)
      assert.are.equal("k", req.api_key)
    end)

    it("refuses what the OCR models do not take, naming the field", function()
      local cases = {
        { { system = "be brief" }, "system" }, { { json_mode = true }, "json_mode" },
        { { schema = { type = "object" } }, "schema" }, { { enable_thinking = true }, "enable_thinking" },
        { { messages = {} }, "messages" }, { { extra = { response_format = { type = "json_object" } } }, "extra" },
        { { extra = { ocr_options = { task = "table_parsing" } } }, "extra" },
        { { task = "receipts" }, "task" }, { { prompt = "  " }, "prompt" },
        { { max_pixels = 16000000 }, "max_pixels" },
      }
      for _, c in ipairs(cases) do
        local req, err = ocr.request("a.png", c[1])
        assert.is_nil(req, c[2])
        assert.are.equal("invalid_request", err.code)
        assert.are.equal(c[2], err.field)
      end
      assert.has_error(function() ocr.prompt({ task = "nope" }) end)
    end)
  end)

  describe("answers", function()
    it("splits off the last NOTES line and counts the marks", function()
      assert.are.same({ text = "Total: 12.50\nPaid by [unreadable] on [UNREADABLE]", unreadable = 2,
                        notes = "the date is smudged; confident otherwise" },
        ocr.parse("Total: 12.50\nPaid by [unreadable] on [UNREADABLE]\n\nNOTES: the date is smudged; "
          .. "confident otherwise\n"))
      assert.are.same({ text = "plain", unreadable = 0 }, ocr.parse("plain\n"))
      assert.are.same({ text = "a\nNOTES: not this one\nb", unreadable = 0, notes = "this one\nand more" },
        ocr.parse("a\nNOTES: not this one\nb\n  Notes: this one\nand more"))
      assert.are.same({ text = "", unreadable = 0, notes = "nothing legible" }, ocr.parse("NOTES: nothing legible"))
      assert.are.same({ text = "", unreadable = 0 }, ocr.parse(nil))
    end)
  end)

  describe("against the stand-in", function()
    local srv, dir

    setup(function()
      srv = standin.start { key = "sk-ocr-test" }
      dir = fx.tmpdir()
    end)
    teardown(function()
      if srv then srv:stop() end
      if dir then fx.rm(dir) end
    end)
    before_each(function() srv:reset() end)

    local function conn(t)
      t = t or {}
      t.api_key, t.base_url, t.max_retries = srv.key, srv.base_url, 0
      return t
    end

    it("sends what the guide documents, and reads text, marks and notes", function()
      local a = fx.png(dir .. "/a.png", 300, 200)
      local page = assert(ocr.read({ a, "https://example.com/scan.png" }, conn()))
      local sha = fx.sha256(a):sub(1, 8)
      assert.are.equal("LINE 1: image " .. sha .. " 300x200 seen 288x192\n"
        .. "LINE 2: [unreadable] image url https://example.com/scan.png", page.text)
      assert.are.equal(1, page.unreadable)
      assert.are.equal("1 image(s) read from their bytes, confident; 1 given by URL not read", page.notes)
      assert.are.equal("qwen-vl-ocr", page.model)
      assert.is_table(page.usage)
      local reqs = srv:requests()
      assert.are.equal(1, #reqs)
      local body = reqs[1].body
      assert.are.equal("qwen-vl-ocr", body.model)
      assert.are.equal(4096, body.max_tokens)
      assert.is_nil(body.response_format)
      assert.is_nil(body.enable_thinking)
      assert.are.equal(1, #body.messages)
      assert.are.equal("user", body.messages[1].role)
      local parts = body.messages[1].content
      for i = 1, 2 do
        assert.are.equal("image_url", parts[i].type)
        assert.are.equal(3072, parts[i].min_pixels)
        assert.are.equal(8388608, parts[i].max_pixels)
      end
      assert.are.equal(ocr.prompt(), parts[3].text)
    end)

    it("without notes asked for, there are none", function()
      local a = fx.png(dir .. "/b.png", 64, 48)
      local page = assert(ocr.read(a, conn { notes = false, task = "table" }))
      assert.is_nil(page.notes)
      assert.are.equal(0, page.unreadable)
      assert.are.equal(ocr.TASKS.table, srv:requests()[1].body.messages[1].content[2].text)
    end)

    local it_vips = V.have_vips() and it or function(name) pending(name .. " (needs libvips-tools)") end

    it_vips("a 24-megapixel scan goes downscaled to max_pixels, within the 15.68 MP limit", function()
      local p = V.marked(dir .. "/scan24.jpg", 6000, 4000)
      local page = assert(ocr.read(p, conn()))
      local im = page.images[1]
      assert.is_true(im.resized)
      assert.is_true(im.width * im.height <= 8388608)
      assert.truthy(page.text:find((" %dx%d seen "):format(im.width, im.height)), page.text)
      -- sent as it is, the service refuses it (24 MP > 15.68 MP)
      local none, err = ocr.read(p, conn { resize = "off" })
      assert.is_nil(none)
      assert.are.equal("invalid_request", err.code)
      assert.are.equal(400, err.status)
      -- a budget over the limit is refused here, before anything is sent
      local before = srv:stats().chat_requests
      none, err = ocr.read(p, conn { max_pixels = 20000000 })
      assert.is_nil(none)
      assert.are.equal("max_pixels", err.field)
      assert.are.equal(before, srv:stats().chat_requests)
    end)

    it("refusals send nothing", function()
      local before = srv:stats().chat_requests
      local none, err = ocr.read(fx.png(dir .. "/c.png", 20, 20), conn { system = "x" })
      assert.is_nil(none)
      assert.are.equal("system", err.field)
      assert.are.equal(before, srv:stats().chat_requests)
    end)
  end)
end)
