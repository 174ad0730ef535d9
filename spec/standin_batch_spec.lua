-- The stand-in's Files and Batch APIs (spec/support/standin_batch.py), over
-- plain HTTP (luasocket), so these checks do not depend on qwenvl.batch:
-- the recorded quirks of notes/batch-api.md section 16, the lifecycle on a
-- clock the tests move, and the controls.
local standin = require("spec.support.standin")
local cjson = require("cjson")

local NULL = cjson.null

describe("stand-in Batch and Files APIs", function()
  local srv

  setup(function() srv = standin.start{} end)
  teardown(function() if srv then srv:stop() end end)
  before_each(function() srv:reset() end)

  local function auth(extra)
    local h = { authorization = "Bearer " .. srv.key }
    for k, v in pairs(extra or {}) do h[k] = v end
    return h
  end

  local function call(method, path, body, headers)
    local status, text, hdrs = standin.http(method, srv.base_url .. path, body, headers or auth())
    local ok, obj = pcall(cjson.decode, text)
    return status, ok and obj or text, hdrs, text
  end

  local function json_call(method, path, t)
    return call(method, path, t and cjson.encode(t) or nil,
      auth(t and { ["content-type"] = "application/json" } or nil))
  end

  local function control(path, t) return srv:batch_control(path, t) end

  local function config(t) return control("config", t) end
  local function advance(s) return control("clock", { advance_s = s }) end

  local function state() return srv:batch_state() end

  local function upload(content, purpose, filename, headers)
    local boundary = "qwenvlspec" .. tostring(math.random(1, 1e9))
    local parts = {}
    if purpose then
      parts[#parts + 1] = "--" .. boundary .. '\r\nContent-Disposition: form-data; name="purpose"\r\n\r\n'
        .. purpose .. "\r\n"
    end
    if content then
      parts[#parts + 1] = "--" .. boundary .. '\r\nContent-Disposition: form-data; name="file"; filename="'
        .. (filename or "in.jsonl") .. '"\r\nContent-Type: application/octet-stream\r\n\r\n'
        .. content .. "\r\n"
    end
    parts[#parts + 1] = "--" .. boundary .. "--\r\n"
    return call("POST", "/files", table.concat(parts),
      headers or auth{ ["content-type"] = "multipart/form-data; boundary=" .. boundary })
  end

  local function line(cid, body, url)
    return cjson.encode{ custom_id = cid, method = "POST", url = url or "/v1/chat/completions",
                         body = body }
  end

  local function chat_body(text, extra)
    local b = { model = "qwen3-vl-plus", messages = { { role = "user", content = text } } }
    for k, v in pairs(extra or {}) do b[k] = v end
    return b
  end

  local function jsonl(n, mk)
    local t = {}
    for i = 1, n do t[i] = mk and mk(i) or line(tostring(i), chat_body("question " .. i)) end
    return table.concat(t, "\n") .. "\n"
  end

  local function create(file_id, extra)
    local t = { input_file_id = file_id, endpoint = "/v1/chat/completions", completion_window = "24h" }
    for k, v in pairs(extra or {}) do t[k] = v end
    return json_call("POST", "/batches", t)
  end

  local function submit(content, extra)
    local s, f = upload(content, "batch")
    assert.are.equal(200, s)
    local cs, b = create(f.id, extra)
    assert.are.equal(200, cs, cjson.encode(b))
    return b, f
  end

  local function get(id)
    local s, b = call("GET", "/batches/" .. id)
    assert.are.equal(200, s)
    return b
  end

  local function content(file_id)
    local s, _, hdrs, text = call("GET", "/files/" .. file_id .. "/content")
    assert.are.equal(200, s)
    local out = {}
    for l in text:gmatch("[^\n]+") do out[#out + 1] = cjson.decode(l) end
    return out, hdrs, text
  end

  describe("files", function()
    it("uploads multipart and answers the recorded file object", function()
      local s, f = upload(jsonl(2), "batch", "my.jsonl")
      assert.are.equal(200, s)
      assert.truthy(f.id:match("^file%-batch%-%x+$"))
      assert.are.equal(24, #f.id:match("^file%-batch%-(%x+)$"))
      assert.are.equal("file", f.object)
      assert.are.equal(#jsonl(2), f.bytes)
      assert.are.equal("my.jsonl", f.filename)
      assert.are.equal("batch", f.purpose)
      assert.are.equal("processed", f.status)
      assert.is_number(f.created_at)
      assert.is_nil(f.status_details) -- recorded bodies omit it
      local gs, g = call("GET", "/files/" .. f.id)
      assert.are.equal(200, gs)
      assert.are.same(f, g)
      local up = state().uploads[1]
      assert.are.equal(f.id, up.file_id)
      assert.are.equal(jsonl(2), up.content)
      assert.are.equal(2, up.lines)
    end)

    it("refuses a missing file, a bad purpose, no auth", function()
      local s, b = upload(nil, "batch")
      assert.are.equal(400, s)
      assert.are.equal("file", b.error.param)
      s, b = upload(jsonl(1), "vision")
      assert.are.equal(400, s)
      assert.are.equal("purpose", b.error.param)
      s = upload(jsonl(1), "batch", nil, { ["content-type"] = "multipart/form-data; boundary=x" })
      assert.are.equal(401, s)
      assert.are.equal(0, #state().files)
    end)

    it("lists files without first_id/last_id, with limit bounds", function()
      local _, a = upload(jsonl(1), "batch")
      local _, b = upload(jsonl(1), "file-extract")
      local s, list = call("GET", "/files")
      assert.are.equal(200, s)
      assert.are.equal("list", list.object)
      assert.are.equal(2, #list.data)
      assert.is_false(list.has_more)
      assert.is_nil(list.first_id)
      assert.is_nil(list.last_id)
      s, list = call("GET", "/files?purpose=batch")
      assert.are.equal(1, #list.data)
      assert.are.equal(a.id, list.data[1].id)
      s, list = call("GET", "/files?limit=1")
      assert.are.equal(1, #list.data)
      assert.is_true(list.has_more)
      local s2, rest = call("GET", "/files?limit=1&after=" .. list.data[1].id)
      assert.are.equal(200, s2)
      assert.are.equal(1, #rest.data)
      assert.are_not.equal(list.data[1].id, rest.data[1].id)
      assert.are.equal(400, (call("GET", "/files?limit=0")))
      assert.are.equal(400, (call("GET", "/files?limit=2001")))
      assert.are.equal(200, (call("GET", "/files?limit=2000")))
      assert.truthy(b.id)
    end)

    it("downloads only batch output files, without Content-Type; deletes", function()
      local b, f = submit(jsonl(2))
      assert.are.equal(400, (call("GET", "/files/" .. f.id .. "/content")))
      advance(60)
      b = get(b.id)
      assert.are.equal("completed", b.status)
      local lines, hdrs = content(b.output_file_id)
      assert.are.equal(2, #lines)
      assert.is_nil(hdrs["content-type"])
      local s, d = call("DELETE", "/files/" .. b.output_file_id)
      assert.are.equal(200, s)
      assert.are.same({ id = b.output_file_id, object = "file", deleted = true }, d)
      assert.are.equal(404, (call("DELETE", "/files/" .. b.output_file_id)))
      assert.are.equal(404, (call("GET", "/files/" .. b.output_file_id)))
    end)

    it("enforces the file-count quota", function()
      config{ max_files = 1 }
      assert.are.equal(200, (upload(jsonl(1), "batch")))
      local s, b = upload(jsonl(1), "batch")
      assert.are.equal(400, s)
      assert.are.equal("Upload file number exceed limit.", b.error.message)
    end)

    it("reads 'processing' for the first GETs when asked", function()
      config{ processing_gets = 2 }
      local _, f = upload(jsonl(1), "batch")
      assert.are.equal("processing", f.status)
      assert.are.equal("processing", select(2, call("GET", "/files/" .. f.id)).status)
      assert.are.equal("processing", select(2, call("GET", "/files/" .. f.id)).status)
      assert.are.equal("processed", select(2, call("GET", "/files/" .. f.id)).status)
    end)
  end)

  describe("batches", function()
    it("create always answers validating with null timestamps, even for a bad file", function()
      local bad = line("1", { model = "batch-test-model", messages = { { role = "user", content = "x" } } })
        .. "\n" .. line("2", { model = "batch-test-model", messages = { { role = "user", content = "y" } } }) .. "\n"
      local b = submit(bad, { metadata = { ds_name = "n", mine = string.rep("v", 300) } })
      assert.are.equal("validating", b.status)
      assert.truthy(b.id:match("^batch_%x+%-%x+%-4%x+%-%x+%-%x+$"))
      for _, k in ipairs{ "in_progress_at", "expires_at", "finalizing_at", "completed_at", "failed_at",
                          "expired_at", "cancelling_at", "cancelled_at", "output_file_id",
                          "error_file_id", "errors" } do
        assert.are.equal(NULL, b[k], k)
      end
      assert.are.same({ total = 0, completed = 0, failed = 0 }, b.request_counts)
      assert.are.same({ ds_name = "n", mine = string.rep("v", 300) }, b.metadata)
      -- validation: one error per line, 1-based, failed_at == created_at
      local g = get(b.id)
      assert.are.equal("failed", g.status)
      assert.are.equal(g.created_at, g.failed_at)
      assert.are.same({ total = 0, completed = 0, failed = 0 }, g.request_counts)
      assert.are.equal("list", g.errors.object)
      assert.are.equal(2, #g.errors.data)
      for i, e in ipairs(g.errors.data) do
        assert.are.equal("mismatched_test_url", e.code)
        assert.are.equal("url", e.param)
        assert.are.equal(i, e.line)
        assert.are.equal("The provided URL '/v1/chat/completions' does not match the test model "
          .. "'batch-test-model'.", e.message)
      end
      assert.are.equal(NULL, g.output_file_id)
    end)

    local function failure_codes(content_text, extra)
      local g = get(submit(content_text, extra).id)
      assert.are.equal("failed", g.status)
      local codes = {}
      for _, e in ipairs(g.errors.data) do
        codes[#codes + 1] = e.code .. "@" .. (e.line ~= NULL and ("%d"):format(e.line) or "nil")
      end
      return codes, g
    end

    it("validates each line: url, custom_id, model, method, size", function()
      local long = string.rep("c", 257)
      local text = table.concat({
        line("a", chat_body("1")),
        line("a", chat_body("2")),                                   -- duplicate
        line(long, chat_body("3")),                                  -- > 256
        line("d", chat_body("4"), "/v1/chat/completion"),            -- unknown url
        line("e", chat_body("5", { model = "qwen3-vl-flash" })),     -- another model
        cjson.encode{ custom_id = "f", method = "GET", url = "/v1/chat/completions", body = chat_body("6") },
        "not json",
        line("h", chat_body("8"), "/v1/embeddings"),                 -- not the endpoint
      }, "\n") .. "\n"
      local codes, g = failure_codes(text)
      assert.are.same({ "duplicate_custom_id@2", "invalid_custom_id@3", "url_not_found@4",
                        "mismatched_model@5", "invalid_method@6", "invalid_json_line@7",
                        "mismatched_url@8" }, codes)
      assert.are.equal("The provided url '/v1/chat/completion' is not supported by the Batch API.",
        g.errors.data[3].message)
      assert.are.equal("body.model", g.errors.data[4].param)
    end)

    it("refuses unsupported models, mixed thinking, too many lines or bytes", function()
      assert.are.same({ "model_not_found@1" },
        (failure_codes(jsonl(1, function(i) return line(tostring(i), chat_body("x", { model = "qwen3-vl-plus-2025-09-23" })) end))))
      assert.are.same({ "mismatched_thinking@2" }, (failure_codes(jsonl(2, function(i)
        return line(tostring(i), chat_body("x", { enable_thinking = i == 1 }))
      end))))
      config{ max_lines = 3 }
      assert.are.same({ "too_many_lines@nil" }, (failure_codes(jsonl(4))))
      config{ max_lines = 50000, max_line_bytes = 200 }
      assert.are.same({ "line_too_large@2" }, (failure_codes(jsonl(2, function(i)
        return line(tostring(i), chat_body(string.rep("x", i == 2 and 300 or 10)))
      end))))
      config{ max_line_bytes = 6 * 1024 * 1024, test_max_lines = 2 }
      assert.are.same({ "too_many_lines@nil" }, (failure_codes(jsonl(3, function(i)
        return line(tostring(i), { model = "batch-test-model", messages = {} }, "/v1/chat/ds-test")
      end), { endpoint = "/v1/chat/ds-test" })))
    end)

    it("refuses bad create requests at once", function()
      local _, f = upload(jsonl(1), "batch")
      for _, w in ipairs{ "12h", "337h", "15d", "1.5d", "24", "" } do
        local s, b = create(f.id, { completion_window = w })
        assert.are.equal(400, s, w)
        assert.are.equal("completion_window", b.error.param, w)
      end
      for _, w in ipairs{ "24h", "48h", "14d", "336h" } do
        assert.are.equal(200, (create(f.id, { completion_window = w })), w)
      end
      assert.are.equal(400, (create(f.id, { endpoint = "/v1/responses" })))
      assert.are.equal(404, (create("file-batch-000000000000000000000000")))
      local s = call("POST", "/batches", cjson.encode{ input_file_id = f.id, endpoint = "/v1/chat/completions",
        completion_window = "24h" }, { ["content-type"] = "application/json" })
      assert.are.equal(401, s)
    end)

    it("runs lines through the live answer generator, in progress then completed", function()
      config{ lines_per_s = 1, finalize_s = 5 }
      local b = submit(jsonl(4))
      local g = get(b.id)
      assert.are.equal("in_progress", g.status)
      assert.are.equal(g.created_at, g.in_progress_at)
      assert.are.equal(4, g.request_counts.total)
      assert.are.equal(0, g.request_counts.completed)
      advance(2.5)
      assert.are.equal(2, get(b.id).request_counts.completed)
      advance(2)
      g = get(b.id)
      assert.are.equal("finalizing", g.status)
      advance(5)
      g = get(b.id)
      assert.are.equal("completed", g.status)
      assert.are.equal(g.finalizing_at, g.completed_at)
      assert.are.equal(NULL, g.expires_at)
      assert.are.equal(NULL, g.error_file_id)
      assert.are.same({ total = 4, completed = 4, failed = 0 }, g.request_counts)
      assert.truthy(g.output_file_id:match("^file%-batch_output%-%x+$"))
      local lines = content(g.output_file_id)
      local order, by = {}, {}
      for _, l in ipairs(lines) do
        order[#order + 1] = l.custom_id
        by[l.custom_id] = l
        assert.are.equal(l.id, l.response.request_id)
        assert.truthy(l.id:match("^%x+%-%x+%-4%x+%-%x+%-%x+$"))
        assert.are.equal("chatcmpl-" .. l.id, l.response.body.id)
        assert.are.equal(200, l.response.status_code)
        assert.are.equal(NULL, l.error)
        assert.are.equal("assistant", l.response.body.choices[1].message.role)
        assert.is_nil(l.response.body.choices[1].message.reasoning_content)
      end
      for i = 1, 4 do
        local report = cjson.decode((by[tostring(i)].response.body.choices[1].message.content:gsub("^STANDIN ", "")))
        assert.are.equal("question " .. i, report.prompt)
      end
      assert.are_not.same({ "1", "2", "3", "4" }, order) -- shuffled: match on custom_id
    end)

    it("holds request_counts during a stall", function()
      config{ lines_per_s = 1, stall_after = 1, stall_s = 100 }
      local b = submit(jsonl(3))
      get(b.id)
      advance(5)
      assert.are.equal(1, get(b.id).request_counts.completed)
      advance(90)
      assert.are.equal(1, get(b.id).request_counts.completed)
      advance(20)
      assert.are.equal("completed", get(b.id).status)
    end)

    it("answers batch-test-model on /v1/chat/ds-test with the fixed result", function()
      local b = submit(jsonl(2, function(i)
        return line(tostring(i), { model = "batch-test-model", messages = { { role = "user", content = "x" } } },
          "/v1/chat/ds-test")
      end), { endpoint = "/v1/chat/ds-test" })
      advance(10)
      local g = get(b.id)
      assert.are.equal("completed", g.status)
      for _, l in ipairs(content(g.output_file_id)) do
        local body = l.response.body
        assert.are.equal("This is a test result.", body.choices[1].message.content)
        assert.are.same({ completion_tokens = 6, prompt_tokens = 20, total_tokens = 26 }, body.usage)
        assert.are.equal("batch-test-model", body.model)
      end
    end)

    it("puts failed lines in the error file, or (the quirk) in the output file with failed = 0", function()
      local text = jsonl(3, function(i)
        return line(tostring(i), chat_body("q" .. i, i == 2 and { temperature = 5 } or nil))
      end)
      local g = get(submit(text).id)
      advance(10)
      g = get(g.id)
      assert.are.same({ total = 3, completed = 2, failed = 1 }, g.request_counts)
      local errs = content(g.error_file_id)
      assert.are.equal(1, #errs)
      assert.are.equal("2", errs[1].custom_id)
      assert.are.equal(NULL, errs[1].response)
      assert.are.equal("invalid_parameter_error", errs[1].error.code)
      assert.truthy(errs[1].error.message:find("Temperature", 1, true))
      assert.truthy(g.error_file_id:match("^file%-batch_output%-")) -- as recorded

      config{ failed_lines_to = "output", fail_lines = { ["3"] = { status = 500, times = 1 } } }
      g = get(submit(text).id)
      advance(10)
      g = get(g.id)
      assert.are.same({ total = 3, completed = 3, failed = 0 }, g.request_counts)
      assert.are.equal(NULL, g.error_file_id)
      local codes = {}
      for _, l in ipairs(content(g.output_file_id)) do codes[l.custom_id] = l.response.status_code end
      assert.are.same({ ["1"] = 200, ["2"] = 400, ["3"] = 500 }, codes)
      -- "times" is spent: the same line passes next time
      g = get(submit(text).id)
      advance(10)
      codes = {}
      for _, l in ipairs(content(get(g.id).output_file_id)) do codes[l.custom_id] = l.response.status_code end
      assert.are.equal(200, codes["3"])
    end)

    it("fails a line that asks to stream", function()
      local g = get(submit(jsonl(1, function() return line("1", chat_body("x", { stream = true })) end)).id)
      advance(10)
      g = get(g.id)
      local errs = content(g.error_file_id)
      assert.are.equal("1", errs[1].custom_id)
      assert.truthy(errs[1].error.message:find("stream", 1, true))
    end)

    it("cancels: cancelling (cancelling_at null), then cancelled with partial output", function()
      config{ lines_per_s = 1, cancel_s = 30 }
      local b = submit(jsonl(5))
      get(b.id)
      advance(2.5)
      local s, c = call("POST", "/batches/" .. b.id .. "/cancel")
      assert.are.equal(200, s)
      assert.are.equal("cancelling", c.status)
      assert.are.equal(NULL, c.cancelling_at)
      advance(10)
      assert.are.equal("cancelling", get(b.id).status)
      advance(30)
      local g = get(b.id)
      assert.are.equal("cancelled", g.status)
      assert.are.equal(g.cancelling_at, g.cancelled_at)
      assert.are.same({ total = 5, completed = 2, failed = 3 }, g.request_counts)
      local done = {}
      for _, l in ipairs(content(g.output_file_id)) do done[#done + 1] = l.custom_id end
      table.sort(done)
      assert.are.same({ "1", "2" }, done)
      local unstarted = {}
      for _, l in ipairs(content(g.error_file_id)) do
        unstarted[#unstarted + 1] = l.custom_id
        assert.are.equal("batch_cancelled", l.error.code)
      end
      table.sort(unstarted)
      assert.are.same({ "3", "4", "5" }, unstarted)
      local s2, e = call("POST", "/batches/" .. b.id .. "/cancel")
      assert.are.equal(400, s2)
      assert.truthy(e.error.message:find("cancelled", 1, true))
    end)

    it("expires past the completion window: finished lines kept, the rest dropped or in the error file", function()
      config{ lines_per_s = 3 / 86400 } -- three lines per day
      local b = submit(jsonl(5))
      get(b.id)
      advance(86400 + 60)
      local g = get(b.id)
      assert.are.equal("expired", g.status)
      assert.are.equal(g.created_at + 86400, g.expired_at)
      assert.are.same({ total = 5, completed = 3, failed = 0 }, g.request_counts)
      assert.are.equal(3, #content(g.output_file_id))
      assert.are.equal(NULL, g.error_file_id)

      config{ expired_unrun = "error" }
      b = submit(jsonl(5), { completion_window = "2d" })
      get(b.id)
      advance(86400 + 60)
      assert.are.equal("in_progress", get(b.id).status)
      advance(86400)
      g = get(b.id)
      assert.are.equal("completed", g.status) -- two days hold six lines
      assert.are.same({ total = 5, completed = 5, failed = 0 }, g.request_counts)
      b = submit(jsonl(8), { completion_window = "2d" })
      get(b.id)
      advance(2 * 86400 + 1)
      g = get(b.id)
      assert.are.equal("expired", g.status)
      assert.are.same({ total = 8, completed = 6, failed = 2 }, g.request_counts)
      for _, l in ipairs(content(g.error_file_id)) do assert.are.equal("batch_expired", l.error.code) end
    end)

    it("lists with data null when nothing matches, and filters", function()
      local s, list = call("GET", "/batches")
      assert.are.equal(200, s)
      assert.are.equal(NULL, list.data)
      assert.are.equal(NULL, list.first_id)
      assert.are.equal(NULL, list.last_id)
      assert.is_false(list.has_more)
      local a, fa = submit(jsonl(1), { metadata = { ds_name = "alpha run" } })
      local b = submit(jsonl(1))
      s, list = call("GET", "/batches?input_file_ids=" .. fa.id)
      assert.are.equal(1, #list.data)
      assert.are.equal(a.id, list.data[1].id)
      assert.are.equal(a.id, list.first_id)
      s, list = call("GET", "/batches?input_file_ids=file-batch-nope," .. fa.id)
      assert.are.equal(1, #list.data)
      s, list = call("GET", "/batches?ds_name=alpha")
      assert.are.equal(a.id, list.data[1].id)
      assert.are.equal(1, #list.data)
      s, list = call("GET", "/batches?limit=1")
      assert.are.equal(1, #list.data)
      assert.is_true(list.has_more)
      s, list = call("GET", "/batches?status=in_progress,completed")
      assert.are.equal(2, #list.data)
      s, list = call("GET", "/batches?status=cancelled")
      assert.are.equal(NULL, list.data)
      assert.are.equal(400, (call("GET", "/batches?limit=101")))
      local many = {}
      for i = 1, 21 do many[i] = "file-batch-" .. i end
      assert.are.equal(400, (call("GET", "/batches?input_file_ids=" .. table.concat(many, ","))))
      assert.truthy(b.id)
    end)

    it("creates and then drops the connection, or answers 500, when told to", function()
      config{ create_faults = { "reset", "500_after_create", "500" } }
      local _, f = upload(jsonl(1), "batch")
      local ok = pcall(create, f.id)
      assert.is_false(ok) -- the connection was reset: the client cannot know
      assert.are.equal(1, state().batches_created)
      assert.are.equal(500, (create(f.id)))
      assert.are.equal(2, state().batches_created)
      assert.are.equal(500, (create(f.id)))
      assert.are.equal(2, state().batches_created)
      local _, list = call("GET", "/batches?input_file_ids=" .. f.id)
      assert.are.equal(2, #list.data)
    end)

    it("404s an unknown batch", function()
      local s, b = call("GET", "/batches/batch_00000000-0000-4000-8000-000000000000")
      assert.are.equal(404, s)
      assert.are.equal("not_found", b.error.code)
    end)
  end)

  describe("controls", function()
    it("refuses unknown settings and restores everything on reset", function()
      local s, b = srv:post("/_standin/batch/config", cjson.encode{ lines_per_sec = 3 })
      assert.are.equal(400, s)
      assert.truthy(b:find("lines_per_sec", 1, true))
      config{ lines_per_s = 3 }
      upload(jsonl(1), "batch")
      srv:reset()
      local st = state()
      assert.are.equal(0, #st.files)
      assert.are.equal(0, #st.uploads)
      local _, c = srv:get("/_standin/batch/config")
      assert.are.equal(10, cjson.decode(c).lines_per_s)
    end)

    it("moves the clock by speed and by jumps", function()
      local c0 = control("clock")
      assert.are.equal(1, c0.speed)
      local c1 = control("clock", { advance_s = 3600 })
      assert.is_true(c1.now - c0.now >= 3600)
      local c2 = control("clock", { speed = 10000 })
      assert.are.equal(10000, c2.speed)
      require("socket").sleep(0.05)
      assert.is_true(control("clock").now - c2.now >= 400)
    end)

    it("takes its speed from STANDIN_BATCH_SPEED", function()
      local p = io.popen("STANDIN_BATCH_SPEED=3600 exec python3 spec/support/standin.py --port 0 2>/dev/null")
      local first = p:read("*l")
      local port, pid = first:match("^PORT (%d+) PID (%d+)")
      assert.truthy(port, first)
      local s, b = standin.http("GET", "http://127.0.0.1:" .. port .. "/_standin/batch/clock")
      os.execute("kill " .. pid)
      p:close()
      assert.are.equal(200, s)
      assert.are.equal(3600, cjson.decode(b).speed)
    end)

    it("records every call in the request log, the key redacted", function()
      local _, f = upload(jsonl(1), "batch", "x.jsonl")
      create(f.id)
      local recs = srv:requests()
      local up, cr
      for _, r in ipairs(recs) do
        if r.route == "POST /files" then up = r elseif r.route == "POST /batches" then cr = r end
      end
      assert.are.equal("batch", up.form.purpose)
      assert.are.equal("x.jsonl", up.form.file.filename)
      assert.are.equal(f.bytes, up.form.file.bytes)
      assert.are.equal("Bearer <redacted>", up.headers.authorization)
      assert.are.equal(f.id, cr.body.input_file_id)
      assert.are.equal(1, state().calls["POST /batches"])
    end)
  end)
end)
