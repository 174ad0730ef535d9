-- Game tooling host: examples/batch/caption.lua over a folder of sprites
-- and screenshots with one corrupt and one truncated image: the good ones
-- are captioned concurrently, the bad ones recorded with their error, the
-- manifest written atomically.
local standin = require("spec.support.standin")
local fx = require("spec.support.fixtures")
local u = require("spec.hosts.util")
local cjson = require("cjson")

describe("batch captioning (examples/batch/caption.lua)", function()
  local srv, dir
  local TOOL = u.root .. "/examples/batch/caption.lua"

  setup(function()
    srv = standin.start{}
    dir = fx.tmpdir()
    fx.png(dir .. "/hero_idle.png", 64, 48)
    fx.png(dir .. "/hero_run.png", 96, 64, true)
    fx.png(dir .. "/Coin.PNG", 32, 32)
    fx.jpeg(dir .. "/level1_screenshot.jpg", 160, 90)
    fx.sh(("vips copy %s %s"):format(u.quote(dir .. "/hero_idle.png"), u.quote(dir .. "/tile.webp")))
    fx.write(dir .. "/corrupt.png", "\137PNG\r\n\26\n this is not image data at all")
    local good = fx.read(dir .. "/hero_idle.png")
    fx.write(dir .. "/truncated.jpg", "\255\216\255" .. good:sub(4, 20))
    fx.write(dir .. "/README.txt", "not an image, not listed")
  end)
  teardown(function()
    if srv then srv:stop() end
    if dir then fx.rm(dir) end
  end)

  local function run(interp, args)
    local env = ("DASHSCOPE_API_KEY=%s DASHSCOPE_BASE_URL=%s"):format(u.quote(srv.key), u.quote(srv.base_url))
    return fx.sh(("env %s %s %s %s"):format(env, interp, u.quote(TOOL), args))
  end

  local function exit_code(interp, args)
    local out = fx.sh(("env DASHSCOPE_API_KEY=%s DASHSCOPE_BASE_URL=%s %s %s %s >/dev/null 2>&1; echo RC=$?"):format(
      u.quote(srv.key), u.quote(srv.base_url), interp, u.quote(TOOL), args))
    return tonumber(out:match("RC=(%d+)"))
  end

  for _, interp in ipairs{ "lua5.4", "luajit" } do
    it("captions the good images concurrently and records the bad ones (" .. interp .. ")", function()
      local out_path = ("%s/manifest-%s.json"):format(dir, interp)
      srv:reset()
      local model = standin.scenario_model("batch", "delay=250")
      local t0 = u.now()
      local out = run(interp, ("--progress --concurrency 4 --model %s --out %s %s"):format(
        u.quote(model), u.quote(out_path), u.quote(dir)))
      local elapsed = u.now() - t0
      local m = cjson.decode(fx.read(out_path))
      assert.are.equal(7, m.count, out)
      assert.are.equal(5, m.ok, out)
      assert.are.equal(2, m.failed)
      local by = {}
      for _, e in ipairs(m.images) do by[e.file] = e end
      assert.is_nil(by["README.txt"])
      for _, f in ipairs{ "hero_idle.png", "hero_run.png", "Coin.PNG", "level1_screenshot.jpg", "tile.webp" } do
        assert.is_true(by[f].ok, f .. ": " .. cjson.encode(by[f]))
        assert.matches("^STANDIN ", by[f].caption)
        assert.is_string(by[f].sha256)
      end
      assert.are.equal("webp", by["tile.webp"].format)
      assert.are.equal(96, by["hero_run.png"].width)
      for _, f in ipairs{ "corrupt.png", "truncated.jpg" } do
        assert.is_false(by[f].ok)
        assert.are.equal("invalid_request", by[f].error.code, cjson.encode(by[f]))
        assert.is_string(by[f].error.message)
      end
      -- progress line (forced on), summary, and no temp files left behind
      assert.matches("%[7/7%] 2 failed", out)
      assert.matches("5/7 captioned, 2 failed", out)
      assert.are.equal("", (fx.sh("ls " .. u.quote(dir) .. " | grep tmp- || true"):gsub("%s", "")))
      -- concurrency: 5 answers of 250 ms each, 4 at a time
      local st = srv:stats()
      io.stderr:write(("\n[batch %s] 7 images (5 good, 250 ms each), concurrency 4: %.2f s, stand-in max in flight %d\n")
        :format(interp, elapsed, st.max_in_flight or -1))
      assert.is_true(st.max_in_flight >= 3, "max in flight " .. tostring(st.max_in_flight))
      assert.is_true(elapsed < 5 * 0.25 + 1.5, ("took %.2f s"):format(elapsed))
    end)
  end

  it("tags mode returns caption + tags from a schema answer; exit status 2 on failures", function()
    local out_path = dir .. "/tags.json"
    assert.are.equal(2, exit_code("lua5.4", ("--mode tags --no-progress --out %s %s"):format(
      u.quote(out_path), u.quote(dir))))
    local m = cjson.decode(fx.read(out_path))
    assert.are.equal("tags", m.mode)
    for _, e in ipairs(m.images) do
      if e.ok then
        assert.is_string(e.caption)
        assert.are.equal("table", type(e.tags))
      end
    end
  end)

  it("exits 0 on a clean folder and 1 on bad usage", function()
    local clean = dir .. "/clean"
    fx.sh("mkdir -p " .. u.quote(clean))
    fx.png(clean .. "/a.png", 64, 48)
    assert.are.equal(0, exit_code("lua5.4", "--no-progress " .. u.quote(clean)))
    assert.is_true(cjson.decode(fx.read(clean .. "/captions.json")).images[1].ok)
    assert.are.equal(1, exit_code("lua5.4", "--mode poem " .. u.quote(clean)))
  end)
end)
