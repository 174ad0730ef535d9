-- qwenvl.workflow and qwenvl.evidence against the real module and the
-- DashScope stand-in: probe (success and each failure class), run, verify,
-- the repair attempt, evidence records (complete, atomic, no key, no base64).
local qwenvl = require("qwenvl")
local fx = require("spec.support.fixtures")
local workflow = require("qwenvl.workflow")
local evidence = require("qwenvl.evidence")
local standin = require("spec.support.standin")
local cjson = require("cjson")

-- a recognizable fake key: it must appear in no record and no output
local KEY = "sk-qwenvlspec-FAKEKEY-8c1e5d"

local function sh(cmd) return (fx.sh(cmd)) end  -- output only

local tmpdir = fx.tmpdir

local read = fx.read

local write = fx.write

-- an RGB PNG of w x h pixels (made with python3, like the stand-in)
local function make_png(path, w, h)
  local py = "import sys,zlib,struct\n"
    .. "w,h=int(sys.argv[2]),int(sys.argv[3])\n"
    .. "def ch(t,d): return struct.pack('>I',len(d))+t+d+struct.pack('>I',zlib.crc32(t+d)&0xffffffff)\n"
    .. "raw=b''.join(b'\\x00'+b''.join(bytes([(x*7)%256,(y*11)%256,99]) for x in range(w)) for y in range(h))\n"
    .. "png=b'\\x89PNG\\r\\n\\x1a\\n'+ch(b'IHDR',struct.pack('>IIBBBBB',w,h,8,2,0,0,0))+ch(b'IDAT',zlib.compress(raw))+ch(b'IEND',b'')\n"
    .. "open(sys.argv[1],'wb').write(png)\n"
  local script = os.tmpname()
  write(script, py)
  sh("python3 " .. evidence.shell_quote(script) .. " " .. evidence.shell_quote(path) .. " " .. w .. " " .. h)
  os.remove(script)
  return path
end

local function sha256(path)
  return sh("sha256sum " .. evidence.shell_quote(path)):match("^(%x+)")
end

