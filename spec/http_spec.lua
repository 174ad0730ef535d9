-- qwenvl.http on its own, against the stand-in's Files routes: a
-- multipart upload streamed from disk, JSON answers, a body streamed to a
-- file, and the failures of that file (a full disk, a refused answer),
-- which must come back as errors and leave nothing behind.
local qwenvl = require("qwenvl")
local fx = require("spec.support.fixtures")

describe("qwenvl.http", function()
  local env = fx.standin_env()
  setup(env.start)
  teardown(env.stop)

  local function conn(t)
    t.api_key, t.base_url = env.srv.key, env.srv.base_url
    return t
  end

  local LINE = '{"custom_id":"1","method":"POST","url":"/v1/chat/completions","body":{}}\n'

  local function upload(text)
    local path = env.dir .. "/lines.jsonl"
    fx.write(path, text)
    return assert(qwenvl.http(conn {
      method = "POST", path = "/files",
      form = { { name = "purpose", value = "batch" },
               { name = "file", file = path, filename = "lines.jsonl", type = "application/jsonl" } },
    }))
  end

  it("uploads a file as multipart/form-data and reads the JSON answer", function()
    local res = upload(LINE)
    assert.are.equal(200, res.status)
    assert.is_string(res.json.id)
    assert.are.equal(#LINE, res.json.bytes)
    assert.are.equal("lines.jsonl", res.json.filename)
    assert.are.equal(1, res.attempts)
    assert.matches("json", res.content_type)
  end)

  it("streams a 2xx body to the download path", function()
    -- the Files API serves batch output files only: the model list will do
    local dest = env.dir .. "/models.json"
    local res = assert(qwenvl.http(conn { path = "/models", download = dest }))
    assert.are.equal(200, res.status)
    assert.are.equal(dest, res.download)
    local listed = require("cjson").decode(fx.read(dest))
    assert.are.equal("list", listed.object)
    assert.is_true(#listed.data > 0)
  end)

  it("a download that cannot be written is an error that names the file, not retried", function()
    local res, err = qwenvl.http(conn { path = "/models", download = "/dev/full", max_retries = 2 })
    assert.is_nil(res)
    assert.are.equal("cannot write the download to /dev/full", err.message)
    assert.is_false(err.retryable)
    assert.are.equal(1, err.attempts)
  end)

  it("a large download that cannot be written fails at the first write, naming the file", function()
    -- past stdio's buffer the first fwrite itself fails (not only fclose)
    local standin = require("spec.support.standin")
    local res, err = qwenvl.http(conn {
      method = "POST", path = "/chat/completions", download = "/dev/full",
      json = { model = standin.scenario_model("big", "oversize=100000"),
               messages = { { role = "user", content = "hi" } } },
    })
    assert.is_nil(res)
    assert.are.equal("cannot write the download to /dev/full", err.message)
    assert.is_false(err.retryable)
  end)

  it("only a 2xx body is downloaded: a 300 is not written to the path", function()
    local standin = require("spec.support.standin")
    local dest = env.dir .. "/three-hundred.json"
    local res, err = qwenvl.http(conn {
      method = "POST", path = "/chat/completions", download = dest,
      json = { model = standin.scenario_model("s300", "404+status=300"),
               messages = { { role = "user", content = "hi" } } },
    })
    assert.is_nil(res)
    assert.are.equal(300, err.status)
    assert.is_nil(io.open(dest, "rb"))
  end)

  it("a refused answer writes no download file", function()
    local dest = env.dir .. "/missing.jsonl"
    local id = upload(LINE).json.id          -- not an output file: refused
    local res, err = qwenvl.http(conn { path = "/files/" .. id .. "/content", download = dest })
    assert.is_nil(res)
    assert.are.equal(400, err.status)
    assert.matches("batch output", err.message)
    assert.is_nil(io.open(dest, "rb"))
  end)
end)
