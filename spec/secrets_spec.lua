-- Secrets: a recognizable fake key goes through every path that can print
-- or save something (error tables and tostring(err) for every error class,
-- results, config, prepare, handles, the CLI and its evidence records) and
-- must appear nowhere. A redirect to another host is not followed, so the
-- key never travels there.
local standin = require("spec.support.standin")
local fx = require("spec.support.fixtures")
local qwenvl = require("qwenvl")
local socket = require("socket")

local KEY = ("sk-LEAKCHECK-%d%06d"):format(os.time(), math.random(0, 999999))
local LUA = type(jit) == "table" and "luajit" or ("lua" .. _VERSION:match("(%d+%.%d+)"))
local q = fx.quote

-- Every string reachable from v (keys, values, tostring of tables with a
-- __tostring) must not contain KEY. Returns the path of the first hit.
local function find_key(v, path, seen)
  path, seen = path or "value", seen or {}
  local t = type(v)
  if t == "string" then return v:find(KEY, 1, true) and path or nil end
  if t == "number" or t == "boolean" or t == "nil" then return nil end
  if t == "table" or t == "userdata" then
    if seen[v] then return nil end
    seen[v] = true
    local mt = getmetatable(v)
    if type(mt) == "table" and mt.__tostring then
      local s = tostring(v)
      if s:find(KEY, 1, true) then return "tostring(" .. path .. ")" end
    end
    if t == "table" then
      for k, x in pairs(v) do
        local hit = find_key(k, path .. "[key]", seen) or find_key(x, path .. "." .. tostring(k), seen)
        if hit then return hit end
      end
    end
  end
  return nil
end

local function assert_clean(v, what)
  local hit = find_key(v, what)
  assert.is_nil(hit, "the key leaked in " .. tostring(hit))
end

