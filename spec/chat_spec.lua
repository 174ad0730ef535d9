-- qwenvl.chat against the stand-in: what is sent, what comes back.
local qwenvl = require("qwenvl")
local standin = require("spec.support.standin")
local fx = require("spec.support.fixtures")
local cjson = require("cjson")

describe("qwenvl.chat", function()
  local srv, dir, png, jpg

  setup(function()
    srv = standin.start{}
    dir = fx.tmpdir()
    png = fx.png(dir .. "/photo.png", 64, 48)
    jpg = fx.jpeg(dir .. "/photo.jpg", 80, 60)
  end)
  teardown(function()
    srv:stop()
    fx.rm(dir)
  end)

  local function req(t)
    t.api_key = t.api_key or srv.key
    t.base_url = t.base_url or srv.base_url
    return t
  end

  -- The one request the stand-in recorded for a scenario model.
  local function sent(model)
    local list = srv:requests(model)
    assert.are.equal(1, #list)
    return list[1].body, list[1]
  end

  local function answer(text) return cjson.decode(text:match("^STANDIN (.*)$")) end

  it("sends a local PNG and a JPEG intact (format, size, SHA-256 at the server)", function()
    for _, path in ipairs{ png, jpg } do
      local res, err = qwenvl.chat(req{ prompt = "Describe", image = path })
      assert.is_nil(err)
      local got = answer(res.text).images[1]
      assert.are.equal(fx.sha256(path), got.sha256)
      assert.are.equal(fx.size(path), got.bytes)
      assert.are.equal(path == png and "png" or "jpeg", got.format)
      assert.are.equal(path == png and 64 or 80, got.width)
      assert.are.equal(path == png and 48 or 60, got.height)
      -- the result says what was sent, too
      assert.are.same({ "file", path, got.format, got.bytes, got.sha256, got.width },
        { res.images[1].source, res.images[1].path, res.images[1].format,
          res.images[1].bytes, res.images[1].sha256, res.images[1].width })
    end
  end)

  it("sniffs the format from the bytes, not the extension", function()
    local disguised = dir .. "/really-a-png.jpg"
    fx.write(disguised, fx.read(png))
    local res = assert(qwenvl.chat(req{ prompt = "x", image = disguised }))
    assert.are.equal("png", answer(res.text).images[1].format)
    assert.are.equal("png", res.images[1].format)
  end)

  it("returns text, model, usage, request id, attempts, timing and the raw body", function()
    local model = standin.scenario_model("fields", "ok")
    local res = assert(qwenvl.chat(req{ prompt = "What is this?", image = png, model = model }))
    local _, record = sent(model)
    assert.matches("^STANDIN ", res.text)
    assert.are.equal("qwen3-vl-plus", res.model)           -- as returned
    assert.is_true(res.usage.total_tokens > 0)
    assert.are.equal(res.usage.prompt_tokens + res.usage.completion_tokens, res.usage.total_tokens)
    assert.are.equal(record.request_id, res.request_id)
    assert.are.equal("stop", res.finish_reason)
    assert.are.equal(1, res.attempts)
    assert.is_true(res.elapsed_s > 0 and res.elapsed_s < 10)
    assert.are.equal(res.text, cjson.decode(res.raw).choices[1].message.content)
    assert.is_nil(res.json)
  end)

  it("builds the documented body: image parts, then the text part, and the defaults", function()
    local model = standin.scenario_model("body", "ok")
    assert(qwenvl.chat(req{ prompt = "Summarize", image = png, model = model }))
    local body, record = sent(model)
    assert.are.equal(model, body.model)
    assert.are.equal(512, body.max_tokens)
    assert.are.equal(0.2, body.temperature)
    assert.is_nil(body.response_format)
    assert.is_nil(body.stream)
    assert.are.equal(1, #body.messages)
    local m = body.messages[1]
    assert.are.equal("user", m.role)
    assert.are.equal(2, #m.content)
    assert.are.equal("image_url", m.content[1].type)
    assert.are.equal("auto", m.content[1].image_url.detail)
    assert.are.equal(fx.sha256(png), m.content[1].image_url.url.sha256)
    assert.are.same({ type = "text", text = "Summarize" }, m.content[2])
    assert.are.equal("Bearer <redacted>", record.headers.authorization)
    assert.matches("^qwenvl/", record.headers["user-agent"])
    assert.are.equal("application/json", record.headers["content-type"])
  end)

  it("sends URLs as they are, checks data URLs, and keeps the order of images", function()
    local model = standin.scenario_model("multi", "ok")
    local data = "data:image/jpeg;base64," .. fx.base64(jpg)
    local res = assert(qwenvl.chat(req{ prompt = "Compare", model = model,
      images = { "https://example.com/a.jpg", data, png } }))
    local body = sent(model)
    local parts = body.messages[1].content
    assert.are.equal(4, #parts)
    assert.are.equal("https://example.com/a.jpg", parts[1].image_url.url)
    assert.are.equal(fx.sha256(jpg), parts[2].image_url.url.sha256)
    assert.are.equal(fx.sha256(png), parts[3].image_url.url.sha256)
    assert.are.equal("text", parts[4].type)
    assert.are.same({ "url", "data_url", "file" },
      { res.images[1].source, res.images[2].source, res.images[3].source })
    assert.are.equal(fx.sha256(jpg), res.images[2].sha256)
    -- the saved copy of the request carries no base64
    local saved = res.request.messages[1].content
    assert.matches("^data:image/jpeg;base64,<omitted %d+ chars>$", saved[2].image_url.url)
    assert.matches("^data:image/png;base64,<omitted %d+ chars>$", saved[3].image_url.url)
    assert.is_nil(cjson.encode(res.request):find(fx.base64(png):sub(1, 40), 1, true))
  end)

  it("puts the system prompt first and honours model, max_tokens, temperature", function()
    local model = standin.scenario_model("sys", "ok")
    assert(qwenvl.chat(req{ prompt = "p", image = png, model = model, system = "Be terse.",
      max_tokens = 64, temperature = 0 }))
    local body = sent(model)
    assert.are.same({ role = "system", content = "Be terse." }, body.messages[1])
    assert.are.equal("user", body.messages[2].role)
    assert.are.equal(64, body.max_tokens)
    assert.are.equal(0, body.temperature)
  end)

  it("json_mode asks for json_object, says JSON in the prompt, and decodes the answer", function()
    local model = standin.scenario_model("json", "ok")
    local res = assert(qwenvl.chat(req{ prompt = "Extract fields", image = png, model = model,
      json_mode = true }))
    local body = sent(model)
    assert.are.same({ type = "json_object" }, body.response_format)
    assert.matches("JSON", body.messages[1].content[2].text)
    assert.matches("^Extract fields", body.messages[1].content[2].text)
    assert.are.equal(fx.sha256(png), res.json.images[1].sha256)
  end)

  it("schema (table or JSON text) goes into the prompt and the answer is decoded", function()
    local schema_text = fx.read("examples/invoice.schema.json")
    for _, schema in ipairs{ schema_text, cjson.decode(schema_text) } do
      local model = standin.scenario_model("schema", "ok")
      local res = assert(qwenvl.chat(req{ prompt = "Extract invoice fields", image = png,
        model = model, schema = schema }))
      local body = sent(model)
      assert.are.same({ type = "json_object" }, body.response_format)
      local text = body.messages[1].content[2].text
      assert.truthy(text:find("matching this JSON Schema:", 1, true))
      assert.are.equal("number", type(res.json.amount))
      assert.are.equal("string", type(res.json.title))
    end
  end)

  it("tolerates a ```json fence around JSON answers", function()
    -- through the streaming path the text is what the server sent; here we
    -- check the decoder on a fenced document sent back by the stand-in's echo
    local res = assert(qwenvl.chat(req{ prompt = "x", image = png, json_mode = true }))
    assert.is_table(res.json)
  end)

  it("detail=high also sets vl_high_resolution_images", function()
    local model = standin.scenario_model("detail", "ok")
    assert(qwenvl.chat(req{ prompt = "p", image = png, model = model, detail = "high" }))
    local body = sent(model)
    assert.is_true(body.vl_high_resolution_images)
    assert.are.equal("high", body.messages[1].content[1].image_url.detail)
  end)

  it("passes extra DashScope parameters through", function()
    local model = standin.scenario_model("extra", "ok")
    assert(qwenvl.chat(req{ prompt = "p", image = png, model = model,
      extra = { top_p = 0.5, seed = 7, stop = { "END" }, vl_high_resolution_images = false } }))
    local body = sent(model)
    assert.are.equal(0.5, body.top_p)
    assert.are.equal(7, body.seed)
    assert.are.same({ "END" }, body.stop)
    assert.is_false(body.vl_high_resolution_images)
  end)
end)

describe("thinking mode", function()
  it("passes enable_thinking and thinking_budget, and streams under the hood", function()
    local plan = assert(qwenvl.prepare{ prompt = "p", image = "https://x/y.png", api_key = "k",
      enable_thinking = true, thinking_budget = 100 })
    assert.is_true(plan.body.enable_thinking)
    assert.are.equal(100, plan.body.thinking_budget)
    assert.is_true(plan.body.stream)
    assert.are.same({ include_usage = true }, plan.body.stream_options)
    local _, err = qwenvl.prepare{ prompt = "p", image = "https://x/y.png", api_key = "k",
      enable_thinking = true, json_mode = true }
    assert.are.equal("json_mode", err.field)
  end)
end)

describe("where requests go and which key they carry", function()
  it("maps regions to DashScope's compatible-mode endpoints", function()
    local want = {
      cn = "https://dashscope.aliyuncs.com/compatible-mode/v1",
      intl = "https://dashscope-intl.aliyuncs.com/compatible-mode/v1",
      us = "https://dashscope-us.aliyuncs.com/compatible-mode/v1",
      hk = "https://cn-hongkong.dashscope.aliyuncs.com/compatible-mode/v1",
    }
    for region, url in pairs(want) do
      local plan = assert(qwenvl.prepare{ prompt = "p", image = "https://x/y.png",
        api_key = "sk-x", region = region })
      assert.are.equal(url .. "/chat/completions", plan.url)
      assert.are.equal(region, plan.region)
      assert.are.equal(url, qwenvl.regions[region])
    end
    local plan = assert(qwenvl.prepare{ prompt = "p", image = "https://x/y.png", api_key = "k",
      base_url = "http://127.0.0.1:9/compatible-mode/v1/" })
    assert.are.equal("http://127.0.0.1:9/compatible-mode/v1/chat/completions", plan.url)
    local _, err = qwenvl.prepare{ prompt = "p", image = "https://x/y.png", api_key = "k", region = "mars" }
    assert.are.equal("region", err.field)
  end)

  it("reads DASHSCOPE_API_KEY, DASHSCOPE_BASE_URL and DASHSCOPE_REGION", function()
    local interp, cpath = fx.interp()
    local out = fx.lua(interp, { DASHSCOPE_API_KEY = "sk-env", DASHSCOPE_REGION = "intl",
      HOME = "/nonexistent" },
      [[local c = require("qwenvl").config() print(c.region, c.base_url, c.has_key, c.key_source)]], cpath)
    assert.are.equal("intl\thttps://dashscope-intl.aliyuncs.com/compatible-mode/v1\ttrue\tenv\n", out)
    out = fx.lua(interp, { DASHSCOPE_BASE_URL = "http://127.0.0.1:1/v1", HOME = "/nonexistent",
      DASHSCOPE_API_KEY = "" },
      [[local c = require("qwenvl").config() print(c.region, c.base_url, c.has_key)]], cpath)
    assert.are.equal("custom\thttp://127.0.0.1:1/v1\tfalse\n", out)
  end)

  it("falls back to ~/.alibabacloud/credentials, by profile", function()
    local home = fx.tmpdir()
    fx.sh("mkdir -p " .. fx.quote(home .. "/.alibabacloud"))
    fx.write(home .. "/.alibabacloud/credentials", table.concat({
      "; Alibaba Cloud credentials", "[default]", "access_key_id = AK",
      "dashscope_api_key = sk-from-default", "", "[work]",
      "dashscope_api_key = \"sk-from-work\"", "" }, "\r\n"))
    local srv = standin.start{ key = "sk-from-work" }
    local interp, cpath = fx.interp()
    local code = ([[
      local q = require("qwenvl")
      local c = q.config()
      local res, err = q.list_models{ base_url = %q }
      print(c.key_source, res and res.count or tostring(err))]]):format(srv.base_url)
    local out = fx.lua(interp, { HOME = home, ALIBABA_CLOUD_PROFILE = "work" }, code, cpath)
    assert.matches("^credentials\t%d+\n$", out)
    out = fx.lua(interp, { HOME = home, ALICLOUD_PROFILE = "work" }, code, cpath)
    assert.matches("^credentials\t%d+\n$", out)
    out = fx.lua(interp, { HOME = home }, code, cpath)          -- [default]: wrong key
    assert.matches("^credentials\tqwenvl: auth", out)
    assert.is_nil(out:find("sk-from-default", 1, true))
    srv:stop()
    fx.rm(home)
  end)

  it("refuses to start without a key, and says where keys come from", function()
    local interp, cpath = fx.interp()
    local out = fx.lua(interp, { HOME = "/nonexistent", DASHSCOPE_API_KEY = "" },
      [[local r, e = require("qwenvl").chat{ prompt = "p", image = "https://x/y.png",
          base_url = "http://127.0.0.1:9" } print(e.code, e.field, e.message)]], cpath)
    assert.matches("^auth\tapi_key\tno API key", out)
    assert.matches("DASHSCOPE_API_KEY", out)
  end)
end)
