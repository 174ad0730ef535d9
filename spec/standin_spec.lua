-- Exercises the DashScope stand-in (spec/support/standin.py) directly, with
-- luasocket and the curl CLI, so the qwenvl specs can trust it.
--   busted --lua=lua5.4  spec/standin_spec.lua
--   busted --lua=luajit  spec/standin_spec.lua

local standin = require("spec.support.standin")
local cjson = require("cjson")
local mime = require("mime")
local socket = require("socket")

local KEY = "sk-standin-test"
local srv

-- ---------------------------------------------------------------------------
-- small utilities
-- ---------------------------------------------------------------------------
local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

local write_file = require("spec.support.fixtures").write

local TMP = os.tmpname()
os.remove(TMP)
os.execute("mkdir -p " .. TMP)
local tmp_n = 0
local function tmpfile(tag)
  tmp_n = tmp_n + 1
  return string.format("%s/%s-%d", TMP, tag or "f", tmp_n)
end

local function mod(n, m) return n - math.floor(n / m) * m end
local function byte_at(n, shift) return mod(math.floor(n / shift), 256) end
local function be16(n) return string.char(byte_at(n, 256), byte_at(n, 1)) end
local function be32(n)
  n = mod(n, 4294967296)
  return string.char(byte_at(n, 16777216), byte_at(n, 65536), byte_at(n, 256), byte_at(n, 1))
end
local function le16(n) return string.char(byte_at(n, 1), byte_at(n, 256)) end
local function le24(n) return string.char(byte_at(n, 1), byte_at(n, 256), byte_at(n, 65536)) end
local function le32(n)
  n = mod(n, 4294967296)
  return string.char(byte_at(n, 1), byte_at(n, 256), byte_at(n, 65536), byte_at(n, 16777216))
end