describe("secrets", function()
  local srv, dir, png, echo, echo_pid, echo_url

  setup(function()
    srv = standin.start {}               -- its key is not KEY: KEY gets 401
    dir = fx.tmpdir()
    png = fx.png(dir .. "/a.png", 16, 16)
    local p = assert(io.popen("sh -c 'echo $$; exec " .. LUA .. " spec/support/echo_server.lua'", "r"))
    echo_pid = p:read("*l")
    local port = (p:read("*l") or ""):match("^PORT (%d+)")
    assert(port, "echo server did not start")
    echo = p
    echo_url = "http://127.0.0.1:" .. port .. "/v1"
  end)

  teardown(function()
    if echo_pid then os.execute("kill " .. echo_pid .. " 2>/dev/null") end
    if echo then pcall(echo.close, echo) end
    if srv then srv:stop() end
    if dir then fx.rm(dir) end
  end)

  local function req(extra)
    local r = { prompt = "describe", image = png, api_key = KEY, base_url = srv.base_url,
      retry_backoff_s = 0.02, max_retries = 1, timeout_s = 10 }
    for k, v in pairs(extra or {}) do r[k] = v end
    return r
  end

  -- run through chat and through a handle (tostring of the handle too)
  local function both(r)
    local res, err = qwenvl.chat(r)
    assert_clean(res, "chat result")
    assert_clean(err, "chat err")
    if err then assert.is_nil(tostring(err):find(KEY, 1, true)) end
    local h, herr = qwenvl.start(r)
    assert_clean(herr, "start err")
    if h then
      assert.is_nil(tostring(h):find(KEY, 1, true))
      local res2, err2 = h:wait()
      assert_clean(res2, "handle result")
      assert_clean(err2, "handle err")
      assert.is_nil(tostring(h):find(KEY, 1, true))
      h:close()
    end
    return res, err
  end

  describe("error classes", function()
    it("auth (401 from the stand-in)", function()
      local _, err = both(req())
      assert.equal("auth", err.code)
    end)

    it("network (connection refused)", function()
      local s = assert(socket.bind("127.0.0.1", 0))
      local _, port = s:getsockname()
      s:close()
      local _, err = both(req { base_url = "http://127.0.0.1:" .. port .. "/v1" })
      assert.equal("network", err.code)
    end)

    it("timeout", function()
      local _, err = both(req { api_key = srv.key, timeout_s = 0.3,
        model = standin.scenario_model("sec", "slowheaders=2000") })
      assert.equal("timeout", err.code)
      -- and with KEY as the key
      _, err = both(req { timeout_s = 0.3, model = standin.scenario_model("sec", "slowheaders=2000") })
      assert.is_table(err)
    end)

    it("invalid request (local, never sent)", function()
      local _, err = both(req { max_tokens = "many" })
      assert.equal("invalid_request", err.code)
      _, err = both(req { model = KEY })            -- even if the key is misplaced in the model
      assert.is_table(err)
    end)

    it("rate limited and server errors", function()
      local _, err = both(req { api_key = srv.key, model = standin.scenario_model("sec", "429") })
      assert.equal("rate_limited", err.code)
      _, err = both(req { api_key = srv.key, model = standin.scenario_model("sec", "500") })
      assert.equal("server", err.code)
    end)

    it("the key in a header-injection attempt is refused without echoing it", function()
      local _, err = both(req { api_key = KEY .. "\r\nX-Evil: 1" })
      assert.is_table(err)
      assert.equal("invalid_request", err.code)
    end)
  end)

  describe("a server that echoes the key", function()
    for _, status in ipairs({ 401, 403, 400, 429, 500 }) do
      it("is scrubbed from message, raw and tostring (HTTP " .. status .. ")", function()
        local _, err = both(req { base_url = echo_url, model = "echo-msg-" .. status, max_retries = 0 })
        assert.equal(status, err.status)
        assert.truthy(err.message:find("[redacted]", 1, true), err.message)
        assert.truthy(err.raw:find("[redacted]", 1, true))
      end)
    end

    it("is scrubbed from an HTML error page", function()
      local _, err = both(req { base_url = echo_url, model = "echo-html", max_retries = 0 })
      assert.equal(502, err.status)
    end)

    -- every string field of an error comes from the server in some case
    it("is scrubbed from api_code", function()
      local _, err = qwenvl.chat(req { base_url = echo_url, model = "echo-code", max_retries = 0 })
      assert_clean(err, "err")
    end)
    it("is scrubbed from request_id", function()
      local _, err = qwenvl.chat(req { base_url = echo_url, model = "echo-rid", max_retries = 0 })
      assert_clean(err, "err")
    end)
    it("is scrubbed from a stream error event's message", function()
      local _, err = qwenvl.chat(req { base_url = echo_url, model = "echo-stream-error", stream = true,
        max_retries = 0 })
      assert.is_table(err)
      assert_clean(err, "err")
    end)

    it("in a successful answer, the key is scrubbed from the text and everything else", function()
      -- a server (or proxy) that echoes the Authorization header must not
      -- hand the key to whoever reads or logs the result
      local res = qwenvl.chat(req { base_url = echo_url, model = "echo-ok", max_retries = 0 })
      assert.is_table(res)
      assert.truthy(res.text:find("[redacted]", 1, true), res.text)
      assert_clean(res, "result")
    end)
  end)

  describe("results and plans", function()
    local okreq

    before_each(function()
      okreq = req { api_key = nil }
    end)

    it("results (raw, request, everything) from a successful call and a stream", function()
      local env_key = srv.key
      local res = both(req { api_key = env_key })
      assert.is_table(res)
      -- the stand-in key itself must not show up in results either
      assert.is_nil(find_key(res, "res"))
      local raw = res.raw or ""
      assert.is_nil(raw:find(env_key, 1, true))
      assert.is_nil(require("cjson").encode(res.request):find(env_key, 1, true))
      res = both(req { api_key = env_key, stream = true })
      assert.is_table(res)
    end)

    it("qwenvl.config and qwenvl.prepare", function()
      local c = qwenvl.config { api_key = KEY }
      assert_clean(c, "config")
      assert.is_true(c.has_key)
      local plan, err = qwenvl.prepare(req())
      assert.is_nil(err)
      assert_clean(plan, "prepare")
    end)

    it("handles of every state", function()
      local h = assert(qwenvl.start(req { api_key = srv.key, model = standin.scenario_model("sec", "delay=300") }))
      assert.is_nil(tostring(h):find(KEY, 1, true))
      h:cancel()
      local _, err = h:wait()
      assert_clean(err, "canceled err")
      h:close()
      assert.is_nil(tostring(h):find(KEY, 1, true))
      local _, cerr = h:poll()
      assert_clean(cerr, "closed err")
      assert.is_not_nil(okreq)
    end)

    it("Authorization is never recorded with the key by anything we control", function()
      -- the stand-in records every request; with KEY (wrong for it) the
      -- header arrives, which is how a key travels: only to base_url
      srv:reset()
      qwenvl.chat(req())
      local recs = srv:requests()
      assert.equal(1, #recs)
      assert.equal("Bearer " .. KEY, recs[1].headers.authorization)
      assert.matches("^127%.0%.0%.1:", recs[1].headers.host)
    end)
  end)

  describe("qwenvl.scrub", function()
    it("copies a table deeply, scrubbing keys and values, keeping metatables", function()
      local mt = { __jsontype = "array" }
      local v = { note = "with " .. KEY, [KEY] = 1, list = setmetatable({ "x " .. KEY }, mt), n = 5 }
      local r = qwenvl.scrub(v, { api_key = KEY })
      assert_clean(r, "scrub")
      assert.are.equal("with [redacted]", r.note)
      assert.are.equal(1, r["[redacted]"])
      assert.are.equal("x [redacted]", r.list[1])
      assert.are.equal(mt, getmetatable(r.list))
      assert.are.equal(5, r.n)
      assert.are.equal("with " .. KEY, v.note)           -- the input is left alone
      assert.are.equal("[redacted]", qwenvl.scrub(KEY, { api_key = KEY }))
      assert.are.equal(7, qwenvl.scrub(7, { api_key = KEY }))
    end)

    -- each level of a copy takes Lua stack: past ~20 levels the scrub
    -- wrote beyond the stack (a crash on Lua 5.4); and a table met twice,
    -- or a cycle, was copied again at every meeting
    it("a table nested 60 deep, shared tables and cycles: one copy each, no crash", function()
      local t = { x = KEY }
      for _ = 1, 60 do t = { t, s = "v" } end
      local r = qwenvl.scrub(t, { api_key = KEY })
      for _ = 1, 60 do r = r[1] end
      assert.are.equal("[redacted]", r.x)
      local shared = { y = KEY }
      local c = { a = shared, b = shared }
      c.self, c.again = c, c
      local rc = qwenvl.scrub(c, { api_key = KEY })
      assert.are.equal(rc, rc.self)
      assert.are.equal(rc, rc.again)
      assert.are.equal(rc.a, rc.b)
      assert.are_not.equal(shared, rc.a)
      assert.are.equal("[redacted]", rc.a.y)
    end)
  end)

  describe("redirects", function()
    it("a 307 to another host name is not followed: error, and the key never reaches it", function()
      srv:reset()
      local models = {}
      for _, run in ipairs({ "chat", "handle" }) do
        local model = standin.scenario_model("redir", "redirect", "ok")
        models[#models + 1] = model
        local res, err
        if run == "chat" then
          res, err = qwenvl.chat(req { api_key = srv.key, model = model, max_retries = 2 })
        else
          local h = assert(qwenvl.start(req { api_key = srv.key, model = model, max_retries = 2 }))
          res, err = h:wait()
          h:close()
        end
        assert.is_nil(res)
        -- (a JSON error body without an "error" object once came back as
        -- nil, nil)
        assert.is_table(err)
        assert.equal(307, err.status)
        assert.equal(1, err.attempts)
        assert_clean(err, "redirect err")
      end
      -- the stand-in's record: every request came to 127.0.0.1, none to
      -- "localhost" (the Location target), so no Authorization went there
      for _, model in ipairs(models) do
        local recs = srv:requests(model)
        assert.equal(1, #recs)             -- one attempt, not followed, not retried
        assert.matches("^127%.0%.0%.1:", recs[1].headers.host)
      end
      for _, r in ipairs(srv:requests()) do
        assert.is_nil((r.headers.host or ""):match("^localhost"), "a request reached localhost")
      end
    end)
  end)

  describe("the command line and evidence records", function()
    local function have_cli()
      local f = io.open("bin/qwenvl", "r")
      if f then f:close() end
      return f ~= nil and pcall(require, "qwenvl.evidence")
    end

    it("prints and saves nothing with the key (401, 500, success)", function()
      if not have_cli() then pending("bin/qwenvl not present") return end
      local evdir = dir .. "/evidence"
      local outs = {}
      local function run(env_key, model, extra)
        local cmd = ("cd %s && env DASHSCOPE_API_KEY=%s DASHSCOPE_BASE_URL=%s HOME=%s %s bin/qwenvl analyze "
          .. "--prompt x --image %s --evidence-dir %s %s %s 2>&1"):format(q(os.getenv("PWD") or "."),
          q(env_key), q(srv.base_url), q(dir), LUA, q(png), q(evdir),
          model and ("--model " .. q(model)) or "", extra or "")
        local out = fx.sh(cmd)
        outs[#outs + 1] = out
        return out
      end
      run(KEY)                                                    -- 401
      run(KEY, standin.scenario_model("cli", "500"))
      run(KEY, nil, "--print-response --json-mode")
      for i, out in ipairs(outs) do
        assert.is_nil(out:find(KEY, 1, true), "CLI output " .. i .. " holds the key: " .. out)
      end
      local all = fx.sh("cat " .. q(evdir) .. "/* " .. q(evdir) .. "/*/* 2>/dev/null")
      assert.is_nil(all:find(KEY, 1, true), "an evidence record holds the key")
    end)
  end)
end)
