-- qwenvl.batch against the stand-in's Files and Batch APIs: what arrived at
-- the service (uploaded lines, create bodies, deletions) and what came back
-- (results in input order). Waiting runs on the stand-in's clock: the
-- injected sleep moves it instead of sleeping.
local standin = require("spec.support.standin")
local fx = require("spec.support.fixtures")
local cjson = require("cjson")
local q = require("qwenvl")
local qb = require("qwenvl.batch")
local lines = require("qwenvl.batch.lines")

local NULL = cjson.null

describe("qwenvl.batch", function()
  local srv, dir, img, sleeps

  setup(function()
    srv = standin.start{}
    dir = fx.tmpdir()
    img = fx.png(dir .. "/a.png", 64, 48)
  end)
  teardown(function()
    if srv then srv:stop() end
    if dir then fx.rm(dir) end
  end)
  local vnow = 0
  before_each(function()
    srv:reset()
    sleeps = {}
  end)

  local function control(path, t) return srv:batch_control(path, t) end
  local function config(t) return control("config", t) end
  local function advance(s) return control("clock", { advance_s = s }) end
  local function state() return srv:batch_state() end
  local function calls(route) return state().calls[route] or 0 end

  -- sleeping moves the stand-in's clock instead
  local function vsleep(s)
    sleeps[#sleeps + 1] = s
    vnow = vnow + s
    advance(s)
  end
  local function vclock() return vnow end

  local jobs_n = 0
  local function opts(t)
    jobs_n = jobs_n + 1
    local o = { api_key = srv.key, base_url = srv.base_url, job_dir = dir .. "/jobs" .. jobs_n,
                sleep = vsleep, clock = vclock, file_poll_s = 0 }
    for k, v in pairs(t or {}) do o[k] = v end
    return o
  end

  local function requests(n, f)
    local list = {}
    for i = 1, n do
      list[i] = { prompt = "question " .. i, image = img }
      if f then f(i, list[i]) end
    end
    return list
  end

  local function report(res)
    return cjson.decode((res.text:gsub("^STANDIN ", "")))
  end

  local function uploaded_lines(k)
    local up = state().uploads[k or 1]
    local out = {}
    for l in up.content:gmatch("[^\n]+") do out[#out + 1] = cjson.decode(l) end
    return out, up
  end

  local function run(reqs, o, wait_opts)
    local job, err = qb.submit(reqs, o)
    assert.is_nil(err, err and tostring(err))
    local ok, werr = job:wait(wait_opts or { poll_s = 60 })
    assert.is_nil(werr, werr and tostring(werr))
    assert.is_true(ok)
    local res, failures = job:results()
    assert.truthy(res, failures and tostring(failures))
    return job, res, failures
  end

  local function find_file(pattern)
    local out = fx.sh("grep -rl -- " .. fx.quote(pattern) .. " " .. fx.quote(dir) .. " || true")
    return out:gsub("%s+$", "")
  end

  describe("lines", function()
    it("carry each request's exact body, inline image and no stream", function()
      local reqs = requests(3, function(i, r)
        if i == 2 then r.image = "https://example.com/cat.png" end
        if i == 3 then r.json_mode = true; r.enable_thinking = false end
      end)
      local job, res, failures = run(reqs, opts())
      assert.are.equal(0, failures)
      local sent = uploaded_lines(1)
      assert.are.equal(2, #sent)
      sent[3] = uploaded_lines(2)[1] -- enable_thinking = false: a batch of its own
      local b64 = fx.base64(img)
      for i, l in ipairs(sent) do
        assert.are.equal(tostring(i), l.custom_id)
        assert.are.equal("POST", l.method)
        assert.are.equal("/v1/chat/completions", l.url)
        assert.are.equal("qwen3-vl-plus", l.body.model)
        assert.is_nil(l.body.stream)
        assert.is_nil(l.body.stream_options)
        local parts = l.body.messages[1].content
        local url = parts[1].image_url.url
        if i == 2 then assert.are.equal("https://example.com/cat.png", url)
        else assert.are.equal("data:image/png;base64," .. b64, url) end
      end
      -- the line is the body prepare builds, with the image put back
      local p = q.prepare{ prompt = "question 1", image = img, api_key = srv.key, base_url = srv.base_url }
      p.body.messages[1].content[1].image_url.url = "data:image/png;base64," .. b64
      assert.are.same(p.body, sent[1].body)
      assert.is_false(sent[3].body.enable_thinking)
      assert.are.same({ type = "json_object" }, sent[3].body.response_format)
      -- and the answers map back in input order
      for i = 1, 3 do
        local rep = report(res[i])
        assert.are.equal(i == 3 and rep.prompt:match("^question 3") and rep.prompt or "question " .. i, rep.prompt)
        assert.are.equal(tostring(i), res[i].batch.custom_id)
        assert.are.equal(job.id, res[i].batch.job_id)
        assert.truthy(res[i].request_id:match("^%x+%-%x+%-4%x+"))
        assert.are.equal("qwen3-vl-plus", res[i].model)
        assert.is_number(res[i].usage.total_tokens)
      end
      assert.are.equal(fx.sha256(img), report(res[1]).images[1].sha256)
      assert.are.equal("https://example.com/cat.png", report(res[2]).images[1].url)
      assert.are.equal("table", type(res[3].json))
      assert.are.equal("question 3", res[3].json.prompt:match("^question 3"))
      assert.is_nil(res[1].json)
    end)

    it("gives batch-test-model the /v1/chat/ds-test endpoint and its own limits", function()
      local reqs = requests(5, function(_, r) r.model = "batch-test-model" end)
      local _, res, failures = run(reqs, opts{ test_max_lines = 2 })
      assert.are.equal(0, failures)
      local st = state()
      assert.are.equal(3, st.batches_created)
      for _, b in ipairs(st.batches) do assert.are.equal("/v1/chat/ds-test", b.endpoint) end
      for _, l in ipairs(uploaded_lines(1)) do assert.are.equal("/v1/chat/ds-test", l.url) end
      for i = 1, 5 do
        assert.are.equal("This is a test result.", res[i].text)
        assert.are.same({ completion_tokens = 6, prompt_tokens = 20, total_tokens = 26 }, res[i].usage)
      end
    end)

    it("split past max_lines and max_file_bytes into several batches of one job", function()
      local job, res, failures = run(requests(7), opts{ max_lines = 3 })
      assert.are.equal(0, failures)
      local st = state()
      assert.are.equal(3, st.batches_created)
      local counts = {}
      for k, up in ipairs(st.uploads) do counts[k] = up.lines end
      assert.are.same({ 3, 3, 1 }, counts)
      for i = 1, 7 do assert.are.equal("question " .. i, report(res[i]).prompt) end
      assert.are.equal(3, #job:summary().parts)
      -- bytes: two lines fit, three do not
      srv:reset()
      local one = #select(1, lines.build(q, { prompt = "question 1", image = img, api_key = srv.key,
                                              base_url = srv.base_url }, "1")) + 1
      local _, res2, f2 = run(requests(5), opts{ max_file_bytes = 2 * one + 2 })
      assert.are.equal(0, f2)
      assert.are.equal(3, state().batches_created)
      assert.are.equal("question 5", report(res2[5]).prompt)
    end)

    it("put each model and thinking mode in batches of their own", function()
      local reqs = requests(6, function(i, r)
        r.model = i % 2 == 0 and "qwen3-vl-flash" or "qwen3-vl-plus"
        if i > 4 then r.enable_thinking = true end
      end)
      local _, res, failures = run(reqs, opts())
      assert.are.equal(0, failures)
      local st = state()
      assert.are.equal(4, st.batches_created)
      for k = 1, #st.uploads do
        local models, thinking = {}, {}
        for _, l in ipairs(uploaded_lines(k)) do
          models[l.body.model] = true
          thinking[tostring(l.body.enable_thinking)] = true
        end
        local nm, nt = 0, 0
        for _ in pairs(models) do nm = nm + 1 end
        for _ in pairs(thinking) do nt = nt + 1 end
        assert.are.equal(1, nm)
        assert.are.equal(1, nt)
      end
      for i = 1, 6 do assert.are.equal(i % 2 == 0 and "qwen3-vl-flash" or "qwen3-vl-plus", res[i].model) end
    end)

    it("fail one request over the per-line cap, not the batch", function()
      local big = fx.png(dir .. "/big.png", 300, 200)
      local reqs = requests(3, function(i, r) if i == 2 then r.image = big end end)
      local _, res, failures = run(reqs, opts{ max_line_bytes = 20000 })
      assert.are.equal(1, failures)
      assert.are.equal("invalid_request", res[2].code)
      assert.are.equal("image", res[2].field)
      assert.truthy(res[2].message:find("max_line_bytes", 1, true))
      assert.truthy(res[2].message:find("per-line cap of 20000", 1, true))
      assert.truthy(res[1].text and res[3].text)
      local ids = {}
      for _, l in ipairs(uploaded_lines()) do ids[#ids + 1] = l.custom_id end
      assert.are.same({ "1", "3" }, ids)
    end)

    it("inline a downscaled image only when the core can hand over its bytes", function()
      local big = fx.png(dir .. "/wide.png", 400, 300)
      local job, res = run(requests(2, function(i, r) if i == 2 then r.image = big; r.max_pixels = 100 * 100 end end), opts())
      assert.truthy(job)
      if q.encode then
        assert.truthy(res[2].text, tostring(res[2].message))
        local w = report(res[2]).images[1].width
        assert.is_true(w < 400)
      else
        assert.are.equal("invalid_request", res[2].code)
        assert.truthy(res[2].message:find("needs downscaling", 1, true))
        assert.truthy(res[1].text)
      end
    end)
  end)

  describe("refuses before uploading", function()
    local bad = {
      "http://127.0.0.1/a.png", "http://localhost:8080/a.png", "https://10.1.2.3/a.png",
      "http://[::1]/a.png", "http://192.168.1.1/x.png", "http://172.20.0.5/x.png",
      "http://169.254.169.254/latest", "http://fileserver/x.png", "https://printer.local/x.png",
      "http://0x7f000001/x.png", "http://2130706433/x.png", "http://127.1/x.png",
      "https://foo.internal/x.png", "http://[fd00::1]/x", "http://[::ffff:127.0.0.1]/x",
      "http://user@10.0.0.1:81/x",
      "file:///etc/hosts", "oss://bucket/x.png",
    }

    it("private, loopback and intranet URLs, file:// and unreadable paths", function()
      local list = {}
      for i, src in ipairs(bad) do list[i] = { prompt = "p", image = src } end
      list[#list + 1] = { prompt = "p", image = dir .. "/missing.png" }
      local root = dir .. "/refused"
      local job, err = qb.submit(list, opts{ job_dir = root })
      assert.is_nil(job)
      assert.are.equal("invalid_request", err.code)
      assert.truthy(err.message:find("none of the " .. #list .. " requests", 1, true))
      for i = 1, #list do
        local e = err.failures[i]
        assert.truthy(e, "request " .. i .. " was not refused: " .. tostring(list[i].image))
        assert.are.equal("image", e.field)
      end
      assert.truthy(err.failures[1].message:find("private, loopback or intranet", 1, true))
      assert.truthy(err.failures[#bad - 1].message:find("file URLs cannot be used", 1, true))
      assert.truthy(err.failures[#list].message:find("cannot read the local file", 1, true))
      assert.are.equal(0, calls("POST /files"))
      assert.are.equal(0, #qb.list{ job_dir = root })
    end)

    it("the refused requests only, the others run", function()
      local list = requests(3, function(i, r) if i == 2 then r.image = "http://10.0.0.8/cam.jpg" end end)
      local _, res, failures = run(list, opts())
      assert.are.equal(1, failures)
      assert.are.equal("invalid_request", res[2].code)
      assert.truthy(res[2].message:find("10.0.0.8", 1, true))
      assert.are.equal(2, #uploaded_lines())
    end)

    it("but lets public hosts through", function()
      for _, h in ipairs{ "example.com", "dashscope.aliyuncs.com", "8.8.8.8", "[2001:4860::8888]",
                          "172.32.0.1", "11.0.0.1", "localhost.example.com" } do
        assert.is_false(lines.private_host(h), h)
      end
    end)

    it("a bad completion_window, bad metadata, streams, no key", function()
      local job, err = qb.submit(requests(1), opts{ completion_window = "12h" })
      assert.is_nil(job)
      assert.are.equal("completion_window", err.field)
      job, err = qb.submit(requests(1), opts{ metadata = { n = 3 } })
      assert.is_nil(job)
      assert.are.equal("metadata", err.field)
      job, err = qb.submit(requests(1, function(_, r) r.stream = true end), opts())
      assert.is_nil(job)
      assert.are.equal("stream", err.failures[1].field)
      assert.are.equal(0, calls("POST /files"))
      assert.has_error(function() qb.submit("nope") end)
    end)
  end)

  describe("creating", function()
    it("finds the batch by its input file after an ambiguous failure, never a second one", function()
      for _, fault in ipairs{ "cut", "500_after_create", "delay=1500" } do
        srv:reset()
        config{ create_faults = { fault } }
        local _, res, failures = run(requests(2), opts{ timeout_s = 1 })
        assert.are.equal(0, failures, fault)
        assert.are.equal(1, state().batches_created, fault)
        assert.are.equal(1, calls("POST /batches"), fault)
        local looked = false
        for _, r in ipairs(srv:requests()) do
          if r.route == "GET /batches" then
            assert.truthy(r.path:find("input_file_ids=file%-batch%-"))
            looked = true
          end
        end
        assert.is_true(looked, fault)
        assert.are.equal("question 2", report(res[2]).prompt)
      end
    end)

    -- A RST before any byte of the answer, on a kept-alive connection:
    -- libcurl re-sends the POST by itself on a fresh connection (it does so
    -- for any request whose reused connection died before answering), so a
    -- second batch is created and the client never learns of the first.
    -- qwenvl.http must not reuse a connection for a POST it may not retry
    -- (CURLOPT_FRESH_CONNECT); turn this into `it` once it does.
    it("never creates twice when the connection is reset before the answer (core: libcurl resends)", function()
      config{ create_faults = { "reset" } }
      local _, _, failures = run(requests(2), opts())
      assert.are.equal(0, failures)
      assert.are.equal(1, state().batches_created)
      assert.are.equal(1, calls("POST /batches"))
    end)

    it("creates again after a 429 or a 500 that created nothing", function()
      config{ create_faults = { "429", "500" } }
      local _, _, failures = run(requests(2), opts())
      assert.are.equal(0, failures)
      assert.are.equal(1, state().batches_created)
      assert.are.equal(3, calls("POST /batches"))
    end)

    it("a refusal for sure: the requests fail with it, the orphaned input is deleted", function()
      config{ create_faults = { "400" } }
      local o = opts()
      local job, err = qb.submit(requests(2), o)
      assert.is_nil(job)
      assert.are.equal("invalid_request", err.code)
      assert.truthy(err.job_id)
      assert.are.equal(0, state().batches_created)
      assert.are.equal(0, #state().files)
      local again = assert(qb.open(err.job_id, o))
      local res, failures = again:results()
      assert.are.equal(2, failures)
      assert.are.equal("invalid_request", res[1].code)
      assert.truthy(res[1].message:find("Injected refusal", 1, true))
      assert.are.equal("failed", again:summary().status)
    end)

    it("waits for an upload that reads 'processing'", function()
      config{ processing_gets = 2 }
      local _, _, failures = run(requests(1), opts())
      assert.are.equal(0, failures)
      assert.are.equal(3, calls("GET /files/{id}")) -- two "processing", then "processed"
    end)

    -- OpenAI's openapi.yaml lives beside the checkout (../shared), not in it
    local openapi
    for _, path in ipairs{ os.getenv("OPENAPI_SPEC") or "", "../shared/openai-openapi/openapi.yaml",
                           "../../shared/openai-openapi/openapi.yaml",
                           "/work/shared/openai-openapi/openapi.yaml" } do
      local f = path ~= "" and io.open(path, "rb")
      if f then f:close(); openapi = path; break end
    end
    local it_openapi = openapi and it or pending
    it_openapi("sends what OpenAI's spec describes, but for DashScope's own windows and test endpoint", function()
      run(requests(1), opts{ completion_window = "24h", metadata = { ds_description = "spec" } })
      run(requests(1, function(_, r) r.model = "batch-test-model" end), opts{ completion_window = "48h" })
      local checks = {}
      for _, r in ipairs(srv:requests()) do
        if r.route == "POST /batches" then
          checks[#checks + 1] = { "CreateBatchRequest", r.body }
        elseif r.route == "POST /files" then
          checks[#checks + 1] = { "CreateFileRequest", { purpose = r.form.purpose, file = "<binary>" } }
          assert.are.equal("application/jsonl", r.form.file.type)
        end
      end
      assert.are.equal(4, #checks)
      local input = os.tmpname()
      fx.write(input, cjson.encode(checks))
      local out = fx.sh("python3 spec/support/openapi_check.py --spec " .. fx.quote(openapi)
        .. " < " .. fx.quote(input))
      os.remove(input)
      local problems = cjson.decode(out)
      assert.are.same({}, problems[1]) -- the file upload
      assert.are.same({}, problems[2]) -- 24h, /v1/chat/completions
      assert.are.same({}, problems[3])
      table.sort(problems[4])
      assert.are.same({ "$.completion_window: \"48h\" not in enum ['24h']",
                        "$.endpoint: \"/v1/chat/ds-test\" not in enum ['/v1/responses', "
                        .. "'/v1/chat/completions', '/v1/embeddings', '/v1/completions', "
                        .. "'/v1/moderations', '/v1/images/generations', '/v1/images/edits', "
                        .. "'/v1/videos']" }, problems[4])
      local md = checks[2][2].metadata
      assert.are.equal("spec", md.ds_description)
      assert.truthy(md.qwenvl_job)
      assert.are.equal("r1-p001", md.qwenvl_part)
    end)
  end)

  describe("waiting", function()
    it("polls every poll_s, backs off while nothing changes, gives up at timeout_s without cancelling", function()
      config{ lines_per_s = 1, stall_after = 0, stall_s = 100000 }
      local job = assert(qb.submit(requests(2), opts()))
      local seen = {}
      local ok, err = job:wait{ poll_s = 10, max_poll_s = 40, timeout_s = 200,
                                on_progress = function(st) seen[#seen + 1] = st.status end }
      assert.is_nil(ok)
      assert.are.equal("timeout", err.code)
      assert.truthy(err.message:find(job.id, 1, true))
      assert.are.same({ 10, 15, 22.5, 33.75, 40, 40, 38.75 }, sleeps)
      assert.are.equal(#sleeps + 1, #seen)
      assert.are.equal("in_progress", seen[#seen])
      assert.are.equal(0, calls("POST /batches/{id}/cancel"))
      assert.are.equal("in_progress", state().batches[1].status)
    end)

    it("goes back to poll_s when the counts move", function()
      config{ lines_per_s = 1 / 25 }
      local job = assert(qb.submit(requests(3), opts()))
      assert(job:wait{ poll_s = 10, max_poll_s = 100 })
      -- one line per 25 s: 0 done at 0 s and 10 s, 1 at 25 s (back to 10), ...
      assert.are.same({ 10, 15, 10, 15, 10, 15 }, sleeps)
    end)

    it("status() is one GET per running batch and reports the service's counters", function()
      config{ lines_per_s = 1 }
      local job = assert(qb.submit(requests(5), opts{ max_lines = 3 }))
      local before = calls("GET /batches/{id}")
      advance(2.5)
      local st = assert(job:status())
      assert.are.equal(before + 2, calls("GET /batches/{id}"))
      assert.are.equal("in_progress", st.status)
      assert.are.equal(5, st.total)
      assert.are.equal(4, st.completed)
      assert.are.equal(0, st.failed)
      assert.is_false(st.settled)
      assert.are.equal(2, #st.parts)
      local res, err = job:results()
      assert.is_nil(res)
      assert.are.equal("pending", err.code)
    end)
  end)

  describe("results", function()
    it("check every output line's status_code, even when request_counts.failed is 0", function()
      config{ failed_lines_to = "output", fail_lines = { ["2"] = { status = 500 }, ["3"] = { status = 400 } } }
      local job, res, failures = run(requests(4), opts())
      assert.are.equal(0, job:status().failed) -- what the service says
      assert.are.equal(2, failures)
      assert.are.equal("server", res[2].code)
      assert.are.equal(500, res[2].status)
      assert.is_true(res[2].retryable)
      assert.truthy(res[2].message:find("Injected line failure", 1, true))
      assert.are.equal("invalid_request", res[3].code)
      assert.are.equal(400, res[3].status)
      assert.truthy(res[1].text and res[4].text)
      assert.are.equal(res[2].batch.batch_id, res[1].batch.batch_id)
    end)

    it("judge a line by its status_code before its body", function()
      local R = require("qwenvl.batch.results")
      local body = { model = "m", choices = { { message = { content = "looks fine" } } } }
      local res, err = R.from_line(q, { custom_id = "1", response = { status_code = 503, body = body } }, {})
      assert.is_nil(res)
      assert.are.equal("server", err.code)
      assert.are.equal(503, err.status)
      res, err = R.from_line(q, { custom_id = "1", response = { status_code = 200, body = body },
                                  error = { code = "x", message = "both" } }, {})
      assert.is_nil(res)
      assert.are.equal("both", err.message)
      res = R.from_line(q, { custom_id = "1", response = { status_code = 200, body = body }, error = NULL }, {})
      assert.are.equal("looks fine", res.text)
      -- the reason inside response.body.error, as qwen-code saw it
      res, err = R.from_line(q, { custom_id = "1", response = { status_code = 400, body = {
        error = { code = "data_inspection_failed", message = "inappropriate" } } } }, {})
      assert.are.equal("content_filter", err.code)
      assert.are.equal("inappropriate", err.message)
    end)

    it("read failure reasons from the error file", function()
      local _, res, failures = run(requests(2, function(i, r)
        if i == 2 then r.extra = { top_p = 0.5, max_tokens = 99999 } end
      end), opts())
      assert.are.equal(1, failures)
      assert.are.equal("invalid_request", res[2].code)
      assert.truthy(res[2].message:find("max_tokens", 1, true))
      assert.truthy(res[2].batch.error_file_id)
    end)

    it("keep what an expired batch finished; the rest fail as expired", function()
      config{ lines_per_s = 3 / 86400 }
      local job, res, failures = run(requests(5), opts(), { poll_s = 3600 })
      assert.are.equal(2, failures)
      local ok, expired = 0, 0
      for i = 1, 5 do
        if res[i].text then
          ok = ok + 1
          assert.are.equal("question " .. i, report(res[i]).prompt)
        else
          expired = expired + 1
          assert.are.equal("expired", res[i].code)
          assert.are.equal("batch_expired", res[i].api_code)
          assert.is_true(res[i].retryable)
          assert.truthy(res[i].message:find("24h", 1, true))
        end
      end
      assert.are.equal(3, ok)
      assert.are.equal("expired", job:summary().status)
      -- OpenAI's way (unrun lines in the error file) reads the same
      srv:reset()
      config{ lines_per_s = 3 / 86400, expired_unrun = "error" }
      local _, res2, f2 = run(requests(5), opts(), { poll_s = 3600 })
      assert.are.equal(2, f2)
      assert.are.equal("expired", res2[4].code)
      assert.are.equal("expired", res2[5].code)
    end)

    it("keep what a cancelled batch finished; the unstarted fail as canceled", function()
      config{ lines_per_s = 1, cancel_s = 5 }
      local job = assert(qb.submit(requests(5), opts()))
      assert(job:status())
      advance(2.5)
      assert.is_true(job:cancel())
      assert.are.equal(1, calls("POST /batches/{id}/cancel"))
      assert(job:wait{ poll_s = 2 })
      local res, failures = job:results()
      assert.are.equal(3, failures)
      assert.truthy(res[1].text and res[2].text)
      for i = 3, 5 do
        assert.are.equal("canceled", res[i].code)
        assert.are.equal("batch_cancelled", res[i].api_code)
      end
      assert.are.equal("cancelled", job:summary().status)
      assert.are.equal(0, #state().files) -- output and error files cleaned too
    end)

    it("map a failed validation to the lines it names", function()
      local reqs = requests(3, function(_, r) r.model = "qwen3-vl-plus-2025-09-23" end)
      local job, res, failures = run(reqs, opts())
      assert.are.equal(3, failures)
      assert.are.equal("invalid_request", res[1].code)
      assert.are.equal("model_not_found", res[1].api_code)
      assert.truthy(res[1].message:find("^line 1: The model"))
      assert.truthy(res[2].message:find("the batch failed validation", 1, true))
      assert.are.equal("failed", job:summary().status)
    end)

    it("retry_failed submits only the failed and expired lines, and results merge", function()
      config{ lines_per_s = 3 / 86400, fail_lines = { ["1"] = { status = 503, times = 1 } } }
      local job, res, failures = run(requests(5), opts(), { poll_s = 3600 })
      assert.are.equal(3, failures) -- 1 failed, 4 and 5 expired
      local first = {}
      for i = 1, 5 do first[i] = res[i].batch.batch_id end
      config{ lines_per_s = 10 }
      assert.are.equal(3, job:retry_failed())
      local resent = uploaded_lines(2)
      local ids = {}
      for _, l in ipairs(resent) do ids[#ids + 1] = l.custom_id end
      table.sort(ids)
      assert.are.same({ "1", "4", "5" }, ids)
      -- the very same lines
      local orig = uploaded_lines(1)
      assert.are.same(orig[1], resent[1])
      assert(job:wait{ poll_s = 60 })
      local res2, f2 = job:results()
      assert.are.equal(0, f2)
      for i = 1, 5 do assert.are.equal("question " .. i, report(res2[i]).prompt) end
      assert.are.equal(2, res2[1].batch.round)
      assert.are.equal(1, res2[2].batch.round)
      assert.are_not.equal(first[1], res2[1].batch.batch_id)
      assert.are.equal(first[2], res2[2].batch.batch_id)
      assert.are.equal(0, job:retry_failed())
      assert.are.equal(2, state().batches_created)
    end)

    it("never carry the key, nor does anything in the job folder", function()
      config{ failed_lines_to = "output", fail_lines = { ["2"] = { status = 500 } } }
      local o = opts()
      local job, res = run(requests(2), o)
      for _, r in ipairs(res) do
        assert.is_nil(cjson.encode(r):find(srv.key, 1, true))
        assert.is_nil(tostring(r):find(srv.key, 1, true))
      end
      assert.are.equal("", find_file(srv.key))
      assert.truthy(fx.read(o.job_dir .. "/" .. job.id .. "/job.json"):find(job.id, 1, true))
    end)

    it("keep each output line as raw when asked", function()
      local job = run(requests(1), opts())
      local res = job:results{ raw = true }
      assert.are.equal("1", cjson.decode(res[1].raw).custom_id)
      assert.is_nil(job:results()[1].raw)
    end)
  end)

  describe("clean-up", function()
    it("deletes the input, output and error files once the results are on disk", function()
      local _, res = run(requests(3, function(i, r) if i == 3 then r.extra = { max_tokens = 99999 } end end), opts())
      assert.truthy(res[3].code)
      assert.are.equal(0, #state().files)
      assert.are.equal(3, calls("DELETE /files/{id}"))
    end)

    it("keeps them with keep_remote until job:clean()", function()
      local job = run(requests(2), opts{ keep_remote = true })
      local st = state()
      assert.are.equal(2, #st.files) -- input and output
      assert.are.equal(0, calls("DELETE /files/{id}"))
      assert.is_true(job:clean())
      assert.are.equal(0, #state().files)
    end)
  end)

  describe("resuming", function()
    local interp, cpath = fx.interp()

    local function child(code, o)
      local env = { QWENVL_SPEC_KEY = srv.key, QWENVL_SPEC_BASE = srv.base_url,
                    QWENVL_SPEC_JOBS = o.job_dir }
      local out, ok = fx.lua(interp, env, [[
        local qb = require("qwenvl.batch")
        local o = { api_key = os.getenv("QWENVL_SPEC_KEY"), base_url = os.getenv("QWENVL_SPEC_BASE"),
                    job_dir = os.getenv("QWENVL_SPEC_JOBS"), file_poll_s = 0 }
      ]] .. code, cpath)
      return out, ok
    end

    it("opens a job another process submitted and waits for it here", function()
      local o = opts()
      local out, ok = child(([[
        local reqs = {}
        for i = 1, 4 do reqs[i] = { prompt = "question " .. i, image = %q } end
        local job = assert(qb.submit(reqs, o))
        print("JOB " .. job.id)
      ]]):format(img), o)
      assert.is_true(ok, out)
      local id = out:match("JOB (%S+)")
      assert.truthy(id, out)
      local job = assert(qb.open(id, o))
      assert(job:wait{ poll_s = 60 })
      local res, failures = job:results()
      assert.are.equal(0, failures)
      for i = 1, 4 do assert.are.equal("question " .. i, report(res[i]).prompt) end
      local listed = qb.list{ job_dir = o.job_dir }
      assert.are.equal(1, #listed)
      assert.are.equal(id, listed[1].id)
      assert.are.equal("completed", listed[1].status)
      assert.is_true(listed[1].settled)
    end)

    it("after a crash between create and save, finds the batch instead of creating a second", function()
      local o = opts()
      local out = child(([[
        local real = require("qwenvl")
        -- crash right after POST /batches answered, before the job could note the id
        o.qwenvl = setmetatable({ http = function(t)
          local res, err = real.http(t)
          if t.method == "POST" and t.path == "/batches" then
            io.stdout:write("CRASH\n"); io.stdout:flush(); os.exit(9)
          end
          return res, err
        end }, { __index = real })
        local reqs = {}
        for i = 1, 2 do reqs[i] = { prompt = "question " .. i, image = %q } end
        print(qb.submit(reqs, o))
      ]]):format(img), o)
      assert.truthy(out:find("CRASH", 1, true), out)
      assert.are.equal(1, state().batches_created)
      local listed = qb.list{ job_dir = o.job_dir }
      assert.are.equal(1, #listed)
      assert.are.equal("pending", listed[1].status)
      local job = assert(qb.open(listed[1].id, o))
      assert(job:wait{ poll_s = 60 })
      local res, failures = job:results()
      assert.are.equal(0, failures)
      assert.are.equal("question 2", report(res[2]).prompt)
      assert.are.equal(1, state().batches_created)
      assert.are.equal(1, calls("POST /batches"))
    end)

    it("says clearly when there is no such job", function()
      local job, err = qb.open("job-nope", opts())
      assert.is_nil(job)
      assert.are.equal("not_found", err.code)
      job, err = qb.open("../etc", opts())
      assert.is_nil(job)
      assert.are.equal("invalid_request", err.code)
    end)
  end)

  describe("command line (qwenvl.batch.cli)", function()
    local bcli = require("qwenvl.batch.cli")
    local imgdir

    local buffer = fx.buffer

    local function cli(args, jobdir)
      local out, err = buffer(), buffer()
      local full = {}
      for _, a in ipairs(args) do full[#full + 1] = a end
      for _, a in ipairs{ "--base-url", srv.base_url, "--job-dir", jobdir } do full[#full + 1] = a end
      local code = bcli.main(full, { stdout = out, stderr = err },
        { opts = { api_key = srv.key, sleep = vsleep, clock = vclock, file_poll_s = 0 } })
      return code, out:text(), err:text()
    end

    setup(function()
      imgdir = dir .. "/imgs"
      fx.sh("mkdir -p " .. fx.quote(imgdir))
      fx.png(imgdir .. "/a.png", 40, 30)
      fx.png(imgdir .. "/b.png", 50, 30)
      fx.png(imgdir .. "/c.png", 60, 30)
    end)

    it("is wired into bin/qwenvl: batch --batch-api --no-wait, job status, job cancel", function()
      local interp = fx.interp()
      local function run(args)
        return fx.sh(("cd %s && env DASHSCOPE_API_KEY=%s %s bin/qwenvl %s"):format(
          fx.quote(os.getenv("PWD") or "."), fx.quote(srv.key), interp, args))
      end
      local jd = dir .. "/bin-jobs"
      local out, ok = run(("batch %s --prompt Caption --batch-api --no-wait --quiet --base-url %s --job-dir %s")
        :format(fx.quote(imgdir), fx.quote(srv.base_url), fx.quote(jd)))
      assert.is_true(ok, out)
      local id = out:match("([^\n]+)\n?$")
      assert.truthy(id and id:match("^job%-"), out)
      local st, ok2 = run(("job status %s --base-url %s --job-dir %s"):format(id, fx.quote(srv.base_url), fx.quote(jd)))
      assert.is_true(ok2, st)
      assert.truthy(st:find(id, 1, true))
      local _, ok3 = run(("job cancel %s --base-url %s --job-dir %s"):format(id, fx.quote(srv.base_url), fx.quote(jd)))
      assert.is_true(ok3)
      local help = run("--help")
      assert.truthy(help:find("job ", 1, true))
      local bhelp = run("batch --batch-api --help")
      assert.truthy(bhelp:find("completion-window", 1, true))
    end)

    it("batch --no-wait prints the job id last; job status, list, wait finish it with records", function()
      local jd, ev = dir .. "/cli-jobs1", dir .. "/cli-ev1"
      local code, out, err = cli({ "batch", imgdir, "--prompt", "Caption", "--batch-api", "--no-wait",
                                   "--metadata", "team=art" }, jd)
      assert.are.equal(0, code, err)
      local id = out:match("([^\n]+)\n?$")
      assert.truthy(id:match("^job%-"), out)
      assert.truthy(err:find(id, 1, true))
      assert.are.equal("art", state().batches[1].metadata.team)

      code, out = cli({ "job", "status", id }, jd)
      assert.are.equal(0, code)
      assert.truthy(out:find("^" .. id:gsub("%-", "%%-") .. "\t"))

      code, out = cli({ "job", "list" }, jd)
      assert.are.equal(0, code)
      assert.truthy(out:find(id, 1, true))

      local outfile = dir .. "/cli-summary.json"
      code, out, err = cli({ "job", "wait", id, "--poll-s", "30", "--print-response", "--output", outfile,
                             "--evidence-dir", ev }, jd)
      assert.are.equal(0, code, err)
      local summary = cjson.decode(out)
      assert.are.same(summary, cjson.decode(fx.read(outfile)))
      assert.are.equal(3, summary.total)
      assert.are.equal(3, summary.ok)
      assert.are.equal(id, summary.job_id)
      assert.are.equal(imgdir .. "/b.png", summary.items[2].image)
      assert.truthy(summary.items[2].text:find("Caption", 1, true))
      assert.truthy(summary.items[2].batch_id:match("^batch_"))
      assert.are.equal("2", summary.items[2].custom_id)
      -- per-image evidence: as live, plus the batch id, custom_id and file ids
      local rec = cjson.decode(fx.read(summary.items[2].record))
      assert.are.equal("batch-api-item", rec.kind)
      assert.are.equal("ok", rec.status)
      assert.are.equal(summary.items[2].batch_id, rec.batch.batch_id)
      assert.are.equal("2", rec.batch.custom_id)
      assert.truthy(rec.batch.input_file_id:match("^file%-batch%-"))
      assert.truthy(rec.batch.output_file_id:match("^file%-batch_output%-"))
      assert.are.equal("24h", rec.batch.completion_window)
      assert.are.equal("Caption", rec.prompt)
      assert.are.equal(imgdir .. "/b.png", rec.image_refs[1])
      assert.are.equal(50, rec.images[1].width)
      assert.truthy(rec.request.messages[1].content[1].image_url.url:find("<omitted", 1, true))
      assert.are.equal("", find_file(srv.key))
    end)

    it("waits by default, exits with the first failure's code, and job retry fixes it", function()
      local jd = dir .. "/cli-jobs2"
      config{ fail_lines = { ["3"] = { status = 503, times = 1 } } }
      local code, out, err = cli({ "batch", imgdir, "--prompt", "Caption", "--batch-api", "--no-evidence" }, jd)
      assert.are.equal(6, code, err)
      assert.truthy(out:find("ok\t" .. imgdir .. "/a.png", 1, true))
      assert.truthy(out:find("error:server\t" .. imgdir .. "/c.png", 1, true))
      assert.truthy(err:find("1 failed of 3", 1, true))
      local id = err:match("job (job%-%S+):")
      code, out, err = cli({ "job", "retry", id, "--no-evidence" }, jd)
      assert.are.equal(0, code, err)
      assert.truthy(err:find("1 request submitted again", 1, true))
      assert.truthy(out:find("ok\t" .. imgdir .. "/c.png", 1, true))
      code, out = cli({ "job", "results", id, "--no-evidence", "--quiet" }, jd)
      assert.are.equal(0, code)
      assert.are.equal("", out)
    end)

    it("cancels a running job and reports what finished", function()
      local jd = dir .. "/cli-jobs3"
      config{ lines_per_s = 1 }
      local code, out = cli({ "batch", imgdir, "--prompt", "Caption", "--batch-api", "--no-wait" }, jd)
      assert.are.equal(0, code)
      local id = out:match("(%S+)%s*$")
      advance(1.5)
      local rc, _, rerr = cli({ "job", "results", id }, jd)
      assert.are.equal(6, rc)
      assert.truthy(rerr:find("still", 1, true))
      code = cli({ "job", "cancel", id }, jd)
      assert.are.equal(0, code)
      code, out = cli({ "job", "wait", id, "--no-evidence" }, jd)
      assert.are.equal(6, code)
      assert.truthy(out:find("ok\t", 1, true))
      assert.truthy(out:find("error:canceled\t", 1, true))
    end)

    it("refuses what does not apply", function()
      local jd = dir .. "/cli-jobs4"
      assert.are.equal(2, (cli({ "batch", imgdir, "--prompt", "x" }, jd)))
      assert.are.equal(2, (cli({ "batch", imgdir, "--prompt", "x", "--batch-api", "--concurrency", "4" }, jd)))
      assert.are.equal(2, (cli({ "batch", imgdir, "--batch-api" }, jd)))
      assert.are.equal(2, (cli({ "job", "frobnicate", "x" }, jd)))
      assert.are.equal(2, (cli({ "job", "wait" }, jd)))
      local code, _, err = cli({ "job", "wait", "job-missing" }, jd)
      assert.are.equal(6, code)
      assert.truthy(err:find("not found", 1, true))
      code, _, err = cli({ "batch", imgdir, "--prompt", "x", "--batch-api", "--completion-window", "2h" }, jd)
      assert.are.equal(3, code)
      assert.truthy(err:find("completion_window", 1, true))
      assert.are.equal(0, calls("POST /files"))
      local out
      code, out = cli({ "job", "--help" }, jd)
      assert.are.equal(0, code)
      assert.truthy(out:find("qwenvl job list", 1, true))
    end)
  end)

  it("keeps NULL-free state (cjson.null never reaches results)", function()
    local _, res = run(requests(1), opts())
    for _, v in pairs(res[1]) do assert.are_not.equal(NULL, v) end
  end)
end)