local function ls(dir)
  local out = {}
  for name in sh("ls -A " .. evidence.shell_quote(dir)):gmatch("[^\n]+") do
    if not name:find("No such file", 1, true) then out[#out + 1] = name end
  end
  table.sort(out)
  return out
end

local function assert_clean_record(text)
  assert.is_nil(text:find(KEY, 1, true), "record contains the key")
  assert.is_nil(text:find("Bearer sk-", 1, true), "record contains a bearer token")
  -- no inline base64: every data URL must be the shortened form
  for payload in text:gmatch("data:[%w/%.%+%-\\]*;base64,(.?)") do
    assert.are.equal("<", payload, "record contains inline base64")
  end
end

-- A stand-in for the core module: the whole API of CORE_API.md, each
-- function the real one unless `overrides` replaces it. The workflow
-- layer asks no module whether it has a function, so a fake must have
-- them all.
local CORE_FUNCTIONS = { "chat", "start", "chat_many", "list_models", "http", "config", "prepare",
                         "extract_json", "scrub", "info", "error", "fd", "timeout_ms", "step" }
local function fake_core(overrides)
  local fake = { version = qwenvl.version, regions = qwenvl.regions }
  for _, name in ipairs(CORE_FUNCTIONS) do fake[name] = qwenvl[name] end
  for k, v in pairs(overrides or {}) do fake[k] = v end
  for _, name in ipairs(CORE_FUNCTIONS) do assert(type(fake[name]) == "function", name) end
  return fake
end

local SCHEMA = {
  type = "object",
  properties = {
    title = { type = "string" },
    invoice_no = { type = "string" },
    date = { type = "string" },
    amount = { type = "number" },
  },
  required = { "title", "amount" },
}

describe("qwenvl.workflow (against the stand-in)", function()
  local srv, dir, img

  setup(function()
    srv = standin.start { key = KEY }
    dir = tmpdir()
    img = make_png(dir .. "/invoice.png", 32, 24)
  end)

  teardown(function()
    if srv then srv:stop() end
    if dir then sh("rm -rf " .. evidence.shell_quote(dir)) end
  end)

  before_each(function()
    workflow.reset_probe_cache()
  end)

  local function req(extra)
    local r = { prompt = "Extract invoice fields", image = img, api_key = KEY, base_url = srv.base_url,
                max_retries = 0, retry_backoff_s = 0.01 }
    for k, v in pairs(extra or {}) do r[k] = v end
    return r
  end

  local function evdir()
    local d = dir .. "/ev-" .. evidence.short_id()
    return d
  end

  describe("probe", function()
    it("succeeds with region, endpoint, latency and the model count (GET /models, no chat)", function()
      local before = srv:stats()
      local p, err = workflow.probe { api_key = KEY, base_url = srv.base_url }
      assert.is_nil(err)
      assert.is_true(p.ok)
      assert.are.equal(srv.base_url, p.base_url)
      assert.are.equal("models", p.method)
      assert.is_number(p.latency_s)
      assert.is_true(p.models > 0)
      local after = srv:stats()
      assert.are.equal(before.models_requests + 1, after.models_requests)
      assert.are.equal(before.chat_requests, after.chat_requests)
    end)

    it("a rejected key (401) is an auth error with the hint to check the region/base URL", function()
      local p, err = workflow.probe { api_key = "sk-wrongregion-0000000000", base_url = srv.base_url }
      assert.is_nil(p)
      assert.are.equal("auth", err.code)
      assert.are.equal(401, err.status)
      assert.matches("check the region/base URL", err.hint, 1, true)
      assert.matches("check the region/base URL", err.message, 1, true)
      assert.are.equal("probe", err.stage)
    end)

    it("connection refused is a network error", function()
      -- a port that was just free
      local s = require("socket").bind("127.0.0.1", 0)
      local _, port = s:getsockname()
      s:close()
      local p, err = workflow.probe { api_key = KEY, base_url = "http://127.0.0.1:" .. port .. "/compatible-mode/v1",
                                      connect_timeout_s = 2, timeout_s = 5 }
      assert.is_nil(p)
      assert.are.equal("network", err.code)
      assert.is_string(err.hint)
    end)

    it("falls back to the smallest chat where the model list is not available", function()
      local fake = fake_core {
        list_models = function() return nil, workflow.error("not_found", "no /models here", { status = 404 }) end,
      }
      local model = standin.scenario_model("probechat", "ok")
      local p, err = workflow.probe { api_key = KEY, base_url = srv.base_url, qwenvl = fake, model = model }
      assert.is_nil(err)
      assert.are.equal("chat", p.method)
      local reqs = srv:requests(model)
      assert.are.equal(1, #reqs)
      assert.are.equal(1, reqs[1].body.max_tokens)
    end)

    it("is done once per process and base URL by run(), and skipped with probe = false", function()
      local before = srv:stats().models_requests
      local d = evdir()
      assert.is_truthy(workflow.run(req(), { evidence_dir = d }))
      assert.is_truthy(workflow.run(req(), { evidence_dir = d }))
      assert.are.equal(before + 1, srv:stats().models_requests)
      workflow.reset_probe_cache()
      assert.is_truthy(workflow.run(req(), { evidence_dir = d, probe = false }))
      assert.are.equal(before + 1, srv:stats().models_requests)
    end)

    it("a probe failure stops run() before any chat and is recorded", function()
      local chats = srv:stats().chat_requests
      local d = evdir()
      local res, err = workflow.run(req { api_key = "sk-wrongregion-0000000000" }, { evidence_dir = d })
      assert.is_nil(res)
      assert.are.equal("auth", err.code)
      assert.are.equal("probe", err.stage)
      assert.are.equal(chats, srv:stats().chat_requests)
      local rec = cjson.decode(read(err.record_path))
      assert.are.equal("error", rec.status)
      assert.are.equal("auth", rec.error.code)
      assert.is_nil(read(err.record_path):find("sk-wrongregion", 1, true))
    end)
  end)

  describe("run", function()
    it("sends image part then text part, returns the answer and writes a complete record", function()
      local d = evdir()
      local model = standin.scenario_model("plain", "ok")
      local result, path = workflow.run(req { model = model }, { evidence_dir = d })
      assert.is_table(result)
      assert.matches("^STANDIN ", result.text)
      -- what arrived
      local reqs = srv:requests(model)
      assert.are.equal(1, #reqs)
      local content = reqs[1].body.messages[#reqs[1].body.messages].content
      assert.are.equal("image_url", content[1].type)
      assert.are.equal("text", content[2].type)
      assert.are.equal("Extract invoice fields", content[2].text)
      local seen = cjson.decode(result.text:sub(#"STANDIN " + 1))
      assert.are.equal(32, seen.images[1].width)
      assert.are.equal(sha256(img), seen.images[1].sha256)
      -- the record
      assert.is_string(path)
      assert.are.equal(d, path:match("^(.*)/[^/]+$"))
      assert.matches("^%d%d%d%d%d%d%d%dT%d%d%d%d%d%dZ%-%x%x%x%x%x%x%x%x%.json$", path:match("[^/]+$"))
      local text = read(path)
      assert_clean_record(text)
      local rec = cjson.decode(text)
      assert.are.equal("qwenvl.evidence/1", rec.format)
      assert.are.equal("ok", rec.status)
      assert.are.equal("Extract invoice fields", rec.prompt)
      assert.are.equal(img, rec.input.image)
      assert.is_nil(rec.input.api_key)
      assert.are.equal(srv.base_url, rec.endpoint.base_url)
      assert.are.equal("file", rec.images[1].source)
      assert.are.equal(img, rec.images[1].path)
      assert.are.equal("png", rec.images[1].format)
      assert.are.equal(#read(img), rec.images[1].bytes)
      assert.are.equal(sha256(img), rec.images[1].sha256)
      assert.matches("^data:image/png;base64,<omitted", rec.request.messages[#rec.request.messages].content[1].image_url.url)
      assert.are.equal(result.raw, rec.response.raw)
      assert.are.equal(result.text, rec.result.text)
      assert.are.equal(result.model, rec.model)
      assert.are.same(result.usage, rec.usage)
      assert.are.equal(result.request_id, rec.request_id)
      assert.is_truthy(rec.request_id)
      assert.are.equal(1, rec.http_attempts)
      assert.is_number(rec.timings.total_s)
      assert.is_string(rec.timings.started_at)
      assert.is_true(rec.verification.ok)
      assert.are.equal("text", rec.verification.mode)
      assert.are.equal(1, #rec.attempts)
      assert.is_true(rec.probe.ok)
      -- nothing else in the directory: no temporary files
      assert.are.same({ path:match("[^/]+$") }, ls(d))
    end)

    it("verifies a schema answer (the schema instruction reaches the model)", function()
      local d = evdir()
      local model = standin.scenario_model("schemaok", "ok")
      local result, path = workflow.run(req { model = model, schema = SCHEMA }, { evidence_dir = d })
      assert.is_table(result)
      assert.is_true(result.verification.ok)
      assert.are.equal("schema", result.verification.mode)
      assert.are.equal(1, #result.verification.attempts)
      assert.is_string(result.json.title)
      assert.is_number(result.json.amount)
      local reqs = srv:requests(model)
      assert.are.equal(1, #reqs)
      local last = reqs[1].body.messages[#reqs[1].body.messages]
      assert.matches("matching this JSON Schema:", last.content[#last.content].text, 1, true)
      assert.is_true(cjson.decode(read(path)).verification.ok)
    end)

    it("repairs a schema violation once, with the violations in the prompt, and reports both attempts", function()
      local d = evdir()
      local model = standin.scenario_model("repair", "badschema", "ok")
      local result, path = workflow.run(req { model = model, schema = SCHEMA }, { evidence_dir = d })
      assert.is_table(result)
      local v = result.verification
      assert.is_true(v.ok)
      assert.are.equal(2, #v.attempts)
      assert.is_false(v.attempts[1].ok)
      assert.are.equal("initial", v.attempts[1].kind)
      assert.is_true(#v.attempts[1].errors > 0)
      assert.matches("^%$", v.attempts[1].errors[1])
      assert.is_true(v.attempts[2].ok)
      assert.are.equal("repair", v.attempts[2].kind)
      -- the second request carried the violations
      local reqs = srv:requests(model)
      assert.are.equal(2, #reqs)
      local function user_text(r)
        local m = r.body.messages[#r.body.messages]
        local t = {}
        for _, part in ipairs(m.content) do if part.type == "text" then t[#t + 1] = part.text end end
        return table.concat(t, "\n")
      end
      assert.is_nil(user_text(reqs[1]):find("Problems found", 1, true))
      local second = user_text(reqs[2])
      assert.matches("Problems found", second, 1, true)
      assert.matches(v.attempts[1].errors[1], second, 1, true)
      -- the record has both attempts, each with its own raw response
      local rec = cjson.decode(read(path))
      assert.are.equal(2, #rec.attempts)
      assert.is_false(rec.attempts[1].ok)
      assert.is_true(rec.attempts[2].ok)
      assert.is_string(rec.attempts[1].raw)
      assert.are.equal(2, #rec.verification.attempts)
      assert.are.equal("ok", rec.status)
      assert_clean_record(read(path))
    end)

    it("reports a violation that survives the repair; opts.repair sets the number of repairs", function()
      local model = standin.scenario_model("stillbad", "badschema")
      local result, path = workflow.run(req { model = model, schema = SCHEMA }, { evidence_dir = evdir() })
      assert.is_false(result.verification.ok)
      assert.are.equal(2, #result.verification.attempts)
      assert.are.equal("verification_failed", cjson.decode(read(path)).status)

      local m0 = standin.scenario_model("norepair", "badschema")
      local r0 = workflow.run(req { model = m0, schema = SCHEMA }, { evidence_dir = evdir(), repair = 0 })
      assert.are.equal(1, #r0.verification.attempts)
      assert.are.equal(1, #srv:requests(m0))

      local m2 = standin.scenario_model("tworepairs", "badschema", "badschema", "ok")
      local r2 = workflow.run(req { model = m2, schema = SCHEMA }, { evidence_dir = evdir(), repair = 2 })
      assert.is_true(r2.verification.ok)
      assert.are.equal(3, #r2.verification.attempts)
    end)

    it("an answer that is not JSON fails schema verification", function()
      local fake = fake_core {
        chat = function(r)
          local res = assert(qwenvl.chat(r))
          res.json = nil
          res.text = "I think the amount is twelve."
          return res
        end,
      }
      local result = workflow.run(req { model = standin.scenario_model("prose", "ok"), schema = SCHEMA },
        { evidence_dir = evdir(), qwenvl = fake, repair = 0 })
      assert.is_false(result.verification.ok)
      assert.matches("not valid JSON", result.verification.errors[1])
    end)

    it("an API error returns nil, err and still leaves a record (auth, rate limited, server)", function()
      local cases = { { "401", "auth" }, { "429", "rate_limited" }, { "500", "server" } }
      for _, c in ipairs(cases) do
        local d = evdir()
        local model = standin.scenario_model("err" .. c[1], c[1])
        local res, err = workflow.run(req { model = model, max_retries = 1 }, { evidence_dir = d })
        assert.is_nil(res)
        assert.are.equal(c[2], err.code)
        assert.is_string(err.record_path)
        local text = read(err.record_path)
        assert_clean_record(text)
        local rec = cjson.decode(text)
        assert.are.equal("error", rec.status)
        assert.are.equal(c[2], rec.error.code)
        assert.are.equal("Extract invoice fields", rec.prompt)
        assert.are.equal(1, #ls(d))
      end
    end)

    it("opts.evidence = false writes nothing", function()
      local d = evdir()
      local result, path = workflow.run(req(), { evidence_dir = d, evidence = false })
      assert.is_table(result)
      assert.is_nil(path)
      assert.are.same({}, ls(d))
    end)

    it("creates the default directory output/alicloud-ai-multimodal-qwen-vl/", function()
      assert.are.equal("output/alicloud-ai-multimodal-qwen-vl", evidence.default_dir)
      local d = dir .. "/deep/er/" .. evidence.default_dir
      local result, path = workflow.run(req(), { evidence_dir = d })
      assert.is_table(result)
      assert.are.equal(d, path:match("^(.*)/[^/]+$"))
    end)
  end)

  describe("verify", function()
    it("checks schema, JSON and plain text answers", function()
      assert.is_true(workflow.verify({ json = { title = "a", amount = 1 } }, SCHEMA).ok)
      local v = workflow.verify({ json = { amount = "1" } }, SCHEMA)
      assert.is_false(v.ok)
      assert.are.same({ '$: missing required property "title"', "$.amount: expected number, got string" }, v.errors)
      v = workflow.verify({ text = '```json\n{"title":"a","amount":2}\n```' }, SCHEMA)
      assert.is_true(v.ok)
      assert.is_true(workflow.verify({ text = "{}" }, nil, { json_mode = true }).ok)
      assert.is_false(workflow.verify({ text = "nope" }, nil, { json_mode = true }).ok)
      assert.is_true(workflow.verify({ text = "a cat" }).ok)
      assert.is_false(workflow.verify({ text = "  " }).ok)
      assert.is_true(workflow.verify({ json = { title = "a", amount = 1 } }, cjson.encode(SCHEMA)).ok)
    end)
  end)

  describe("run_many", function()
    it("sends the batch through the module's chat_many (no fallback: the core is whole)", function()
      local d = evdir()
      local calls, sizes = 0, {}
      local fake = fake_core { chat_many = function(reqs, o)
        calls = calls + 1
        sizes[#sizes + 1] = #reqs
        return qwenvl.chat_many(reqs, o)
      end }
      local model = standin.scenario_model("seq", "ok")
      local items, spath, summary = workflow.run_many({ req { model = model }, req { model = model } },
        { evidence_dir = d, qwenvl = fake })
      assert.are.equal(1, calls)
      assert.are.same({ 2 }, sizes)
      assert.are.equal(2, summary.ok)
      assert.are.equal(3, #ls(d))
      assert.is_string(items[2].record)
      assert.is_string(spath)
      assert.are.equal(2, #srv:requests(model))
    end)

    it("one probe, one record per image plus a summary", function()
      local d = evdir()
      local imgs = { make_png(dir .. "/b1.png", 16, 16), make_png(dir .. "/b2.png", 20, 18), img }
      local model = standin.scenario_model("many", "ok")
      local requests = {}
      for i, p in ipairs(imgs) do requests[i] = req { image = p, model = model, prompt = "What is this?" } end
      local before = srv:stats().models_requests
      local seen = {}
      local items, spath, summary = workflow.run_many(requests, {
        evidence_dir = d, concurrency = 2, on_result = function(i) seen[#seen + 1] = i end })
      assert.are.equal(before + 1, srv:stats().models_requests)
      assert.are.equal(3, #items)
      assert.are.equal(3, #seen)
      for i, it in ipairs(items) do
        assert.is_table(it.result)
        local rec = cjson.decode(read(it.record))
        assert.are.equal(imgs[i], rec.images[1].path)
        assert.are.equal("batch-item", rec.kind)
      end
      assert.are.equal(3, summary.ok)
      local s = cjson.decode(read(spath))
      assert.are.equal("batch-summary", s.kind)
      assert.are.equal(3, s.total)
      assert.are.equal(4, #ls(d))
      assert.are.equal(3, #srv:requests(model))
    end)
  end)
end)

describe("qwenvl.evidence", function()
  local dir
  setup(function()
    dir = tmpdir()
  end)
  teardown(function()
    sh("rm -rf " .. evidence.shell_quote(dir))
  end)

  it("redacts the key, sk- tokens, Bearer credentials, secret fields and inline base64", function()
    local r = evidence.redact({
      api_key = KEY,
      note = "used " .. KEY .. " and sk-abcdefgh12345 with Authorization: Bearer abc.def",
      path = "/tmp/task-abcdefghijk/file.png", -- not a key
      headers = { Authorization = "Bearer xyz" },
      img = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUg==",
      kept = "data:image/png;base64,<omitted 120 chars>",
      [KEY] = 1,
    }, KEY)
    local text = evidence.encode(r)
    assert.is_nil(text:find(KEY, 1, true))
    assert.is_nil(text:find("sk-abcdefgh12345", 1, true))
    assert.is_nil(text:find("abc.def", 1, true))
    assert.is_nil(text:find("xyz", 1, true))
    assert.is_nil(text:find("iVBOR", 1, true))
    assert.are.equal("/tmp/task-abcdefghijk/file.png", r.path)
    assert.are.equal("data:image/png;base64,<omitted 24 chars>", r.img)
    assert.are.equal("data:image/png;base64,<omitted 120 chars>", r.kept)
    assert.are.equal(evidence.REDACTED, r.api_key)   -- the core's mark, "[redacted]"
  end)

  it("redacts secret fields in any case, Authorization of any scheme, and URL credentials", function()
    local r = evidence.redact({
      Password = "p4ss-word", ["X-API-Key"] = "xkey-123", headers = { AUTHORIZATION = "Basic dXNlcjpwYXNz" },
      line = "Authorization: Basic dXNlcjpwYXNz and authorization=Token abcdef123",
      endpoint = "http://bob:hunter2pw@proxy.example:3128",
      total_tokens = 12,                      -- not a secret: only exact names are
    }, { proxy = "http://bob:hunter2pw@proxy.example:3128" })
    local text = evidence.encode(r)
    for _, secret in ipairs({ "p4ss-word", "xkey-123", "dXNlcjpwYXNz", "abcdef123", "hunter2pw" }) do
      assert.is_nil(text:find(secret, 1, true), secret .. " in " .. text)
    end
    assert.are.equal(12, r.total_tokens)
    assert.matches("Authorization: Basic " .. evidence.REDACTED, r.line, 1, true)
  end)

  it("writes valid UTF-8 whatever the strings hold", function()
    local bad = "a\255\254b\226\130c\237\160\128d\240\159\152\128e"
    local text = evidence.encode({ t = bad })
    local R = "\239\191\189"   -- U+FFFD, one per byte that begins no valid sequence
    assert.are.equal("a" .. R .. R .. "b" .. R .. R .. "c" .. R .. R .. R .. "d\240\159\152\128e",
      cjson.decode(text).t)
    assert.are.equal("plain", evidence.valid_utf8("plain"))
    assert.are.equal("中文", evidence.valid_utf8("中文"))
  end)

  it("checks before anything is sent that a folder and a file can be written", function()
    local f = dir .. "/plain-file"
    write(f, "x")
    assert.is_nil(evidence.check_dir(f))
    assert.is_nil(evidence.check_dir(f .. "/sub"))
    assert.is_true(evidence.check_dir(dir .. "/new/records"))
    assert.is_nil(evidence.check_file(dir))
    assert.is_nil(evidence.check_file(f .. "/x.json"))
    assert.is_true(evidence.check_file(dir .. "/made/for/it.json"))
    assert.are.equal("directory", require("qwenvl.sys").kind(dir .. "/made/for"))
    assert.is_nil(fx.try_read(dir .. "/made/for/it.json"))   -- nothing left behind
  end)

  it("redacts the key from DASHSCOPE_API_KEY even when not given", function()
    local env = os.getenv("DASHSCOPE_API_KEY")
    if not env or #env < 4 then return end
    assert.is_nil(evidence.encode(evidence.redact({ x = "k=" .. env })):find(env, 1, true))
  end)

  it("writes atomically: the record appears whole, no temporary file remains", function()
    local d = dir .. "/atomic"
    local path = assert(evidence.write({ a = 1, list = evidence.array() }, { dir = d, id = "abcd1234" }))
    assert.matches("%-abcd1234%.json$", path)
    assert.are.same({ path:match("[^/]+$") }, (function()
      local t = {}
      for n in sh("ls -A " .. evidence.shell_quote(d)):gmatch("[^\n]+") do t[#t + 1] = n end
      return t
    end)())
    assert.are.same({ a = 1, list = {} }, cjson.decode(read(path)))
    assert.matches('"list": %[%]', read(path))
  end)

  it("a failed rename removes the temporary file and reports the error", function()
    local d = dir .. "/failing"
    assert(evidence.mkdir_p(d .. "/target.json")) -- a directory where the file should go
    local ok, err = evidence.write_file(d .. "/target.json", "{}")
    assert.is_nil(ok)
    assert.is_string(err)
    local names = sh("ls -A " .. evidence.shell_quote(d))
    assert.is_nil(names:find("tmp", 1, true))
  end)

  it("an unwritable directory is an error, not a crash", function()
    local f = dir .. "/plainfile"
    write(f, "x")
    local ok, err = evidence.write({ a = 1 }, { dir = f .. "/sub" })
    assert.is_nil(ok)
    assert.is_string(err)
  end)

  it("encodes deterministically with sorted keys", function()
    assert.are.equal('{"a":1,"b":[1,2],"c":{"d":null}}', evidence.encode({ c = { d = cjson.null }, b = { 1, 2 }, a = 1 }))
    assert.are.equal('"x\\"y\\n/"', evidence.encode('x"y\n/'))
  end)
end)
