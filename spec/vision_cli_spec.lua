-- `qwenvl annotate` and `qwenvl ocr`, run as subprocesses (bin/qwenvl from
-- the checkout) against the DashScope stand-in: what arrived, what was
-- printed, the annotated copy checked by its pixels and size, exit codes,
-- refusals that send nothing, help examples that work.
local standin = require("spec.support.standin")
local fx = require("spec.support.fixtures")
local V = require("spec.support.vision")
local cli = require("qwenvl.cli")
local cjson = require("cjson")

local KEY = "sk-qwenvl-vision-FAKEKEY-31c9"
local Q = fx.quote
local proc = require("spec.support.proc")
local LUA, ROOT, BIN = proc.LUA, proc.root, proc.BIN   -- this interpreter, the checkout's bin/qwenvl
local RED = { 230, 25, 75 }

local function far(a, b)
  return math.abs(a[1] - b[1]) + math.abs(a[2] - b[2]) + math.abs(a[3] - b[3]) > 120
end

local function near(want, got, tol, what)
  assert(math.abs(want - got) <= tol, ("%s: want %s, got %s"):format(what, tostring(want), tostring(got)))
end

local function lines(s)
  local t = {}
  for l in s:gmatch("[^\n]+") do t[#t + 1] = l end
  return t
end

local describe_vips = V.have_vips() and describe or function(name) pending(name .. " (needs libvips-tools)") end

describe_vips("qwenvl annotate and ocr", function()
  local srv, work

  -- run `qwenvl <args>` in the work dir; returns code, stdout, stderr
  local function run(args)
    local out, err = os.tmpname(), os.tmpname()
    local cmd = ("cd %s && env -u DASHSCOPE_REGION %s %s %s %s %s </dev/null >%s 2>%s; echo $?"):format(
      Q(work), Q("DASHSCOPE_API_KEY=" .. KEY), Q("DASHSCOPE_BASE_URL=" .. srv.base_url),
      Q("HOME=" .. work), LUA, Q(BIN) .. " " .. args, Q(out), Q(err))
    local code = tonumber(fx.sh(cmd):match("(%d+)%s*$"))
    local o, e = fx.try_read(out) or "", fx.try_read(err) or ""
    os.remove(out); os.remove(err)
    assert.is_nil(o:find(KEY, 1, true), "stdout holds the key")
    assert.is_nil(e:find(KEY, 1, true), "stderr holds the key")
    return code, o, e
  end

  local function chats() return srv:stats().chat_requests end
  local function last_body()
    local r = srv:requests()
    return r[#r].body
  end

  setup(function()
    srv = standin.start { key = KEY }
    work = fx.tmpdir()
    fx.sh("ln -s " .. Q(ROOT .. "/examples") .. " " .. Q(work .. "/examples"))
  end)
  teardown(function()
    if srv then srv:stop() end
    if work then fx.rm(work) end
  end)
  before_each(function()
    srv:reset()
    fx.sh("rm -rf " .. Q(work .. "/output"))
  end)

  describe("help", function()
    it("has --help, and every example parses; those for the stand-in run", function()
      for _, sub in ipairs({ "annotate", "ocr" }) do
        local code, out = run(sub .. " --help")
        assert.are.equal(0, code)
        assert.matches("Usage: qwenvl " .. sub, out)
        local examples, ran = {}, 0
        for line in cli.HELP[sub]:gmatch("[^\n]+") do
          local ex = line:match("^%s+qwenvl (" .. sub .. " .*)$")
          if ex then examples[#examples + 1] = ex end
        end
        assert.is_true(#examples >= 3, sub)
        for _, ex in ipairs(examples) do
          assert.are.equal(0, (run(ex .. " --help")), "does not parse: " .. ex)
          if not ex:find("--region", 1, true) then
            local c, o, e = run(ex)
            assert.are.equal(0, c, ex .. "\n" .. o .. e)
            ran = ran + 1
          end
        end
        assert.is_true(ran >= 2)
      end
      local _, out = run("--help")
      assert.matches("annotate", out)
      assert.matches("ocr ", out)
    end)
  end)

  describe("annotate", function()
    it("prints the boxes of a downscaled, EXIF-rotated 24-megapixel photo and draws them as it is shown", function()
      local p = V.marked(work .. "/r24.jpg", 6000, 4000, 6)
      local code, out, err = run("annotate --image r24.jpg --find 'the target' --points --out output/r24.png")
      assert.are.equal(0, code, out .. err)
      -- what arrived: the question with the format, the photo downscaled and upright
      local body = last_body()
      local text = body.messages[1].content[2].text
      assert.truthy(text:find("^Locate the target in the image%."))
      assert.truthy(text:find("bbox_2d", 1, true) and text:find("point_2d", 1, true))
      assert.are.equal(2048, body.max_tokens)
      local got = lines(out)
      assert.are.equal(2, #got)
      local box, pt = cjson.decode(got[1]), cjson.decode(got[2])
      -- the stand-in's target: fractions of the picture as sent (upright)
      near(1000, box.x1, 2, "x1"); near(1500, box.y1, 2, "y1")
      near(2000, box.x2, 2, "x2"); near(4500, box.y2, 2, "y2")
      assert.are.equal("target", box.label)
      near(1500, pt.x, 2, "x"); near(3000, pt.y, 2, "y")
      assert.are.equal("center", pt.label)
      -- the copy: the size and orientation the photo is shown at
      local shot = work .. "/output/r24.png"
      assert.are.same({ V.shown_size(p) }, { V.size(shot) })
      assert.are.same({ 4000, 6000 }, { V.size(shot) })
      -- box edges in the box colour, the outside not
      local mid = math.floor((box.y1 + box.y2) / 2)
      assert.are.same(RED, V.pixel(shot, box.x1, mid))
      assert.are.same(RED, V.pixel(shot, box.x2 - 1, mid))
      assert.are.same(RED, V.pixel(shot, math.floor((box.x1 + box.x2) / 2), box.y2 - 1))
      assert.is_true(far(V.pixel(shot, box.x1 - 3, mid), RED))
      assert.is_true(far(V.pixel(shot, box.x2 + 2, mid), RED))
      assert.matches("wrote output/r24%.png %(4000x6000, 2 boxes%)", err)
      assert.matches("record: ", err)
    end)

    it("maps Qwen2.5-VL's absolute pixels too, and draws JPEG", function()
      local p = V.marked(work .. "/p24.jpg", 6000, 4000)
      local code, out, err = run("annotate --image p24.jpg --prompt 'Where is the white block?' "
        .. "--model qwen2.5-vl-72b-instruct --out output/p24.jpg --no-evidence --quiet")
      assert.are.equal(0, code, out .. err)
      assert.are.equal("", err)
      local text = last_body().messages[1].content[2].text
      assert.truthy(text:find("^Where is the white block%?\n"))
      assert.truthy(text:find("bbox_2d", 1, true))
      assert.falsy(text:find("point_2d", 1, true))
      local box = cjson.decode(lines(out)[1])
      local x1, y1, x2, y2 = V.shown_rect(p)
      near(x1, box.x1, 3, "x1"); near(y1, box.y1, 3, "y1"); near(x2, box.x2, 3, "x2"); near(y2, box.y2, 3, "y2")
      assert.are.same({ 6000, 4000 }, { V.size(work .. "/output/p24.jpg") })
      assert.is_false(far(V.pixel(work .. "/output/p24.jpg", box.x1 + 4, 2000), RED))
      assert.is_nil(fx.try_read(work .. "/output/alicloud-ai-multimodal-qwen-vl"))
    end)

    it("a prompt that already names the format is sent as it is", function()
      fx.png(work .. "/s.png", 64, 48)
      local code = run("annotate --image s.png --prompt 'give point_2d of the dot' --out output/s.png --no-evidence")
      assert.are.equal(0, code)
      assert.are.equal("give point_2d of the dot", last_body().messages[1].content[2].text)
    end)

    it("refuses bad input before anything is sent", function()
      fx.png(work .. "/s.png", 64, 48)
      fx.write(work .. "/fake.png", "not a picture")
      local before = chats()
      local cases = {
        { "annotate --find x --out o.png", 2, "needs %-%-image" },
        { "annotate --image s.png --find x", 2, "needs %-%-out" },
        { "annotate --image s.png --out o.png", 2, "%-%-find WHAT or %-%-prompt" },
        { "annotate --image s.png --find x --prompt y --out o.png", 2, "not both" },
        { "annotate --image s.png --find x --out o.gif", 3, "%.png, %.jpg" },
        { "annotate --image s.png --find x --out s.png", 3, "overwritten" },
        { "annotate --image none.png --find x --out o.png", 3, "not found" },
        { "annotate --image fake.png --find x --out o.png", 3, "not a supported picture" },
        { "annotate --image https://example.com/a.png --find x --out o.png", 3, "local file" },
        { "annotate --image s.png --find x --out o.png --max-tokens 0", 2, "max%-tokens" },
        { "annotate --image s.png --find x --out o.png extra", 2, "no arguments" },
      }
      for _, c in ipairs(cases) do
        local code, _, err = run(c[1])
        assert.are.equal(c[2], code, c[1] .. "\n" .. err)
        assert.matches(c[3], err)
      end
      assert.are.equal(before, chats())
      assert.is_nil(fx.try_read(work .. "/o.png"))
    end)

    it("an answer without the JSON asked for: exit 6, no copy", function()
      fx.png(work .. "/s.png", 64, 48)
      local model = standin.scenario_model("prose", "oversize=300")
      local code, out, err = run("annotate --image s.png --find x --out output/no.png --no-evidence --model " .. Q(model))
      assert.are.equal(6, code, out .. err)
      assert.matches("bad_response", err)
      assert.matches("lorem ipsum", err)
      assert.is_nil(fx.try_read(work .. "/output/no.png"))
    end)
  end)

  describe("ocr", function()
    it("prints the text, the notes on stderr; sends the documented request", function()
      local a = fx.png(work .. "/page.png", 300, 200)
      local code, out, err = run("ocr page.png")
      assert.are.equal(0, code, err)
      assert.are.equal("LINE 1: image " .. fx.sha256(a):sub(1, 8) .. " 300x200 seen 288x192\n", out)
      assert.matches("notes: 1 image%(s%) read from their bytes", err)
      local body = last_body()
      assert.are.equal("qwen-vl-ocr", body.model)
      assert.are.equal(1, #body.messages)
      assert.are.equal(3072, body.messages[1].content[1].min_pixels)
      assert.are.equal(8388608, body.messages[1].content[1].max_pixels)
      assert.truthy(body.messages[1].content[2].text:find("[unreadable]", 1, true))
    end)

    it("--json: one line per picture, marks counted, notes split off", function()
      fx.png(work .. "/page.png", 300, 200)
      local code, out, err = run("ocr page.png https://example.com/scan.png --json --task table "
        .. "--max-pixels 100000 --model qwen-vl-ocr-2025-11-20")
      assert.are.equal(0, code, err)
      local l = lines(out)
      assert.are.equal(2, #l)
      local a, b = cjson.decode(l[1]), cjson.decode(l[2])
      assert.are.equal("page.png", a.file)
      assert.matches(" 300x200 seen 288x192$", a.text)
      assert.are.equal(0, a.unreadable)
      assert.are.equal("qwen-vl-ocr-2025-11-20", a.model)
      assert.matches("^%d+ image", a.notes)
      assert.are.equal("LINE 1: [unreadable] image url https://example.com/scan.png", b.text)
      assert.are.equal(1, b.unreadable)
      assert.is_string(a.record)
      local body = last_body()
      assert.are.equal(100000, body.messages[1].content[1].max_pixels)
      assert.truthy(body.messages[1].content[2].text:find("HTML", 1, true))
    end)

    it("--no-notes asks for neither marks nor notes", function()
      fx.png(work .. "/page.png", 64, 48)
      local code, out, err = run("ocr page.png --no-notes --no-evidence")
      assert.are.equal(0, code, err)
      assert.falsy(last_body().messages[1].content[2].text:find("NOTES", 1, true))
      assert.falsy(err:find("notes:", 1, true))
      assert.matches("^LINE 1: image ", out)
    end)

    it("refuses before sending; a failure keeps its exit code", function()
      fx.png(work .. "/page.png", 64, 48)
      local before = chats()
      for _, c in ipairs({
        { "ocr", 2, "at least one FILE" }, { "ocr page.png --task receipts", 2, "%-%-task" },
        { "ocr none.png", 3, "not found" }, { "ocr page.png --max-pixels 20000000", 3, "15680000" },
        { "ocr page.png none.png", 3, "not found" },
      }) do
        local code, _, err = run(c[1])
        assert.are.equal(c[2], code, c[1] .. "\n" .. err)
        assert.matches(c[3], err)
      end
      assert.are.equal(before, chats())
      local code, _, err = run("ocr page.png --no-evidence --max-retries 0 --model "
        .. Q(standin.scenario_model("down", "500")))
      assert.are.equal(6, code, err)
      assert.matches("server", err)
    end)
  end)
end)
