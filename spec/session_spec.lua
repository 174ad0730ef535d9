-- qwenvl.session: follow-up questions about the same picture. What the
-- stand-in saw on every turn proves the history and the first image went
-- along (by SHA-256), encoded once.
local qwenvl = require("qwenvl")
local standin = require("spec.support.standin")
local fx = require("spec.support.fixtures")
local cjson = require("cjson")

describe("qwenvl.session", function()
  local env = fx.standin_env()
  setup(env.start)
  teardown(env.stop)

  local function opts(t)
    t.api_key = env.srv.key
    t.base_url = env.srv.base_url
    t.max_retries = 0
    return t
  end

  local function report(res)
    return cjson.decode((assert(res.text:match("^STANDIN (.*)$"), res.text)))
  end

  it("a follow-up carries the history and the first image, which is read and encoded once", function()
    local path = env.dir .. "/s.png"
    fx.png(path, 48, 40)
    local sha = fx.sha256(path)
    local s = assert(qwenvl.session(opts { image = path, system = "be brief" }))
    local r1 = assert(s:ask("what is it?"))
    assert.equal(sha, r1.images[1].sha256)
    assert.equal(path, r1.images[1].path)
    os.remove(path)                      -- never read again
    local model = standin.scenario_model("follow", "ok")
    local r2 = assert(s:ask("and its colour?", { model = model }))
    local seen = report(r2)
    assert.same({ "system", "user", "assistant", "user" },
      { seen.turns[1].role, seen.turns[2].role, seen.turns[3].role, seen.turns[4].role })
    assert.equal(sha, seen.turns[2].images[1].sha256)
    assert.equal("what is it?", seen.turns[2].text)
    assert.equal(r1.text, env.srv:requests(model)[1].body.messages[3].content)
    assert.equal(0, #seen.turns[4].images)
    local h = s:history()
    assert.equal(4, #h)
    assert.equal("and its colour?", h[3].text)
    assert.equal(sha, h[1].images[1].sha256)
    assert.is_nil(cjson.encode(h):find("base64,", 1, true))
  end)

  it("a failed turn leaves the history as it was", function()
    local s = assert(qwenvl.session(opts { image = env.img }))
    assert(s:ask("one"))
    local _, err = s:ask("two", { model = standin.scenario_model("fail", "500") })
    assert.equal("server", err.code)
    assert.equal(2, #s:history())
    assert(s:ask("three"))
    assert.equal(4, #s:history())
    assert.equal("three", s:history()[3].text)
  end)

  it("a turn may add images; s:reset() starts over with the session's images", function()
    local other = fx.png(env.dir .. "/o.png", 20, 20)
    local s = assert(qwenvl.session(opts { image = env.img }))
    assert(s:ask("first"))
    local r = assert(s:ask("compare", { image = other }))
    local seen = report(r)
    assert.equal(fx.sha256(other), seen.turns[3].images[1].sha256)
    s:reset()
    assert.equal(0, #s:history())
    local r3 = assert(s:ask("again"))
    assert.equal(fx.sha256(env.img), report(r3).turns[1].images[1].sha256)
  end)

  it("keeps the history under max_history_tokens, oldest first, the first image kept", function()
    local s = assert(qwenvl.session(opts { image = env.img, max_history_tokens = 60 }))
    for i = 1, 6 do assert(s:ask(("question %d %s"):format(i, string.rep("x", 40)))) end
    local model = standin.scenario_model("budget", "ok")
    local r = assert(s:ask("last", { model = model }))
    local seen = report(r)
    assert.is_true(#seen.turns < 13)
    assert.equal(fx.sha256(env.img), seen.turns[1].images[1].sha256)
    assert.equal("last", seen.turns[#seen.turns].text)
  end)

  it("s:start returns a handle; the turn is appended when it completes", function()
    local s = assert(qwenvl.session(opts { image = env.img }))
    local h = assert(s:start("async?", { stream = true }))
    assert.equal(0, #s:history())
    local res = assert(h:wait(10))
    assert.matches("^STANDIN", res.text)
    assert.equal(2, #s:history())
    h:close()
  end)

  it("refuses what a session sets itself, and a bad image at once", function()
    local s = assert(qwenvl.session(opts { image = env.img }))
    assert.has_error(function() s:ask("x", { messages = {} }) end)
    local none, err = qwenvl.session(opts { image = env.dir .. "/missing.png" })
    assert.is_nil(none)
    assert.equal("image", err.field)
  end)
end)
