-- What DashScope really sends, and the behaviours no spec used to hold:
-- error bodies in event-stream form, request ids only in the body, QVQ's
-- stream-only rule, OpenAI-style error bodies, near-miss field names,
-- retry caps and back-off through real calls, a CRLF split across reads,
-- GIF and RIFF files. Each case talks to the stand-in over real sockets.
local qwenvl = require("qwenvl")
local standin = require("spec.support.standin")
local fx = require("spec.support.fixtures")
local socket = require("socket")

describe("fidelity", function()
  local env = fx.standin_env()
  setup(env.start)
  teardown(env.stop)

  local function req(t)
    t = env.req(t)
    if t.max_retries == nil then t.max_retries = 0 end
    return t
  end

  local function uuid_of(res) return res.request_id end

  describe("an error body in event-stream form on a non-2xx status", function()
    for _, stream in ipairs({ true, false }) do
      it("is decoded like the JSON form (stream = " .. tostring(stream) .. ")", function()
        local model = standin.scenario_model("sse400", "400dif+sse")
        local _, err = qwenvl.chat(req { model = model, stream = stream })
        assert.equal("content_filter", err.code)
        assert.equal("data_inspection_failed", err.api_code)
        assert.equal(400, err.status)
        assert.matches("inappropriate content", err.message)
        assert.is_string(err.request_id)
        assert.equal(env.srv:requests(model)[1].request_id, err.request_id)
      end)
    end

    it("a first event that is not a JSON object does not hide the error after it", function()
      local model = standin.scenario_model("sseping", "400dif+sse+sse_ping")
      local _, err = qwenvl.chat(req { model = model, stream = true })
      assert.equal("content_filter", err.code)
      assert.equal("data_inspection_failed", err.api_code)
      assert.matches("inappropriate content", err.message)
      assert.equal(env.srv:requests(model)[1].request_id, err.request_id)
    end)

    it("a 429 in event-stream form is rate_limited with the service's message", function()
      local _, err = qwenvl.chat(req { model = standin.scenario_model("sse429", "429+sse") })
      assert.equal("rate_limited", err.code)
      assert.equal("limit_requests", err.api_code)
    end)
  end)

  describe("request_id without the x-request-id header", function()
    it("comes from the completion's id (chatcmpl-<request id>)", function()
      for _, stream in ipairs({ false, true }) do
        local model = standin.scenario_model("norid", "ok+norid")
        local res = assert(qwenvl.chat(req { model = model, stream = stream }))
        assert.equal(env.srv:requests(model)[1].request_id, uuid_of(res))
        assert.is_nil(res.request_id:match("^chatcmpl%-"))
      end
    end)

    it("comes from the error body's request_id", function()
      local model = standin.scenario_model("norid", "429+norid")
      local _, err = qwenvl.chat(req { model = model })
      assert.equal(env.srv:requests(model)[1].request_id, err.request_id)
    end)
  end)

  describe("answers in the shapes of other OpenAI-compatible services", function()
    it("without a model field: the result names the model asked", function()
      local model = standin.scenario_model("nomodel", "ok+nomodel")
      local res = assert(qwenvl.chat(req { model = model }))
      assert.equal(model, res.model)
      assert.matches("^STANDIN", res.text)
    end)

    it("content as a list of parts: the text parts joined, others skipped", function()
      local plain = assert(qwenvl.chat(req { model = standin.scenario_model("plain", "ok") }))
      local res = assert(qwenvl.chat(req { model = standin.scenario_model("parts", "ok+parts") }))
      assert.equal(plain.text, res.text)
      assert.is_true(#res.text > 10)
    end)

    it("a fractional usage figure stays a float; token counts stay integers", function()
      local res = assert(qwenvl.chat(req { model = standin.scenario_model("cost", "ok+cost=2.5") }))
      assert.equal(2.5, res.usage.cost)
      assert.is_true(res.usage.total_tokens > 0)
      if math.type then
        assert.equal("float", math.type(res.usage.cost))
        assert.equal("integer", math.type(res.usage.total_tokens))
      end
    end)
  end)

  describe("QVQ models accept streamed requests only", function()
    it("a plain chat streams under the hood and sends no enable_thinking", function()
      local res = assert(qwenvl.chat(req { model = "qvq-max" }))
      assert.matches("^STANDIN", res.text)
      assert.is_string(res.reasoning)
      assert.is_true(res.request.stream)
      assert.is_nil(res.request.enable_thinking)
    end)

    it("enable_thinking = false for a QVQ model is refused locally", function()
      local before = env.srv:stats().chat_requests
      local _, err = qwenvl.chat(req { model = "qvq-max", enable_thinking = false })
      assert.equal("enable_thinking", err.field)
      local _, err2 = qwenvl.chat(req { model = "qvq-plus", extra = { enable_thinking = true } })
      assert.equal("extra", err2.field)
      assert.equal(before, env.srv:stats().chat_requests)
    end)
  end)

  it("qwenvl.config{region = 'bogus'} returns nil, err", function()
    local cfg, err = qwenvl.config { region = "bogus" }
    assert.is_nil(cfg)
    assert.equal("invalid_request", err.code)
    assert.equal("region", err.field)
  end)

  describe("OpenAI-style error bodies (error.code null)", function()
    it("take api_code from error.type", function()
      local _, err = qwenvl.chat(req { model = standin.scenario_model("oai", "oai") })
      assert.equal("invalid_request", err.code)
      assert.equal("invalid_request_error", err.api_code)
      local _, err2 = qwenvl.chat(req { model = standin.scenario_model("oai", "oai=500") })
      assert.equal("server", err2.code)
    end)
  end)

  describe("near-miss field names are refused by name", function()
    for _, name in ipairs({ "temp", "max_token", "imag", "Prompt", "max_tokens " }) do
      it(("%q"):format(name), function()
        local t = req {}
        t[name] = 1
        local _, err = qwenvl.prepare(t)
        assert.equal("invalid_request", err.code)
        assert.equal(name, err.field)
        assert.matches("unknown request field", err.message)
      end)
    end
  end)

  describe("retries through real calls", function()
    for _, status in ipairs({ "408", "409" }) do
      it(status .. " is retried, then the answer comes", function()
        local model = standin.scenario_model("r" .. status, status, "ok")
        local res = assert(qwenvl.chat(req { model = model, max_retries = 2, retry_backoff_s = 0.01 }))
        assert.equal(2, res.attempts)
        assert.equal(2, env.srv:scenario(model).attempts)
      end)
    end

    it("a Retry-After longer than max_retry_after_s ends the call at once, though timeout_s would allow it", function()
      local model = standin.scenario_model("cap", "429ra=3", "ok")
      local t0 = socket.gettime()
      local _, err = qwenvl.chat(req { model = model, max_retries = 3, max_retry_after_s = 1,
        timeout_s = 30 })
      assert.equal("rate_limited", err.code)
      assert.equal(1, err.attempts)
      assert.equal(3, err.retry_after)
      assert.is_true(socket.gettime() - t0 < 2.5)
      -- and below the cap it is honoured
      model = standin.scenario_model("cap", "429ra=0.3", "ok")
      local res = assert(qwenvl.chat(req { model = model, max_retries = 3, max_retry_after_s = 1 }))
      assert.equal(2, res.attempts)
      local times = env.srv:scenario(model).times
      assert.is_true(times[2] - times[1] >= 0.28)
    end)

    it("back-off doubles between attempts (retry_backoff_s * 2^n, jitter in [0.75, 1])", function()
      local model = standin.scenario_model("dbl", "500", "500", "500", "ok")
      local res = assert(qwenvl.chat(req { model = model, max_retries = 3, retry_backoff_s = 0.2 }))
      assert.equal(4, res.attempts)
      local t = env.srv:scenario(model).times
      local gaps = { t[2] - t[1], t[3] - t[2], t[4] - t[3] }
      for i, g in ipairs(gaps) do
        local base = 0.2 * 2 ^ (i - 1)
        assert.is_true(g >= 0.75 * base - 0.02, ("gap %d = %.3f s, below %.3f"):format(i, g, 0.75 * base))
      end
      -- doubling, not constant: the third wait is clearly longer than the first
      assert.is_true(gaps[3] > 2 * gaps[1], ("gaps %.3f %.3f %.3f"):format(gaps[1], gaps[2], gaps[3]))
    end)
  end)

  it("a CRLF split across two reads inside a real stream gives the same text", function()
    local plain = assert(qwenvl.chat(req { stream = true, model = standin.scenario_model("crlf", "ok") }))
    local split = assert(qwenvl.chat(req { stream = true,
      model = standin.scenario_model("crlf", "sse_crlf+sse_tiny") }))
    assert.equal(plain.text, split.text)
    assert.equal(plain.finish_reason, split.finish_reason)
  end)

  it("a GIF goes through chat as image/gif", function()
    local gif = env.dir .. "/a.gif"
    fx.sh("vips black " .. fx.quote(env.dir .. "/g.v") .. " 24 16 && vips copy " ..
      fx.quote(env.dir .. "/g.v") .. " " .. fx.quote(gif))
    local model = standin.scenario_model("gif", "ok")
    local res = assert(qwenvl.chat(req { model = model, image = gif }))
    assert.equal("gif", res.images[1].format)
    assert.equal(24, res.images[1].width)
    assert.equal("image/gif", env.srv:requests(model)[1].body.messages[1].content[1].image_url.url.mime)
  end)

  it("a RIFF file that is not WEBP (WAV, AVI) is an unknown format, not a WEBP variant", function()
    for name, fourcc in pairs({ wav = "WAVE", avi = "AVI " }) do
      local p = env.dir .. "/x." .. name
      fx.write(p, "RIFF" .. string.char(36, 0, 0, 0) .. fourcc .. string.rep("\0", 40))
      local _, err = qwenvl.prepare(req { image = p })
      assert.equal("image", err.field)
      assert.matches("unknown format", err.message)
    end
  end)
end)
