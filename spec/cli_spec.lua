-- The `qwenvl` command, run as a subprocess (bin/qwenvl from the checkout)
-- against the DashScope stand-in: every exit code, the original script's
-- quickstart commands, the evidence it leaves, help examples that work.
local standin = require("spec.support.standin")
local fx = require("spec.support.fixtures")
local evidence = require("qwenvl.evidence")
local cli = require("qwenvl.cli")
local cjson = require("cjson")

-- a recognizable fake key: it must appear in no output and no record
local _  -- the values a test does not look at
local KEY = "sk-qwenvlcli-FAKEKEY-77a1f0"

local Q = evidence.shell_quote
local LUA = type(jit) == "table" and "luajit" or ("lua" .. _VERSION:match("(%d+%.%d+)"))

local function sh(cmd) return (fx.sh(cmd)) end  -- output only

local ROOT = sh("pwd"):gsub("%s+$", "")
local BIN = ROOT .. "/bin/qwenvl"

local read = fx.try_read

local write = fx.write

local tmpdir = fx.tmpdir

local function make_png(path, w, h)
  local py = "import sys,zlib,struct\n"
    .. "w,h=int(sys.argv[2]),int(sys.argv[3])\n"
    .. "def ch(t,d): return struct.pack('>I',len(d))+t+d+struct.pack('>I',zlib.crc32(t+d)&0xffffffff)\n"
    .. "raw=b''.join(b'\\x00'+b''.join(bytes([(x*5)%256,(y*9)%256,77]) for x in range(w)) for y in range(h))\n"
    .. "open(sys.argv[1],'wb').write(b'\\x89PNG\\r\\n\\x1a\\n'+ch(b'IHDR',struct.pack('>IIBBBBB',w,h,8,2,0,0,0))+ch(b'IDAT',zlib.compress(raw))+ch(b'IEND',b''))\n"
  local script = os.tmpname()
  write(script, py)
  sh("python3 " .. Q(script) .. " " .. Q(path) .. " " .. w .. " " .. h)
  os.remove(script)
  return path
end

