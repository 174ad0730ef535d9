-- Neovim host on the poll() engine (make LUA=luajit POLLER=poll): the
-- plugin is given build/luajit-poll/qwenvl.so with setup{ module = ... };
-- that engine has no descriptor (qwenvl.fd() is nil), so the driver runs
-- on a vim.loop timer at min(timeout_ms(), tick_ms). A streamed answer
-- must still fill the buffer in steps while the editor's own 20 ms timer
-- keeps ticking, a follow-up must carry the conversation, and
-- :checkhealth must say which loop runs.
-- (spec/hosts/nvim_test.lua covers the plugin itself on the epoll build.)
local standin = require("spec.support.standin")
local fx = require("spec.support.fixtures")
local u = require("spec.hosts.util")
local cjson = require("cjson")

local SCRIPT = [=[
local cfg = dofile(os.getenv("QV_TEST_CONFIG"))
local out = { notes = {} }
vim.notify = function(msg, level) table.insert(out.notes, { msg = tostring(msg), level = level }) end
local ok, err = pcall(function()
  local qn = require("qwenvl.nvim").setup{ model = cfg.model, split = "none", module = cfg.module,
                                           tick_ms = 15 }
  local q = assert(qn.load())
  out.engine, out.fd = q.info().engine, q.fd()
  local ticks, gap, last = 0, 0, vim.loop.hrtime()
  local t = vim.loop.new_timer()
  t:start(20, 20, function()
    local now = vim.loop.hrtime()
    gap = math.max(gap, (now - last) / 1e6)
    last, ticks = now, ticks + 1
  end)
  local t0 = vim.loop.hrtime()
  vim.cmd("QwenVL describe " .. cfg.image)
  out.command_ms = (vim.loop.hrtime() - t0) / 1e6
  out.status = qn.status()
  local buf
  for _, b in ipairs(vim.api.nvim_list_bufs()) do
    if vim.api.nvim_buf_get_name(b):match("^qwenvl://") then buf = b end
  end
  local function text() return table.concat(vim.api.nvim_buf_get_lines(buf, 0, -1, false), "\n") end
  out.snapshots = {}
  out.finished = vim.wait(10000, function()
    local s = text()
    if out.snapshots[#out.snapshots] ~= s then out.snapshots[#out.snapshots + 1] = s end
    return qn.in_flight() == 0 and s:match("[^\n]*$"):find("tokens_$") ~= nil
  end, 5)
  out.request_ms = (vim.loop.hrtime() - t0) / 1e6
  t:stop() t:close()
  out.ticks, out.max_gap_ms = ticks, gap
  out.final = text()
  -- a follow-up in the answer buffer, on the same timer loop
  vim.api.nvim_set_current_buf(buf)
  vim.cmd("QwenVL ask And the colours?")
  out.finished2 = vim.wait(10000, function()
    return qn.in_flight() == 0 and text():match("[^\n]*$"):find("tokens_$") ~= nil
  end, 5)
  out.history = qn.history(buf)
  vim.cmd("checkhealth qwenvl")
  out.health = vim.api.nvim_buf_get_lines(0, 0, -1, false)
end)
out.ok, out.err = ok, ok and nil or tostring(err)
local f = assert(io.open(cfg.result, "w"))
f:write(vim.fn.json_encode(out))
f:close()
]=]

describe("Neovim plugin on the poll() engine (build/luajit-poll)", function()
  local srv, dir, image, module

  setup(function()
    assert(u.have("nvim"), "neovim not installed")
    module = u.root .. "/build/luajit-poll/qwenvl.so"
    assert(u.exists(module), "run make LUA=luajit POLLER=poll first")
    srv = standin.start{}
    dir = fx.tmpdir()
    image = fx.png(dir .. "/sprite.png", 64, 48)
  end)
  teardown(function()
    if srv then srv:stop() end
    if dir then fx.rm(dir) end
  end)

  it("streams :QwenVL describe on the timer loop without blocking the editor", function()
    local model = standin.scenario_model("nvim-poll", "stall=300+delay=500")
    local cfg = { image = image, model = model, module = module, result = dir .. "/result.json" }
    local lines = { "return {" }
    for k, v in pairs(cfg) do lines[#lines + 1] = ("  %s = %q,"):format(k, v) end
    lines[#lines + 1] = "}"
    fx.write(dir .. "/config.lua", table.concat(lines, "\n"))
    fx.write(dir .. "/init.lua", ("vim.opt.runtimepath:prepend(%q)\n"):format(u.root))
    fx.write(dir .. "/script.lua", SCRIPT)
    local cmd = table.concat({
      "cd", u.quote(dir), "&& env -u DASHSCOPE_REGION",
      "HOME=" .. u.quote(dir), "XDG_CONFIG_HOME=" .. u.quote(dir .. "/config"),
      "XDG_DATA_HOME=" .. u.quote(dir .. "/data"), "QV_TEST_CONFIG=" .. u.quote(dir .. "/config.lua"),
      "DASHSCOPE_API_KEY=" .. u.quote(srv.key), "DASHSCOPE_BASE_URL=" .. u.quote(srv.base_url),
      "timeout 60 nvim --headless -i NONE -n -u", u.quote(dir .. "/init.lua"),
      "-c", u.quote("luafile " .. dir .. "/script.lua"), "-c 'qa!' 2>&1" }, " ")
    local log = fx.sh(cmd)
    assert.is_true(u.exists(cfg.result), "nvim wrote no result:\n" .. log)
    local r = cjson.decode(fx.read(cfg.result))
    assert.is_true(r.ok, tostring(r.err) .. "\n" .. log)
    io.stderr:write(("\n[nvim poll] request %.0f ms, :QwenVL returned after %.1f ms; 20 ms timer: %d ticks, longest gap %.0f ms; %d buffer states\n")
      :format(r.request_ms, r.command_ms, r.ticks, r.max_gap_ms, #r.snapshots))
    assert.are.equal("poll", r.engine)
    assert.is_nil(r.fd)
    assert.are.equal(module, r.status.module.path)
    assert.are.equal("timer", r.status.loop)
    assert.is_true(r.finished, r.final)
    assert.is_true(r.command_ms < 500, "the command blocked for " .. r.command_ms .. " ms")
    assert.is_true(r.max_gap_ms < 500, "the editor's timer stalled for " .. r.max_gap_ms .. " ms")
    -- what arrived at the stand-in, and what came back
    local reqs = srv:requests(model)
    assert.are.equal(2, #reqs)
    assert.is_true(reqs[1].body.stream)
    -- the follow-up carried the first question, its image and its answer
    assert.is_true(r.finished2)
    local m = reqs[2].body.messages
    assert.are.equal(3, #m)
    assert.are.equal(fx.sha256(image), m[1].content[1].image_url.url.sha256)
    assert.are.equal("Describe this image in detail.", m[1].content[2].text)
    assert.are.equal(r.history[2].text, m[2].content)
    assert.matches("^STANDIN ", m[2].content)
    assert.are.equal("And the colours?", m[3].content)
    assert.are.equal(4, #r.history)
    local a = cjson.decode(r.final:match("STANDIN (%b{})"))
    assert.are.equal(fx.sha256(image), a.images[1].sha256)
    assert.matches("_qwen3%-vl%-plus, [%d.]+ s, %d+ tokens_$", r.final)
    local partial = false
    for _, s in ipairs(r.snapshots) do
      if s:find("_streaming..._", 1, true) and s:find("STANDIN", 1, true) and not s:find("tokens_", 1, true) then
        partial = true
      end
    end
    assert.is_true(partial, "no streamed intermediate state:\n" .. table.concat(r.snapshots, "\n---\n"))
    local health = table.concat(r.health, "\n")
    assert.matches("OK: qwenvl.fd() is nil: a timer steps the requests at least every 15 ms", health, 1, true)
    assert.are.same({}, r.notes)
  end)
end)
