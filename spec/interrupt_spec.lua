-- Work that survives: real processes, real signals. A plain script blocked
-- in qwenvl ends on Ctrl-C as interrupted; `qwenvl batch` and
-- examples/batch/caption.lua, interrupted (SIGINT to the process group, as
-- a terminal sends it) or killed (kill -9) while answers are on their way,
-- keep every item that finished, and a re-run sends only the rest. What
-- arrived is read from the stand-in's request log: every image answered
-- exactly once across the runs, except the requests in flight at the
-- signal (the stand-in saw their client leave).
local standin = require("spec.support.standin")
local fx = require("spec.support.fixtures")
local proc = require("spec.support.proc")
local cjson = require("cjson")

local KEY = "sk-qwenvlint-FAKEKEY-31d7a2"
local LUA = proc.LUA
local CAPTION = proc.root .. "/examples/batch/caption.lua"

describe("interrupts and kills", function()
  local srv, work, env

  setup(function()
    srv = standin.start { key = KEY }
    work = fx.tmpdir()
    env = { DASHSCOPE_API_KEY = KEY, DASHSCOPE_BASE_URL = srv.base_url, HOME = work }
  end)
  teardown(function()
    if srv then srv:stop() end
    if work then fx.rm(work) end
  end)

  local function images(dir, n)
    fx.sh("mkdir -p " .. proc.quote(dir))
    local shas = {}
    for i = 1, n do
      local p = fx.png(("%s/img%02d.png"):format(dir, i), 24 + i, 20)
      shas[fx.sha256(p)] = p
    end
    return shas
  end

  -- the stand-in's records of a scenario, by image SHA-256
  local function by_image(model)
    local answered, gone, total = {}, 0, 0
    for _, r in ipairs(srv:requests(model)) do
      total = total + 1
      local url = r.body.messages[#r.body.messages].content[1].image_url.url
      if r.client_gone then
        gone = gone + 1
      else
        answered[url.sha256] = (answered[url.sha256] or 0) + 1
      end
    end
    return answered, gone, total
  end

  local function in_flight() return srv:stats().in_flight end

  local function journal_items(path)
    local n = 0
    for line in (fx.try_read(path) or ""):gmatch("[^\n]+") do
      if line:find('"t":"item"', 1, true) then n = n + 1 end
    end
    return n
  end

  local function one_journal(evdir)
    local out = fx.sh("ls " .. proc.quote(evdir .. "/jobs"))
    local id = out:match("(%x+)")
    assert.is_string(id, "no job folder in " .. evdir)
    return evdir .. "/jobs/" .. id .. "/journal.jsonl"
  end

  -- Four slow answers (two waves of two), then quick ones: the signal
  -- goes 0.3 s into the second wave, far from any answer's arrival.
  local function slow_model(name)
    return standin.scenario_model(name, "delay=1500", "delay=1500", "delay=1500", "delay=1500", "ok")
  end

  local function wait_second_wave(journal)
    proc.until_true(function() return journal_items(journal()) >= 2 and in_flight() == 2 end, 20,
      "the second wave")
    proc.sleep(0.3)
  end

  local function wait_gone(model, n)
    proc.until_true(function() return select(2, by_image(model)) >= n end, 10,
      "the stand-in to see the interrupted requests' clients leave")
  end

  describe("a plain script blocked in qwenvl ends on SIGINT, as interrupted, within a second", function()
    local CODES = {
      chat = [[local r, e = q.chat{ prompt = "x", image = IMAGE, model = MODEL }
               print("RESULT", r and r.text, e and e.code)]],
      ["h:wait"] = [[local h = q.start{ prompt = "x", image = IMAGE, model = MODEL }
               local r, e = h:wait(30) print("RESULT", r, e and e.code)]],
      chat_many = [[local rs = q.chat_many({ { prompt = "x", image = IMAGE, model = MODEL },
                                            { prompt = "y", image = IMAGE, model = MODEL } })
               print("RESULT", #rs)]],
      stream = [[local r, e = q.chat{ prompt = "x", image = IMAGE, model = MODEL, stream = true,
                                     on_delta = function(t) io.write(t) end }
               print("RESULT", r and r.text, e and e.code)]],
    }
    for _, interp in ipairs({ "lua5.4", "luajit" }) do
      for _, what in ipairs({ "chat", "h:wait", "chat_many", "stream" }) do
        it(interp .. ", " .. what, function()
          local model = standin.scenario_model("plain", what == "stream" and "stall=5000" or "delay=5000")
          local img = fx.png(work .. "/plain.png", 32, 24)
          local abi = interp == "luajit" and "luajit" or "lua5.4"
          local script = work .. "/plain-" .. abi .. ".lua"
          fx.write(script, ("package.cpath = %q .. package.cpath\nlocal q = require('qwenvl')\n"
            .. "local IMAGE, MODEL = %q, %q\n%s\n"):format(proc.root .. "/build/" .. abi .. "/?.so;",
            img, model, CODES[what]))
          local p = proc.spawn({ interp, script }, { env = env, cwd = work })
          finally(function() p:cleanup() end)
          local expect = what == "chat_many" and 2 or 1
          proc.until_true(function() return in_flight() >= expect end, 10, "the request")
          proc.sleep(0.2)
          p:signal("INT")
          local code = p:wait(10)
          local took = p.ended_at - p.signalled_at
          io.stderr:write(("\n[interrupt %s %s] ended %.0f ms after SIGINT\n"):format(interp, what, took * 1000))
          p:cleanup()
          assert.are.equal(1, code, p.err)        -- lua.c / luajit: an error ends the script
          assert.matches("interrupted!", p.err, 1, true)
          assert.is_nil(p.out:find("RESULT", 1, true), "a result was printed: " .. p.out)
          assert.is_true(took < 1, ("took %.3f s"):format(took))
          -- the transfer was cancelled: the stand-in saw its client leave
          wait_gone(model, expect)
        end)
      end
    end
  end)

  describe("qwenvl batch", function()
    for _, interp in ipairs({ "lua5.4", "luajit" }) do
      for _, sig in ipairs({ "INT", "KILL" }) do
        it(("keeps what finished on SIG%s and resumes (%s)"):format(sig, interp), function()
          local dir = work .. "/b-" .. interp .. "-" .. sig
          local shas = images(dir .. "/imgs", 8)
          local model = slow_model("batch" .. sig)
          local e = {}
          for k, v in pairs(env) do e[k] = v end
          e.QWENVL_LUA = interp
          -- through the launcher, as a user runs it: it must exec the interpreter
          local args = { proc.BIN, "batch", "imgs", "--prompt", "Caption this", "--model", model,
                         "--concurrency", "2" }
          local p = proc.spawn(args, { env = e, cwd = dir })
          finally(function() p:cleanup() end)
          local evdir = dir .. "/output/alicloud-ai-multimodal-qwen-vl"
          wait_second_wave(function() return one_journal(evdir) end)
          -- the launcher replaced itself: the group leader is the interpreter
          local comm = (fx.try_read("/proc/" .. p.pid .. "/comm") or ""):gsub("%s+$", "")
          assert.are.equal(interp, comm)
          p:signal(sig)
          local code = p:wait(15)
          p:cleanup()
          local journal = one_journal(evdir)
          assert.are.equal(2, journal_items(journal))
          if sig == "INT" then
            assert.are.equal(130, code, p.err)
            -- one line: what was kept and how to resume
            assert.matches("qwenvl batch: interrupted: kept the 2 images that finished %(2 of 8 done in all%); "
              .. "run the same command again to send the other 6", p.err)
            assert.are.equal(1, select(2, p.err:gsub("interrupted", "")))
            -- the two answers are on stdout and in their records
            assert.are.equal(2, select(2, p.out:gsub("\n", "")))
          else
            assert.are.equal(137, code)
          end
          wait_gone(model, 2)

          local code2, out2, err2 = proc.run(args, { env = e, cwd = dir })
          assert.are.equal(0, code2, err2)
          assert.matches("resuming job %x+: 2 of 8 already done, skipped; sending 6", err2)
          local lines = 0
          for _ in out2:gmatch("[^\n]+") do lines = lines + 1 end
          assert.are.equal(8, lines)
          -- what arrived: each image answered once, the two in flight at the
          -- signal left without an answer and were sent again
          local answered, gone, total = by_image(model)
          assert.are.equal(2, gone)
          assert.are.equal(10, total)
          for sha, path in pairs(shas) do
            assert.are.equal(1, answered[sha], path .. " answered " .. tostring(answered[sha]) .. " times")
          end
          assert.are.equal(8, journal_items(journal))
        end)
      end
    end

    it("a second process on the same job says which process holds it and exits 2", function()
      local dir = work .. "/lock"
      images(dir .. "/imgs", 4)
      local model = standin.scenario_model("lock", "delay=3000")
      local args = { LUA, proc.BIN, "batch", "imgs", "--prompt", "x", "--model", model }
      local p = proc.spawn(args, { env = env, cwd = dir })
      finally(function() p:cleanup() end)
      proc.until_true(function() return in_flight() >= 1 end, 10, "the first batch")
      local before = srv:stats().chat_requests
      local code, out, err = proc.run(args, { env = env, cwd = dir })
      assert.are.equal(2, code, err)
      assert.matches("qwenvl batch: this job is already running in process " .. p.pid, err, 1, true)
      assert.are.equal("", out)
      assert.are.equal(before, srv:stats().chat_requests)
      assert.are.equal(0, p:wait(30), p.err)
      p:cleanup()
    end)
  end)

  describe("examples/batch/caption.lua", function()
    for _, sig in ipairs({ "INT", "KILL" }) do
      it("keeps what finished on SIG" .. sig .. " and resumes", function()
        local dir = work .. "/c-" .. sig
        local shas = images(dir, 8)
        local model = slow_model("caption" .. sig)
        local args = { LUA, CAPTION, "--no-progress", "--concurrency", "2", "--model", model, dir }
        local p = proc.spawn(args, { env = env, cwd = work })
        finally(function() p:cleanup() end)
        local journal = dir .. "/captions.json.job/journal.jsonl"
        wait_second_wave(function() return journal end)
        p:signal(sig)
        local code = p:wait(15)
        p:cleanup()
        assert.are.equal(2, journal_items(journal))
        if sig == "INT" then
          assert.are.equal(130, code, p.err)
          assert.matches("interrupted: 2 of 8 captioned and kept", p.err, 1, true)
          local m = cjson.decode(fx.read(dir .. "/captions.json"))
          assert.are.equal(2, m.ok)
          assert.are.equal(8, m.count)
        else
          assert.are.equal(137, code)
        end
        wait_gone(model, 2)

        local code2, _, err2 = proc.run(args, { env = env, cwd = work })
        assert.are.equal(0, code2, err2)
        assert.matches("2 of 8 already captioned", err2, 1, true)
        local m = cjson.decode(fx.read(dir .. "/captions.json"))
        assert.are.equal(8, m.ok)
        local answered, gone, total = by_image(model)
        assert.are.equal(2, gone)
        assert.are.equal(10, total)
        for sha, path in pairs(shas) do
          assert.are.equal(1, answered[sha], path .. " answered " .. tostring(answered[sha]) .. " times")
        end
        for _, e in ipairs(m.images) do assert.matches("^STANDIN", e.caption) end
      end)
    end
  end)
end)