local function ls(dir)
  local out = {}
  local p = io.popen("ls -A " .. Q(dir) .. " 2>/dev/null")
  for name in p:lines() do out[#out + 1] = name end
  p:close()
  table.sort(out)
  return out
end

local function assert_no_secret(s, what)
  assert.is_nil(s:find(KEY, 1, true), (what or "output") .. " contains the key")
end

local function assert_clean_record(text)
  assert_no_secret(text, "record")
  for payload in text:gmatch("data:[%w/%.%+%-\\]*;base64,(.?)") do
    assert.are.equal("<", payload, "record contains inline base64")
  end
end

describe("qwenvl command", function()
  local srv, work, env

  -- run `qwenvl <args>` in `cwd` (default: the work dir); returns code, stdout, stderr
  local function run(args, opts)
    opts = opts or {}
    local out, err = os.tmpname(), os.tmpname()
    local e = {}
    for k, v in pairs(env) do e[k] = v end
    for k, v in pairs(opts.env or {}) do e[k] = v end
    local parts = { "env", "-u", "DASHSCOPE_REGION", "-u", "DASHSCOPE_API_KEY", "-u", "DASHSCOPE_BASE_URL" }
    for k, v in pairs(e) do
      if v ~= false then parts[#parts + 1] = Q(k .. "=" .. v) end
    end
    local prefix = opts.prefix or ""
    local cmd = "cd " .. Q(opts.cwd or work) .. " && " .. table.concat(parts, " ") .. " " .. prefix
      .. LUA .. " " .. Q(BIN) .. " " .. args .. " </dev/null >" .. Q(out) .. " 2>" .. Q(err) .. "; echo $?"
    if opts.raw_cmd then cmd = opts.raw_cmd(cmd, out, err) end
    local code = tonumber(sh(cmd):match("(%d+)%s*$"))
    local o, er = read(out) or "", read(err) or ""
    os.remove(out); os.remove(err)
    assert_no_secret(o, "stdout")
    assert_no_secret(er, "stderr")
    return code, o, er
  end

  local function last_chat()
    local reqs = srv:requests()
    return reqs[#reqs]
  end

  local RECORD_DIR

  setup(function()
    srv = standin.start { key = KEY }
    work = tmpdir()
    assert(evidence.mkdir_p(work .. "/samples"))
    assert(evidence.mkdir_p(work .. "/tmp"))
    make_png(work .. "/samples/invoice.png", 40, 30)
    make_png(work .. "/tmp/vl_test_cat.png", 24, 24)
    local seed = read("examples/invoice.schema.json")
      or [[{"type":"object","properties":{"title":{"type":"string"},"invoice_no":{"type":"string"},
           "date":{"type":"string"},"amount":{"type":"number"}},"required":["title","amount"]}]]
    write(work .. "/samples/invoice.schema.json", seed)
    write(work .. "/images.txt", "# list\nsamples/invoice.png\n\ntmp/vl_test_cat.png\n")
    -- the checkout's examples/, so the help's examples run as printed
    sh("ln -s " .. Q(ROOT .. "/examples") .. " " .. Q(work .. "/examples"))
    env = { DASHSCOPE_API_KEY = KEY, DASHSCOPE_BASE_URL = srv.base_url, HOME = work }
    RECORD_DIR = work .. "/output/alicloud-ai-multimodal-qwen-vl"
  end)

  teardown(function()
    if srv then srv:stop() end
    if work then sh("rm -rf " .. Q(work)) end
  end)

  before_each(function()
    srv:reset()
    sh("rm -rf " .. Q(work .. "/output"))
  end)

  describe("help", function()
    it("has --help for the command and every subcommand, exit 0", function()
      for _, sub in ipairs({ "", "analyze ", "probe ", "smoke ", "batch ", "validate " }) do
        local code, out = run(sub .. "--help")
        assert.are.equal(0, code)
        assert.matches("Usage: qwenvl", out)
      end
      local code, out = run("help batch")
      assert.are.equal(0, code)
      assert.matches("qwenvl batch DIR|LIST", out, 1, true)
    end)

    it("--version and version print the module's version, exit 0", function()
      local want = "qwenvl " .. require("qwenvl").version .. "\n"
      assert.is_truthy(want:find("^qwenvl %d+%.%d+"))
      for _, arg in ipairs({ "--version", "version" }) do
        local code, out, err = run(arg)
        assert.are.equal(0, code, err)
        assert.are.equal(want, out)
      end
    end)

    it("every example in the help parses, and those for the stand-in run successfully", function()
      local ran = 0
      for _, sub in ipairs({ "analyze", "probe", "smoke", "batch", "validate" }) do
        local examples = {}
        for line in cli.HELP[sub]:gmatch("[^\n]+") do
          local ex = line:match("^%s+qwenvl (" .. sub .. ".*)$")
          if ex then examples[#examples + 1] = ex end
        end
        assert.is_true(#examples >= 2, sub .. " has examples")
        for _, ex in ipairs(examples) do
          local code = run(ex .. " --help")
          assert.are.equal(0, code, "example does not parse: " .. ex)
          if not ex:find("--region", 1, true) and not ex:find("--base-url", 1, true) then
            local c, out, err = run(ex)
            assert.are.equal(0, c, "example failed: " .. ex .. "\n" .. out .. err)
            ran = ran + 1
          elseif sub == "analyze" then
            local c, out, err = run(ex .. " --dry-run")
            assert.are.equal(0, c, "example failed: " .. ex .. "\n" .. out .. err)
          end
        end
      end
      assert.is_true(ran >= 8)
    end)
  end)

  describe("the original script's quickstart, as qwenvl analyze", function()
    local function content_of(rec)
      local msgs = rec.body.messages
      assert.are.equal(1, #msgs)
      assert.are.equal("user", msgs[1].role)
      return msgs[1].content
    end

    it("URL image: image part then text part, default model, max_tokens, temperature", function()
      local code, out = run([[analyze --request '{"prompt":"Summarize the main content in this image","image":"https://example.com/demo.jpg"}' --print-response]])
      assert.are.equal(0, code)
      local body = last_chat().body
      assert.are.equal("qwen3-vl-plus", body.model)
      assert.are.equal(512, body.max_tokens)
      assert.are.equal(0.2, body.temperature)
      assert.is_nil(body.response_format)
      local c = content_of(last_chat())
      assert.are.equal(2, #c)
      assert.are.equal("image_url", c[1].type)
      assert.are.equal("https://example.com/demo.jpg", c[1].image_url.url)
      assert.are.equal("text", c[2].type)
      assert.are.equal("Summarize the main content in this image", c[2].text)
      local res = cjson.decode(out)
      assert.matches("^STANDIN ", res.text)
      assert.are.equal("qwen3-vl-plus", res.model)
      assert.is_table(res.usage)
    end)

    it("local image with an explicit model: sent as a data URL, recorded by path and SHA-256", function()
      local code, out = run([[analyze --request '{"prompt":"Extract key information from the image","image":"./samples/invoice.png","model":"qwen3-vl-plus"}' --print-response]])
      assert.are.equal(0, code)
      local c = content_of(last_chat())
      assert.are.equal("image_url", c[1].type)
      -- the stand-in records a data URL as a summary of what it decoded
      local url = c[1].image_url.url
      assert.are.equal("image/png", url.mime)
      assert.are.equal("Extract key information from the image", c[2].text)
      local res = cjson.decode(out)
      local seen = cjson.decode(res.text:sub(#"STANDIN " + 1))
      assert.are.equal(url.sha256, res.images[1].sha256)
      assert.are.equal(40, seen.images[1].width)
      assert.are.equal(seen.images[1].sha256, res.images[1].sha256)
      assert.are.equal("./samples/invoice.png", res.images[1].path)
    end)

    it("--json-mode sends response_format json_object", function()
      local code, out = run([[analyze --request '{"prompt":"Extract fields: title, amount, date","image":"./samples/invoice.png"}' --json-mode --print-response]])
      assert.are.equal(0, code)
      local body = last_chat().body
      assert.are.same({ type = "json_object" }, body.response_format)
      local c = content_of(last_chat())
      assert.are.equal("image_url", c[1].type)
      assert.matches("^Extract fields: title, amount, date", c[2].text)
      assert.is_table(cjson.decode(out).json)
    end)

    it("--schema: JSON answer validated against the schema, one complete record", function()
      local code, out, err = run([[analyze --request '{"prompt":"Extract invoice fields","image":"./samples/invoice.png"}' --schema samples/invoice.schema.json --print-response]])
      assert.are.equal(0, code, err)
      local body = last_chat().body
      assert.are.same({ type = "json_object" }, body.response_format)
      local c = content_of(last_chat())
      assert.matches("^Extract invoice fields", c[2].text)
      assert.matches("matching this JSON Schema:", c[2].text, 1, true)
      local res = cjson.decode(out)
      assert.is_true(res.verification.ok)
      assert.are.equal("schema", res.verification.mode)
      assert.is_string(res.json.title)
      assert.is_number(res.json.amount)
      -- exactly one record, complete, in the default directory
      local names = ls(RECORD_DIR)
      assert.are.equal(1, #names)
      assert.matches("^%d+T%d+Z%-%x+%.json$", names[1])
      assert.are.equal("output/alicloud-ai-multimodal-qwen-vl/" .. names[1], res.record)
      local text = read(RECORD_DIR .. "/" .. names[1])
      assert_clean_record(text)
      local rec = cjson.decode(text)
      assert.are.equal("ok", rec.status)
      assert.are.equal("Extract invoice fields", rec.prompt)
      assert.are.equal("./samples/invoice.png", rec.images[1].path)
      assert.are.equal("png", rec.images[1].format)
      assert.are.equal(#read(work .. "/samples/invoice.png"), rec.images[1].bytes)
      assert.matches("^%x+$", rec.images[1].sha256)
      assert.is_table(rec.request.messages)
      assert.is_string(rec.response.raw)
      assert.are.equal(res.text, rec.result.text)
      assert.are.equal(res.request_id, rec.request_id)
      assert.is_table(rec.usage)
      assert.is_true(rec.verification.ok)
      assert.is_table(rec.input.schema)
      assert.is_number(rec.timings.total_s)
      assert.is_true(rec.probe.ok)
    end)

    it("request-file retry values are kept unless a flag overrides them", function()
      local model = standin.scenario_model("keep", "500", "ok")
      write(work .. "/req.json", cjson.encode({ prompt = "x", image = "samples/invoice.png", model = model,
                                                max_retries = 0, retry_backoff_s = 0.01 }))
      local code, _, err = run("analyze --file req.json --no-probe")
      assert.are.equal(6, code)
      assert.matches("server", err)
      assert.are.equal(1, #srv:requests(model))

      local model2 = standin.scenario_model("override", "500", "ok")
      write(work .. "/req2.json", cjson.encode({ prompt = "x", image = "samples/invoice.png", model = model2,
                                                 max_retries = 0, retry_backoff_s = 0.01 }))
      code = run("analyze --file req2.json --no-probe --max-retries 1")
      assert.are.equal(0, code)
      assert.are.equal(2, #srv:requests(model2))
    end)

    it("a missing image file is an error, not a string sent to the API", function()
      local before = srv:stats().chat_requests
      local code, out, err = run([[analyze --request '{"prompt":"x","image":"./samples/missing.png"}']])
      assert.are.equal(3, code)
      -- checked by the core (qwenvl.prepare), in its words
      assert.matches("image: cannot use './samples/missing.png': No such file", err, 1, true)
      assert.are.equal("", out)
      assert.are.equal(before, srv:stats().chat_requests)
    end)
  end)

  describe("exit codes", function()
    it("2: usage errors", function()
      local cases = {
        "", "frobnicate", "analyze --bogus", "analyze --model", "analyze",
        [[analyze --request '{}' --file x.json]], "batch samples", "batch", "smoke",
        "probe extra", "analyze --max-retries many --prompt x",
      }
      for _, args in ipairs(cases) do
        local code, out, err = run(args)
        assert.are.equal(2, code, "for: " .. args)
        assert.are.equal("", out, "for: " .. args)
        assert.is_true(#err > 0, "for: " .. args)
      end
      local _, _, err = run("analyze --bogus")
      assert.matches("^qwenvl analyze: unknown option %-%-bogus", err)
      assert.are.equal(1, select(2, err:gsub("\n", "")), "one line")
    end)

    it("3: bad input (file, schema, request)", function()
      write(work .. "/bad.json", "{nope")
      write(work .. "/noprompt.json", '{"image":"samples/invoice.png"}')
      local cases = {
        { [[analyze --request '{not json']], "not valid JSON" },
        { "analyze --file nowhere.json", "cannot read request file" },
        { "analyze --file bad.json", "not valid JSON" },
        { "analyze --file noprompt.json", "no prompt" },
        { "analyze --prompt x --image samples/invoice.png --schema nowhere.json", "cannot read schema file" },
        { "analyze --prompt x --image samples/invoice.png --schema bad.json", "not valid JSON" },
        { "analyze --prompt x --image nope.png", "cannot use 'nope.png': No such file" },
        { "smoke --image nope.png", "cannot use 'nope.png': No such file" },
        { "batch nowhere --prompt x", "cannot read" },
        { [[analyze --request '{"prompt":"x","image":"samples/invoice.png","max_tokens":"lots"}' --no-probe]], "invalid_request" },
      }
      for _, c in ipairs(cases) do
        local code, _, err = run(c[1])
        assert.are.equal(3, code, "for: " .. c[1] .. " -> " .. err)
        assert.matches(c[2], err, 1, true)
      end
    end)

    it("4: auth (probe and chat)", function()
      local code, out, err = run("analyze --prompt x --image samples/invoice.png", { env = { DASHSCOPE_API_KEY = "sk-otherregion-123456789" } })
      assert.are.equal(4, code)
      assert.matches("check the region/base URL", err, 1, true)
      assert.is_nil((out .. err):find("sk-otherregion", 1, true))
      local model = standin.scenario_model("auth", "401")
      code, _, err = run("analyze --prompt x --image samples/invoice.png --no-probe --model " .. Q(model))
      assert.are.equal(4, code)
      assert.matches("auth", err)
      local denied = standin.scenario_model("denied", "403")
      code, _, err = run("analyze --prompt x --image samples/invoice.png --no-probe --model " .. Q(denied))
      assert.are.equal(4, code)
      assert.matches("HTTP 403", err, 1, true)
    end)

    it("5: rate limited after retries", function()
      local model = standin.scenario_model("rl", "429")
      local code, _, err = run("analyze --prompt x --image samples/invoice.png --max-retries 1 --retry-backoff-s 0.01 --model " .. Q(model))
      assert.are.equal(5, code)
      assert.matches("rate_limited", err)
      assert.are.equal(2, #srv:requests(model))
    end)

    it("6: other API failure and network failure", function()
      local model = standin.scenario_model("srv", "500")
      local code, _, err = run("analyze --prompt x --image samples/invoice.png --max-retries 0 --model " .. Q(model))
      assert.are.equal(6, code)
      assert.matches("server", err)
      local s = require("socket").bind("127.0.0.1", 0)
      local _, port = s:getsockname()
      s:close()
      code, _, err = run("analyze --prompt x --image samples/invoice.png --max-retries 0 --connect-timeout-s 2",
        { env = { DASHSCOPE_BASE_URL = "http://127.0.0.1:" .. port .. "/compatible-mode/v1" } })
      assert.are.equal(6, code)
      assert.matches("network", err)
      local slow = standin.scenario_model("slow", "delay=3000")
      code, _, err = run("analyze --prompt x --image samples/invoice.png --max-retries 0 --timeout-s 0.5 --model " .. Q(slow))
      assert.are.equal(6, code)
      assert.matches("timeout", err)
    end)

    it("7: schema verification failed (after the repair attempt)", function()
      local model = standin.scenario_model("bad", "badschema")
      local code, out, err = run("analyze --prompt 'Extract invoice fields' --image samples/invoice.png --schema samples/invoice.schema.json --print-response --model " .. Q(model))
      assert.are.equal(7, code)
      assert.matches("verification failed after 2 attempts", err, 1, true)
      local res = cjson.decode(out)
      assert.is_false(res.verification.ok)
      assert.are.equal(2, #res.verification.attempts)
      assert.are.equal(2, #srv:requests(model))
      local rec = cjson.decode(read(work .. "/" .. res.record))
      assert.are.equal("verification_failed", rec.status)
      assert.are.equal(2, #rec.attempts)
    end)

    it("0 after a successful repair", function()
      local model = standin.scenario_model("fixed", "badschema", "ok")
      local code, out = run("analyze --prompt 'Extract invoice fields' --image samples/invoice.png --schema samples/invoice.schema.json --print-response --model " .. Q(model))
      assert.are.equal(0, code)
      local v = cjson.decode(out).verification
      assert.is_true(v.ok)
      assert.are.equal(2, #v.attempts)
      assert.is_false(v.attempts[1].ok)
    end)
  end)

  describe("analyze output options", function()
    it("--output saves the normalized result; --no-evidence writes no record; --quiet is quiet", function()
      local code, out, err = run("analyze --prompt 'What is this?' --image samples/invoice.png --output res.json --no-evidence --quiet")
      assert.are.equal(0, code)
      assert.are.equal("", out)
      assert.are.equal("", err)
      local res = cjson.decode(read(work .. "/res.json"))
      assert.matches("^STANDIN ", res.text)
      assert.are.same({}, ls(RECORD_DIR))
      assert.is_nil(tostring(read(work .. "/res.json")):find("base64,i", 1, true))
    end)

    it("prints the answer text by default and notes the record on stderr", function()
      local code, out, err = run("analyze --prompt 'What is this?' --image samples/invoice.png --evidence-dir ev")
      assert.are.equal(0, code)
      assert.matches("^STANDIN ", out)
      assert.matches("probe: ok", err)
      assert.matches("record: ev/", err)
      assert.are.equal(1, #ls(work .. "/ev"))
    end)

    it("--dry-run prints the body without sending anything", function()
      local before = srv:stats().chat_requests
      local code, out = run("analyze --prompt 'What is this?' --image samples/invoice.png --dry-run")
      assert.are.equal(0, code)
      local p = cjson.decode(out)
      assert.matches("/chat/completions$", p.url)
      assert.are.equal("image_url", p.body.messages[1].content[1].type)
      assert.matches("<omitted", p.body.messages[1].content[1].image_url.url)
      assert.are.equal(before, srv:stats().chat_requests)
    end)
  end)

  describe("probe", function()
    it("prints region, endpoint, latency and the verdict", function()
      local code, out = run("probe")
      assert.are.equal(0, code)
      assert.matches("endpoint: " .. srv.base_url, out, 1, true)
      assert.matches("latency:%s+%d+%.%d+ s", out)
      assert.matches("verdict:%s+OK", out)
      code, out = run("probe --json")
      assert.are.equal(0, code)
      local p = cjson.decode(out)
      assert.is_true(p.ok)
      assert.are.equal(srv.base_url, p.base_url)
    end)

    it("exit 4 with the region hint on 401, exit 6 on connection refused", function()
      local code, out, err = run("probe", { env = { DASHSCOPE_API_KEY = "sk-otherregion-123456789" } })
      assert.are.equal(4, code)
      assert.matches("verdict:%s+FAIL", out)
      assert.matches("check the region/base URL", err, 1, true)
      local s = require("socket").bind("127.0.0.1", 0)
      local _, port = s:getsockname()
      s:close()
      code, _, err = run("probe --base-url http://127.0.0.1:" .. port .. "/compatible-mode/v1")
      assert.are.equal(6, code)
      assert.matches("network", err)
    end)
  end)

  describe("smoke", function()
    it("passes with non-empty text from the expected model", function()
      local code, out = run("smoke --image ./tmp/vl_test_cat.png")
      assert.are.equal(0, code)
      local r = cjson.decode(out)
      assert.are.equal("pass", r.status)
      -- like the script: "output" is the path of the saved result
      assert.are.equal("output/alicloud-ai-multimodal-qwen-vl/smoke-test/result.json", r.output)
      local saved = cjson.decode(read(work .. "/" .. r.output))
      assert.are.equal("qwen3-vl-plus", saved.model)
      assert.matches("^STANDIN", saved.text)
      -- the record, and the smoke-test folder
      assert.are.same({ "smoke-test" }, (function()
        local t = {}
        for _, n in ipairs(ls(RECORD_DIR)) do if not n:match("%.json$") then t[#t + 1] = n end end
        return t
      end)())
      local records = 0
      for _, n in ipairs(ls(RECORD_DIR)) do if n:match("%.json$") then records = records + 1 end end
      assert.are.equal(1, records)
    end)

    it("fails (exit 7) when the answer comes from another model", function()
      -- fault models answer as qwen3-vl-plus
      local model = standin.scenario_model("smoke", "ok")
      local code, out = run("smoke --image ./tmp/vl_test_cat.png --model " .. Q(model))
      assert.are.equal(7, code)
      local r = cjson.decode(out)
      assert.are.equal("fail", r.status)
      assert.matches("unexpected model", r.reason)
    end)
  end)

  describe("batch", function()
    it("a directory: one record per image plus a summary, concurrently", function()
      local dir = work .. "/many"
      assert(evidence.mkdir_p(dir))
      for i = 1, 3 do make_png(dir .. "/img" .. i .. ".png", 16 + i, 16) end
      write(dir .. "/notes.txt", "not an image")
      local code, out, err = run("batch many --prompt 'What is it?' --concurrency 2")
      assert.are.equal(0, code, err)
      local lines = {}
      for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
      assert.are.equal(3, #lines)
      table.sort(lines)   -- printed as each finishes
      assert.matches("^ok\tmany/img1%.png\tSTANDIN", lines[1])
      assert.is_nil(err:find("\r", 1, true), "no progress line when stderr is not a terminal")
      local names = ls(RECORD_DIR)
      assert.are.equal(5, #names)
      assert.are.equal("jobs", names[#names])   -- the job's journal
      table.remove(names)
      local summary
      for _, n in ipairs(names) do
        local text = read(RECORD_DIR .. "/" .. n)
        assert_clean_record(text)
        if n:find("summary") then summary = cjson.decode(text) end
      end
      assert.are.equal(3, summary.total)
      assert.are.equal(3, summary.ok)
      assert.are.equal("What is it?", summary.prompt)
      assert.are.equal(3, srv:stats().chat_requests)
    end)

    it("a list file, --print-response and --output", function()
      local code, out = run("batch images.txt --prompt 'Read the text' --print-response --output sum.json")
      assert.are.equal(0, code)
      local s = cjson.decode(out)
      assert.are.equal(2, s.total)
      assert.are.equal("samples/invoice.png", s.items[1].image)
      assert.are.equal("tmp/vl_test_cat.png", s.items[2].image)
      assert.are.same(s.items[1].image, cjson.decode(read(work .. "/sum.json")).items[1].image)
    end)

    it("shows a progress line on a terminal", function()
      local code, out = run("batch samples --prompt 'What is it?'", {
        env = { TERM = "xterm" },
        raw_cmd = function(cmd, o, e)
          -- run under script(1) so that stderr is a pty
          local inner = cmd:gsub(" </dev/null >.*$", "")
          return "script -qec " .. Q(inner) .. " /dev/null >" .. Q(o) .. " 2>" .. Q(e) .. "; echo $?"
        end,
      })
      assert.are.equal(0, code)
      assert.matches("%[1/1%] ok=1 failed=0", out)
    end)

    it("exit code of the first failed image", function()
      local model = standin.scenario_model("batchauth", "401")
      local code, out = run("batch samples --prompt x --no-probe --model " .. Q(model))
      assert.are.equal(4, code)
      assert.matches("^error:auth", out)
      local bad = standin.scenario_model("batchbad", "badschema")
      code = run("batch samples --prompt 'Extract invoice fields' --schema samples/invoice.schema.json --repair 0 --model " .. Q(bad))
      assert.are.equal(7, code)
    end)
  end)

  it("the issue's command runs from a checkout via the shebang, whatever `lua` is", function()
    -- a checkout with only this interpreter's build: bin/qwenvl finds it,
    -- running itself again with the right interpreter when `lua` differs
    local co = work .. "/checkout"
    sh("mkdir -p " .. Q(co .. "/build") .. " && cp -r " .. Q(ROOT .. "/bin") .. " " .. Q(ROOT .. "/lua") .. " " .. Q(co)
      .. " && cp -r " .. Q(ROOT .. "/build/" .. LUA) .. " " .. Q(co .. "/build/"))
    local seed = read(ROOT .. "/examples/invoice.schema.json") and (ROOT .. "/examples/invoice.schema.json")
      or (work .. "/samples/invoice.schema.json")
    local code, out, err = run([[analyze --request '{"prompt":"Extract invoice fields","image":"samples/invoice.png"}' --schema ]]
      .. Q(seed) .. " --print-response", {
      raw_cmd = function(cmd)
        local needle = LUA .. " " .. Q(BIN)
        local a, b = cmd:find(needle, 1, true)
        return cmd:sub(1, a - 1) .. Q(co .. "/bin/qwenvl") .. cmd:sub(b + 1)
      end })
    assert.are.equal(0, code, err)
    local res = cjson.decode(out)
    assert.is_true(res.verification.ok)
    assert.are.equal(1, #ls(RECORD_DIR))
    assert_clean_record(read(work .. "/" .. res.record))
  end)
end)
