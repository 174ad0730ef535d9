-- Neovim host: headless `nvim -u NONE` (Debian's neovim, LuaJIT 5.1 ABI)
-- loads examples/nvim and build/luajit/qwenvl.so, runs `:QwenVL describe`
-- against a stand-in answer that starts after 500 ms (then streams, with a
-- 300 ms pause mid-answer), while the editor's own 20 ms vim.loop timer
-- keeps firing. The answer must land in the scratch buffer, streamed.
local standin = require("spec.support.standin")
local fx = require("spec.support.fixtures")
local u = require("spec.hosts.util")
local cjson = require("cjson")

local SCRIPT = [=[
local cfg = dofile(os.getenv("QV_TEST_CONFIG"))
local out = { ticks = 0, max_gap_ms = 0, snapshots = {} }
local function save()
  local f = assert(io.open(cfg.result, "w"))
  f:write(vim.fn.json_encode(out))
  f:close()
end
local ok, err = pcall(function()
  vim.opt.runtimepath:prepend(cfg.plugin)
  vim.cmd("runtime plugin/qwenvl.lua")
  local qn = require("qwenvl_nvim")
  qn.setup{ cpath = cfg.cpath, model = cfg.model, stream = true, split = "none",
            request = { api_key = cfg.key, base_url = cfg.base_url } }
  out.cpath_ok = package.cpath:find(cfg.cpath, 1, true) ~= nil
  local tl = vim.loop.hrtime()
  qn.load()            -- one-time dlopen + engine setup, before measuring
  out.load_ms = (vim.loop.hrtime() - tl) / 1e6
  -- the editor's own repeating timer
  local last = vim.loop.hrtime()
  local tick = vim.loop.new_timer()
  tick:start(20, 20, function()
    local now = vim.loop.hrtime()
    local gap = (now - last) / 1e6
    last = now
    out.ticks = out.ticks + 1
    if gap > out.max_gap_ms then out.max_gap_ms = gap end
  end)
  -- a buffer with the image path under the cursor, then :QwenVL describe
  vim.api.nvim_buf_set_lines(0, 0, -1, false, { cfg.image })
  vim.api.nvim_win_set_cursor(0, { 1, 3 })
  local t0 = vim.loop.hrtime()
  local ticks0 = out.ticks
  vim.cmd("QwenVL describe")
  out.start_ms = (vim.loop.hrtime() - t0) / 1e6   -- time the command took
  local buf = vim.api.nvim_get_current_buf()
  for _, b in ipairs(vim.api.nvim_list_bufs()) do
    if vim.api.nvim_buf_get_name(b):match("qwenvl://") then buf = b end
  end
  out.in_flight_after_start = qn.in_flight()
  local seen = {}
  vim.wait(10000, function()
    local text = table.concat(vim.api.nvim_buf_get_lines(buf, 0, -1, false), "\n")
    if not seen[text] then
      seen[text] = true
      out.snapshots[#out.snapshots + 1] = text
    end
    return qn.in_flight() == 0 and text:find("tokens_", 1, true) ~= nil
  end, 5)
  out.request_ms = (vim.loop.hrtime() - t0) / 1e6
  out.ticks_during = out.ticks - ticks0
  out.final = table.concat(vim.api.nvim_buf_get_lines(buf, 0, -1, false), "\n")
  tick:stop()
  tick:close()
end)
out.ok, out.err = ok, ok and nil or tostring(err)
save()
vim.cmd("qa!")
]=]

describe("Neovim (headless, vim.loop)", function()
  local srv, dir

  setup(function()
    assert(u.have("nvim"), "neovim not installed")
    assert(u.exists(u.root .. "/build/luajit/qwenvl.so"), "run make LUA=luajit first")
    srv = standin.start{}
    dir = fx.tmpdir()
    fx.png(dir .. "/sprite.png", 64, 48)
  end)
  teardown(function()
    if srv then srv:stop() end
    if dir then fx.rm(dir) end
  end)

  it("runs :QwenVL describe without blocking the editor's timer", function()
    local cfg = {
      plugin = u.root .. "/examples/nvim",
      cpath = u.root .. "/build/luajit/?.so",
      model = standin.scenario_model("nvim", "stall=300+delay=500"),
      key = srv.key, base_url = srv.base_url,
      image = dir .. "/sprite.png",
      result = dir .. "/result.json",
    }
    local lines = { "return {" }
    for k, v in pairs(cfg) do lines[#lines + 1] = ("  %s = %q,"):format(k, v) end
    lines[#lines + 1] = "}"
    fx.write(dir .. "/config.lua", table.concat(lines, "\n"))
    fx.write(dir .. "/script.lua", SCRIPT)
    local out = fx.sh(("cd %s && QV_TEST_CONFIG=%s timeout 30 nvim --headless -u NONE -i NONE -n " ..
      "-c %s"):format(u.quote(dir), u.quote(dir .. "/config.lua"),
      u.quote("luafile " .. dir .. "/script.lua")))
    assert.is_true(u.exists(cfg.result), "nvim wrote no result:\n" .. out)
    local r = cjson.decode(fx.read(cfg.result))
    assert.is_true(r.ok, tostring(r.err) .. "\n" .. out)
    io.stderr:write(("\n[nvim] module load %.0f ms (once); request %.0f ms, command returned after %.1f ms, %d ticks of the 20 ms timer meanwhile (max gap %.0f ms), %d buffer states\n"):format(
      r.load_ms, r.request_ms, r.start_ms, r.ticks_during, r.max_gap_ms, #r.snapshots))
    assert.is_true(r.cpath_ok)
    assert.are.equal(1, r.in_flight_after_start)
    assert.is_true(r.start_ms < 200, "the command blocked for " .. r.start_ms .. " ms")
    assert.is_true(r.request_ms >= 750, "too fast for the stand-in delay: " .. r.request_ms)
    assert.is_true(r.ticks_during >= 15, "timer ticks: " .. r.ticks_during)
    assert.is_true(r.max_gap_ms < 150, "timer starved for " .. r.max_gap_ms .. " ms")
    assert.matches("STANDIN ", r.final)
    assert.matches("tokens_", r.final)
    -- streamed: some buffer state showed partial text while streaming
    local partial = false
    for _, s in ipairs(r.snapshots) do
      if s:find("_streaming..._", 1, true) and s:find("STANDIN", 1, true) then partial = true end
    end
    assert.is_true(partial, "no streamed intermediate state:\n" .. table.concat(r.snapshots, "\n---\n"))
  end)
end)
