-- Neovim host: the repository is the plugin. Headless Neovim (Debian's
-- 0.7, LuaJIT) starts with an init file that only puts a plugin folder on
-- 'runtimepath', as a plugin manager does; plugin/qwenvl.lua is sourced
-- by Neovim itself and qwenvl.nvim finds build/luajit/qwenvl.so next to
-- itself (no package.cpath tweaks). Requests go to the stand-in through
-- DASHSCOPE_BASE_URL / DASHSCOPE_API_KEY; HOME is a temporary folder, so
-- neither the user's config nor ~/.alibabacloud/credentials play a part.
--
-- Broken installs are made from symlinks: a folder whose plugin/, lua/ and
-- doc/ are the repository's, with only a Lua 5.4 build (or none) next to
-- them, is a checkout where the wrong `make` ran.
local standin = require("spec.support.standin")
local fx = require("spec.support.fixtures")
local u = require("spec.hosts.util")
local cjson = require("cjson")

-- Runs in Neovim around each case's body: records vim.notify messages and
-- what the body puts in `out`, then writes `out` as JSON; `-c qa!` follows,
-- as a user would quit (requests may still be running then).
local PRELUDE = [=[
local cfg = dofile(os.getenv("QV_TEST_CONFIG"))
local out = { notes = {} }
local real_notify = vim.notify
vim.notify = function(msg, level)
  table.insert(out.notes, { msg = tostring(msg), level = level })
end
local function answer_bufs()
  local list = {}
  for _, b in ipairs(vim.api.nvim_list_bufs()) do
    if vim.api.nvim_buf_get_name(b):match("^qwenvl://") then list[#list + 1] = b end
  end
  return list
end
local function text_of(b)
  return table.concat(vim.api.nvim_buf_get_lines(b, 0, -1, false), "\n")
end
-- a repeating 20 ms timer: the editor's own work, which must keep running
local ticker = { ticks = 0, max_gap_ms = 0 }
function ticker.start()
  local last = vim.loop.hrtime()
  ticker.t = vim.loop.new_timer()
  ticker.t:start(20, 20, function()
    local now = vim.loop.hrtime()
    local gap = (now - last) / 1e6
    last = now
    ticker.ticks = ticker.ticks + 1
    if gap > ticker.max_gap_ms then ticker.max_gap_ms = gap end
  end)
end
function ticker.stop() ticker.t:stop() ticker.t:close() end
local function ms_since(t0) return (vim.loop.hrtime() - t0) / 1e6 end
-- wait until the answer buffer's footer is final, keeping every state seen
local function wait_answer(buf, snapshots, timeout)
  local qn = require("qwenvl.nvim")
  return vim.wait(timeout or 10000, function()
    local text = text_of(buf)
    if snapshots and snapshots[#snapshots] ~= text then snapshots[#snapshots + 1] = text end
    local last = text:match("[^\n]*$")
    return qn.in_flight() == 0 and (last:find("tokens_$") or last == "_canceled_"
      or last:find("^%*%*error%*%*")) ~= nil
  end, 5)
end
local function checkhealth()
  vim.cmd("checkhealth qwenvl")
  return vim.api.nvim_buf_get_lines(0, 0, -1, false)
end
out.plugin_loaded = vim.g.loaded_qwenvl == true and vim.fn.exists(":QwenVL") == 2
out.cpath_before = package.cpath
local ok, err = pcall(function()
--BODY--
end)
out.ok, out.err = ok, ok and nil or tostring(err)
out.cpath_after = package.cpath
local f = assert(io.open(cfg.result, "w"))
f:write(vim.fn.json_encode(out))
f:close()
]=]

describe("Neovim plugin (the repository on 'runtimepath')", function()
  local srv, dir, image, sha, size
  local n = 0

  setup(function()
    assert(u.have("nvim"), "neovim not installed")
    assert(u.exists(u.root .. "/build/luajit/qwenvl.so"), "run make LUA=luajit first")
    srv = standin.start{}
    dir = fx.tmpdir()
    image = dir .. "/sprite.png"
    fx.png(image, 64, 48)
    sha, size = fx.sha256(image), fx.size(image)
  end)
  teardown(function()
    if srv then srv:stop() end
    if dir then fx.rm(dir) end
  end)

  -- Run `body` (Lua) in Neovim with the plugin at `opts.root` (default: the
  -- repository). opts.env: environment (DASHSCOPE_* are unset otherwise);
  -- opts.cfg: values the body reads as cfg.*; opts.cmd: an extra --cmd.
  local function nvim(body, opts)
    opts = opts or {}
    n = n + 1
    local case = ("%s/case%d"):format(dir, n)
    fx.sh("mkdir -p " .. u.quote(case))
    local cfg = { image = image, result = case .. "/result.json", root = opts.root or u.root }
    for k, v in pairs(opts.cfg or {}) do cfg[k] = v end
    local lines = { "return {" }
    for k, v in pairs(cfg) do lines[#lines + 1] = ("  %s = %q,"):format(k, v) end
    lines[#lines + 1] = "}"
    fx.write(case .. "/config.lua", table.concat(lines, "\n"))
    fx.write(case .. "/init.lua", ("vim.opt.runtimepath:prepend(%q)\n"):format(cfg.root))
    local at = PRELUDE:find("--BODY--", 1, true)
    fx.write(case .. "/script.lua", PRELUDE:sub(1, at - 1) .. body .. PRELUDE:sub(at + 8))
    local env = { HOME = case, XDG_CONFIG_HOME = case .. "/config", XDG_DATA_HOME = case .. "/data",
                  QV_TEST_CONFIG = case .. "/config.lua" }
    for k, v in pairs(opts.env or {}) do env[k] = v end
    local parts = { "cd", u.quote(case), "&& env -u DASHSCOPE_API_KEY -u DASHSCOPE_BASE_URL",
                    "-u DASHSCOPE_REGION -u ALIBABA_CLOUD_PROFILE -u ALICLOUD_PROFILE" }
    for k, v in pairs(env) do parts[#parts + 1] = k .. "=" .. u.quote(v) end
    parts[#parts + 1] = "timeout 60 nvim --headless -i NONE -n -u " .. u.quote(case .. "/init.lua")
    if opts.cmd then parts[#parts + 1] = "--cmd " .. u.quote(opts.cmd) end
    parts[#parts + 1] = "-c " .. u.quote("luafile " .. case .. "/script.lua") .. " -c 'qa!' 2>&1"
    local log, exited_ok = fx.sh(table.concat(parts, " "))
    assert.is_true(u.exists(cfg.result), "nvim wrote no result:\n" .. log)
    local r = cjson.decode(fx.read(cfg.result))
    assert.is_true(r.ok, tostring(r.err) .. "\n" .. log)
    assert.is_true(r.plugin_loaded, "plugin/qwenvl.lua was not sourced from 'runtimepath'")
    assert.are.equal(r.cpath_before, r.cpath_after)   -- the plugin leaves package.cpath alone
    return r, log, exited_ok
  end

  local function standin_env(extra)
    local env = { DASHSCOPE_API_KEY = srv.key, DASHSCOPE_BASE_URL = srv.base_url }
    for k, v in pairs(extra or {}) do env[k] = v end
    return env
  end

  -- A folder that is the plugin with only the given builds next to it.
  local function checkout(name, builds)
    local root = dir .. "/" .. name
    fx.sh(("mkdir -p %s/build"):format(u.quote(root)))
    for _, d in ipairs({ "plugin", "lua", "doc" }) do
      fx.sh(("ln -s %s %s"):format(u.quote(u.root .. "/" .. d), u.quote(root .. "/" .. d)))
    end
    for _, abi in ipairs(builds) do
      assert(u.exists(("%s/build/%s/qwenvl.so"):format(u.root, abi)), "run make LUA=" .. abi .. " first")
      fx.sh(("ln -s %s %s"):format(u.quote(u.root .. "/build/" .. abi), u.quote(root .. "/build/" .. abi)))
    end
    return root
  end

  local function lines_with(lines, prefix)
    local hits = {}
    for _, l in ipairs(lines) do
      if l:find(prefix, 1, true) then hits[#hits + 1] = l end
    end
    return hits
  end

  -- The stand-in's answer names the image it received: its SHA-256 and size.
  local function assert_answer_about_image(text, prompt)
    assert.matches("STANDIN {", text, 1, true, text)
    local json = text:match("STANDIN (%b{})")
    assert.is_string(json, text)
    local a = cjson.decode(json)
    assert.are.equal(1, #a.images)
    assert.are.equal(sha, a.images[1].sha256)
    assert.are.equal(size, a.images[1].bytes)
    assert.are.equal("png", a.images[1].format)
    assert.are.equal(prompt, a.prompt)
  end

  -- What the stand-in received: per message {role, text, {image SHA-256s}}.
  local turns = standin.turns

  it("streams :QwenVL describe into a scratch buffer on the fd loop, without blocking", function()
    local model = standin.scenario_model("nvim-fd", "stall=300+delay=800")
    local r = nvim([[
      require("qwenvl.nvim").setup{ model = cfg.model, split = "none" }
      local qn = require("qwenvl.nvim")
      qn.load()                                  -- one-time dlopen, before measuring
      ticker.start()
      vim.api.nvim_buf_set_lines(0, 0, -1, false, { "see " .. cfg.image .. " here" })
      vim.api.nvim_win_set_cursor(0, { 1, 8 })
      local t0 = vim.loop.hrtime()
      vim.cmd("QwenVL describe")
      out.command_ms = ms_since(t0)
      out.in_flight_after_command = qn.in_flight()
      out.status = qn.status()
      local buf = answer_bufs()[1]
      out.snapshots = {}
      out.finished = wait_answer(buf, out.snapshots)
      out.request_ms = ms_since(t0)
      ticker.stop()
      out.ticks, out.max_gap_ms = ticker.ticks, ticker.max_gap_ms
      out.final = text_of(buf)
      out.buf_name = vim.api.nvim_buf_get_name(buf)
      out.modifiable = vim.bo[buf].modifiable
    ]], { env = standin_env(), cfg = { model = model } })
    io.stderr:write(("\n[nvim fd] request %.0f ms, :QwenVL returned after %.1f ms; 20 ms timer: %d ticks meanwhile, longest gap %.0f ms; %d buffer states\n")
      :format(r.request_ms, r.command_ms, r.ticks, r.max_gap_ms, #r.snapshots))
    assert.is_true(r.finished, r.final)
    assert.are.same({ path = u.root .. "/build/luajit/qwenvl.so", abi = "luajit", source = "build",
                      json = "cjson", version = r.status.module.version }, r.status.module)
    assert.are.equal("fd", r.status.loop)
    assert.is_number(r.status.fd)
    assert.are.equal(1, r.in_flight_after_command)
    -- the stand-in answered after 800 ms and paused 300 ms mid-stream: a
    -- command or a loop that waited for it would show up here
    assert.is_true(r.command_ms < 800, "the command blocked for " .. r.command_ms .. " ms")
    assert.is_true(r.max_gap_ms < 800, "the editor's timer stalled for " .. r.max_gap_ms .. " ms")
    assert.is_true(r.ticks >= 5, "timer ticks while the request ran: " .. r.ticks)
    -- what arrived at the stand-in, and what came back
    local reqs = srv:requests(model)
    assert.are.equal(1, #reqs)
    assert.is_true(reqs[1].body.stream)
    assert_answer_about_image(r.final, "Describe this image in detail.")
    assert.matches("^# " .. image:gsub("%p", "%%%0"), r.final)
    assert.matches("\n> Describe this image in detail.\n", r.final, 1, true)
    assert.matches("_qwen3%-vl%-plus, [%d.]+ s, %d+ tokens_$", r.final)
    assert.matches("^qwenvl://%d+/sprite.png$", r.buf_name)
    assert.is_false(r.modifiable)
    -- streamed: a state with part of the answer and the streaming footer
    local partial = false
    for _, s in ipairs(r.snapshots) do
      if s:find("_streaming..._", 1, true) and s:find("STANDIN", 1, true)
          and not s:find(sha, 1, true) then partial = true end
    end
    assert.is_true(partial, "no streamed intermediate state:\n" .. table.concat(r.snapshots, "\n---\n"))
    assert.are.same({}, r.notes)
  end)

  it("runs on a timer when asked (setup{ loop = \"timer\" }); ask continues the conversation in the answer buffer", function()
    local model = standin.scenario_model("nvim-timer", "stall=200+delay=500")
    local r = nvim([[
      require("qwenvl.nvim").setup{ model = cfg.model, split = "none", loop = "timer", tick_ms = 10 }
      local qn = require("qwenvl.nvim")
      qn.load()
      ticker.start()
      local t0 = vim.loop.hrtime()
      vim.cmd("QwenVL describe " .. cfg.image)
      out.command_ms = ms_since(t0)
      out.status = qn.status()
      local buf = answer_bufs()[1]
      out.snapshots = {}
      out.finished = wait_answer(buf, out.snapshots)
      ticker.stop()
      out.ticks, out.max_gap_ms = ticker.ticks, ticker.max_gap_ms
      -- a follow-up question from the answer buffer: same image, same buffer
      vim.api.nvim_set_current_buf(buf)
      vim.cmd("QwenVL ask What colour is it?")
      out.bufs_after_ask = #answer_bufs()
      out.finished2 = wait_answer(buf)
      out.final = text_of(buf)
      out.history_roles = {}
      for i, t in ipairs(qn.history(buf)) do out.history_roles[i] = t.role end
    ]], { env = standin_env(), cfg = { model = model } })
    assert.is_true(r.finished and r.finished2, r.final)
    assert.are.equal("timer", r.status.loop)
    assert.is_nil(r.status.fd)
    assert.is_true(r.command_ms < 500, "the command blocked for " .. r.command_ms .. " ms")
    assert.is_true(r.max_gap_ms < 500, "the editor's timer stalled for " .. r.max_gap_ms .. " ms")
    local partial = false
    for _, s in ipairs(r.snapshots) do
      if s:find("_streaming..._", 1, true) and not s:find(sha, 1, true) and s:find("STANDIN", 1, true) then
        partial = true
      end
    end
    assert.is_true(partial, "no streamed intermediate state on the timer loop")
    assert.are.equal(1, r.bufs_after_ask)
    local first, second = r.final:match("^(.-\n> What colour is it%?\n)(.*)$")
    assert.is_string(first, r.final)
    assert_answer_about_image(first, "Describe this image in detail.")
    assert.matches("tokens_\n", first)
    assert_answer_about_image(second, "What colour is it?")
    -- the follow-up carried the conversation: the first question with the
    -- image (by SHA-256), the first answer as the buffer shows it, then
    -- the new question alone
    local reqs = srv:requests(model)
    assert.are.equal(2, #reqs)
    assert.are.same({ { "user", "Describe this image in detail.", { sha } } }, turns(reqs[1].body))
    local answer1 = first:match("\n> Describe this image in detail%.\n\n(.-)\n\n_qwen3")
    assert.are.same({ { "user", "Describe this image in detail.", { sha } },
                      { "assistant", answer1, {} },
                      { "user", "What colour is it?", {} } }, turns(reqs[2].body))
    assert.are.same({ "user", "assistant", "user", "assistant" }, r.history_roles)
    assert.are.same({}, r.notes)
  end)

  it("ask continues the image's answer buffer from anywhere; new starts it over", function()
    local model = standin.scenario_model("nvim-converse", "ok")
    local r = nvim([[
      require("qwenvl.nvim").setup{ model = cfg.model, split = "none" }
      local qn = require("qwenvl.nvim")
      local src = vim.api.nvim_get_current_buf()
      vim.api.nvim_buf_set_lines(src, 0, -1, false, { "see " .. cfg.image .. " here" })
      local function on_image()
        vim.api.nvim_set_current_buf(src)
        vim.api.nvim_win_set_cursor(0, { 1, 8 })
      end
      local function ask(cmd)
        on_image()
        vim.cmd(cmd)
        local buf = answer_bufs()[#answer_bufs()]
        assert(wait_answer(buf), "no answer to " .. cmd .. ":\n" .. text_of(buf))
        return buf
      end
      local b1 = ask("QwenVL ask What is it?")
      local b2 = ask("QwenVL ask And its size?")
      out.same_after_ask = b1 == b2
      out.history_after_two = #qn.history(b1)
      -- from the answer buffer itself: start over, then ask
      vim.api.nvim_set_current_buf(b1)
      vim.cmd("QwenVL new")
      out.history_after_new = #qn.history(b1)
      vim.api.nvim_set_current_buf(b1)
      vim.cmd("QwenVL ask Again?")
      out.finished3 = wait_answer(b1)
      -- from the source buffer, with a prompt: over again, at once
      local b4 = ask("QwenVL new Fresh start?")
      out.same_after_new = b4 == b1
      out.bufs = #answer_bufs()
      out.history_end = qn.history(b1)
      out.final = text_of(b1)
      -- a second question while an answer is arriving is refused, not mixed in
      vim.api.nvim_set_current_buf(b1)
      vim.cmd("QwenVL ask one")
      vim.cmd("QwenVL ask two")
      out.finished5 = wait_answer(b1)
      out.history_busy = #qn.history(b1)
    ]], { env = standin_env(), cfg = { model = model } })
    assert.is_true(r.same_after_ask and r.same_after_new and r.finished3 and r.finished5, r.final)
    assert.are.equal(1, r.bufs)
    assert.are.equal(4, r.history_after_two)
    assert.are.equal(0, r.history_after_new)
    assert.are.equal(2, #r.history_end)
    assert.are.equal("Fresh start?", r.history_end[1].text)
    assert.are.equal(sha, r.history_end[1].images[1].sha256)
    assert.are.equal(4, r.history_busy)
    -- the buffer reads as the conversation went: a mark where it started over
    local marks = 0
    for _ in r.final:gmatch("\n_new conversation_\n") do marks = marks + 1 end
    assert.are.equal(2, marks)
    local reqs = srv:requests(model)
    assert.are.equal(5, #reqs)
    local function prompts(body)
      local list = {}
      for _, t in ipairs(turns(body)) do list[#list + 1] = t[1] .. ":" .. (t[1] == "user" and t[2] or "...") end
      return table.concat(list, " | ")
    end
    assert.are.equal("user:What is it?", prompts(reqs[1].body))
    assert.are.equal("user:What is it? | assistant:... | user:And its size?", prompts(reqs[2].body))
    assert.are.equal("user:Again?", prompts(reqs[3].body))
    assert.are.equal("user:Fresh start?", prompts(reqs[4].body))
    assert.are.equal("user:Fresh start? | assistant:... | user:one", prompts(reqs[5].body))
    -- the image went with the first question of each conversation, and only there
    for i, want in ipairs({ { sha }, { sha }, { sha }, { sha }, { sha } }) do
      assert.are.same(want, turns(reqs[i].body)[1][3], "request " .. i)
    end
    assert.are.same({}, turns(reqs[2].body)[3][3])
    assert.are.equal(1, #r.notes)
    assert.are.equal("QwenVL: an answer is still arriving in this buffer; wait for it, or :QwenVL cancel",
      r.notes[1].msg)
  end)

  it("a file that is not an image: one message, no buffer, nothing sent", function()
    local model = standin.scenario_model("nvim-notimage", "ok")
    local notimage = dir .. "/notes.png"
    fx.write(notimage, "just text, not a picture\n")
    local r = nvim([[
      require("qwenvl.nvim").setup{ model = cfg.model, split = "none" }
      vim.cmd("QwenVL describe " .. cfg.notimage)
      out.bufs = #answer_bufs()
      out.in_flight = require("qwenvl.nvim").in_flight()
    ]], { env = standin_env(), cfg = { model = model, notimage = notimage } })
    assert.are.equal(0, r.bufs)
    assert.are.equal(0, r.in_flight)
    assert.are.equal(1, #r.notes)
    assert.matches("^qwenvl: invalid_request: image", r.notes[1].msg)
    assert.matches("notes.png", r.notes[1].msg, 1, true)
    assert.are.equal(0, #srv:requests(model))
  end)

  it("falls back to the timer when qwenvl.fd() gives no descriptor (a poll() engine)", function()
    local model = standin.scenario_model("nvim-nofd", "stall=200+delay=300")
    local r = nvim([[
      local qn = require("qwenvl.nvim").setup{ model = cfg.model, split = "none" }
      local q = assert(qn.load())
      q.fd = function() return nil end      -- what an engine without one descriptor returns
      vim.cmd("QwenVL describe " .. cfg.image)
      out.status = qn.status()
      local buf = answer_bufs()[1]
      out.finished = wait_answer(buf)
      out.final = text_of(buf)
    ]], { env = standin_env(), cfg = { model = model } })
    assert.is_true(r.finished, r.final)
    assert.are.equal("timer", r.status.loop)
    assert_answer_about_image(r.final, "Describe this image in detail.")
  end)

  it("cancels a slow request with :QwenVL cancel", function()
    local model = standin.scenario_model("nvim-cancel", "delay=8000")
    local r = nvim([[
      require("qwenvl.nvim").setup{ model = cfg.model }      -- default split: vsplit
      local qn = require("qwenvl.nvim")
      vim.cmd("QwenVL describe " .. cfg.image)
      local buf = answer_bufs()[1]
      out.windows = #vim.api.nvim_list_wins()
      out.shown = vim.api.nvim_get_current_buf() == buf
      -- until the stand-in has the request
      out.arrived = vim.wait(5000, function()
        local ok, s = pcall(vim.fn.system, { "curl", "-s", cfg.scenario_url })
        return ok and s:find('"attempts": *1') ~= nil
      end, 20)
      out.in_flight_before = qn.in_flight()
      local t0 = vim.loop.hrtime()
      vim.cmd("QwenVL cancel")
      out.finished = wait_answer(buf, nil, 8000)
      out.cancel_ms = ms_since(t0)
      out.in_flight_after = qn.in_flight()
      out.final = text_of(buf)
    ]], { env = standin_env(), cfg = { model = model,
          scenario_url = srv.root_url .. "/_standin/scenario/" .. standin.url_encode(standin.scenario_name(model)) } })
    assert.is_true(r.arrived)
    assert.are.equal(2, r.windows)
    assert.is_true(r.shown)
    assert.is_true(r.finished, r.final)
    assert.are.equal(1, r.in_flight_before)
    assert.are.equal(0, r.in_flight_after)
    assert.matches("\n_canceled_$", r.final)
    assert.not_matches("STANDIN", r.final)
    -- ended before the stand-in would have answered
    assert.is_true(r.cancel_ms < 8000, r.cancel_ms)
    assert.are.equal(1, srv:scenario(model).attempts)
    assert.are.equal(1, #r.notes)
    assert.are.equal("QwenVL: canceled 1 request", r.notes[1].msg)
  end)

  it("quits at once with a request in flight", function()
    local model = standin.scenario_model("nvim-quit", "delay=5000")
    local t0 = u.now()
    local r, log, exited_ok = nvim([[
      require("qwenvl.nvim").setup{ model = cfg.model, split = "none" }
      vim.cmd("QwenVL describe " .. cfg.image)
      out.in_flight = require("qwenvl.nvim").in_flight()
      vim.notify = real_notify      -- what goes wrong on the way out shows in the log
    ]], { env = standin_env(), cfg = { model = model } })   -- then :qa!
    local took = u.now() - t0
    assert.are.equal(1, r.in_flight)
    assert.is_true(exited_ok, log)
    assert.are.equal("", log)
    assert.is_true(took < 5, "exit waited for the answer: " .. took .. " s")
  end)

  it(":checkhealth qwenvl reports the module, ABI, libcurl/TLS, key source, endpoint and a probe", function()
    local before = srv:stats().models_requests
    local r = nvim([[
      vim.g.qwenvl_health_probe = 1
      out.lines = checkhealth()
    ]], { env = standin_env() })
    local text = table.concat(r.lines, "\n")
    assert.are.same({}, lines_with(r.lines, "ERROR"), text)
    assert.are.same({}, lines_with(r.lines, "WARNING"), text)
    local function ok_line(s)
      local hits = {}
      for _, l in ipairs(lines_with(r.lines, "- OK: ")) do
        if l:find(s, 1, true) then hits[#hits + 1] = l end
      end
      assert.are.equal(1, #hits, "no OK line with " .. s .. ":\n" .. text)
    end
    ok_line("loads: " .. u.root .. "/build/luajit/qwenvl.so (LuaJIT build, Lua 5.1 ABI; found via build)")
    ok_line("lua-cjson from package.cpath")
    ok_line("libcurl/")
    assert.matches("OK: libcurl/[%d.]+ OpenSSL/", text)
    ok_line("libvips loads")
    ok_line("API key found (from DASHSCOPE_API_KEY)")
    ok_line("endpoint " .. srv.base_url .. " (region custom, from DASHSCOPE_BASE_URL)")
    ok_line("probe: GET /models answered in")
    ok_line("qwenvl.fd() = ")
    assert.are.equal(before + 1, srv:stats().models_requests)
    assert.not_matches(srv.key, text, 1, true)
  end)

  it("explains a Lua 5.4 build with the command that fixes it", function()
    local root = checkout("only54", { "lua5.4" })
    local r = nvim([[
      require("qwenvl.nvim").setup{}                 -- says so once, at setup
      out.after_setup = #out.notes
      vim.cmd("QwenVL describe " .. cfg.image)        -- and again when used
      out.lines = checkhealth()
    ]], { root = root, env = standin_env() })
    local want = ("qwenvl: %s/build/lua5.4/qwenvl.so is built for Lua 5.4, but Neovim runs LuaJIT "
      .. "(the Lua 5.1 ABI); run `make LUA=luajit` in %s (lazy.nvim: build = \"make LUA=luajit\")")
      :format(root, root)
    assert.are.equal(1, r.after_setup)
    assert.are.equal(2, #r.notes)
    assert.are.equal(want, r.notes[1].msg)
    assert.are.equal(want, r.notes[2].msg)
    assert.are.same({ "  - ERROR: " .. want }, lines_with(r.lines, "ERROR"))
    assert.are.same({}, lines_with(r.lines, "- OK:"))
  end)

  it("explains a missing build", function()
    local root = checkout("unbuilt", {})
    local r = nvim([[
      vim.cmd("QwenVL describe " .. cfg.image)
      out.lines = checkhealth()
    ]], { root = root, env = standin_env() })
    local want = ("qwenvl: the module is not built (no %s/build/luajit/qwenvl.so); run `make LUA=luajit` in %s (lazy.nvim: build = \"make LUA=luajit\")")
      :format(root, root)
    assert.are.equal(1, #r.notes)
    assert.are.equal(want, r.notes[1].msg)
    assert.are.same({ "  - ERROR: " .. want }, lines_with(r.lines, "ERROR"))
  end)

  it("explains a missing key and sends nothing", function()
    local model = standin.scenario_model("nvim-nokey", "ok")
    local r = nvim([[
      require("qwenvl.nvim").setup{ model = cfg.model, split = "none" }
      vim.cmd("QwenVL describe " .. cfg.image)
      out.bufs = #answer_bufs()
      out.lines = checkhealth()
    ]], { env = { DASHSCOPE_BASE_URL = srv.base_url }, cfg = { model = model } })
    local want = "qwenvl: no DashScope API key; set DASHSCOPE_API_KEY in the environment Neovim starts from, "
      .. "or setup{ api_key = ... }, or add dashscope_api_key to ~/.alibabacloud/credentials; "
      .. "keys are per region, see :help qwenvl-keys"
    assert.are.equal(1, #r.notes)
    assert.are.equal(want, r.notes[1].msg)
    assert.are.equal(0, r.bufs)
    assert.are.equal(0, srv:scenario(model).attempts)
    local errors = lines_with(r.lines, "ERROR")
    assert.are.equal(1, #errors)
    assert.matches("ERROR: no DashScope API key: set DASHSCOPE_API_KEY", errors[1], 1, true)
    assert.matches("~/.alibabacloud/credentials", errors[1], 1, true)
  end)

  describe("where Neovim's package.cpath does not find lua-cjson", function()
    -- as in Neovim builds that do not look in Debian's /usr/lib/<arch>/lua/5.1
    local NO_SYSTEM_CPATH = 'lua package.cpath = "./?.so"'

    it("uses a private vim.json and leaves require('cjson') alone", function()
      local model = standin.scenario_model("nvim-vimjson", "ok")
      local r = nvim([[
        require("qwenvl.nvim").setup{ model = cfg.model, split = "none" }
        vim.cmd("QwenVL describe " .. cfg.image)
        local buf = answer_bufs()[1]
        out.finished = wait_answer(buf)
        out.final = text_of(buf)
        out.status = require("qwenvl.nvim").status()
        out.cjson_after = pcall(require, "cjson")
        out.lines = checkhealth()
      ]], { env = standin_env(), cmd = NO_SYSTEM_CPATH, cfg = { model = model } })
      assert.is_true(r.finished, r.final)
      assert.are.equal("vim.json", r.status.module.json)
      assert_answer_about_image(r.final, "Describe this image in detail.")
      assert.is_false(r.cjson_after)
      assert.are.equal(1, #lines_with(r.lines, "OK: lua-cjson is not on package.cpath"))
      assert.are.same({}, lines_with(r.lines, "ERROR"))
    end)

    it("with json = \"cjson\", says where lua-cjson is and what to add", function()
      local r = nvim([[
        require("qwenvl.nvim").setup{ json = "cjson", split = "none" }
        vim.cmd("QwenVL describe " .. cfg.image)
        out.lines = checkhealth()
      ]], { env = standin_env(), cmd = NO_SYSTEM_CPATH })
      assert.are.equal(1, #r.notes)
      local msg = r.notes[1].msg
      assert.matches("^qwenvl: lua%-cjson for Lua 5%.1 is not found", msg)
      local found = fx.sh("ls /usr/lib/*/lua/5.1/cjson.so 2>/dev/null | head -1"):gsub("%s+$", "")
      if found ~= "" then   -- Debian's lua-cjson: the message names its folder
        assert.matches(("add package.cpath = package.cpath .. \";%s/?.so\""):format(
          found:match("^(.*)/")), msg, 1, true)
      end
      assert.are.same({ "  - ERROR: " .. msg }, lines_with(r.lines, "ERROR"))
    end)
  end)

  it(":help qwenvl opens after :helptags, with its tags", function()
    local r = nvim([[
      vim.cmd("helptags " .. cfg.root .. "/doc")
      out.opened = {}
      for _, tag in ipairs({ "qwenvl", "qwenvl-setup", ":QwenVL", ":QwenVL-describe", ":QwenVL-ask",
                             ":QwenVL-new", ":QwenVL-cancel", "qwenvl-keys", "qwenvl-health",
                             "qwenvl-install", "qwenvl.nvim.history()" }) do
        vim.cmd("help " .. tag)
        local line = vim.api.nvim_get_current_line()
        out.opened[tag] = { file = vim.fn.expand("%:p"), buftype = vim.bo.buftype,
                            has_tag = line:find("*" .. tag .. "*", 1, true) ~= nil }
        vim.cmd("helpclose")
      end
    ]])
    for tag, o in pairs(r.opened) do
      assert.are.equal(u.root .. "/doc/qwenvl.txt", o.file, tag)
      assert.are.equal("help", o.buftype, tag)
      assert.is_true(o.has_tag, tag)
    end
  end)
end)