-- Minimal image headers (enough for the stand-in's sniffer).
local img = {}
function img.png(w, h)
  return "\137PNG\r\n\26\n" .. be32(13) .. "IHDR" .. be32(w) .. be32(h) .. "\8\2\0\0\0" .. "\0\0\0\0"
end
function img.gif(w, h) return "GIF89a" .. le16(w) .. le16(h) .. "\0\0\0;" end
function img.bmp(w, h)
  return "BM" .. le32(58) .. "\0\0\0\0" .. le32(54) .. le32(40) .. le32(w) .. le32(-h)
    .. le16(1) .. le16(24) .. string.rep("\0", 24) .. "\0\0\0\0"
end
function img.webp_vp8(w, h)
  local data = "\0\0\0" .. "\157\1\42" .. le16(w) .. le16(h) .. "\0\0"
  return "RIFF" .. le32(4 + 8 + #data) .. "WEBP" .. "VP8 " .. le32(#data) .. data
end
function img.webp_vp8l(w, h)
  local data = "\47" .. le32((h - 1) * 16384 + (w - 1)) .. "\0"
  return "RIFF" .. le32(4 + 8 + #data) .. "WEBP" .. "VP8L" .. le32(#data) .. data
end
function img.webp_vp8x(w, h)
  local data = "\0\0\0\0" .. le24(w - 1) .. le24(h - 1)
  return "RIFF" .. le32(4 + 8 + #data) .. "WEBP" .. "VP8X" .. le32(#data) .. data
end
function img.tiff(w, h, orientation)
  return "II*\0" .. le32(8) .. le16(3)
    .. le16(256) .. le16(3) .. le32(1) .. le16(w) .. "\0\0"
    .. le16(257) .. le16(4) .. le32(1) .. le32(h)
    .. le16(274) .. le16(3) .. le32(1) .. le16(orientation or 1) .. "\0\0"
    .. le32(0)
end
-- JPEG: SOI, APP1/Exif (orientation), a DHT whose payload would look like a
-- frame header if DHT were not skipped, a progressive SOF2, EOI.
function img.jpeg(w, h, orientation)
  local out = "\255\216"
  if orientation then
    local exif = "Exif\0\0" .. "MM\0*" .. be32(8) .. be16(1)
      .. be16(274) .. be16(3) .. be32(1) .. be16(orientation) .. "\0\0" .. be32(0)
    out = out .. "\255\225" .. be16(2 + #exif) .. exif
  end
  out = out .. "\255\196" .. be16(2 + 6) .. "\8\0\1\0\2\0"
  out = out .. "\255\194" .. be16(17) .. "\8" .. be16(h) .. be16(w) .. "\3"
    .. "\1\17\0\2\17\1\3\17\1"
  return out .. "\255\217"
end

local function data_url(mimetype, bytes)
  return "data:" .. mimetype .. ";base64," .. mime.b64(bytes)
end

local function sha256_hex(bytes)
  local path = tmpfile("sha")
  write_file(path, bytes)
  local p = io.popen("sha256sum " .. path)
  local out = p:read("*a")
  p:close()
  return out:match("^(%x+)")
end

local function image_part(url, extra)
  local part = { type = "image_url", image_url = { url = url } }
  for k, v in pairs(extra or {}) do part[k] = v end
  return part
end

local function user_msg(text, parts)
  local content = {}
  for _, p in ipairs(parts or {}) do content[#content + 1] = p end
  content[#content + 1] = { type = "text", text = text }
  return { role = "user", content = content }
end

-- POST a chat body with luasocket; returns status, decoded body (or raw), headers.
local function chat(body, headers, timeout)
  local raw = type(body) == "string" and body or cjson.encode(body)
  local st, b, h = standin.http("POST", srv.base_url .. "/chat/completions", raw,
    srv:auth_headers(headers), timeout or 30)
  local ok, obj = pcall(cjson.decode, b)
  return st, ok and obj or b, h
end

local function parse_headers(text)
  -- the last header block (curl -D writes one per response when following)
  local blocks = {}
  local cur
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    line = line:gsub("\r$", "")
    if line:match("^HTTP/") then
      cur = { _status_line = line }
      blocks[#blocks + 1] = cur
    elseif cur and line ~= "" then
      local k, v = line:match("^([^:]+):%s*(.*)$")
      if k then cur[k:lower()] = v end
    end
  end
  return blocks[#blocks] or {}, blocks
end

-- Run the curl CLI against the stand-in.  opts: body (table|string), path,
-- auth (default true), extra (string of curl args), headers (table), method.
local function curl(opts)
  local hdr, out, err = tmpfile("h"), tmpfile("o"), tmpfile("e")
  local args = { "curl", "-sS", "--max-time", tostring(opts.max_time or 30),
    "-D", hdr, "-o", out,
    "-w", "'%{http_code} %{time_starttransfer} %{time_total} %{num_connects}'" }
  if opts.auth ~= false then
    args[#args + 1] = "-H 'Authorization: Bearer " .. (opts.key or srv.key) .. "'"
  end
  for k, v in pairs(opts.headers or {}) do
    args[#args + 1] = "-H '" .. k .. ": " .. v .. "'"
  end
  if opts.body ~= nil then
    local bf = tmpfile("b")
    write_file(bf, type(opts.body) == "string" and opts.body or cjson.encode(opts.body))
    args[#args + 1] = "-H 'Content-Type: application/json' --data-binary @" .. bf
  end
  if opts.method then args[#args + 1] = "-X " .. opts.method end
  if opts.extra then args[#args + 1] = opts.extra end
  args[#args + 1] = "'" .. (opts.url or (srv.base_url .. (opts.path or "/chat/completions"))) .. "'"
  local cmd = table.concat(args, " ") .. " 2>" .. err .. "; echo \" EXIT=$?\""
  local p = io.popen(cmd)
  local s = p:read("*a")
  p:close()
  local status, ttfb, total, nconn, exit =
    s:match("(%d+) ([%d%.]+) ([%d%.]+) (%d+)%s+EXIT=(%d+)")
  local headers, blocks = parse_headers(read_file(hdr))
  local body = read_file(out)
  local ok, json = pcall(cjson.decode, body)
  return {
    status = tonumber(status), ttfb = tonumber(ttfb), time = tonumber(total),
    connects = tonumber(nconn), exit = tonumber(exit), headers = headers, blocks = blocks,
    body = body, json = ok and json or nil, stderr = read_file(err), cmd = cmd,
  }
end

-- Server-sent events parser (CRLF/LF/CR, comments, multi-line data).
local function parse_sse(text)
  local events, data, fields = {}, {}, {}
  text = text:gsub("\r\n", "\n"):gsub("\r", "\n")
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    if line == "" then
      if #data > 0 then
        events[#events + 1] = { data = table.concat(data, "\n"), event = fields.event, id = fields.id }
      end
      data, fields = {}, {}
    elseif line:sub(1, 1) == ":" then
      events.comments = (events.comments or 0) + 1
    else
      local k, v = line:match("^([^:]*):?%s?(.*)$")
      if k == "data" then data[#data + 1] = v else fields[k] = v end
    end
  end
  return events
end

-- Decode an SSE body into { chunks = {...decoded...}, content, reasoning, done, usage, error }
local function read_stream(text)
  local events = parse_sse(text)
  local r = { chunks = {}, content = {}, reasoning = {}, done = false, events = events }
  for _, ev in ipairs(events) do
    if ev.data == "[DONE]" then
      r.done = true
    else
      local obj = cjson.decode(ev.data)
      r.chunks[#r.chunks + 1] = obj
      if obj.error then r.error = obj.error end
      if obj.usage and obj.usage ~= cjson.null then r.usage = obj.usage end
      local c = obj.choices and obj.choices[1]
      if c then
        local d = c.delta or {}
        if type(d.content) == "string" then r.content[#r.content + 1] = d.content end
        if type(d.reasoning_content) == "string" then
          r.reasoning[#r.reasoning + 1] = d.reasoning_content
        end
        if c.finish_reason ~= cjson.null and c.finish_reason ~= nil then r.finish = c.finish_reason end
      end
    end
  end
  r.content = table.concat(r.content)
  r.reasoning = table.concat(r.reasoning)
  return r
end

-- Decode a raw (curl --raw) chunked body into its chunk sizes and payload.
local function dechunk(raw)
  local sizes, parts, pos = {}, {}, 1
  while true do
    local line_end = raw:find("\r\n", pos, true)
    if not line_end then break end
    local size = tonumber(raw:sub(pos, line_end - 1):match("^(%x+)"), 16)
    if not size then break end
    if size == 0 then sizes.terminated = true break end
    sizes[#sizes + 1] = size
    parts[#parts + 1] = raw:sub(line_end + 2, line_end + 1 + size)
    pos = line_end + 2 + size + 2
  end
  return sizes, table.concat(parts)
end

local function simple_body(model, text, extra)
  local b = { model = model or "qwen3-vl-plus", messages = { user_msg(text or "describe") } }
  for k, v in pairs(extra or {}) do b[k] = v end
  return b
end

local function standin_report(content)
  assert(content:sub(1, 8) == "STANDIN ", "content is not a STANDIN report: " .. content)
  return cjson.decode(content:sub(9))
end

-- ---------------------------------------------------------------------------
describe("standin server", function()
  setup(function()
    srv = standin.start { key = KEY }
  end)

  teardown(function()
    if srv then srv:stop() end
    os.execute("rm -rf " .. TMP)
  end)

  describe("process and helper", function()
    it("reports port, base_url and key", function()
      assert.is_number(srv.port)
      assert.is_true(srv.port > 0)
      assert.are.equal("http://127.0.0.1:" .. srv.port .. "/compatible-mode/v1", srv.base_url)
      assert.are.equal(KEY, srv.key)
      assert.is_true(srv:alive())
    end)

    it("prints exactly one PORT line on stdout", function()
      local p = io.popen("exec python3 spec/support/standin.py --port 0 2>/dev/null", "r")
      local line = p:read("*l")
      local port, pid = (line or ""):match("^PORT (%d+) PID (%d+)$")
      assert.is_truthy(port, line)
      local st = standin.http("POST", "http://127.0.0.1:" .. port .. "/_standin/shutdown", "")
      assert.are.equal(200, st)
      assert.are.equal("", p:read("*a")) -- nothing else was printed before exit
      p:close()
      assert.is_nil(io.open("/proc/" .. pid .. "/stat", "r"))
    end)

    it("makes unique scenario models", function()
      local a = standin.scenario_model("x", "429", "ok")
      local b = standin.scenario_model("x", { "429", "ok" })
      assert.is_truthy(a:match("^fault/x%-[^/]+/429,ok$"), a)
      assert.is_truthy(b:match("^fault/x%-[^/]+/429,ok$"), b)
      assert.are_not.equal(a, b)
      assert.are.equal(a:match("^fault/([^/]+)/"), standin.scenario_name(a))
    end)

    it("stop() is idempotent and SIGTERM ends the process quickly", function()
      local s2 = standin.start {}
      local pid = s2.pid
      local t0 = socket.gettime()
      s2:stop()
      s2:stop()
      assert.is_true(socket.gettime() - t0 < 3)
      assert.is_false(s2:alive())
      assert.is_nil(io.open("/proc/" .. pid .. "/stat", "r"))
    end)

    it("exits on POST /_standin/shutdown", function()
      local s2 = standin.start {}
      local st = s2:post("/_standin/shutdown", "")
      assert.are.equal(200, st)
      local rest = s2.handle:read("*a") -- EOF once the process is gone
      assert.are.equal("", rest)
      local deadline = socket.gettime() + 5
      while s2:alive() and socket.gettime() < deadline do socket.sleep(0.05) end
      s2:stop()
      assert.is_false(s2:alive())
    end)
  end)

  describe("auth, models and routing", function()
    it("lists models with a valid key", function()
      local r = curl { path = "/models" }
      assert.are.equal(200, r.status)
      assert.are.equal("list", r.json.object)
      local ids = {}
      for _, m in ipairs(r.json.data) do
        ids[m.id] = true
        assert.are.equal("model", m.object)
        assert.are.equal("system", m.owned_by)
      end
      assert.is_true(#r.json.data >= 5)
      for _, id in ipairs { "qwen3-vl-plus", "qwen3-vl-flash", "qwen-vl-max", "qwen-vl-ocr" } do
        assert.is_true(ids[id], id)
      end
      assert.is_truthy(r.headers["x-request-id"]:match("^%x+%-%x+%-4%x+%-%x+%-%x+$"))
      assert.is_truthy(r.headers["content-length"])
    end)

    it("answers 401 with the DashScope body for a bad key", function()
      for _, key in ipairs { "sk-wrong", nil } do
        local r = curl { path = "/models", key = key, auth = key ~= nil }
        assert.are.equal(401, r.status)
        local e = r.json.error
        assert.are.equal("Incorrect API key provided. For details, see: "
          .. "https://help.aliyun.com/zh/model-studio/error-code#apikey-error", e.message)
        assert.are.equal("invalid_request_error", e.type)
        assert.are.equal(cjson.null, e.param)
        assert.are.equal("invalid_api_key", e.code)
        assert.are.equal(r.headers["x-request-id"], r.json.request_id)
      end
      local r = curl { body = simple_body(), key = "sk-nope" }
      assert.are.equal(401, r.status)
      assert.are.equal("invalid_api_key", r.json.error.code)
    end)

    it("answers 404 with an OpenAI-style error for unknown paths", function()
      local r = curl { path = "/nope" }
      assert.are.equal(404, r.status)
      assert.is_string(r.json.error.message)
      assert.are.equal(r.headers["x-request-id"], r.json.request_id)
    end)

    it("keeps connections alive (HTTP/1.1)", function()
      srv:reset()
      local r = curl { path = "/models", extra = "'" .. srv.base_url .. "/models'" }
      assert.are.equal(200, r.status)
      assert.are.equal(0, r.connects) -- second transfer reused the connection
      local st = srv:stats()
      assert.are.equal(2, st.models_requests)
      assert.are.equal(2, st.connections) -- curl's one + the stats call
    end)
  end)

  describe("validation", function()
    local function expect_400(body, message, etype)
      local st, obj, h = chat(body)
      assert.are.equal(400, st, type(obj) == "table" and cjson.encode(obj) or obj)
      assert.are.equal(message, obj.error.message)
      assert.are.equal(etype or "invalid_parameter_error", obj.error.type)
      assert.are.equal(etype or "invalid_parameter_error", obj.error.code)
      assert.are.equal(h["x-request-id"], obj.request_id)
    end
    local ALGO = "<400> InternalError.Algo.InvalidParameter: "

    it("rejects a body that is not JSON", function()
      local st, obj = chat("{not json")
      assert.are.equal(400, st)
      assert.is_string(obj.error.message)
    end)

    it("rejects a missing model and missing messages", function()
      expect_400({ messages = { user_msg("hi") } }, "you must provide a model parameter",
        "invalid_request_error")
      expect_400({ model = "", messages = { user_msg("hi") } }, "you must provide a model parameter",
        "invalid_request_error")
      expect_400({ model = "qwen3-vl-plus" }, "Required parameter(messages) missing or invalid")
      expect_400('{"model":"qwen3-vl-plus","messages":[]}', "Required parameter(messages) missing or invalid")
    end)

    it("checks temperature and max_tokens ranges", function()
      expect_400(simple_body(nil, "x", { temperature = 2 }), ALGO .. "Temperature should be in [0.0, 2.0)")
      expect_400(simple_body(nil, "x", { temperature = -0.1 }), ALGO .. "Temperature should be in [0.0, 2.0)")
      expect_400(simple_body(nil, "x", { max_tokens = 0 }), "Range of max_tokens should be [1, 32768]")
      expect_400(simple_body(nil, "x", { max_tokens = 32769 }), "Range of max_tokens should be [1, 32768]")
      assert.are.equal(200, (chat(simple_body(nil, "x", { temperature = 1.99, max_tokens = 32768 }))))
    end)

    it("checks data URLs and images", function()
      local function with(url) return { model = "qwen3-vl-plus", messages = { user_msg("x", { image_part(url) }) } } end
      expect_400(with("data:image/png," .. mime.b64(img.png(20, 20))),
        "The provided URL does not appear to be valid. Ensure it is correctly formatted.")
      expect_400(with("data:image/png;base64,@@@not-base64@@@"),
        ALGO .. "Failed to decode the image during the data inspection.")
      expect_400(with(data_url("image/png", "just some text, not an image")),
        ALGO .. "Failed to decode the image during the data inspection.")
      expect_400(with(data_url("image/png", img.png(10, 300))), ALGO ..
        "The image length and width do not meet the model restrictions. [height:300 or width:10 must be larger than 10]")
      expect_400(with(data_url("image/gif", img.gif(500, 8))), ALGO ..
        "The image length and width do not meet the model restrictions. [height:8 or width:500 must be larger than 10]")
      local prefix = "data:image/png;base64,"
      local big = prefix .. string.rep("A", 10485760 - #prefix + 4)
      expect_400(with(big), "Exceeded limit on max bytes per data-uri item : 10485760")
    end)

    it("checks json mode and thinking combinations", function()
      local jm = { type = "json_object" }
      expect_400(simple_body(nil, "describe it", { response_format = jm }),
        "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.")
      expect_400(simple_body(nil, "answer in JSON", { response_format = jm, enable_thinking = true, stream = true }),
        "Json mode response is not supported when enable_thinking is true")
      -- Qwen3-VL thinks non-streamed too (see "thinking without streaming");
      -- older families only when streamed.
      expect_400(simple_body("qwen-vl-max", "x", { enable_thinking = true }),
        "parameter.enable_thinking must be set to false for non-streaming calls")
    end)
  end)

  describe("answers", function()
    it("reports every image format it can sniff, with usage", function()
      local cases = {
        { "image/png", img.png(640, 480), "png", 640, 480 },
        { "image/jpeg", img.jpeg(1000, 700, 6), "jpeg", 1000, 700, 6 },
        { "image/jpg", img.jpeg(33, 44), "jpeg", 33, 44 },
        { "image/gif", img.gif(64, 32), "gif", 64, 32 },
        { "image/bmp", img.bmp(120, 90), "bmp", 120, 90 },
        { "image/webp", img.webp_vp8(300, 200), "webp", 300, 200 },
        { "image/webp", img.webp_vp8l(257, 129), "webp", 257, 129 },
        { "image/webp", img.webp_vp8x(4000, 3000), "webp", 4000, 3000 },
        { "image/tiff", img.tiff(77, 66, 8), "tiff", 77, 66, 8 },
      }
      local parts = {}
      for i, c in ipairs(cases) do
        parts[i] = image_part(data_url(c[1], c[2]), i == 1 and { min_pixels = 3072, max_pixels = 1003520 } or nil)
      end
      parts[#parts + 1] = { type = "image_url", image_url = { url = "https://example.com/a.png", detail = "high" } }
      local body = {
        model = "qwen3-vl-flash",
        messages = {
          { role = "system", content = "You are precise." },
          user_msg("first question"),
          { role = "assistant", content = "ok" },
          { role = "user", content = (function()
            local t = {}
            for _, p in ipairs(parts) do t[#t + 1] = p end
            t[#t + 1] = { type = "text", text = "line one" }
            t[#t + 1] = { type = "text", text = "line two" }
            return t
          end)() },
        },
      }
      local st, obj, h = chat(body)
      assert.are.equal(200, st)
      assert.are.equal("chatcmpl-" .. h["x-request-id"], obj.id)
      assert.are.equal("chat.completion", obj.object)
      assert.are.equal("qwen3-vl-flash", obj.model)
      assert.is_number(obj.created)
      assert.are.equal(cjson.null, obj.system_fingerprint)
      local ch = obj.choices[1]
      assert.are.equal(0, ch.index)
      assert.are.equal("stop", ch.finish_reason)
      assert.are.equal("assistant", ch.message.role)
      local rep = standin_report(ch.message.content)
      assert.are.equal("line one\nline two", rep.prompt)
      assert.are.equal("You are precise.", rep.system)
      assert.are.equal("qwen3-vl-flash", rep.model)
      assert.are.equal(#cases + 1, #rep.images)
      local image_tokens = 0
      for i, c in ipairs(cases) do
        local r = rep.images[i]
        assert.are.equal(c[3], r.format, "case " .. i)
        assert.are.equal(c[4], r.width, "case " .. i)
        assert.are.equal(c[5], r.height, "case " .. i)
        assert.are.equal(#c[2], r.bytes)
        assert.are.equal(c[1], r.mime)
        assert.are.equal(sha256_hex(c[2]), r.sha256)
        assert.are.equal(c[6] or cjson.null, r.orientation, "orientation case " .. i)
        image_tokens = image_tokens + math.ceil(c[5] / 32) * math.ceil(c[4] / 32) + 2
      end
      assert.are.equal(3072, rep.images[1].min_pixels)
      assert.are.equal(1003520, rep.images[1].max_pixels)
      assert.are.equal("https://example.com/a.png", rep.images[#rep.images].url)
      local u = obj.usage
      assert.are.equal(image_tokens, u.prompt_tokens_details.image_tokens)
      assert.are.equal(u.prompt_tokens_details.image_tokens + u.prompt_tokens_details.text_tokens, u.prompt_tokens)
      assert.are.equal(math.ceil(#ch.message.content / 4), u.completion_tokens)
      assert.are.equal(u.prompt_tokens + u.completion_tokens, u.total_tokens)
    end)

    it("answers a plain JSON object in json_object mode", function()
      local st, obj = chat(simple_body(nil, "Reply in json please", { response_format = { type = "json_object" } }))
      assert.are.equal(200, st)
      local doc = cjson.decode(obj.choices[1].message.content)
      assert.are.equal("Reply in json please", doc.prompt)
      assert.are.equal(cjson.null, doc.system)
    end)

    local schema = {
      type = "object",
      required = { "title", "count" },
      properties = {
        title = { type = "string" },
        count = { type = "integer" },
        score = { type = "number", minimum = 0, maximum = 1 },
        ok = { type = "boolean" },
        kind = { enum = { "cat", "dog" } },
        fixed = { const = "v1" },
        tags = { type = "array", items = { type = "string" } },
        box = { ["$ref"] = "#/$defs/box" },
        either = { anyOf = { { type = "integer" }, { type = "null" } } },
        maybe = { type = { "string", "null" } },
      },
      ["$defs"] = {
        box = { type = "object", required = { "x" }, properties = { x = { type = "number" }, y = { type = "integer" } } },
      },
    }
    local function schema_prompt()
      return "Describe the image. Reply with a json document matching this JSON Schema:\n"
        .. cjson.encode(schema) .. "\nNo prose."
    end

    it("generates a document conforming to an embedded JSON schema", function()
      local st, obj = chat(simple_body(nil, schema_prompt(), { response_format = { type = "json_object" } }))
      assert.are.equal(200, st)
      local doc = cjson.decode(obj.choices[1].message.content)
      assert.are.equal("sample title", doc.title)
      assert.are.equal(42, doc.count)
      assert.is_true(doc.score >= 0 and doc.score <= 1)
      assert.are.equal(true, doc.ok)
      assert.are.equal("cat", doc.kind)
      assert.are.equal("v1", doc.fixed)
      assert.are.same({ "sample tags" }, doc.tags)
      assert.are.equal(42.5, doc.box.x)
      assert.are.equal(42, doc.box.y)
      assert.are.equal(42, doc.either)
      assert.are.equal("sample maybe", doc.maybe)
    end)

    it("badschema violates the schema (numbers as strings, first required dropped)", function()
      local model = standin.scenario_model("badschema", "badschema", "ok")
      local st, obj = chat(simple_body(model, schema_prompt()))
      assert.are.equal(200, st)
      assert.are.equal("qwen3-vl-plus", obj.model)
      local doc = cjson.decode(obj.choices[1].message.content)
      assert.is_nil(doc.title)
      assert.are.equal("42", doc.count)
      assert.is_string(doc.box.x)
      st, obj = chat(simple_body(model, schema_prompt()))
      doc = cjson.decode(obj.choices[1].message.content)
      assert.are.equal("sample title", doc.title)
      assert.are.equal(42, doc.count)
    end)
  end)

  describe("streaming", function()
    local function stream_body(model, extra)
      local b = simple_body(model, "stream please", { stream = true })
      for k, v in pairs(extra or {}) do b[k] = v end
      return b
    end

    it("streams chunked SSE with finish and optional usage chunks", function()
      local r = curl { body = stream_body(nil, { stream_options = { include_usage = true } }), extra = "-N" }
      assert.are.equal(200, r.status)
      assert.is_truthy(r.headers["content-type"]:match("^text/event%-stream"))
      assert.are.equal("chunked", r.headers["transfer-encoding"])
      assert.is_nil(r.headers["content-length"])
      local s = read_stream(r.body)
      assert.is_true(s.done)
      local rep = standin_report(s.content)
      assert.are.equal("stream please", rep.prompt)
      assert.are.equal("chat.completion.chunk", s.chunks[1].object)
      assert.are.equal("chatcmpl-" .. r.headers["x-request-id"], s.chunks[1].id)
      assert.are.equal("assistant", s.chunks[1].choices[1].delta.role)
      assert.is_true(#s.chunks[1].choices[1].delta.content <= 8)
      local n = #s.chunks
      assert.are.equal(0, #s.chunks[n].choices)
      assert.are.equal(s.usage.prompt_tokens + s.usage.completion_tokens, s.usage.total_tokens)
      assert.are.equal("stop", s.chunks[n - 1].choices[1].finish_reason)
      assert.are.equal("data: [DONE]\n\n", r.body:sub(-14))

      local r2 = curl { body = stream_body(), extra = "-N" }
      local s2 = read_stream(r2.body)
      assert.is_nil(s2.usage)
      assert.is_true(s2.done)
      assert.are.equal("stop", s2.finish)
    end)

    it("sends reasoning_content deltas first when thinking", function()
      local r = curl { body = stream_body(nil, { enable_thinking = true, stream_options = { include_usage = true } }) }
      local s = read_stream(r.body)
      assert.are.equal("thinking about 0 images", s.reasoning)
      local first = s.chunks[1].choices[1].delta
      assert.are.equal("", first.content)
      assert.is_string(first.reasoning_content)
      local seen_content = false
      for _, c in ipairs(s.chunks) do
        local d = c.choices[1] and c.choices[1].delta
        if d and type(d.content) == "string" and d.content ~= "" then seen_content = true end
        if d and seen_content then
          assert.is_true(type(d.reasoning_content) ~= "string" or d.reasoning_content == "")
        end
      end
      assert.is_true(s.usage.completion_tokens_details.reasoning_tokens > 0)
    end)

    it("honours X-Standin-Chunk-Delay-Ms", function()
      local r = curl { body = stream_body(), headers = { ["X-Standin-Chunk-Delay-Ms"] = "30" } }
      local s = read_stream(r.body)
      assert.is_true(r.time >= 0.03 * (#s.chunks - 1), tostring(r.time))
    end)

    it("stall=MS pauses after two content events", function()
      local model = standin.scenario_model("stall", "stall=700")
      local r = curl { body = stream_body(model) }
      assert.are.equal(200, r.status)
      assert.is_true(r.ttfb < 0.5, tostring(r.ttfb))
      assert.is_true(r.time >= 0.7, tostring(r.time))
      local s = read_stream(r.body)
      assert.is_true(s.done)
      assert.are.equal("qwen3-vl-plus", standin_report(s.content).model)
    end)

    it("error_event sends an error object inside the 200 stream", function()
      local model = standin.scenario_model("errev", "error_event")
      local r = curl { body = stream_body(model) }
      assert.are.equal(200, r.status)
      assert.are.equal(0, r.exit)
      local s = read_stream(r.body)
      assert.is_false(s.done)
      assert.are.equal("data_inspection_failed", s.error.code)
      assert.are.equal("Output data may contain inappropriate content.", s.error.message)
      assert.are.equal(2, #s.chunks - 1)
    end)

    it("sse_event=NAME names every event; with error_event the error is a native event: error", function()
      local r = curl { body = stream_body(standin.scenario_model("named", "sse_event=result")) }
      assert.is_truthy(r.body:find("event: result\ndata: ", 1, true))
      local events = parse_sse(r.body)
      assert.is_true(#events > 2)
      for _, ev in ipairs(events) do assert.are.equal("result", ev.event) end
      assert.is_true(read_stream(r.body).done)
      local e = curl { body = stream_body(standin.scenario_model("namederr", "error_event+sse_event=result")) }
      local last = parse_sse(e.body)
      last = last[#last]
      assert.are.equal("error", last.event)
      local native = standin.json.decode(last.data)
      assert.are.equal("DataInspectionFailed", native.code)
      assert.is_string(native.request_id)
      assert.is_nil(native.error)
    end)

    it("sse_crlf, sse_comments, sse_multiline and sse_tiny keep the same content", function()
      local ref = read_stream(curl { body = stream_body(standin.scenario_model("ref", "ok")) }.body).content
      local crlf = curl { body = stream_body(standin.scenario_model("crlf", "sse_crlf")) }
      assert.is_truthy(crlf.body:find("\r\n\r\n", 1, true))
      assert.is_nil(crlf.body:gsub("\r\n", ""):find("\n", 1, true))
      assert.are.equal(ref, read_stream(crlf.body).content)

      local com = curl { body = stream_body(standin.scenario_model("comments", "sse_comments")) }
      assert.is_truthy(com.body:find(": keep-alive\n", 1, true))
      assert.is_truthy(com.body:find("event: message\nid: 1\ndata: ", 1, true))
      local cs = read_stream(com.body)
      assert.is_true(cs.events.comments > 1)
      assert.are.equal(ref, cs.content)

      local ml = curl { body = stream_body(standin.scenario_model("multi", "sse_multiline")) }
      local multi_events = 0
      for _, ev in ipairs(parse_sse(ml.body)) do
        if ev.data:find("\n", 1, true) then multi_events = multi_events + 1 end
      end
      assert.are.equal(1, multi_events)
      assert.are.equal(ref, read_stream(ml.body).content)

      local tiny = curl { body = stream_body(standin.scenario_model("tiny", "sse_tiny")), extra = "--raw" }
      local sizes, payload = dechunk(tiny.body)
      assert.is_true(sizes.terminated)
      assert.is_true(#sizes > 100)
      for _, n in ipairs(sizes) do assert.is_true(n >= 1 and n <= 3) end
      assert.are.equal(ref, read_stream(payload).content)
    end)
  end)

  describe("fault injection", function()
    it("runs steps per attempt, repeating the last, and records arrivals", function()
      local model = standin.scenario_model("seq", "429", "500", "ok")
      local codes = {}
      for i = 1, 4 do codes[i] = (chat(simple_body(model))) end
      assert.are.same({ 429, 500, 200, 200 }, codes)
      local sc = srv:scenario(model)
      assert.are.equal(4, sc.attempts)
      assert.are.equal(4, #sc.times)
      assert.is_true(sc.times[4] >= sc.times[1])
      assert.are.equal(0, srv:scenario("never-used-" .. os.time()).attempts)
    end)

    it("produces the documented error bodies", function()
      local cases = {
        { "429", 429, "limit_requests", "limit_requests", "Requests rate limit exceeded, please try again later." },
        { "500", 500, "internal_error", "internal_error" },
        { "503", 503, "ModelUnavailable", "ServiceUnavailable" },
        { "504", 504 },
        { "400", 400, "invalid_parameter_error", "invalid_parameter_error" },
        { "401", 401, "invalid_request_error", "invalid_api_key" },
        { "403", 403, "AccessDenied" },
        { "404", 404, "invalid_request_error", "model_not_found", "Model not exist." },
        { "400dif", 400, "data_inspection_failed", "data_inspection_failed",
          "Input or output data may contain inappropriate content." },
      }
      for _, c in ipairs(cases) do
        local st, obj, h = chat(simple_body(standin.scenario_model("err", c[1])))
        assert.are.equal(c[2], st, c[1])
        assert.is_string(obj.error.message, c[1])
        if c[3] then assert.are.equal(c[3], obj.error.type, c[1]) end
        if c[4] then assert.are.equal(c[4], obj.error.code, c[1]) end
        if c[5] then assert.are.equal(c[5], obj.error.message, c[1]) end
        assert.are.equal(h["x-request-id"], obj.request_id, c[1])
      end
    end)

    it("sends Retry-After variants on 429", function()
      local r = curl { body = simple_body(standin.scenario_model("ra", "429ra=3")) }
      assert.are.equal(429, r.status)
      assert.are.equal("3", r.headers["retry-after"])
      r = curl { body = simple_body(standin.scenario_model("ram", "429ram=1500")) }
      assert.are.equal("1500", r.headers["retry-after-ms"])
      r = curl { body = simple_body(standin.scenario_model("rad", "429date=5")) }
      assert.is_truthy(r.headers["retry-after"]:match("^%a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT$"),
        r.headers["retry-after"])
    end)

    it("502html answers an nginx HTML page", function()
      local r = curl { body = simple_body(standin.scenario_model("html", "502html")) }
      assert.are.equal(502, r.status)
      assert.is_truthy(r.headers["content-type"]:match("^text/html"))
      assert.is_truthy(r.body:find("<title>502 Bad Gateway</title>", 1, true))
      assert.is_truthy(r.body:find("nginx", 1, true))
    end)

    it("reset closes the socket with a RST and no response", function()
      local r = curl { body = simple_body(standin.scenario_model("rst", "reset", "ok")) }
      assert.are.equal(0, r.status)
      assert.are.equal(56, r.exit, r.stderr) -- Recv failure: Connection reset by peer
      assert.is_truthy(r.stderr:find("reset", 1, true), r.stderr)
    end)

    it("reset_after_headers sends headers then a RST", function()
      local r = curl { body = simple_body(standin.scenario_model("rah", "reset_after_headers")) }
      assert.are.equal(200, r.status)
      assert.are.equal(56, r.exit, r.stderr)
      assert.is_truthy(tonumber(r.headers["content-length"]) > 0)
    end)

    it("truncate sends half of the announced body", function()
      local r = curl { body = simple_body(standin.scenario_model("trunc", "truncate")) }
      assert.are.equal(200, r.status)
      assert.are.equal(18, r.exit, r.stderr) -- partial file
      local announced = tonumber(r.headers["content-length"])
      assert.are.equal(math.floor(announced / 2), #r.body)
    end)

    it("notjson, empty_choices and oversize", function()
      local r = curl { body = simple_body(standin.scenario_model("nj", "notjson")) }
      assert.are.equal(200, r.status)
      assert.are.equal("application/json", r.headers["content-type"])
      assert.are.equal("this is not json", r.body)
      r = curl { body = simple_body(standin.scenario_model("ec", "empty_choices")) }
      assert.are.equal(200, r.status)
      assert.are.same({}, r.json.choices)
      r = curl { body = simple_body(standin.scenario_model("big", "oversize=3000000")) }
      assert.are.equal(200, r.status)
      assert.are.equal(3000000, #r.json.choices[1].message.content)
      assert.are.equal(#r.body, tonumber(r.headers["content-length"]))
    end)

    it("delay and slowheaders postpone the response", function()
      local r = curl { body = simple_body(standin.scenario_model("slow", "slowheaders=600")) }
      assert.are.equal(200, r.status)
      assert.is_true(r.ttfb >= 0.6, tostring(r.ttfb))
      r = curl { body = simple_body(standin.scenario_model("d1", "ok+delay=400")) }
      assert.is_true(r.ttfb >= 0.4, tostring(r.ttfb))
      r = curl { body = simple_body(standin.scenario_model("d2", "delay=300")) }
      assert.are.equal(200, r.status)
      assert.is_true(r.ttfb >= 0.3, tostring(r.ttfb))
      r = curl { body = simple_body(standin.scenario_model("d3", "429+delay=300")) }
      assert.are.equal(429, r.status)
      assert.is_true(r.ttfb >= 0.3, tostring(r.ttfb))
    end)

    it("redirect points at the other host name and records what arrived there", function()
      local model = standin.scenario_model("redir", "redirect", "redirect", "ok")
      local r = curl { body = simple_body(model) }
      assert.are.equal(307, r.status)
      assert.are.equal("http://localhost:" .. srv.port .. "/compatible-mode/v1/chat/completions",
        r.headers["location"])
      -- curl follows with -L but drops the Authorization header on a host change.
      local r2 = curl { body = simple_body(model), extra = "-L" }
      local reqs = srv:requests(model)
      assert.are.equal(3, #reqs)
      assert.are.equal("Bearer <redacted>", reqs[1].headers.authorization)
      assert.are.equal("127.0.0.1:" .. srv.port, reqs[1].headers.host)
      local last = reqs[3]
      if r2.status == 401 then
        assert.are.equal("localhost:" .. srv.port, last.headers.host)
        assert.is_nil(last.headers.authorization)
      else
        -- localhost did not resolve to 127.0.0.1 here: curl could not follow
        assert.are.equal(307, r2.status)
      end
    end)

    it("streams faults too: truncate and reset_after_headers", function()
      local r = curl { body = simple_body(standin.scenario_model("st", "truncate"), "x", { stream = true }) }
      assert.are.equal(200, r.status)
      assert.are.equal(18, r.exit, r.stderr)
      r = curl { body = simple_body(standin.scenario_model("sr", "reset_after_headers"), "x", { stream = true }) }
      assert.are.equal(200, r.status)
      assert.are.equal(56, r.exit, r.stderr)
    end)
  end)

  describe("records", function()
    it("records request bodies with data URLs summarised and auth redacted", function()
      local png = img.png(100, 50)
      local model = standin.scenario_model("rec", "ok")
      local body = simple_body(model, "hello")
      table.insert(body.messages[1].content, 1, image_part(data_url("image/png", png), { max_pixels = 1234 }))
      body.temperature = 0.5
      assert.are.equal(200, (chat(body, { ["X-Extra"] = "yes" })))
      curl { body = simple_body(model, "second"), key = "sk-wrong" }
      local reqs = srv:requests(model)
      assert.are.equal(2, #reqs)
      local r1 = reqs[1]
      assert.are.equal("Bearer <redacted>", r1.headers.authorization)
      assert.are.equal("yes", r1.headers["x-extra"])
      assert.are.equal(standin.scenario_name(model), r1.scenario)
      assert.are.equal(0.5, r1.body.temperature)
      assert.is_number(r1.time)
      assert.is_true(r1.raw_size > #png)
      local part = r1.body.messages[1].content[1]
      assert.are.equal(1234, part.max_pixels)
      assert.are.equal(#data_url("image/png", png), part.image_url.url.data_url_bytes)
      assert.are.equal(sha256_hex(png), part.image_url.url.sha256)
      assert.are.equal("png", part.image_url.url.format)
      assert.are.equal("Bearer sk-wrong", reqs[2].headers.authorization)
      local all = srv:requests()
      assert.is_true(#all >= 2)
    end)

    it("stats count requests and reset clears them", function()
      srv:reset()
      local st = srv:stats()
      assert.are.equal(0, st.chat_requests)
      assert.are.same({}, st.arrivals)
      chat(simple_body())
      curl { path = "/models" }
      st = srv:idle_stats()
      assert.are.equal(1, st.chat_requests)
      assert.are.equal(1, st.models_requests)
      assert.are.equal(1, #st.arrivals)
      assert.are.equal(0, st.in_flight)
      assert.are.equal(1, st.max_in_flight)
      assert.are.equal(1, #srv:requests())
      -- scenarios are cleared by reset as well
      local model = standin.scenario_model("clr", "429", "ok")
      assert.are.equal(429, (chat(simple_body(model))))
      srv:reset()
      assert.are.equal(0, srv:scenario(model).attempts)
      assert.are.equal(429, (chat(simple_body(model))))
    end)
  end)

  -- -------------------------------------------------------------------------
  -- Step grammar, error shapes and hostile answers
  -- -------------------------------------------------------------------------
  local function fm(name, ...) return standin.scenario_model(name, ...) end
  local UUID = "^%x+%-%x+%-4%x+%-%x+%-%x+$"

  -- One request over a raw socket; returns the whole raw response (the
  -- server closes because of Connection: close).
  local function raw_exchange(body, extra_headers)
    local payload = type(body) == "string" and body or cjson.encode(body)
    local c = assert(socket.connect("127.0.0.1", srv.port))
    c:settimeout(30)
    c:send("POST /compatible-mode/v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
      .. "Authorization: Bearer " .. KEY .. "\r\nContent-Type: application/json\r\n"
      .. (extra_headers or "") .. "Connection: close\r\nContent-Length: " .. #payload .. "\r\n\r\n"
      .. payload)
    local out, err, partial = c:receive("*a")
    c:close()
    return out or partial, err
  end

  describe("step grammar", function()
    it("refuses unknown tokens, two kinds and misplaced modifiers loudly", function()
      for _, step in ipairs { "bogus", "ok+429", "500+503", "ok+sse", "ok+status=200",
        "ok+echo=msg", "echo=nowhere", "500+status=abc", "oai=99", "model", "429+ra" } do
        local st, obj = chat(simple_body(fm("bad", step)))
        assert.are.equal(400, st, step)
        assert.are.equal("standin_bad_step", obj.error.code, step)
        assert.is_truthy(obj.error.message:find("standin: bad step", 1, true), step)
      end
    end)

    it("takes modifiers in any order, with or without a kind", function()
      for _, step in ipairs { "norid", "norid+ok", "ok+norid", "delay=1+norid" } do
        local st, obj, h = chat(simple_body(fm("ord", step)))
        assert.are.equal(200, st, step)
        assert.is_nil(h["x-request-id"], step)
        assert.are.equal("chat.completion", obj.object, step)
      end
    end)
  end)

  describe("error shapes", function()
    it("400dif+sse: the moderation refusal of a streamed request, as DashScope sends it", function()
      local body = simple_body(fm("ssedif", "400dif+sse"), "x", { stream = true })
      local r = curl { body = body }
      assert.are.equal(400, r.status)
      assert.are.equal("text/event-stream;charset=UTF-8", r.headers["content-type"])
      assert.are.equal("chunked", r.headers["transfer-encoding"])
      local rid = r.headers["x-request-id"]
      assert.is_truthy(rid:match(UUID))
      assert.are.equal('data: {"error":{"code":"data_inspection_failed","message":"Input or output '
        .. 'data may contain inappropriate content.","type":"data_inspection_failed"},"request_id":"'
        .. rid .. '"}\n\n', r.body)
    end)

    it("+sse gives any error kind the same event-stream shape", function()
      local cases = {
        { "429+sse", 429, "limit_requests", "limit_requests" },
        { "500+sse", 500, "internal_error", "internal_error" },
        { "oai=403+sse", 403, cjson.null, "invalid_request_error" },
      }
      for _, c in ipairs(cases) do
        local r = curl { body = simple_body(fm("sse", c[1]), "x", { stream = true }) }
        assert.are.equal(c[2], r.status, c[1])
        assert.are.equal("text/event-stream;charset=UTF-8", r.headers["content-type"], c[1])
        local events = parse_sse(r.body)
        assert.are.equal(1, #events, c[1])
        local obj = cjson.decode(events[1].data)
        assert.are.equal(c[3], obj.error.code, c[1])
        assert.are.equal(c[4], obj.error.type, c[1])
        assert.is_string(obj.error.message, c[1])
        assert.is_nil(obj.error.param, c[1])
        assert.is_nil(obj.choices, c[1])
        if c[3] ~= cjson.null then assert.are.equal(r.headers["x-request-id"], obj.request_id, c[1]) end
      end
    end)

    it("sse_ping puts a heartbeat that is not JSON before the error event", function()
      local r = curl { body = simple_body(fm("ssep", "400dif+sse+sse_ping"), "x", { stream = true }) }
      assert.are.equal(400, r.status)
      local events = parse_sse(r.body)
      assert.are.equal(2, #events)
      assert.are.equal("ping", events[1].data)
      assert.are.equal("data_inspection_failed", cjson.decode(events[2].data).error.code)
      local st, obj = chat(simple_body(fm("ssep2", "400dif+sse_ping")))
      assert.are.equal(400, st)
      assert.are.equal("standin_bad_step", obj.error.code)
    end)

    it("norid drops x-request-id from answers, errors and streams; bodies keep the id", function()
      local st, obj, h = chat(simple_body(fm("nr", "ok+norid")))
      assert.are.equal(200, st)
      assert.is_nil(h["x-request-id"])
      assert.is_truthy(obj.id:match("^chatcmpl%-") and obj.id:sub(10):match(UUID), obj.id)
      st, obj, h = chat(simple_body(fm("nr", "429+norid")))
      assert.are.equal(429, st)
      assert.is_nil(h["x-request-id"])
      assert.is_truthy(obj.request_id:match(UUID))
      local r = curl { body = simple_body(fm("nr", "norid"), "x", { stream = true }) }
      assert.are.equal(200, r.status)
      assert.is_nil(r.headers["x-request-id"])
      local s = read_stream(r.body)
      assert.is_true(s.done)
      assert.is_truthy(s.chunks[1].id:sub(10):match(UUID))
      -- a validation error, too
      st, obj, h = chat(simple_body(fm("nr", "norid+model=qvq-max")))
      assert.are.equal(400, st)
      assert.is_nil(h["x-request-id"])
      assert.is_truthy(obj.request_id:match(UUID))
    end)

    it("oai answers an OpenAI-style body: code null, no request_id", function()
      local st, obj = chat(simple_body(fm("oai", "oai")))
      assert.are.equal(400, st)
      assert.are.same({ "code", "message", "param", "type" }, (function()
        local keys = {}
        for k in pairs(obj.error) do keys[#keys + 1] = k end
        table.sort(keys)
        return keys
      end)())
      assert.are.equal(cjson.null, obj.error.code)
      assert.are.equal(cjson.null, obj.error.param)
      assert.are.equal("invalid_request_error", obj.error.type)
      assert.is_string(obj.error.message)
      assert.is_nil(obj.request_id)
      for status, etype in pairs { [429] = "rate_limit_error", [500] = "server_error", [404] = "invalid_request_error" } do
        st, obj = chat(simple_body(fm("oai", "oai=" .. status)))
        assert.are.equal(status, st)
        assert.are.equal(etype, obj.error.type)
        assert.are.equal(cjson.null, obj.error.code)
      end
    end)

    it("408 and 409 answer DashScope-shaped bodies", function()
      -- curl: luasocket's http drops the headers and body of any 408
      for _, c in ipairs { { "408", "RequestTimeOut" }, { "409", "Conflict" } } do
        local r = curl { body = simple_body(fm("r4", c[1], "ok")) }
        local st, obj, h = r.status, r.json, r.headers
        assert.are.equal(tonumber(c[1]), st)
        assert.are.equal(c[2], obj.error.code)
        assert.are.equal(c[2], obj.error.type)
        assert.are.equal(cjson.null, obj.error.param)
        assert.is_string(obj.error.message)
        assert.are.equal(h["x-request-id"], obj.request_id)
      end
    end)

    it("status=200 makes a 200 whose body is an error with no choices", function()
      local st, obj, h = chat(simple_body(fm("e200", "400dif+status=200")))
      assert.are.equal(200, st)
      assert.are.equal("application/json", h["content-type"])
      assert.is_nil(obj.choices)
      assert.are.equal("data_inspection_failed", obj.error.code)
      assert.are.equal(h["x-request-id"], obj.request_id)
      st, obj = chat(simple_body(fm("e200", "500+status=200")))
      assert.are.equal(200, st)
      assert.are.equal("internal_error", obj.error.code)
    end)

    it("Retry-After: fractional, long, milliseconds, HTTP-date, on any status", function()
      local cases = {
        { "429ra=0.25", 429, "retry-after", "0.25" },
        { "429ra=3600", 429, "retry-after", "3600" },
        { "429ram=250", 429, "retry-after-ms", "250" },
        { "429ram=120000", 429, "retry-after-ms", "120000" },
        { "503+ra=0.5", 503, "retry-after", "0.5" },
        { "500+ram=1500", 500, "retry-after-ms", "1500" },
        { "429+ra=1+ram=1500", 429, "retry-after-ms", "1500" },
      }
      for _, c in ipairs(cases) do
        local r = curl { body = simple_body(fm("ra", c[1])) }
        assert.are.equal(c[2], r.status, c[1])
        assert.are.equal(c[4], r.headers[c[3]], c[1])
      end
      local r = curl { body = simple_body(fm("ra", "429+ra=1+ram=1500")) }
      assert.are.equal("1", r.headers["retry-after"])
      r = curl { body = simple_body(fm("ra", "408+radate=2")) }
      assert.are.equal(408, r.status)
      assert.is_truthy(r.headers["retry-after"]:match("^%a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT$"))
    end)
  end)

  describe("answers that clients must survive", function()
    local function stream_req(model, extra)
      local b = simple_body(model, "stream please", { stream = true })
      for k, v in pairs(extra or {}) do b[k] = v end
      return b
    end

    it("sse_crlf+sse_tiny: every CR ends an HTTP chunk and its LF starts the next", function()
      local ref = read_stream(curl { body = stream_req(fm("ref", "ok")) }.body).content
      local r = curl { body = stream_req(fm("crlftiny", "sse_crlf+sse_tiny")), extra = "--raw" }
      assert.are.equal(200, r.status)
      -- re-walk the raw chunks, keeping each one's bytes
      local chunks, pos = {}, 1
      while true do
        local eol = r.body:find("\r\n", pos, true)
        local size = tonumber(r.body:sub(pos, eol - 1), 16)
        if size == 0 then break end
        chunks[#chunks + 1] = r.body:sub(eol + 2, eol + 1 + size)
        pos = eol + 2 + size + 2
      end
      local splits = 0
      for i, c in ipairs(chunks) do
        assert.is_true(#c >= 1 and #c <= 3)
        local cr = c:find("\r", 1, true)
        if cr then
          assert.are.equal(#c, cr, "a CR inside chunk " .. i)
          assert.are.equal("\n", chunks[i + 1]:sub(1, 1), "chunk after a CR " .. i)
          splits = splits + 1
        end
      end
      local payload = table.concat(chunks)
      assert.is_nil(payload:gsub("\r\n", ""):find("[\r\n]"))
      local s = read_stream(payload)
      assert.are.equal(2 * #s.events, splits) -- "data: ...\r\n\r\n": two CRLFs per event
      assert.are.equal(ref, s.content)
      assert.is_true(s.done)
    end)

    it("nostream answers a streamed request with a plain JSON 200", function()
      local r = curl { body = stream_req(fm("ns", "nostream"), { stream_options = { include_usage = true } }) }
      assert.are.equal(200, r.status)
      assert.are.equal("application/json", r.headers["content-type"])
      assert.are.equal(#r.body, tonumber(r.headers["content-length"]))
      assert.are.equal("chat.completion", r.json.object)
      assert.are.equal("stream please", standin_report(r.json.choices[1].message.content).prompt)
      assert.is_number(r.json.usage.total_tokens)
    end)

    it("badutf8 puts raw invalid UTF-8 in the content, streamed and not", function()
      local bad = "bad utf-8: \255\254 then \226\130 end"
      local r = curl { body = simple_body(fm("u8", "badutf8")) }
      assert.are.equal(200, r.status)
      assert.is_truthy(r.body:find('"content":"' .. bad .. '"', 1, true))
      assert.are.equal(#r.body, tonumber(r.headers["content-length"]))
      local rs = curl { body = stream_req(fm("u8s", "badutf8")) }
      assert.is_truthy(rs.body:find("\255\254", 1, true))
      local s = read_stream(rs.body)
      assert.are.equal(bad, s.content)
      assert.is_true(s.done)
    end)

    it("nomodel, parts and cost=X reshape a plain answer as other compatible services do", function()
      local st, plain = chat(simple_body(fm("shape", "ok")))
      assert.are.equal(200, st)
      local text = plain.choices[1].message.content
      local _, obj = chat(simple_body(fm("shape", "ok+nomodel")))
      assert.is_nil(obj.model)
      assert.are.equal(text, obj.choices[1].message.content)
      _, obj = chat(simple_body(fm("shape", "parts")))
      local parts = obj.choices[1].message.content
      assert.are.same({ "text", "refusal", "text" }, { parts[1].type, parts[2].type, parts[3].type })
      assert.are.equal(text, parts[1].text .. parts[3].text)
      local r = curl { body = simple_body(fm("shape", "ok+cost=0.5")) }
      assert.is_truthy(r.body:find('"cost":0.5', 1, true))
      assert.are.equal(plain.usage.total_tokens, r.json.usage.total_tokens)
      st = chat(simple_body(fm("shape", "ok+cost")))
      assert.are.equal(400, st)                      -- cost= needs a value
    end)

    describe("echoing the caller's key (a hostile server)", function()
      local function has_key(s) return s:find(KEY, 1, true) ~= nil end

      it("echo=text and echo=id put it in the content and the ids", function()
        local st, obj, h = chat(simple_body(fm("echo", "ok+echo=text")))
        assert.are.equal(200, st)
        assert.are.equal("you sent " .. KEY, obj.choices[1].message.content)
        assert.are.equal(false, has_key(h["x-request-id"]))
        st, obj, h = chat(simple_body(fm("echo", "echo=id")))
        assert.are.equal("chatcmpl-" .. KEY, obj.id)
        assert.is_truthy(h["x-request-id"]:match(UUID))
        st, obj = chat(simple_body(fm("echo", "500+echo=id")))
        assert.are.equal(500, st)
        assert.are.equal(KEY, obj.request_id)
      end)

      it("echo=header puts it in x-request-id", function()
        local st, obj, h = chat(simple_body(fm("echo", "ok+echo=header")))
        assert.are.equal(200, st)
        assert.are.equal(KEY, h["x-request-id"])
        assert.is_truthy(obj.id:sub(10):match(UUID))
        local r = curl { body = stream_req(fm("echo", "echo=header+echo=id")) }
        assert.are.equal(KEY, r.headers["x-request-id"])
        assert.are.equal("chatcmpl-" .. KEY, read_stream(r.body).chunks[1].id)
      end)

      it("echo=delta sends it whole in one streamed delta; echo=text splits it over deltas", function()
        local s = read_stream(curl { body = stream_req(fm("echo", "echo=delta")) }.body)
        local whole = 0
        for _, c in ipairs(s.chunks) do
          local d = c.choices[1] and c.choices[1].delta
          if d and type(d.content) == "string" and has_key(d.content) then whole = whole + 1 end
        end
        assert.are.equal(1, whole)
        assert.are.equal("you sent " .. KEY, s.content)
        local t = read_stream(curl { body = stream_req(fm("echo", "echo=text")) }.body)
        assert.are.equal("you sent " .. KEY, t.content)
        assert.is_true(#t.chunks > 3)
      end)

      it("echo=msg, echo=code and echo=escaped put it in error bodies", function()
        local st, obj = chat(simple_body(fm("echo", "401+echo=msg")))
        assert.are.equal(401, st)
        assert.is_true(has_key(obj.error.message))
        st, obj = chat(simple_body(fm("echo", "400+echo=code")))
        assert.are.equal(KEY, obj.error.code)
        local r = curl { body = simple_body(fm("echo", "400+echo=escaped")) }
        assert.are.equal(400, r.status)
        assert.are.equal(false, has_key(r.body))
        local esc = {}
        for i = 1, #KEY do esc[i] = string.format("\\u%04x", KEY:byte(i)) end
        assert.is_truthy(r.body:find(table.concat(esc), 1, true))
        assert.is_true(has_key(r.json.error.message)) -- decoded, it is the key
        local s = read_stream(curl { body = stream_req(fm("echo", "error_event+echo=msg")) }.body)
        assert.are.equal("data_inspection_failed", s.error.code)
        assert.is_true(has_key(s.error.message))
        r = curl { body = simple_body(fm("echo", "502html+echo=msg")) }
        assert.are.equal(502, r.status)
        assert.is_truthy(r.headers["content-type"]:match("^text/html"))
        assert.is_true(has_key(r.body))
      end)

      it("the records still redact the key", function()
        local model = fm("echorec", "ok+echo=text")
        chat(simple_body(model))
        local rec = srv:requests(model)[1]
        assert.are.equal("Bearer <redacted>", rec.headers.authorization)
        assert.are.equal(false, has_key(cjson.encode(rec)))
      end)
    end)

    describe("slow answers", function()
      it("a delay of seconds works streamed and not", function()
        local r = curl { body = simple_body(fm("slow2", "delay=2000")) }
        assert.are.equal(200, r.status)
        assert.is_true(r.ttfb >= 2, tostring(r.ttfb))
        assert.are.equal("describe", standin_report(r.json.choices[1].message.content).prompt)
        r = curl { body = stream_req(fm("slow3", "delay=3000")) }
        assert.are.equal(200, r.status)
        assert.is_true(r.ttfb >= 3, tostring(r.ttfb))
        assert.is_true(read_stream(r.body).done)
      end)


      local function wait_gone(model)
        for _ = 1, 200 do
          local rec = srv:requests(model)[1]
          if rec and rec.client_gone then return rec end
          socket.sleep(0.05)
        end
      end

      it("a client leaving mid-delay or mid-stall is noticed and others are served", function()
        local before = srv:stats().chat_requests
        local model = fm("gone", "delay=20000")
        local c = assert(socket.connect("127.0.0.1", srv.port))
        local payload = cjson.encode(simple_body(model))
        c:send("POST /compatible-mode/v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
          .. KEY .. "\r\nContent-Length: " .. #payload .. "\r\n\r\n" .. payload)
        socket.sleep(0.2)
        c:close()
        -- served while the other one is still waiting
        local st = chat(simple_body(fm("meanwhile", "ok")))
        assert.are.equal(200, st)
        local rec = wait_gone(model)
        assert.is_truthy(rec, "the stand-in did not notice the client leaving")
        -- the slot was given back: nothing is in flight any more
        local stats = srv:idle_stats()
        assert.are.equal(0, stats.in_flight)
        assert.are.equal(before + 2, stats.chat_requests)

        -- the same in the middle of a stream
        model = fm("gonestall", "stall=20000")
        c = assert(socket.connect("127.0.0.1", srv.port))
        payload = cjson.encode(stream_req(model))
        c:settimeout(10)
        c:send("POST /compatible-mode/v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
          .. KEY .. "\r\nContent-Length: " .. #payload .. "\r\n\r\n" .. payload)
        -- two content events arrive, then the stall begins
        local got, seen = "", 0
        while seen < 2 do
          local data, err = c:receive(1)
          assert.is_nil(err)
          got = got .. data
          if got:sub(-11) == '"content":"' then seen = seen + 1 end
        end
        c:close()
        assert.is_truthy(wait_gone(model), "the stand-in did not notice the client leaving a stream")
        assert.are.equal(200, (chat(simple_body(fm("after", "ok")))))
        assert.are.equal(0, srv:idle_stats().in_flight)
      end)
    end)
  end)

  -- -------------------------------------------------------------------------
  -- Model families, conversations, video, grounding, OCR
  -- -------------------------------------------------------------------------
  describe("model families", function()
    local png = img.png(1000, 700)
    local function with_image(model, text, extra, part_extra)
      local b = { model = model, messages = { user_msg(text, { image_part(data_url("image/png", png), part_extra) }) } }
      for k, v in pairs(extra or {}) do b[k] = v end
      return b
    end

    it("QVQ is streaming only", function()
      for _, model in ipairs { "qvq-max", "qvq-plus", "qvq-max-2025-03-25", fm("qvq", "model=qvq-max") } do
        local r = curl { body = simple_body(model) }
        assert.are.equal(400, r.status, model)
        assert.are.equal('{"error":{"message":"This model only support stream mode, please enable the '
          .. 'stream parameter to access the model. ","type":"invalid_request_error","param":null,'
          .. '"code":"invalid_parameter_error"},"request_id":"' .. r.headers["x-request-id"] .. '"}', r.body)
      end
    end)

    it("QVQ refuses enable_thinking, true or false", function()
      for _, v in ipairs { true, false } do
        local st, obj = chat(simple_body("qvq-max", "x", { stream = true, enable_thinking = v }))
        assert.are.equal(400, st)
        assert.are.equal("invalid_parameter_error", obj.error.code)
        assert.is_truthy(obj.error.message:find("enable_thinking", 1, true))
      end
    end)

    it("QVQ streams reasoning_content deltas before the content", function()
      local r = curl { body = with_image("qvq-plus", "what is it", { stream = true,
        stream_options = { include_usage = true } }) }
      assert.are.equal(200, r.status)
      local s = read_stream(r.body)
      assert.are.equal("thinking about 1 image", s.reasoning)
      assert.are.equal("qvq-plus", s.chunks[1].model)
      local last_reasoning, first_content
      for i, c in ipairs(s.chunks) do
        local d = c.choices[1] and c.choices[1].delta
        if d and type(d.reasoning_content) == "string" and d.reasoning_content ~= "" then last_reasoning = i end
        if d and type(d.content) == "string" and d.content ~= "" and not first_content then first_content = i end
      end
      assert.is_true(last_reasoning < first_content)
      assert.are.equal("what is it", standin_report(s.content).prompt)
      assert.is_true(s.usage.completion_tokens_details.reasoning_tokens > 0)
    end)

    it("Qwen3-VL thinks without streaming; -thinking models always do", function()
      local st, obj = chat(with_image("qwen3-vl-plus", "x", { enable_thinking = true }))
      assert.are.equal(200, st)
      local m = obj.choices[1].message
      assert.are.equal("thinking about 1 image", m.reasoning_content)
      assert.are.equal("x", standin_report(m.content).prompt)
      assert.are.equal(math.ceil(#m.reasoning_content / 4), obj.usage.completion_tokens_details.reasoning_tokens)
      st, obj = chat(simple_body(fm("thinkns", "ok"), "x", { enable_thinking = true }))
      assert.are.equal(200, st)
      assert.are.equal("thinking about 0 images", obj.choices[1].message.reasoning_content)
      st, obj = chat(simple_body("qwen3-vl-8b-thinking", "x"))
      assert.are.equal("thinking about 0 images", obj.choices[1].message.reasoning_content)
      st, obj = chat(simple_body("qwen3-vl-plus", "x", { enable_thinking = false }))
      assert.is_nil(obj.choices[1].message.reasoning_content)
    end)

    describe("conversations", function()
      it("reports every turn in order: role, text, each image's format, size and SHA-256", function()
        local a, b, c = img.png(64, 48), img.jpeg(300, 200), img.webp_vp8x(40, 30)
        local body = {
          model = "qwen3-vl-flash",
          messages = {
            { role = "system", content = "Be terse." },
            user_msg("first", { image_part(data_url("image/png", a)) }),
            { role = "assistant", content = { { type = "text", text = "a chart" } } },
            user_msg("compare", { image_part(data_url("image/jpeg", b)), image_part(data_url("image/webp", c)) }),
          },
        }
        local st, obj = chat(body)
        assert.are.equal(200, st)
        local rep = standin_report(obj.choices[1].message.content)
        assert.are.equal(4, #rep.turns)
        local want = {
          { "system", "Be terse.", {} },
          { "user", "first", { { a, "png", 64, 48 } } },
          { "assistant", "a chart", {} },
          { "user", "compare", { { b, "jpeg", 300, 200 }, { c, "webp", 40, 30 } } },
        }
        for i, w in ipairs(want) do
          local t = rep.turns[i]
          assert.are.equal(w[1], t.role, "turn " .. i)
          assert.are.equal(w[2], t.text, "turn " .. i)
          assert.are.equal(#w[3], #t.images, "turn " .. i)
          for j, wi in ipairs(w[3]) do
            local im = t.images[j]
            assert.are.equal(sha256_hex(wi[1]), im.sha256)
            assert.are.equal(wi[2], im.format)
            assert.are.equal(wi[3], im.width)
            assert.are.equal(wi[4], im.height)
            assert.are.equal(#wi[1], im.bytes)
          end
        end
        assert.are.equal(3, #rep.images)
        assert.are.equal("compare", rep.prompt)
        assert.are.equal("Be terse.", rep.system)
      end)

      it("refuses a role DashScope does not know, and malformed content", function()
        local function refused(messages, message)
          local st, obj = chat({ model = "qwen3-vl-plus", messages = messages })
          assert.are.equal(400, st, cjson.encode(messages))
          assert.are.equal("invalid_parameter_error", obj.error.code)
          assert.are.equal(message, obj.error.message)
        end
        refused({ { role = "developer", content = "hi" }, user_msg("x") },
          "developer is not one of ['system','assistant','user','tool','function']")
        refused({ { content = "hi" } }, "Required parameter(messages[0].role) missing or invalid")
        refused({ { role = "user", content = 42 } }, "Required parameter(messages[0].content) missing or invalid")
        refused({ { role = "user" } }, "Required parameter(messages[0].content) missing or invalid")
        refused({ user_msg("a"), { role = "user", content = { { type = "image", image = "https://x/a.png" } } } },
          "image is not one of ['text','image_url','video','video_url']")
        refused({ { role = "user", content = { { type = "text", text = 5 } } } },
          "Required parameter(messages[0].content.text) missing or invalid")
        -- tool turns and an assistant turn without content are fine
        local st = chat({ model = "qwen3-vl-plus", messages = {
          user_msg("x"), { role = "assistant", content = cjson.null, tool_calls = {} },
          { role = "tool", content = "42", tool_call_id = "t1" }, user_msg("y") } })
        assert.are.equal(200, st)
      end)
    end)

    describe("video", function()
      local mp4 = "\0\0\0\24ftypisom\0\0\2\0isomiso2" .. "\0\0\0\8free"
      local function video_body(model, part)
        return { model = model, messages = { { role = "user", content = { part, { type = "text", text = "what happens" } } } } }
      end
      local function frames(n, url)
        local t = {}
        for i = 1, n do t[i] = url or ("https://example.com/f" .. i .. ".jpg") end
        return t
      end

      it("reports a frame list: count, fps and every frame's format, size and SHA-256", function()
        local f = { img.png(64, 48), img.jpeg(64, 48), img.png(64, 48), img.gif(64, 48) }
        local list = {
          data_url("image/png", f[1]), data_url("image/jpeg", f[2]),
          data_url("image/png", f[3]), data_url("image/gif", f[4]),
        }
        local st, obj = chat(video_body("qwen3-vl-plus", { type = "video", video = list, fps = 2 }))
        assert.are.equal(200, st, cjson.encode(obj))
        local rep = standin_report(obj.choices[1].message.content)
        assert.are.equal(1, #rep.videos)
        local v = rep.videos[1]
        assert.are.equal("video", v.type)
        assert.are.equal(4, v.frame_count)
        assert.are.equal(2, v.fps)
        local fmt = { "png", "jpeg", "png", "gif" }
        for i = 1, 4 do
          assert.are.equal(sha256_hex(f[i]), v.frames[i].sha256)
          assert.are.equal(fmt[i], v.frames[i].format)
          assert.are.equal(64, v.frames[i].width)
          assert.are.equal(48, v.frames[i].height)
        end
        assert.are.same(rep.videos, rep.turns[1].videos)
        assert.are.equal(2 * 2 * 2 + 2, obj.usage.prompt_tokens_details.video_tokens)
      end)

      it("reports a video file by URL or as base64", function()
        local st, obj = chat(video_body("qwen3-vl-plus",
          { type = "video_url", video_url = { url = "https://example.com/v.mp4" }, fps = 0.5 }))
        assert.are.equal(200, st)
        local v = standin_report(obj.choices[1].message.content).videos[1]
        assert.are.same({ type = "video_url", url = "https://example.com/v.mp4", fps = 0.5 }, v)
        st, obj = chat(video_body("qwen3-vl-plus",
          { type = "video_url", video_url = { url = data_url("video/mp4", mp4) } }))
        assert.are.equal(200, st)
        v = standin_report(obj.choices[1].message.content).videos[1]
        assert.are.equal("mp4", v.format)
        assert.are.equal(#mp4, v.bytes)
        assert.are.equal(sha256_hex(mp4), v.sha256)
        assert.are.equal(2, v.fps)
      end)

      it("refuses frame counts and fps beyond the documented limits", function()
        local function code_of(model, part)
          local st, obj = chat(video_body(model, part))
          return st, type(obj) == "table" and obj.error and obj.error.message or ""
        end
        local cases = {
          { "qwen3-vl-plus", 3, 2, 400, "[4, 2000], got 3" },
          { "qwen3-vl-plus", 4, 2, 200 },
          { "qwen3-vl-plus", 2000, 2, 200 },
          { "qwen3-vl-flash", 2001, 2, 400, "[4, 2000], got 2001" },
          { "qwen3.5-plus", 8000, 2, 200 },
          { "qwen3.5-plus", 8001, 2, 400, "[4, 8000], got 8001" },
          { "qwen-vl-ocr", 81, 2, 400, "[4, 80], got 81" },
          { "qwen3-vl-8b-instruct", 512, 2, 200 },
          { "qwen3-vl-8b-instruct", 513, 2, 400, "[4, 512], got 513" },
          { "qwen2.5-vl-72b-instruct", 513, 2, 400, "[4, 512]" },
          { "qvq-max", 513, 2, 400, "[4, 512]" },
          { "qwen3-vl-plus", 4, 0.1, 200 },
          { "qwen3-vl-plus", 4, 10, 200 },
          { "qwen3-vl-plus", 4, 0.05, 400, "fps parameter should be in [0.1, 10]" },
          { "qwen3-vl-plus", 4, 10.5, 400, "fps parameter should be in [0.1, 10]" },
        }
        for _, c in ipairs(cases) do
          local part = { type = "video", video = frames(c[2]), fps = c[3] }
          local body = video_body(c[1], part)
          if c[1]:sub(1, 3) == "qvq" then body.stream = true end
          local st, obj = chat(body)
          assert.are.equal(c[4], st, c[1] .. " " .. c[2] .. " " .. c[3])
          if c[5] then assert.is_truthy(obj.error.message:find(c[5], 1, true), obj.error.message) end
        end
        local st, msg = code_of("qwen3-vl-plus", { type = "video_url", video_url = { url = "https://x/v.mp4" }, fps = 11 })
        assert.are.equal(400, st)
        assert.is_truthy(msg:find("fps", 1, true))
        st = code_of("qwen3-vl-plus", { type = "video", video = { "https://x/1.jpg", data_url("image/png", img.png(5, 5)),
          "https://x/3.jpg", "https://x/4.jpg" } })
        assert.are.equal(400, st) -- frames are checked like images
      end)
    end)

    describe("grounding", function()
      local BOTH = "Locate the target; answer JSON with bbox_2d and point_2d."
      local function answer(model, prompt, extra, part_extra, image)
        local b = { model = model, messages = { user_msg(prompt, {
          image_part(data_url("image/png", image or png), part_extra) }) } }
        for k, v in pairs(extra or {}) do b[k] = v end
        local st, obj = chat(b)
        assert.are.equal(200, st, cjson.encode(obj))
        return obj.choices[1].message.content
      end
      local function unfence(s)
        local inner = s:match("^```json\n(.*)\n```$")
        assert.is_truthy(inner, "not fenced: " .. s)
        return cjson.decode(inner)
      end

      it("Qwen3-VL answers bare JSON relative to 0..1000", function()
        for _, model in ipairs { "qwen3-vl-plus", "qwen3-vl-flash", fm("gr", "ok") } do
          local text = answer(model, BOTH)
          assert.are.equal('[{"bbox_2d":[250,250,500,750],"label":"target"},'
            .. '{"point_2d":[375,500],"label":"center"}]', text)
        end
      end)

      it("Qwen2.5-VL-era models answer fenced absolute pixels after smart_resize", function()
        -- 1000x700 on a 28 grid (min 4x28x28, max 1280x28x28): 1008x700
        assert.are.same({ { bbox_2d = { 252, 175, 504, 525 }, label = "target" },
          { point_2d = { 378, 350 }, label = "center" } }, unfence(answer("qwen2.5-vl-72b-instruct", BOTH)))
        assert.are.same(unfence(answer("qwen-vl-max-2025-04-08", BOTH)),
          unfence(answer("qwen2.5-vl-72b-instruct", BOTH)))
        -- qwen-vl-max / -plus (the 2025-08 models): 32 grid, 992x704
        for _, model in ipairs { "qwen-vl-max", "qwen-vl-plus-latest", fm("gr", "model=qwen-vl-max") } do
          assert.are.same({ { bbox_2d = { 248, 176, 496, 528 }, label = "target" },
            { point_2d = { 372, 352 }, label = "center" } }, unfence(answer(model, BOTH)))
        end
      end)

      it("follows the image's size, the part's min/max_pixels and vl_high_resolution_images", function()
        local M = "qwen2.5-vl-7b-instruct"
        local big = img.png(3000, 2000)
        -- 6 MP > 1,003,520: shrunk to 1204x812
        assert.are.same({ 301, 203, 602, 609 }, unfence(answer(M, BOTH, nil, nil, big))[1].bbox_2d)
        assert.are.same({ 452, 406 }, unfence(answer(M, BOTH, nil, nil, big))[2].point_2d)
        -- high resolution lifts the cap to 16384x28x28: 2996x1988
        assert.are.same({ 749, 497, 1498, 1491 },
          unfence(answer(M, BOTH, { vl_high_resolution_images = true }, nil, big))[1].bbox_2d)
        -- max_pixels = 200000: 532x364
        assert.are.same({ { bbox_2d = { 133, 91, 266, 273 }, label = "target" },
          { point_2d = { 200, 182 }, label = "center" } }, unfence(answer(M, BOTH, nil, { max_pixels = 200000 })))
        -- small images grow to min_pixels: 20x20 -> 56x56, with min_pixels 50000 -> 224x224
        local small = img.png(20, 20)
        assert.are.same({ 14, 14, 28, 42 }, unfence(answer(M, BOTH, nil, nil, small))[1].bbox_2d)
        assert.are.same({ 56, 56, 112, 168 },
          unfence(answer(M, BOTH, nil, { min_pixels = 50000 }, small))[1].bbox_2d)
      end)

      it("answers only what the prompt asks for; steps switch the fence", function()
        assert.are.equal('[{"point_2d":[375,500],"label":"center"}]', answer("qwen3-vl-plus", "give point_2d"))
        assert.are.equal('[{"bbox_2d":[250,250,500,750],"label":"target"}]', answer("qwen3-vl-plus", "give bbox_2d"))
        assert.are.equal('```json\n[{"bbox_2d":[250,250,500,750],"label":"target"}]\n```',
          answer(fm("fence", "fenced"), "give bbox_2d"))
        assert.are.equal('[{"bbox_2d":[252,175,504,525],"label":"target"}]',
          answer(fm("bare", "bare+model=qwen2.5-vl-72b-instruct"), "give bbox_2d"))
        -- the last image with a known size is the one located
        local b = { model = "qwen-vl-max", messages = { user_msg("first", { image_part(data_url("image/png", png)) }),
          { role = "assistant", content = "ok" },
          user_msg("now bbox_2d", { image_part(data_url("image/png", img.png(320, 320))),
            image_part("https://example.com/unknown.png") }) } }
        local st, obj = chat(b)
        assert.are.equal(200, st)
        -- 320x320 on the 32 grid stays 320x320
        assert.are.same({ 80, 80, 160, 240 }, unfence(obj.choices[1].message.content)[1].bbox_2d)
        st, obj = chat(simple_body("qwen3-vl-plus", "bbox_2d please"))
        assert.are.equal("[]", obj.choices[1].message.content)
      end)

      it("streams the same answer", function()
        local r = curl { body = { model = "qwen-vl-max", stream = true,
          messages = { user_msg(BOTH, { image_part(data_url("image/png", png)) }) } } }
        assert.are.same({ 248, 176, 496, 528 }, unfence(read_stream(r.body).content)[1].bbox_2d)
      end)
    end)

    describe("OCR", function()
      local function ocr(parts, extra, model)
        local b = { model = model or "qwen-vl-ocr", messages = { user_msg("Read all the text.", parts) } }
        for k, v in pairs(extra or {}) do b[k] = v end
        return chat(b)
      end

      it("answers one recognisable line per image, from what arrived", function()
        local a, b = img.png(1000, 700), img.jpeg(640, 480)
        local st, obj = ocr({ image_part(data_url("image/png", a)),
          image_part(data_url("image/jpeg", b), { min_pixels = 3072, max_pixels = 100000 }),
          image_part("https://example.com/scan.png") })
        assert.are.equal(200, st, cjson.encode(obj))
        assert.are.equal("qwen-vl-ocr", obj.model)
        assert.are.equal(table.concat({
          "LINE 1: image " .. sha256_hex(a):sub(1, 8) .. " 1000x700 seen 992x704",
          "LINE 2: image " .. sha256_hex(b):sub(1, 8) .. " 640x480 seen 352x256",
          "LINE 3: image url https://example.com/scan.png",
        }, "\n"), obj.choices[1].message.content)
        st, obj = ocr({}, nil, "qwen-vl-ocr-2025-11-20")
        assert.are.equal("LINE 1: no image", obj.choices[1].message.content)
        local bigp = img.png(4000, 3000) -- 12 MP: within 15.68 MP, shrunk to 8,388,608 px
        st, obj = ocr({ image_part(data_url("image/png", bigp)) }, nil, fm("ocr", "model=qwen-vl-ocr-latest"))
        assert.are.equal(200, st)
        assert.is_truthy(obj.choices[1].message.content:find(" 4000x3000 seen 3328x2496$"))
      end)

      it("marks what it cannot read and adds notes when the prompt asks for them", function()
        local a = img.png(300, 200)
        local b = { model = "qwen-vl-ocr", messages = { user_msg(
          "Read it. Write [unreadable] where you cannot read. End with a line NOTES: ...",
          { image_part(data_url("image/png", a)), image_part("https://example.com/scan.png") }) } }
        local st, obj = chat(b)
        assert.are.equal(200, st, cjson.encode(obj))
        assert.are.equal(table.concat({
          "LINE 1: image " .. sha256_hex(a):sub(1, 8) .. " 300x200 seen 288x192",
          "LINE 2: [unreadable] image url https://example.com/scan.png",
          "NOTES: 1 image(s) read from their bytes, confident; 1 given by URL not read",
        }, "\n"), obj.choices[1].message.content)
      end)

      it("locates like Qwen3-VL (qwen-vl-ocr, 2025-11-20) or on a 28 grid (older snapshots)", function()
        local function locate(model)
          local st, obj = chat({ model = model, messages = { user_msg("Give bbox_2d of the text.",
            { image_part(data_url("image/png", png)) }) } })
          assert.are.equal(200, st, cjson.encode(obj))
          return obj.choices[1].message.content
        end
        for _, m in ipairs { "qwen-vl-ocr", "qwen-vl-ocr-latest", "qwen-vl-ocr-2025-11-20" } do
          assert.are.equal('[{"bbox_2d":[250,250,500,750],"label":"target"}]', locate(m))
        end
        -- 1000x700 on the 28 grid, within 8192 tokens: 1008x700
        for _, m in ipairs { "qwen-vl-ocr-2025-04-13", "qwen-vl-ocr-2024-10-28", "qwen-vl-ocr-2025-08-28" } do
          assert.are.equal('```json\n[{"bbox_2d":[252,175,504,525],"label":"target"}]\n```', locate(m))
        end
        -- and sees on that grid
        local big = img.png(4000, 3000)
        local st, obj = ocr({ image_part(data_url("image/png", big)) }, nil, "qwen-vl-ocr-2025-04-13")
        assert.are.equal(200, st)
        -- 12 MP over 8192 x 28 x 28 = 6,422,528 px: 2912x2184
        assert.is_truthy(obj.choices[1].message.content:find(" 4000x3000 seen 2912x2184$"),
          obj.choices[1].message.content)
      end)

      it("refuses what the OCR models do not take", function()
        local part = { image_part(data_url("image/png", png)) }
        local cases = {
          { { messages = { { role = "system", content = "s" }, user_msg("x", part) } }, "system messages" },
          { { messages = { user_msg("a", part), { role = "assistant", content = "b" }, user_msg("c") } },
            "multi-turn" },
          { { response_format = { type = "json_object" } }, "json_object" },
          { { enable_thinking = true, stream = true }, "enable_thinking" },
        }
        for _, c in ipairs(cases) do
          local st, obj = ocr(part, c[1])
          assert.are.equal(400, st, c[2])
          assert.are.equal("invalid_parameter_error", obj.error.code)
          assert.is_truthy(obj.error.message:find(c[2], 1, true), obj.error.message)
        end
        local st, obj = ocr({ image_part(data_url("image/png", img.png(5000, 4000))) })
        assert.are.equal(400, st)
        assert.is_truthy(obj.error.message:find("do not meet the model restrictions", 1, true))
        st, obj = ocr({ image_part(data_url("image/png", png), { max_pixels = -5 }) })
        assert.are.equal(400, st)
        assert.is_truthy(obj.error.message:find("max_pixels", 1, true))
        st = ocr({ image_part(data_url("image/png", png), { max_pixels = 1.5 }) })
        assert.are.equal(400, st)
      end)
    end)
  end)

  describe("routes", function()
    it("lets a module add a group of routes (register, patterns, reset hooks)", function()
      local s2 = standin.start { plugins = { "standin_example_plugin" } }
      local ok, err = pcall(function()
        local url = s2.root_url .. "/_standin/example/notes/n1"
        local st, b = standin.http("PUT", url, "hello", { authorization = "Bearer " .. s2.key })
        assert.are.equal(200, st)
        local obj = cjson.decode(b)
        assert.are.equal(5, obj.bytes)
        assert.are.equal("n1", obj.name)
        st = standin.http("PUT", url, "x", { authorization = "Bearer nope" })
        assert.are.equal(401, st)
        st, b = standin.http("GET", url)
        assert.are.equal("hello", cjson.decode(b).text)
        st, b = standin.http("GET", s2.base_url .. "/example/a/b%2Fc?x=1")
        assert.are.equal(200, st)
        assert.are.equal("a/b/c", cjson.decode(b).rest)
        st = standin.http("HEAD", url)
        assert.are.equal(200, st)
        s2:reset()
        st, b = standin.http("GET", url)
        assert.are.equal(404, st)
        assert.are.equal("not_found", cjson.decode(b).error.code)
        -- the built-in routes are still there
        st = standin.http("GET", s2.base_url .. "/models", nil, { authorization = "Bearer " .. s2.key })
        assert.are.equal(200, st)
      end)
      s2:stop()
      assert(ok, err)
    end)

    it("a missing optional plugin is skipped; a plugin that fails to import stops the start", function()
      -- standin_batch is in PLUGINS and absent here: the server started anyway
      assert.is_true(srv:alive())
      assert.has_error(function() standin.start { plugins = { "standin_no_such_plugin" } } end)
    end)
  end)

  describe("concurrency", function()
    local function parallel(base_url, n, model, key)
      local dir = tmpfile("par")
      os.execute("mkdir -p " .. dir)
      local bf = dir .. "/body.json"
      write_file(bf, cjson.encode(simple_body(model)))
      local cmd = string.format(
        "curl -sS -Z --parallel-max %d --parallel-immediate --max-time 60 -o '%s/out-#1' " ..
        "-w '%%{http_code}\\n' -H 'Authorization: Bearer %s' -H 'Content-Type: application/json' " ..
        "--data-binary @%s '%s/chat/completions?i=[1-%d]' 2>/dev/null", n, dir, key, bf, base_url, n)
      local p = io.popen(cmd)
      local out = p:read("*a")
      p:close()
      local counts = {}
      for code in out:gmatch("(%d+)\n") do counts[code] = (counts[code] or 0) + 1 end
      return counts, dir
    end

    it("handles 200+ concurrent connections", function()
      srv:reset()
      local n = 220
      local counts = parallel(srv.base_url, n, standin.scenario_model("conc", "ok+delay=1500"), KEY)
      assert.are.equal(n, counts["200"], cjson.encode(counts))
      local st = srv:idle_stats()
      assert.are.equal(n, st.chat_requests)
      assert.is_true(st.max_in_flight >= 150, "max_in_flight " .. st.max_in_flight)
      assert.is_true(st.connections >= n)
      assert.are.equal(0, st.in_flight)
    end)

    it("--max-concurrent answers 429 limit_burst_rate beyond the cap", function()
      local s2 = standin.start { max_concurrent = 2 }
      local ok, err = pcall(function()
        local counts, dir = parallel(s2.base_url, 6, standin.scenario_model("cap", "ok+delay=800"), KEY)
        assert.are.equal(2, counts["200"], cjson.encode(counts))
        assert.are.equal(4, counts["429"], cjson.encode(counts))
        local found = false
        for i = 1, 6 do
          local body = read_file(dir .. "/out-" .. i)
          local okj, obj = pcall(cjson.decode, body)
          if okj and obj.error then
            assert.are.equal("limit_burst_rate", obj.error.code)
            found = true
          end
        end
        assert.is_true(found)
        assert.are.equal(2, s2:stats().max_in_flight)
      end)
      s2:stop()
      assert(ok, err)
    end)
  end)
end)
