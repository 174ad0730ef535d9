-- `qwenvl` as a drop-in for the Python script, and the command's safety:
-- output paths (created, checked before the paid request), ./.env, smoke
-- --output, one-line --print-response, validate, resize flags, batch
-- lists with missing files, rate flags, lines as items finish, usage
-- errors before anything is sent, invalid UTF-8, evidence that cannot be
-- written, file names with newlines, secrets in credentials files and
-- URLs, the probe's verdict kept on disk, resuming. Real processes against
-- the stand-in; what arrived is read from its records.
local standin = require("spec.support.standin")
local fx = require("spec.support.fixtures")
local proc = require("spec.support.proc")
local cjson = require("cjson")

local _  -- the values a test does not look at
local KEY = "sk-qwenvldrop-FAKEKEY-5b09e1"
local Q = proc.quote

local function count_lines(s)
  local n = 0
  for _ in s:gmatch("[^\n]+") do n = n + 1 end
  return n
end

local function ls(dir)
  local t = {}
  for name in fx.sh("ls -A " .. Q(dir) .. " 2>/dev/null"):gmatch("[^\n]+") do t[#t + 1] = name end
  table.sort(t)
  return t
end

describe("qwenvl as a drop-in", function()
  local srv, work, base_env

  setup(function()
    srv = standin.start { key = KEY }
    work = fx.tmpdir()
    fx.sh("ln -s " .. Q(proc.root .. "/examples") .. " " .. Q(work .. "/examples"))
    base_env = { DASHSCOPE_API_KEY = KEY, DASHSCOPE_BASE_URL = srv.base_url, HOME = work,
                 XDG_CACHE_HOME = work .. "/cache" }
  end)
  teardown(function()
    if srv then srv:stop() end
    if work then fx.rm(work) end
  end)
  before_each(function()
    srv:reset()
    fx.sh("rm -rf " .. Q(work .. "/output") .. " " .. Q(work .. "/cache"))
  end)

  -- qwenvl <args...> in `cwd` (default: the work folder); code, out, err
  local function run(args, opts)
    opts = opts or {}
    local env = {}
    for k, v in pairs(base_env) do env[k] = v end
    for k, v in pairs(opts.env or {}) do env[k] = v end
    local argv = { proc.LUA, proc.BIN }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    local code, out, err = proc.run(argv, { env = env, cwd = opts.cwd or work })
    assert.is_nil(out:find(KEY, 1, true), "stdout holds the key")
    assert.is_nil(err:find(KEY, 1, true), "stderr holds the key")
    return code, out, err
  end

  local function chats() return srv:stats().chat_requests end
  local function probes() return srv:stats().models_requests end

  describe("--output", function()
    it("creates missing folders, for analyze, batch and smoke", function()
      local code, _, err = run({ "analyze", "--prompt", "x", "--image", "examples/sample.png",
                                 "--output", "deep/er/a.json" })
      assert.are.equal(0, code, err)
      assert.matches("^STANDIN", cjson.decode(fx.read(work .. "/deep/er/a.json")).text)
      code, _, err = run({ "batch", "examples", "--prompt", "x", "--output", "deep/b/sum.json" })
      assert.are.equal(0, code, err)
      assert.are.equal(1, cjson.decode(fx.read(work .. "/deep/b/sum.json")).ok)
      code, _, err = run({ "smoke", "--image", "examples/sample.png", "--output", "deep/s/r.json" })
      assert.are.equal(0, code, err)
      assert.are.equal("pass", cjson.decode(fx.read(work .. "/deep/s/r.json")).status)
    end)

    it("fails before sending when the path cannot be written (a folder, under a file)", function()
      fx.sh("mkdir -p " .. Q(work .. "/adir"))
      fx.write(work .. "/afile", "x")
      for _, out in ipairs({ "adir", "adir/", "afile/x.json" }) do
        for _, cmd in ipairs({
          { "analyze", "--prompt", "x", "--image", "examples/sample.png", "--output", out },
          { "batch", "examples", "--prompt", "x", "--output", out },
          { "smoke", "--image", "examples/sample.png", "--output", out },
        }) do
          local before, pbefore = chats(), probes()
          local code, stdout, err = run(cmd)
          assert.are.equal(3, code, cmd[1] .. " " .. out .. ": " .. err)
          assert.matches("--output", err, 1, true)
          assert.are.equal(1, count_lines(err), err)
          assert.are.equal("", stdout)
          assert.are.equal(before, chats())
          assert.are.equal(pbefore, probes())
        end
      end
    end)
  end)

  describe("the key from ./.env", function()
    it("is read after the real environment (which wins), before the credentials file, never printed", function()
      local d = work .. "/dotenv"
      fx.sh("mkdir -p " .. Q(d) .. " && ln -sf " .. Q(proc.root .. "/examples") .. " " .. Q(d .. "/examples"))
      fx.write(d .. "/.env", "# the script read this file too\nDASHSCOPE_API_KEY=" .. KEY .. "\n")
      fx.sh("mkdir -p " .. Q(d .. "/home/.alibabacloud"))
      fx.write(d .. "/home/.alibabacloud/credentials", "[default]\ndashscope_api_key = sk-credentials-000000000\n")
      local env = { DASHSCOPE_API_KEY = false, HOME = d .. "/home" }
      local code, out, err = run({ "analyze", "--prompt", "x", "--image", "examples/sample.png" }, { env = env, cwd = d })
      assert.are.equal(0, code, err)
      assert.matches("^STANDIN", out)
      code, out = run({ "probe" }, { env = env, cwd = d })
      assert.are.equal(0, code)
      assert.matches("key:      from DASHSCOPE_API_KEY in ./.env", out, 1, true)
      -- the environment wins over .env
      code, _, err = run({ "probe" }, { env = { DASHSCOPE_API_KEY = "sk-wrong-env-0000000", HOME = d .. "/home" }, cwd = d })
      assert.are.equal(4, code, err)
      -- .env wins over the credentials file
      fx.write(d .. "/.env", "DASHSCOPE_API_KEY=sk-wrong-dotenv-000000\n")
      code = run({ "probe" }, { env = env, cwd = d })
      assert.are.equal(4, code)
      -- and the record of the good run holds no key
      for _, name in ipairs(ls(d .. "/output/alicloud-ai-multimodal-qwen-vl")) do
        local text = fx.try_read(d .. "/output/alicloud-ai-multimodal-qwen-vl/" .. name) or ""
        assert.is_nil(text:find(KEY, 1, true))
      end
    end)
  end)

  describe("smoke --output", function()
    it("prints {status: pass, output: <path>} like the script, default path included", function()
      local code, out = run({ "smoke", "--image", "examples/sample.png" })
      assert.are.equal(0, code)
      assert.are.same({ status = "pass", output = "output/alicloud-ai-multimodal-qwen-vl/smoke-test/result.json" },
        cjson.decode(out))
      assert.are.equal(1, count_lines(out))
      code, out = run({ "smoke", "--image", "examples/sample.png", "--output", "s/result.json" })
      assert.are.equal(0, code)
      assert.are.same({ status = "pass", output = "s/result.json" }, cjson.decode(out))
      local saved = cjson.decode(fx.read(work .. "/s/result.json"))
      assert.are.equal("qwen3-vl-plus", saved.model)
      assert.is_table(saved.usage)
    end)
  end)

  describe("--print-response", function()
    it("is one line with the script's keys (text, model, usage, json); raw and request only with --verbose", function()
      local code, out, err = run({ "analyze", "--prompt", "Extract fields: title, amount, date", "--image",
                                   "examples/sample.png", "--json-mode", "--print-response" })
      assert.are.equal(0, code, err)
      assert.are.equal(1, count_lines(out))
      local r = cjson.decode(out)
      assert.matches("^{", r.text)
      assert.are.equal("qwen3-vl-plus", r.model)
      assert.is_number(r.usage.total_tokens)
      assert.is_table(r.json)
      assert.is_nil(r.raw)
      assert.is_nil(r.request)
      code, out = run({ "analyze", "--prompt", "x", "--image", "examples/sample.png", "--print-response", "--verbose" })
      assert.are.equal(0, code)
      assert.are.equal(1, count_lines(out))
      r = cjson.decode(out)
      assert.is_string(r.raw)
      assert.is_table(r.request.messages)
      assert.matches("<omitted", r.request.messages[1].content[1].image_url.url)
      assert.is_nil(r.json)       -- no JSON asked for: no json key
      -- without --print-response: the answer text
      code, out = run({ "analyze", "--prompt", "x", "--image", "examples/sample.png" })
      assert.are.equal(0, code)
      assert.matches("^STANDIN ", out)
    end)
  end)

  describe("validate", function()
    it("writes validate.txt (build, key source, never the key) and exits 0", function()
      local code, out, err = run({ "validate" })
      assert.are.equal(0, code, err)
      local text = fx.read(work .. "/output/alicloud-ai-multimodal-qwen-vl/validate.txt")
      assert.matches("qwenvl validate: ok", text, 1, true)
      assert.matches("libcurl: +%d+%.%d+", text)
      assert.matches("TLS OpenSSL", text, 1, true)
      assert.matches("libvips: +%a", text)
      assert.matches("key: +found, from DASHSCOPE_API_KEY in the environment %(not shown%)", text)
      assert.matches("endpoint: +" .. srv.base_url:gsub("%p", "%%%0"), text)
      assert.matches("written to output/alicloud-ai-multimodal-qwen-vl/validate.txt", out, 1, true)
      assert.are.equal(0, chats() + probes())
      -- no key at all is still a pass, with the way to add one
      code = run({ "validate", "--output", "v.txt" }, { env = { DASHSCOPE_API_KEY = false } })
      assert.are.equal(0, code)
      assert.matches("key: +none: set DASHSCOPE_API_KEY", fx.read(work .. "/v.txt"))
    end)

    it("exits non-zero with one line, and leaves no report, when the module cannot load", function()
      local co = work .. "/broken"
      fx.sh("mkdir -p " .. Q(co .. "/build/" .. proc.LUA) .. " && cp -r " .. Q(proc.root .. "/bin") .. " "
        .. Q(proc.root .. "/lua") .. " " .. Q(co))
      fx.write(co .. "/build/" .. proc.LUA .. "/qwenvl.so", "not a shared object")
      fx.sh("mkdir -p " .. Q(co .. "/output/alicloud-ai-multimodal-qwen-vl"))
      fx.write(co .. "/output/alicloud-ai-multimodal-qwen-vl/validate.txt", "stale")
      local code, out, err = proc.run({ proc.LUA, co .. "/bin/qwenvl", "validate" }, { cwd = co })
      assert.are.equal(6, code, err)
      assert.are.equal("", out)
      assert.are.equal(1, count_lines(err))
      assert.matches("^qwenvl validate: cannot load the qwenvl module", err)
      assert.is_nil(fx.try_read(co .. "/output/alicloud-ai-multimodal-qwen-vl/validate.txt"))
    end)
  end)

  describe("resize flags", function()
    it("--resize always --max-side reaches the request; bad values are refused before sending", function()
      local model = standin.scenario_model("resize", "ok")
      local code, out, err = run({ "analyze", "--prompt", "x", "--image", "examples/sample.png", "--resize", "always",
                                   "--max-side", "32", "--image-format", "png", "--model", model })
      assert.are.equal(0, code, err)
      assert.are.equal("image/png", srv:requests(model)[1].body.messages[1].content[1].image_url.url.mime)
      -- what the stand-in decoded (examples/sample.png is 96x64)
      local seen = cjson.decode(out:match("^STANDIN (.*)$")).images[1]
      assert.are.equal(32, seen.width)
      assert.are.equal(21, seen.height)
      local before = chats()
      code, _, err = run({ "analyze", "--prompt", "x", "--image", "examples/sample.png", "--resize", "sometimes" })
      assert.are.equal(3, code)
      assert.matches("resize must be auto, off or always", err, 1, true)
      code = run({ "batch", "examples", "--prompt", "x", "--quality", "500" })
      assert.are.equal(3, code)
      assert.are.equal(before, chats())
    end)
  end)

  describe("batch", function()
    it("a LIST naming a missing file fails that image only; the others are sent", function()
      fx.write(work .. "/list.txt", "examples/sample.png\nnot/there.png\nexamples/sample.png\n")
      local code, out, err = run({ "batch", "list.txt", "--prompt", "x", "--no-probe" })
      assert.are.equal(3, code, err)
      assert.are.equal(2, chats())
      assert.matches("error:invalid_request\tnot/there.png", out, 1, true)
      assert.matches("not/there.png: invalid_request", err, 1, true)
    end)

    it("--concurrency 0, 1.5, 300 and bad --rpm/--tpm are usage errors before anything is sent", function()
      for _, bad in ipairs({ { "--concurrency", "0" }, { "--concurrency", "1.5" }, { "--concurrency", "300" },
                             { "--rpm", "-1" }, { "--tpm", "-5" }, { "--rpm", "0.0001" } }) do
        local code, out, err = run({ "batch", "examples", "--prompt", "x", bad[1], bad[2] })
        assert.are.equal(2, code, table.concat(bad, " ") .. ": " .. err)
        assert.are.equal("", out)
        assert.matches(bad[1], err, 1, true)
        assert.are.equal(0, chats() + probes())
      end
    end)

    it("--rpm spaces the requests; --tpm is accepted", function()
      local d = work .. "/rpm"
      fx.sh("mkdir -p " .. Q(d))
      for i = 1, 4 do fx.png(d .. "/r" .. i .. ".png", 20 + i, 16) end
      local model = standin.scenario_model("rpm", "ok")
      local code, _, err = run({ "batch", "rpm", "--prompt", "x", "--rpm", "600", "--tpm", "1000000",
                                 "--concurrency", "4", "--model", model })
      assert.are.equal(0, code, err)
      local times = srv:scenario(model).times
      assert.are.equal(4, #times)
      table.sort(times)
      for i = 2, 4 do
        -- 600 per minute: one every 100 ms
        assert.is_true(times[i] - times[i - 1] >= 0.08, ("gap %.3f s"):format(times[i] - times[i - 1]))
      end
    end)

    it("prints each image's line as it finishes when stdout is not a terminal", function()
      local d = work .. "/stream"
      fx.sh("mkdir -p " .. Q(d))
      fx.png(d .. "/fast.png", 20, 16)
      fx.png(d .. "/slow.png", 22, 16)
      local model = standin.scenario_model("lines", "ok", "delay=4000")
      local env = {}
      for k, v in pairs(base_env) do env[k] = v end
      local p = proc.spawn({ proc.LUA, proc.BIN, "batch", "stream", "--prompt", "x", "--concurrency", "1",
                             "--model", model }, { env = env, cwd = work })
      finally(function() p:cleanup() end)
      local first = proc.until_true(function()
        local out = fx.try_read(p.outf) or ""
        return out:find("\n", 1, true) and out
      end, 10, "the first line")
      assert.is_false(p:done(), "the batch ended before the second answer")
      assert.matches("^ok\tstream/fast%.png\tSTANDIN", first)
      assert.are.equal(0, p:wait(20), p.err)
      p:cleanup()
      assert.are.equal(2, count_lines(p.out))
    end)

    it("lists a folder by names, newlines included, and prints such a name on one line", function()
      local d = work .. "/odd"
      fx.sh("mkdir -p " .. Q(d))
      fx.png(d .. "/two\nlines.png", 20, 16)
      fx.png(d .. "/plain.png", 24, 16)
      local code, out, err = run({ "batch", "odd", "--prompt", "x" })
      assert.are.equal(0, code, err)
      assert.are.equal(2, chats())
      assert.are.equal(2, count_lines(out))
      assert.matches("ok\todd/two\\nlines.png\tSTANDIN", out, 1, true)
    end)

    it("resumes: skips what succeeded, redoes failures and changed images, --fresh redoes all", function()
      local d = work .. "/resume"
      fx.sh("mkdir -p " .. Q(d))
      for i = 1, 3 do fx.png(d .. "/i" .. i .. ".png", 20 + i, 16) end
      local model = standin.scenario_model("resume", "ok")
      local args = { "batch", "resume", "--prompt", "x", "--model", model, "--no-probe" }
      assert.are.equal(0, (run(args)))
      assert.are.equal(3, #srv:requests(model))
      local code, out, err = run(args)
      assert.are.equal(0, code, err)
      assert.matches("3 of 3 already done, skipped; sending 0", err, 1, true)
      assert.are.equal(3, count_lines(out))
      assert.are.equal(3, #srv:requests(model))
      -- changed bytes: done again; a new image: done
      fx.png(d .. "/i2.png", 40, 30)
      fx.png(d .. "/i4.png", 44, 30)
      code, out, err = run(args)
      assert.are.equal(0, code, err)
      assert.are.equal(4, count_lines(out))
      assert.matches("2 of 4 already done", err, 1, true)
      assert.are.equal(5, #srv:requests(model))
      -- another prompt is another job: nothing mixed in
      code, _, err = run({ "batch", "resume", "--prompt", "other", "--model", model, "--no-probe" })
      assert.are.equal(0, code)
      assert.is_nil(err:find("already done", 1, true))
      assert.are.equal(9, #srv:requests(model))
      -- --fresh
      code, _, err = run({ "batch", "resume", "--prompt", "x", "--model", model, "--no-probe", "--fresh" })
      assert.are.equal(0, code)
      assert.is_nil(err:find("already done", 1, true))
      assert.are.equal(13, #srv:requests(model))
    end)

    it("retries failed images on the next run", function()
      local d = work .. "/retry"
      fx.sh("mkdir -p " .. Q(d))
      fx.png(d .. "/a.png", 20, 16)
      local model = standin.scenario_model("failthenok", "500", "ok")
      local args = { "batch", "retry", "--prompt", "x", "--model", model, "--no-probe", "--max-retries", "0" }
      assert.are.equal(6, (run(args)))
      local code, _, err = run(args)
      assert.are.equal(0, code, err)
      assert.are.equal(2, #srv:requests(model))
    end)
  end)

  describe("answers with invalid UTF-8", function()
    it("still make valid JSON in the record, --output and --print-response", function()
      local model = standin.scenario_model("utf", "badutf8")
      local code, out, err = run({ "analyze", "--prompt", "x", "--image", "examples/sample.png", "--model", model,
                                   "--print-response", "--verbose", "--output", "u.json" })
      assert.are.equal(0, code, err)
      local r = cjson.decode(out)
      assert.matches("bad utf-8: \239\191\189\239\191\189 then \239\191\189", r.text, 1, true)
      assert.are.equal(r.text, cjson.decode(fx.read(work .. "/u.json")).text)
      local dir = work .. "/output/alicloud-ai-multimodal-qwen-vl"
      for _, name in ipairs(ls(dir)) do
        local ok = pcall(cjson.decode, fx.read(dir .. "/" .. name))
        assert.is_true(ok, name .. " is not JSON")
      end
      -- python's json checks the bytes, not only the syntax
      local _, valid = fx.sh("python3 -c 'import json,sys; json.load(open(sys.argv[1], encoding=\"utf-8\"))' "
        .. Q(work .. "/u.json"))
      assert.is_true(valid)
    end)
  end)

  describe("evidence that cannot be written", function()
    it("an evidence path that is a file: analyze and batch fail before sending (exit 3)", function()
      fx.write(work .. "/evfile", "x")
      for _, cmd in ipairs({
        { "analyze", "--prompt", "x", "--image", "examples/sample.png", "--evidence-dir", "evfile" },
        { "batch", "examples", "--prompt", "x", "--evidence-dir", "evfile" },
        { "analyze", "--prompt", "x", "--image", "examples/sample.png", "--evidence-dir", "evfile/sub" },
      }) do
        local code, _, err = run(cmd)
        assert.are.equal(3, code, err)
        assert.matches("evfile", err, 1, true)
        assert.are.equal(0, chats() + probes())
      end
    end)

    describe("on a small or read-only file system", function()
      local mnt
      before_each(function()
        mnt = work .. "/mnt"
        fx.sh("mkdir -p " .. Q(mnt))
      end)
      after_each(function()
        fx.sh("umount " .. Q(mnt) .. " 2>/dev/null; rmdir " .. Q(mnt))
      end)
      local function mount(o)
        local _, ok = fx.sh("mount -t tmpfs -o " .. o .. " tmpfs " .. Q(mnt))
        return ok
      end

      it("a read-only folder: refused before sending", function()
        if not mount("size=1m,ro") then pending("cannot mount a tmpfs here (needs root)") return end
        for _, cmd in ipairs({
          { "analyze", "--prompt", "x", "--image", "examples/sample.png", "--evidence-dir", "mnt/ev" },
          { "batch", "examples", "--prompt", "x", "--evidence-dir", "mnt/ev" },
          { "analyze", "--prompt", "x", "--image", "examples/sample.png", "--output", "mnt/out.json" },
        }) do
          local code, _, err = run(cmd)
          assert.are.equal(3, code, err)
          assert.matches("Read%-only file system", err)
          assert.are.equal(0, chats() + probes())
        end
      end)

      it("a disk that fills up after the answer arrived: analyze prints it and exits 8", function()
        if not mount("size=256k") then pending("cannot mount a tmpfs here (needs root)") return end
        fx.sh("mkdir -p " .. Q(mnt .. "/ev"))
        -- leave two pages: enough for the check, not for a 40 KB record
        fx.sh("dd if=/dev/zero of=" .. Q(mnt .. "/fill") .. " bs=4k count=$(( $(stat -f -c %a "
          .. Q(mnt) .. ") - 2 )) 2>/dev/null")
        local model = standin.scenario_model("full", "oversize=40000")
        local code, out, err = run({ "analyze", "--prompt", "x", "--image", "examples/sample.png",
                                     "--evidence-dir", "mnt/ev", "--model", model, "--no-probe" })
        assert.are.equal(8, code, err)
        assert.are.equal(1, chats())
        assert.is_true(#out >= 40000, "the answer was printed")
        assert.matches("the answer arrived but its record was not written", err, 1, true)
      end)

      it("a disk that fills up mid-batch: stops sending, says so, exit 8; the rest is sent on the next run", function()
        if not mount("size=512k") then pending("cannot mount a tmpfs here (needs root)") return end
        local d = work .. "/many"
        fx.sh("mkdir -p " .. Q(d))
        for i = 1, 12 do fx.png(("%s/m%02d.png"):format(d, i), 20 + i, 16) end
        -- room for the job and a few records of 40 KB answers, not for twelve
        fx.sh("dd if=/dev/zero of=" .. Q(mnt .. "/fill") .. " bs=4k count=$(( $(stat -f -c %a "
          .. Q(mnt) .. ") - 60 )) 2>/dev/null")
        local model = standin.scenario_model("fillup", "oversize=40000")
        local args = { "batch", "many", "--prompt", "x", "--evidence-dir", "mnt/ev", "--model", model,
                       "--no-probe", "--concurrency", "1" }
        local code, _, err = run(args)
        assert.are.equal(8, code, err)
        assert.matches("stopped sending: ", err, 1, true)
        assert.matches("images not sent; run the same command again to resume", err, 1, true)
        local sent = chats()
        assert.is_true(sent < 12, "sent " .. sent)
        -- room again: the next run sends only the rest
        fx.sh("rm -f " .. Q(mnt .. "/fill") .. "; mount -o remount,size=16m " .. Q(mnt))
        srv:reset()
        code, _, err = run(args)
        assert.are.equal(0, code, err)
        assert.is_true(chats() <= 12 - sent + 1, "sent again: " .. chats())
      end)
    end)
  end)

  describe("secrets", function()
    it("a credentials-file key with an inline comment and credentials in base_url appear nowhere", function()
      local d = work .. "/creds"
      fx.sh("mkdir -p " .. Q(d .. "/home/.alibabacloud") .. " && ln -sf " .. Q(proc.root .. "/examples")
        .. " " .. Q(d .. "/examples"))
      fx.write(d .. "/home/.alibabacloud/credentials", "[default]\ndashscope_api_key = " .. KEY .. " ; work account\n")
      local model = standin.scenario_model("echo", "ok+echo=text")
      local url = srv.base_url:gsub("^http://", "http://qwuser:hunter2secretpw@")
      local code, out, err = run({ "analyze", "--prompt", "x", "--image", "examples/sample.png", "--model", model,
                                   "--print-response", "--verbose", "--output", "o.json", "--base-url", url },
        { env = { DASHSCOPE_API_KEY = false, DASHSCOPE_BASE_URL = false, HOME = d .. "/home" }, cwd = d })
      assert.are.equal(0, code, err)
      assert.matches("you sent", out, 1, true)
      local texts = { out, err, fx.read(d .. "/o.json") }
      for _, name in ipairs(ls(d .. "/output/alicloud-ai-multimodal-qwen-vl")) do
        texts[#texts + 1] = fx.read(d .. "/output/alicloud-ai-multimodal-qwen-vl/" .. name)
      end
      assert.is_true(#texts >= 4)
      for _, t in ipairs(texts) do
        assert.is_nil(t:find(KEY, 1, true), "the key was written: " .. t:sub(1, 300))
        assert.is_nil(t:find("hunter2secretpw", 1, true), "the URL's password was written")
      end
    end)
  end)

  describe("the probe's verdict", function()
    it("is kept for a while per endpoint and key (never the key), --probe asks again, failures are not kept", function()
      local cmd = { "analyze", "--prompt", "x", "--image", "examples/sample.png", "--print-response" }
      local code, _, err = run(cmd)
      assert.are.equal(0, code, err)
      assert.are.equal(1, probes())
      assert.matches("probe: ok %(", err)
      local out
      code, out, err = run(cmd)
      assert.are.equal(0, code)
      assert.are.equal(1, probes())
      assert.matches("kept from %d+%-%d+%-%d+T", err)
      local rec = cjson.decode(fx.read(work .. "/" .. cjson.decode(out).record))
      assert.is_true(rec.probe.cached)
      assert.matches("^%d+%-%d+%-%d+T%d+:%d+:%d+Z$", rec.probe.probed_at)
      -- the cache holds no key
      local files = ls(work .. "/cache/qwenvl")
      assert.are.equal(1, #files)
      assert.is_nil(fx.read(work .. "/cache/qwenvl/" .. files[1]):find(KEY, 1, true))
      -- --probe: a fresh one
      assert.are.equal(0, (run({ "analyze", "--prompt", "x", "--image", "examples/sample.png", "--probe" })))
      assert.are.equal(2, probes())
      -- another key is another entry; a failure is not kept
      for _ = 1, 2 do
        assert.are.equal(4, (run(cmd, { env = { DASHSCOPE_API_KEY = "sk-otherkey-0000000000" } })))
      end
      assert.are.equal(4, probes())
      assert.are.equal(1, #ls(work .. "/cache/qwenvl"))
    end)
  end)

  describe("examples/batch/caption.lua", function()
    local CAPTION = proc.root .. "/examples/batch/caption.lua"
    local function caption(args)
      local argv = { proc.LUA, CAPTION }
      for _, a in ipairs(args) do argv[#argv + 1] = a end
      return proc.run(argv, { env = base_env, cwd = work })
    end

    it("--help prints the usage and exits 0", function()
      local code, out = caption({ "--help" })
      assert.are.equal(0, code)
      assert.matches("usage: caption.lua", out, 1, true)
      assert.matches("--mode caption|tags", out, 1, true)
    end)

    it("--mode tags checks the answer against its schema: repaired once, else a failure", function()
      local d = work .. "/tags"
      fx.sh("mkdir -p " .. Q(d))
      fx.png(d .. "/a.png", 30, 20)
      local bad = standin.scenario_model("tagsbad", "badschema")
      local code, _, err = caption({ "--mode", "tags", "--no-progress", "--model", bad, d })
      assert.are.equal(2, code, err)
      local m = cjson.decode(fx.read(d .. "/captions.json"))
      assert.is_false(m.images[1].ok)
      assert.are.equal("bad_response", m.images[1].error.code)
      assert.are.equal(2, #srv:requests(bad))     -- the answer and one repair
      local fixed = standin.scenario_model("tagsfixed", "badschema", "ok")
      code, _, err = caption({ "--mode", "tags", "--no-progress", "--fresh", "--model", fixed, d })
      assert.are.equal(0, code, err)
      m = cjson.decode(fx.read(d .. "/captions.json"))
      assert.is_true(m.images[1].ok)
      assert.is_string(m.images[1].caption)
      assert.is_table(m.images[1].tags)
    end)
  end)
end)
