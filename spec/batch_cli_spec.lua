-- qwenvl.batch.cli (`qwenvl batch --batch-api`, `qwenvl job`) on the
-- command's common helpers (qwenvl.cli.common): its arguments are read as
-- every other command reads them, and its images are listed as live
-- `qwenvl batch` lists them. No service is involved: all of this happens
-- before anything is sent.
local fx = require("spec.support.fixtures")
local bcli = require("qwenvl.batch.cli")

local buffer = fx.buffer

describe("qwenvl.batch.cli on the common CLI helpers", function()
  local dir

  setup(function() dir = fx.tmpdir() end)
  teardown(function() if dir then fx.rm(dir) end end)

  local function cli(args)
    local out, err = buffer(), buffer()
    local code = bcli.main(args, { stdout = out, stderr = err },
      { opts = { api_key = "sk-batchcli-FAKEKEY", base_url = "http://127.0.0.1:9/compatible-mode/v1" } })
    return code, out:text(), err:text()
  end

  it("refuses a word with one dash as an unknown option, as every command does", function()
    local jd = dir .. "/jobs"
    local code, out, err = cli({ "job", "wait", "-v", "--job-dir", jd })
    assert.are.equal(2, code)
    assert.are.equal("", out)
    assert.matches("^qwenvl job wait: unknown option %-v ", err)
    code, _, err = cli({ "batch", "-imgs", "--prompt", "x", "--batch-api", "--job-dir", jd })
    assert.are.equal(2, code)
    assert.matches("^qwenvl batch: unknown option %-imgs ", err)
    assert.is_nil(fx.try_read(jd))   -- nothing was started
  end)

  it("still takes only its own flags (the live commands' are unknown here)", function()
    local code, _, err = cli({ "job", "list", "--model", "qwen3-vl-plus", "--job-dir", dir .. "/jobs" })
    assert.are.equal(2, code)
    assert.matches("unknown option --model", err, 1, true)
  end)

  it("lists a folder as live `qwenvl batch` does: avif too, files only, names with newlines", function()
    local d = dir .. "/imgs"
    fx.sh("mkdir -p " .. fx.quote(d .. "/folder.png"))
    fx.png(d .. "/b.png", 20, 16)
    fx.write(d .. "/a.avif", "not really an avif")
    fx.png(d .. "/two\nlines.jpg", 20, 16)
    fx.write(d .. "/notes.txt", "x")
    fx.png(d .. "/.hidden.png", 20, 16)
    assert.are.same({ d .. "/a.avif", d .. "/b.png", d .. "/two\nlines.jpg" }, bcli.batch_images(d))
  end)
end)
