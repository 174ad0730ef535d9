-- chat{messages = ...} for callers who keep their own history, and
-- chat{video = {frames...}} / video_url: what arrives at the stand-in,
-- turn by turn and frame by frame, and what is refused locally.
local qwenvl = require("qwenvl")
local standin = require("spec.support.standin")
local fx = require("spec.support.fixtures")
local cjson = require("cjson")

describe("messages and video", function()
  local env = fx.standin_env()
  local jpg
  setup(function()
    env.start()
    jpg = fx.jpeg(env.dir .. "/b.jpg", 40, 30)
  end)
  teardown(env.stop)

  local function req(t)
    t.api_key = env.srv.key
    t.base_url = env.srv.base_url
    if t.max_retries == nil then t.max_retries = 0 end
    return t
  end

  -- the stand-in's report of what arrived
  local function report(res)
    return cjson.decode((assert(res.text:match("^STANDIN (.*)$"), res.text)))
  end

  describe("messages", function()
    it("sends the history with roles and every turn's images, resolved and checked", function()
      local model = standin.scenario_model("hist", "ok")
      local res = assert(qwenvl.chat(req { model = model, messages = {
        { role = "system", content = "be brief" },
        { role = "user", content = {
          { type = "image_url", image_url = { url = env.img } },
          { type = "text", text = "what is this?" } } },
        { role = "assistant", content = "a gradient" },
        { role = "user", content = {
          { type = "image_url", image_url = { url = "data:image/jpeg;base64," .. fx.base64(jpg) } },
          { type = "text", text = "and this one?" } } },
      } }))
      local r = report(res)
      assert.equal(4, #r.turns)
      assert.same({ "system", "user", "assistant", "user" },
        { r.turns[1].role, r.turns[2].role, r.turns[3].role, r.turns[4].role })
      assert.equal(fx.sha256(env.img), r.turns[2].images[1].sha256)
      assert.equal(fx.sha256(jpg), r.turns[4].images[1].sha256)
      assert.equal(2, #res.images)
      assert.equal("file", res.images[1].source)
      -- the request as results show it: notes, not base64
      local sent = res.request.messages[2].content[1].image_url.url
      assert.matches("^data:image/png;base64,<omitted %d+ chars>$", sent)
    end)

    it("json_mode with messages puts the JSON request into the last user turn", function()
      local model = standin.scenario_model("hjson", "ok")
      local res = assert(qwenvl.chat(req { model = model, json_mode = true, messages = {
        { role = "user", content = { { type = "image_url", image_url = { url = env.img } },
          { type = "text", text = "fields?" } } } } }))
      local body = env.srv:requests(model)[1].body
      local parts = body.messages[1].content
      assert.matches("JSON", parts[#parts].text)
      assert.is_table(res.json)
    end)

    local bad = {
      { "not a list", "x", "messages" },
      { "empty", {}, "messages" },
      { "a hole", { { role = "user", content = "a" }, nil, { role = "user", content = "b" } }, "messages" },
      { "a bad role", { { role = "developer", content = "hi" } }, "messages[1]" },
      { "no user message", { { role = "system", content = "hi" } }, "messages" },
      { "content a number", { { role = "user", content = 5 } }, "messages[1]" },
      { "a part without type", { { role = "user", content = { { text = "x" } } } }, "messages[1].content[1]" },
      { "an unknown part type", { { role = "user", content = { { type = "audio" } } } }, "messages[1].content[1]" },
      { "an image in an assistant turn", { { role = "user", content = "q" },
        { role = "assistant", content = { { type = "image_url", image_url = { url = "https://a/b.png" } } } } },
        "messages[2].content[1]" },
      { "an image_url without url", { { role = "user", content = { { type = "image_url", image_url = {} } } } },
        "messages[1].content[1].image_url.url" },
      { "a missing local image", { { role = "user", content = { { type = "image_url",
        image_url = { url = "/nonexistent/q.png" } } } } }, "messages[1].content[1].image_url.url" },
      { "text that is not UTF-8", { { role = "user", content = "bad \xff" } }, "messages[1]" },
    }
    for _, c in ipairs(bad) do
      it("refuses " .. c[1] .. " locally, naming " .. c[3], function()
        local before = env.srv:stats().chat_requests
        local _, err = qwenvl.chat(req { messages = c[2] })
        assert.equal("invalid_request", err.code, tostring(err))
        assert.equal(c[3], err.field, tostring(err))
        assert.equal(before, env.srv:stats().chat_requests)
      end)
    end

    it("refuses prompt or image beside messages", function()
      local m = { { role = "user", content = "q" } }
      for _, k in ipairs({ "prompt", "image", "system" }) do
        local t = req { messages = m }
        t[k] = k == "image" and env.img or "x"
        local _, err = qwenvl.prepare(t)
        assert.equal(k, err.field)
      end
    end)
  end)

  describe("video", function()
    local frames
    setup(function()
      frames = {}
      for i = 1, 4 do frames[i] = fx.png(env.dir .. "/f" .. i .. ".png", 16 + i, 16) end
    end)

    it("sends a list of frames as one video item, each resolved like an image", function()
      local model = standin.scenario_model("vid", "ok")
      local res = assert(qwenvl.chat(req { model = model, prompt = "what happens?", video = frames,
        fps = 2 }))
      local part = env.srv:requests(model)[1].body.messages[1].content[1]
      assert.equal("video", part.type)
      assert.equal(2, part.fps)
      assert.equal(4, #part.video)
      local r = report(res)
      assert.equal(4, #r.videos[1].frames)
      for i = 1, 4 do assert.equal(fx.sha256(frames[i]), r.videos[1].frames[i].sha256) end
      assert.equal(4, #res.videos[1].frames)
      assert.equal(16 + 3, res.videos[1].frames[3].width)
      assert.equal(2, res.videos[1].fps)
    end)

    it("a video_url clip goes as a video_url part", function()
      local model = standin.scenario_model("vurl", "ok")
      assert(qwenvl.chat(req { model = model, prompt = "p", video_url = "https://example.com/a.mp4",
        fps = 1.5 }))
      local part = env.srv:requests(model)[1].body.messages[1].content[1]
      assert.equal("video_url", part.type)
      assert.equal("https://example.com/a.mp4", part.video_url.url)
      assert.equal(1.5, part.fps)
    end)

    it("refuses too few frames, a bad fps, a non-https clip", function()
      local cases = {
        { { prompt = "p", video = { frames[1], frames[2] } }, "video" },
        { { prompt = "p", video = frames, fps = 20 }, "fps" },
        { { prompt = "p", video_url = "file:///a.mp4" }, "video_url" },
        { { prompt = "p", image = env.img, fps = 2 }, "fps" },
      }
      for _, c in ipairs(cases) do
        local _, err = qwenvl.prepare(req(c[1]))
        assert.equal("invalid_request", err.code)
        assert.equal(c[2], err.field, tostring(err))
      end
    end)

    it("frames inside messages too", function()
      local model = standin.scenario_model("mvid", "ok")
      local res = assert(qwenvl.chat(req { model = model, messages = { { role = "user", content = {
        { type = "video", video = frames, fps = 2 }, { type = "text", text = "describe" } } } } }))
      assert.equal(4, #report(res).videos[1].frames)
    end)
  end)
end)
