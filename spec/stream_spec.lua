-- Streaming: chat{stream=true, on_delta=...}, h:read(), thinking mode, the
-- SSE parser against the stand-in's edge cases, mid-stream errors, stalls.
--   busted --lua=lua5.4 -m './lua/?.lua;./lua/?/init.lua;./?.lua' --cpath='./build/lua5.4/?.so' spec/stream_spec.lua
--   busted --lua=luajit -m './lua/?.lua;./lua/?/init.lua;./?.lua' --cpath='./build/luajit/?.so' spec/stream_spec.lua

local qwenvl = require("qwenvl")
local standin = require("spec.support.standin")
local fx = require("spec.support.fixtures")
local socket = require("socket")

local now = socket.gettime

describe("qwenvl streaming", function()
  local env = fx.standin_env()
  local req = env.req
  setup(env.start)
  teardown(env.stop)

  -- chat with on_delta, returning r, err and the calls {text, kind}.
  local function chat_collect(t)
    local calls = {}
    t.on_delta = function(text, kind) calls[#calls + 1] = { text = text, kind = kind } end
    local r, err = qwenvl.chat(req(t))
    return r, err, calls
  end

  local function joined(calls, kind)
    local out = {}
    for _, c in ipairs(calls) do
      if c.kind == kind then out[#out + 1] = c.text end
    end
    return table.concat(out)
  end

  local function last_body(model)
    local recs = env.srv:requests(model)
    assert.is_true(#recs >= 1, "the stand-in saw no request for " .. model)
    return recs[#recs].body, #recs
  end

  describe("blocking chat with on_delta", function()
    it("delivers content deltas whose concatenation is result.text", function()
      local model = standin.scenario_model("plain", "ok")
      local r, err, calls = chat_collect { stream = true, prompt = "stream me", model = model }
      assert.is_nil(err, tostring(err))
      assert.matches('^STANDIN {', r.text)
      assert.matches('"prompt":"stream me"', r.text, 1, true)
      assert.is_true(#calls >= 1)
      for _, c in ipairs(calls) do
        assert.are.equal("content", c.kind)
        assert.are.equal("string", type(c.text))
        assert.is_true(#c.text > 0)
      end
      assert.are.equal(r.text, joined(calls, "content"))
      assert.are.equal("stop", r.finish_reason)
      assert.is_nil(r.raw)                    -- absent for streams
      assert.are.equal(1, r.attempts)
      -- same answer as the non-streaming call
      local plain = assert(qwenvl.chat(req { prompt = "stream me", model = model }))
      assert.are.equal(plain.text, r.text)
    end)

    it("sends stream_options.include_usage and returns the usage", function()
      local model = standin.scenario_model("usage", "ok")
      local r = assert(chat_collect { stream = true, model = model })
      local body = last_body(model)
      assert.is_true(body.stream)
      assert.is_table(body.stream_options)
      assert.is_true(body.stream_options.include_usage)
      assert.is_number(r.usage.total_tokens)
      assert.is_true(r.usage.total_tokens > 0)
      assert.are.equal(r.usage.prompt_tokens + r.usage.completion_tokens, r.usage.total_tokens)
      assert.is_table(r.request)
      assert.is_true(r.request.stream)
    end)

    it("stream without on_delta still returns the text", function()
      local r = assert(qwenvl.chat(req { stream = true, prompt = "quiet" }))
      assert.matches('"prompt":"quiet"', r.text, 1, true)
    end)
  end)

  describe("handles", function()
    it("h:read() returns the deltas; their concatenation equals result.text", function()
      local h = assert(qwenvl.start(req { stream = true, prompt = "read me",
        model = standin.scenario_model("read", "sse_tiny") }))
      local parts, r, err = {}, nil, nil
      local deadline = now() + 10
      repeat
        r, err = h:poll()
        local t, rs = h:read()
        assert.is_nil(rs)
        if t then parts[#parts + 1] = t end
        assert.is_true(now() < deadline)
        socket.sleep(0.001)
      until r ~= "pending"
      local t = h:read()                      -- anything left after the end
      if t then parts[#parts + 1] = t end
      assert.is_nil(err, tostring(err))
      assert.are.equal(r.text, table.concat(parts))
      assert.matches('"prompt":"read me"', r.text, 1, true)
      assert.is_nil((h:read()))               -- nothing new
      h:close()
    end)

    it("h:read() returns reasoning as its second value in thinking mode", function()
      local h = assert(qwenvl.start(req { stream = true, enable_thinking = true }))
      local text, reasoning = {}, {}
      local r, err = h:wait(10)
      local t, rs = h:read()
      if t then text[#text + 1] = t end
      if rs then reasoning[#reasoning + 1] = rs end
      assert.is_nil(err, tostring(err))
      assert.are.equal(r.text, table.concat(text))
      assert.are.equal(r.reasoning, table.concat(reasoning))
      h:close()
    end)

    it("on_delta on a handle runs inside poll/wait", function()
      local got = {}
      local h = assert(qwenvl.start(req { stream = true, on_delta = function(t) got[#got + 1] = t end }))
      local r = assert(h:wait(10))
      assert.are.equal(r.text, table.concat(got))
      h:close()
    end)
  end)

  describe("thinking mode", function()
    it("on_delta gets all reasoning first, then content", function()
      local model = standin.scenario_model("think", "ok")
      local r, err, calls = chat_collect { stream = true, enable_thinking = true, thinking_budget = 100,
        model = model }
      assert.is_nil(err, tostring(err))
      local seen_content = false
      for _, c in ipairs(calls) do
        if c.kind == "content" then seen_content = true
        else
          assert.are.equal("reasoning", c.kind)
          assert.is_false(seen_content, "reasoning after content")
        end
      end
      assert.are.equal("thinking about 1 image", r.reasoning)
      assert.are.equal(r.reasoning, joined(calls, "reasoning"))
      assert.are.equal(r.text, joined(calls, "content"))
      assert.matches("^STANDIN ", r.text)
      assert.is_number(r.usage.completion_tokens_details.reasoning_tokens)
      local body = last_body(model)
      assert.is_true(body.enable_thinking)
      assert.are.equal(100, body.thinking_budget)
    end)

    it("enable_thinking without stream streams under the hood and returns reasoning separately", function()
      local model = standin.scenario_model("think_ns", "ok")
      local r, err = qwenvl.chat(req { enable_thinking = true, model = model })
      assert.is_nil(err, tostring(err))
      assert.are.equal("thinking about 1 image", r.reasoning)
      assert.matches("^STANDIN ", r.text)
      assert.is_nil(r.text:find("thinking about", 1, true))
      local body = last_body(model)
      assert.is_true(body.stream)
      assert.is_true(body.enable_thinking)
    end)

    it("json_mode + enable_thinking is refused locally, nothing is sent", function()
      local before = env.srv:stats().chat_requests
      local r, err = qwenvl.chat(req { prompt = "answer in json", json_mode = true, enable_thinking = true })
      assert.is_nil(r)
      assert.are.equal("invalid_request", err.code)
      assert.is_nil(err.status)
      assert.are.equal(0, err.attempts)
      local h, herr = qwenvl.start(req { prompt = "answer in json", json_mode = true,
        enable_thinking = true, stream = true })
      assert.is_nil(h)
      assert.are.equal("invalid_request", herr.code)
      assert.are.equal(before, env.srv:stats().chat_requests)
    end)
  end)

  describe("coalescing", function()
    local long_prompt = string.rep("a long prompt to make a long answer. ", 12)

    it("a byte-by-byte stream gives far fewer on_delta calls than bytes (coalesce_ms=50)", function()
      local r, err, calls = chat_collect { stream = true, prompt = long_prompt, coalesce_ms = 50,
        model = standin.scenario_model("tiny", "sse_tiny") }
      assert.is_nil(err, tostring(err))
      assert.is_true(#r.text > 400)
      -- the stand-in sends 8-byte deltas in 1-3 byte writes: #r.text/8 events
      assert.is_true(#calls * 32 < #r.text,
        #calls .. " on_delta calls for " .. #r.text .. " bytes")
      assert.are.equal(r.text, joined(calls, "content"))
    end)

    it("with large limits, the first delta comes at once and the rest in one call at the end", function()
      -- (the first delta is not held back: last_emit starts at 0, which
      -- keeps the time to first token low)
      local r, err, calls = chat_collect { stream = true, prompt = long_prompt, coalesce_ms = 60000,
        coalesce_bytes = 1000000, model = standin.scenario_model("one", "sse_tiny") }
      assert.is_nil(err, tostring(err))
      assert.is_true(#calls >= 1 and #calls <= 2, #calls .. " calls")
      assert.is_true(#calls[1].text < #r.text or #calls == 1)
      assert.are.equal(r.text, joined(calls, "content"))
    end)

    it("coalesce_bytes bounds how much is held back", function()
      -- the first delta goes out at once; after it, every piece but the
      -- last was held until the byte limit was reached
      local r, err, calls = chat_collect { stream = true, prompt = long_prompt, coalesce_ms = 60000,
        coalesce_bytes = 64, model = standin.scenario_model("bytes", "sse_tiny") }
      assert.is_nil(err, tostring(err))
      assert.are.equal(r.text, joined(calls, "content"))
      for i = 2, #calls - 1 do
        assert.is_true(#calls[i].text >= 64, "call " .. i .. " had " .. #calls[i].text .. " bytes")
      end
    end)
  end)

  describe("SSE edge cases through the real parser", function()
    local reference
    local function plain_stream_text(prompt)
      local r = assert(qwenvl.chat(req { stream = true, prompt = prompt,
        model = standin.scenario_model("ref", "ok") }))
      return r
    end

    for _, case in ipairs { "sse_crlf", "sse_comments", "sse_multiline", "sse_tiny" } do
      it(case .. " yields the same text, finish_reason and usage as a plain stream", function()
        reference = reference or plain_stream_text("edge cases")
        local r, err, calls = chat_collect { stream = true, prompt = "edge cases",
          model = standin.scenario_model(case, case) }
        assert.is_nil(err, tostring(err))
        assert.are.equal(reference.text, r.text)
        assert.are.equal(r.text, joined(calls, "content"))
        assert.are.equal("stop", r.finish_reason)
        assert.are.same(reference.usage, r.usage)
        assert.are.equal(1, r.attempts)
      end)
    end

    -- Only an event named exactly "error" is an error: DashScope's native
    -- API names its events "result", and a name of five letters, or one
    -- that merely starts with "error" (names are case-sensitive), is an
    -- ordinary event.
    for _, name in ipairs { "result", "reply", "errors", "erroR" } do
      it("events named " .. name .. " are ordinary events", function()
        reference = reference or plain_stream_text("edge cases")
        local r, err = chat_collect { stream = true, prompt = "edge cases",
          model = standin.scenario_model("named", "sse_event=" .. name) }
        assert.is_nil(err, tostring(err))
        assert.are.equal(reference.text, r.text)
        assert.are.equal("stop", r.finish_reason)
      end)
    end

    it("an event named error ends the stream with its native body: content_filter and the partial text", function()
      local r, err, calls = chat_collect { stream = true, prompt = "moderate me",
        model = standin.scenario_model("namederr", "error_event+sse_event=result") }
      assert.is_nil(r)
      assert.are.equal("content_filter", err.code)
      assert.are.equal("DataInspectionFailed", err.api_code)
      assert.matches("inappropriate", err.message)
      assert.is_true(#err.text > 0)
      assert.are.equal(err.text, joined(calls, "content"))
    end)

    it("sse_tiny with thinking keeps reasoning and content apart", function()
      local r, err, calls = chat_collect { stream = true, enable_thinking = true,
        model = standin.scenario_model("tinythink", "sse_tiny") }
      assert.is_nil(err, tostring(err))
      assert.are.equal("thinking about 1 image", r.reasoning)
      assert.are.equal(r.reasoning, joined(calls, "reasoning"))
      assert.are.equal(r.text, joined(calls, "content"))
    end)
  end)

  describe("mid-stream failures", function()
    it("an error event after HTTP 200 ends with content_filter and the partial text, never retried", function()
      local model = standin.scenario_model("errev", "error_event", "ok", "ok")
      local calls = {}
      local r, err = qwenvl.chat(req { stream = true, prompt = "moderate me", model = model,
        max_retries = 2, retry_backoff_s = 0.05,
        on_delta = function(text, kind) calls[#calls + 1] = { text = text, kind = kind } end })
      assert.is_nil(r)
      assert.are.equal("content_filter", err.code)
      assert.are.equal("data_inspection_failed", err.api_code)
      assert.matches("inappropriate", err.message)
      assert.are.equal(1, err.attempts)
      assert.is_string(err.text)
      assert.is_true(#err.text > 0)
      -- what arrived is a prefix of the full answer, and the caller saw it
      local full = assert(qwenvl.chat(req { stream = true, prompt = "moderate me",
        model = standin.scenario_model("errev_ref", "ok") }))
      assert.is_true(#err.text < #full.text)
      assert.are.equal(full.text:sub(1, #err.text), err.text)
      assert.are.equal(err.text, joined(calls, "content"))
      socket.sleep(0.2)
      assert.are.equal(1, env.srv:scenario(model).attempts)
    end)

    it("the same through a handle", function()
      local model = standin.scenario_model("errevh", "error_event", "ok")
      local got = {}
      local h = assert(qwenvl.start(req { stream = true, model = model, max_retries = 2,
        on_delta = function(t) got[#got + 1] = t end }))
      local r, err = h:wait(10)
      assert.is_nil(r)
      assert.are.equal("content_filter", err.code)
      assert.are.equal(1, err.attempts)
      assert.are.equal(1, h:attempts())
      assert.is_true(#err.text > 0)
      assert.are.equal(err.text, table.concat(got))
      h:close()
      assert.are.equal(1, env.srv:scenario(model).attempts)
    end)

    it("stall=2000 with idle_timeout_s=0.3 ends with timeout and the partial text", function()
      local model = standin.scenario_model("stall", "stall=2000", "ok")
      local t0 = now()
      local r, err, calls = chat_collect { stream = true, model = model, idle_timeout_s = 0.3,
        max_retries = 2 }
      local took = now() - t0
      assert.is_nil(r)
      assert.are.equal("timeout", err.code)
      assert.matches("idle_timeout_s", err.message)
      assert.is_true(#err.text > 0)
      assert.are.equal(err.text, joined(calls, "content"))
      assert.are.equal(1, err.attempts)
      assert.is_true(took >= 0.25 and took < 1.8, "took " .. took .. " s")
      assert.are.equal(1, env.srv:scenario(model).attempts)
    end)

    -- Known bug (src/qv_handle.c pump): when an {"error":...} event arrives
    -- An error event read while the HTTP body is still open must not turn
    -- into "canceled" (it once did). This drives a tiny in-process HTTP server (luasocket, stepped between
    -- polls) that sends a delta and the error event, and ends the body only
    -- after the handle has seen them: deterministic.
    local function error_event_then_slow_end()
      local server = assert(socket.bind("127.0.0.1", 0))
      server:settimeout(0)
      local _, port = server:getsockname()
      local got = {}
      local h = assert(qwenvl.start(req { stream = true, max_retries = 2,
        base_url = "http://127.0.0.1:" .. port .. "/compatible-mode/v1",
        on_delta = function(t) got[#got + 1] = t end }))
      local conn, buf, deadline = nil, "", now() + 5
      -- accept and read the request (headers + Content-Length body)
      while true do
        assert.are.equal("pending", h:poll())
        if not conn then
          conn = server:accept()
          if conn then conn:settimeout(0) end
        else
          local data, e, partial = conn:receive(65536)
          buf = buf .. (data or partial or "")
          assert.are_not.equal("closed", e)
          local head_end = buf:find("\r\n\r\n", 1, true)
          if head_end then
            if buf:lower():find("expect: 100%-continue") and not buf:find("HTTP/1.1 100", 1, true) then
              conn:send("HTTP/1.1 100 Continue\r\n\r\n")
            end
            local len = tonumber(buf:lower():match("content%-length:%s*(%d+)")) or 0
            if #buf >= head_end + 3 + len then break end
          end
        end
        assert.is_true(now() < deadline, "no request arrived")
        socket.sleep(0.002)
      end
      local function chunk(text) conn:send(string.format("%x\r\n%s\r\n", #text, text)) end
      conn:send("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n" ..
        "Transfer-Encoding: chunked\r\n\r\n")
      chunk('data: {"choices":[{"index":0,"delta":{"content":"partial "}}]}\n\n')
      chunk('data: {"error":{"message":"Output data may contain inappropriate content.",' ..
        '"code":"data_inspection_failed"}}\n\n')
      -- let the handle read both events while the body is still open
      local r, err
      local t0 = now()
      while now() - t0 < 0.3 do
        r, err = h:poll()
        if r ~= "pending" then break end
        socket.sleep(0.005)
      end
      conn:send("0\r\n\r\n")
      if r == "pending" then r, err = h:wait(5) end
      h:close()
      conn:close()
      server:close()
      return r, err, table.concat(got)
    end

    it("an error event read while the body is still open is content_filter, not canceled", function()
      local r, err, seen = error_event_then_slow_end()
      assert.is_nil(r)
      assert.are.equal("content_filter", err.code)
      assert.are.equal("partial ", err.text)
      assert.are.equal("partial ", seen)
      assert.are.equal(1, err.attempts)
    end)

    it("a stream cut off mid-way is not retried once deltas reached the caller", function()
      local model = standin.scenario_model("trunc", "truncate", "ok")
      local r, err, calls = chat_collect { stream = true, model = model, retry_backoff_s = 0.05 }
      assert.is_nil(r)
      assert.are.equal("network", err.code)
      assert.are.equal(1, err.attempts)
      assert.is_true(#joined(calls, "content") > 0)
      assert.are.equal(1, env.srv:scenario(model).attempts)
      assert.are.equal(joined(calls, "content"), err.text)
    end)

    it("a stream that fails before any delta is retried (429 then ok)", function()
      local model = standin.scenario_model("pre", "429", "ok")
      local r, err, calls = chat_collect { stream = true, model = model, retry_backoff_s = 0.05 }
      assert.is_nil(err, tostring(err))
      assert.are.equal(2, r.attempts)
      assert.are.equal(r.text, joined(calls, "content"))
    end)
  end)
end)
