-- TLS: verification is always on; a private CA is trusted through cainfo
-- or capath, never by turning verification off.
local qwenvl = require("qwenvl")
local standin = require("spec.support.standin")
local fx = require("spec.support.fixtures")

describe("TLS", function()
  local srv, dir, cert, png

  setup(function()
    dir = fx.tmpdir()
    cert = dir .. "/standin.pem"
    local out, ok = fx.sh(("openssl req -x509 -newkey rsa:2048 -nodes -days 1 " ..
      "-subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost " ..
      "-keyout %s -out %s"):format(fx.quote(cert), fx.quote(cert)))
    assert(ok, out)
    png = fx.png(dir .. "/a.png", 32, 32)
    srv = standin.start{ tls_cert = cert }
  end)
  teardown(function()
    if srv then srv:stop() end
    fx.rm(dir)
  end)

  local function req(t)
    t.prompt, t.image = "p", png
    t.api_key, t.base_url = srv.key, srv.base_url
    return t
  end

  it("talks HTTPS to a server whose CA is given by cainfo", function()
    assert.matches("^https://", srv.base_url)
    local res, err = qwenvl.chat(req{ cainfo = cert })
    assert.is_nil(err, tostring(err))
    assert.are.equal(fx.sha256(png), res.images[1].sha256)
    assert.are.equal(1, srv:stats().chat_requests)
  end)

  it("refuses a server it cannot verify, at once and without sending the key", function()
    local before = srv:stats().chat_requests
    local res, err = qwenvl.chat(req{ max_retries = 2 })
    assert.is_nil(res)
    assert.are.equal("network", err.code)
    assert.is_false(err.retryable)             -- a bad certificate stays bad
    assert.are.equal(1, err.attempts)
    assert.matches("certificate", err.message:lower())
    assert.are.equal(before, srv:stats().chat_requests)
  end)

  it("trusts a CA directory given by capath", function()
    local cadir = dir .. "/ca"
    local out, ok = fx.sh(("mkdir -p %s && cp %s %s/ && openssl rehash %s"):format(
      fx.quote(cadir), fx.quote(cert), fx.quote(cadir), fx.quote(cadir)))
    assert(ok, out)
    local res, err = qwenvl.chat(req{ capath = cadir })
    assert.is_nil(err, tostring(err))
    assert.matches("^STANDIN", res.text)
  end)

  it("reports a missing cainfo file as a network error", function()
    local _, err = qwenvl.chat(req{ cainfo = dir .. "/missing.pem", max_retries = 0 })
    assert.are.equal("network", err.code)
  end)
end)
