-- Proxies: requests through a plain-HTTP forward proxy with credentials,
-- noproxy, a proxy that does not answer, and the proxy's credentials kept
-- out of what qwenvl returns. The stand-in serves a request in absolute
-- form ("POST http://host/path") as a forward proxy would pass it on, and
-- records the Proxy-Authorization it carried.
local qwenvl = require("qwenvl")
local standin = require("spec.support.standin")
local fx = require("spec.support.fixtures")
local socket = require("socket")
local mime = require("mime")

describe("proxy", function()
  local env = fx.standin_env()
  setup(env.start)
  teardown(env.stop)

  local PASS = "proxy-s3cret-pw"

  local function proxy_url(port)
    return ("http://puser:%s@127.0.0.1:%d"):format(PASS, port or env.srv.port)
  end

  -- a port nothing listens on
  local function dead_port()
    local s = assert(socket.bind("127.0.0.1", 0))
    local _, port = s:getsockname()
    s:close()
    return port
  end

  -- noproxy names another host: an environment's no_proxy (which may well
  -- list 127.0.0.1) does not apply when the request gives its own
  local function via_proxy(t, port)
    t.proxy = proxy_url(port)
    t.noproxy = t.noproxy or "elsewhere.invalid"
    t.max_retries = t.max_retries or 0
    return env.req(t)
  end

  it("chat goes through the proxy, in absolute form, with the proxy's credentials", function()
    local model = standin.scenario_model("viaproxy", "ok")
    local res, err = qwenvl.chat(via_proxy { model = model, prompt = "through a proxy" })
    assert.is_nil(err, tostring(err))
    assert.matches('"prompt":"through a proxy"', res.text, 1, true)
    local recs = env.srv:requests(model)
    assert.are.equal(1, #recs)
    assert.are.equal(env.srv.base_url .. "/chat/completions", recs[1].path)
    assert.are.equal("Basic " .. mime.b64("puser:" .. PASS), recs[1].headers["proxy-authorization"])
    assert.are.equal("Bearer <redacted>", recs[1].headers.authorization)
  end)

  it("a streamed chat goes through it too", function()
    local model = standin.scenario_model("viaproxys", "ok")
    local res = assert(qwenvl.chat(via_proxy { model = model, stream = true }))
    assert.matches("^STANDIN", res.text)
    assert.are.equal(env.srv.base_url .. "/chat/completions", env.srv:requests(model)[1].path)
  end)

  it("noproxy: a host named there is reached directly", function()
    local model = standin.scenario_model("noproxy", "ok")
    local res, err = qwenvl.chat(via_proxy({ model = model, noproxy = "127.0.0.1" }, dead_port()))
    assert.is_nil(err, tostring(err))
    assert.matches("^STANDIN", res.text)
    local rec = env.srv:requests(model)[1]
    assert.are.equal("/compatible-mode/v1/chat/completions", rec.path)
    assert.is_nil(rec.headers["proxy-authorization"])
  end)

  it("a proxy that does not answer is a network failure, retried, that never shows its password", function()
    local model = standin.scenario_model("deadproxy", "ok")
    local res, err = qwenvl.chat(via_proxy({ model = model, max_retries = 1, retry_backoff_s = 0.01 },
      dead_port()))
    assert.is_nil(res)
    assert.are.equal("network", err.code)
    assert.is_true(err.retryable)
    assert.are.equal(2, err.attempts)
    assert.is_nil(tostring(err):find(PASS, 1, true))
    assert.is_nil((err.curl_error or ""):find(PASS, 1, true))
    assert.are.equal(0, env.srv:scenario(model).attempts)
  end)

  it("list_models and http take the proxy too", function()
    local conn = { api_key = env.srv.key, base_url = env.srv.base_url, max_retries = 0,
                   proxy = proxy_url(dead_port()), noproxy = "elsewhere.invalid" }
    local res, err = qwenvl.list_models(conn)
    assert.is_nil(res)
    assert.are.equal("network", err.code)
    conn.method, conn.path = "GET", "/models"
    res, err = qwenvl.http(conn)
    assert.is_nil(res)
    assert.are.equal("network", err.code)
    conn.method, conn.path = nil, nil
    conn.proxy = proxy_url()
    local before = env.srv:stats().models_requests
    res, err = qwenvl.list_models(conn)
    assert.is_nil(err, tostring(err))
    assert.is_true(res.count > 0)
    assert.are.equal(before + 1, env.srv:stats().models_requests)
  end)

  it("qwenvl.scrub removes the proxy's credentials, and config never shows them", function()
    local opts = { api_key = env.srv.key, base_url = env.srv.base_url, proxy = proxy_url() }
    local text = "user puser:" .. PASS .. " and " .. PASS .. " and the key " .. env.srv.key
    local clean = qwenvl.scrub(text, opts)
    assert.is_nil(clean:find(PASS, 1, true))
    assert.is_nil(clean:find(env.srv.key, 1, true))
    assert.matches("%[redacted%]", clean)
    local t = qwenvl.scrub({ note = { deep = PASS } }, opts)
    assert.are.equal("[redacted]", t.note.deep)
    -- without the proxy option the password is just text
    assert.truthy(qwenvl.scrub(PASS, { api_key = env.srv.key, base_url = env.srv.base_url })
      :find(PASS, 1, true))
    local cfg = assert(qwenvl.config(opts))
    assert.is_true(cfg.has_key)
    for k, v in pairs(cfg) do assert.is_nil(tostring(v):find(PASS, 1, true), k) end
  end)

  it("scrub and config refuse a proxy that is not a clean string, naming it", function()
    for _, bad in ipairs { 5, "http://127.0.0.1:9\r\nX: 1", "" } do
      for _, f in ipairs { "scrub", "config" } do
        local res, err
        if f == "scrub" then res, err = qwenvl.scrub("text", { api_key = env.srv.key, proxy = bad })
        else res, err = qwenvl.config { api_key = env.srv.key, proxy = bad } end
        assert.is_nil(res, f .. " took " .. tostring(bad))
        assert.are.equal("invalid_request", err.code)
        assert.are.equal("proxy", err.field)
      end
    end
  end)
end)
