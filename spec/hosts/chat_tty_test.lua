-- `qwenvl chat` as a person uses it: in a real terminal (tmux, 120x40, a
-- server of its own on a private socket), typing with send-keys and
-- reading the screen with capture-pane, on Lua 5.4 and on LuaJIT
-- (QWENVL_LUA picks the interpreter bin/qwenvl execs). What the stand-in
-- received proves the follow-ups carried the history and the images;
-- the files given with --image and /image are removed after their first
-- use, so a later turn that still carries them shows they were encoded
-- once. Ctrl-C goes through the terminal to the process group, as a
-- keyboard's does. The chat runs under `bash -c 'trap : INT; ...; echo
-- exit=$? > file'`: the trap keeps bash alive through a Ctrl-C (its
-- child gets the default action back at exec), so the exit status is
-- known even when the chat dies of the signal (128 + 2 = 130).
local standin = require("spec.support.standin")
local fx = require("spec.support.fixtures")
local u = require("spec.hosts.util")
local cjson = require("cjson")

local KEY = "sk-qwenvltty-FAKEKEY-9d41c7"
local Q = u.quote
local TIMEOUT_S = 30          -- for a screen that never comes: a failure, not a measurement

-- What the stand-in received: per message {role, text, {image SHA-256s}}.
local turns = standin.turns

local function count(s, pattern)
  local n = 0
  for _ in s:gmatch(pattern) do n = n + 1 end
  return n
end

describe("qwenvl chat in a terminal (tmux)", function()
  local srv, dir, sock
  local n = 0

  setup(function()
    assert(u.have("tmux"), "tmux not installed (apt-get install tmux)")
    srv = standin.start { key = KEY }
    dir = fx.tmpdir()
    sock = dir .. "/tmux.sock"
  end)
  teardown(function()
    if sock then fx.sh("tmux -S " .. Q(sock) .. " kill-server 2>/dev/null") end
    if srv then srv:stop() end
    if dir then fx.rm(dir) end
  end)

  local function tmux(args)
    return (fx.sh("tmux -S " .. Q(sock) .. " " .. args))
  end

  -- A terminal running `qwenvl chat <args>` on interpreter `lua`.
  local function terminal(lua, args)
    n = n + 1
    local t = { name = "chat" .. n, rc = ("%s/chat%d.rc"):format(dir, n) }
    local inner = table.concat({
      "cd", Q(u.root), "&& env -u DASHSCOPE_REGION -u DASHSCOPE_BASE_URL",
      "HOME=" .. Q(dir), "DASHSCOPE_API_KEY=" .. Q(KEY), "QWENVL_LUA=" .. lua,
      "bin/qwenvl chat --base-url", Q(srv.base_url), args,
      "; echo exit=$? >" .. Q(t.rc) }, " ")
    tmux(("new-session -d -s %s -x 120 -y 40 %s"):format(t.name, Q("bash -c " .. Q("trap : INT; " .. inner))))
    tmux("set-option -t " .. t.name .. " remain-on-exit on")
    function t.screen()
      return tmux("capture-pane -p -J -S - -t " .. t.name)
    end
    -- poll the screen until pred(screen) is true
    function t.wait(pred, what)
      local deadline = u.now() + TIMEOUT_S
      local s
      repeat
        s = t.screen()
        if pred(s) then return s end
        u.sleep(0.05)
      until u.now() > deadline
      error(("waited %d s for %s; the screen:\n%s"):format(TIMEOUT_S, what, s))
    end
    -- the prompt, waiting for a line (the last line on the screen)
    function t.ready(s)
      return s:gsub("%s+$", ""):match("\n>$") ~= nil or s:gsub("%s+$", "") == ">"
    end
    function t.type(line)
      tmux(("send-keys -t %s -l %s"):format(t.name, Q(line)))
      tmux(("send-keys -t %s Enter"):format(t.name))
    end
    function t.key(k) tmux(("send-keys -t %s %s"):format(t.name, k)) end
    -- ask and wait for the answer's footer ("(model, 0.01 s, 123 tokens)")
    function t.ask(line)
      local before = count(t.screen(), "\n%([^\n]- tokens%)")
      t.type(line)
      local s = t.wait(function(s)
        return count(s, "\n%([^\n]- tokens%)") > before and t.ready(s)
      end, "answer to " .. line)
      -- the answer: the line after the question
      local answer = s:match("\n> " .. line:gsub("%p", "%%%0") .. "\n([^\n]*)\n")
      return answer, s
    end
    function t.exit_status()
      local deadline = u.now() + TIMEOUT_S
      while u.now() < deadline do
        local s = fx.try_read(t.rc)
        if s and s:match("exit=%d+") then return tonumber(s:match("exit=(%d+)")) end
        u.sleep(0.05)
      end
      error("the chat did not end:\n" .. t.screen())
    end
    -- the interpreter that runs the chat: bash's child
    function t.interpreter()
      local pid = tmux("display -p -t " .. t.name .. " '#{pane_pid}'"):match("%d+")
      return (fx.sh("ps -o comm= --ppid " .. pid):gsub("%s+$", ""))
    end
    return t
  end

  local function report(answer)
    local json = assert(answer and answer:match("^STANDIN (%b{})$"), "not a stand-in answer: " .. tostring(answer))
    return cjson.decode(json)
  end

  for _, lua in ipairs({ "lua5.4", "luajit" }) do
    describe("on " .. lua, function()
      local abi = lua

      setup(function()
        assert(u.exists(("%s/build/%s/qwenvl.so"):format(u.root, abi)), "run make LUA=" .. lua .. " first")
      end)

      it("converses: streamed answers, follow-ups with the history, /image, /save, /reset, Ctrl-D", function()
        local first = fx.png(("%s/first-%s.png"):format(dir, abi), 64, 48)
        local second = fx.png(("%s/second-%s.png"):format(dir, abi), 40, 30)
        local sha1, sha2 = fx.sha256(first), fx.sha256(second)
        local model = standin.scenario_model("tty-" .. abi, "ok")
        local t = terminal(lua, "--image " .. Q(first) .. " --model " .. Q(model))
        local s = t.wait(t.ready, "the prompt")
        assert.are.equal(lua, t.interpreter())
        assert.matches("qwenvl chat: " .. model:gsub("%p", "%%%0") .. " at " .. srv.base_url:gsub("%p", "%%%0")
          .. ", about first%-" .. abi:gsub("%p", "%%%0") .. "%.png%. /help lists the commands; Ctrl%-D ends%.", s)

        local a1 = t.ask("What is in the picture?")
        local r1 = report(a1)
        assert.are.equal("What is in the picture?", r1.prompt)
        assert.are.equal(sha1, r1.images[1].sha256)
        os.remove(first)              -- read once: later turns send what was encoded

        local a2 = t.ask("And its colour?")
        assert.are.equal("And its colour?", report(a2).prompt)
        local reqs = srv:requests(model)
        assert.are.equal(2, #reqs)
        assert.is_true(reqs[2].body.stream)
        assert.are.same({ { "user", "What is in the picture?", { sha1 } },
                          { "assistant", a1, {} },
                          { "user", "And its colour?", {} } }, turns(reqs[2].body))

        t.type("/image " .. second)
        t.wait(function(x) return x:find("(second-" .. abi .. ".png (40x30) goes with the next question)", 1, true)
          and t.ready(x) end, "/image note")
        os.remove(second)
        local a3 = t.ask("Compare them.")
        assert.are.same({ sha1, sha2 }, { report(a3).images[1].sha256, report(a3).images[2].sha256 })
        reqs = srv:requests(model)
        local t3 = turns(reqs[3].body)
        assert.are.equal(5, #t3)
        assert.are.same({ sha1 }, t3[1][3])
        assert.are.same({ "user", "Compare them.", { sha2 } }, t3[5])

        local saved = ("%s/saved/%s/talk.json"):format(dir, abi)
        t.type("/save " .. saved)
        t.wait(function(x) return x:find("(saved 6 turns to " .. saved .. ")", 1, true) and t.ready(x) end,
          "/save note")
        local text = fx.read(saved)
        assert.is_nil(text:find("base64", 1, true))
        assert.is_nil(text:find(KEY, 1, true))
        local tr = cjson.decode(text)
        assert.are.equal(model, tr.model)
        assert.are.equal(6, #tr.turns)
        assert.are.same({ a1, a2, a3 }, { tr.turns[2].text, tr.turns[4].text, tr.turns[6].text })
        assert.are.equal(sha1, tr.turns[1].images[1].sha256)
        assert.are.equal(first, tr.turns[1].images[1].path)
        assert.are.equal(sha2, tr.turns[5].images[1].sha256)
        assert.are.equal(second, tr.turns[5].images[1].path)
        for i = 2, 6, 2 do assert.is_number(tr.turns[i].usage.total_tokens) end

        t.type("/reset")
        t.wait(function(x) return x:find("(conversation reset; the next question is about first-" .. abi
          .. ".png (64x48))", 1, true) and t.ready(x) end, "/reset note")
        local a4 = t.ask("Fresh start?")
        assert.are.equal("Fresh start?", report(a4).prompt)
        reqs = srv:requests(model)
        assert.are.equal(4, #reqs)
        assert.are.same({ { "user", "Fresh start?", { sha1 } } }, turns(reqs[4].body))

        t.key("C-d")
        assert.are.equal(0, t.exit_status())
        s = t.screen()
        assert.are.equal(4, count(s, "\n%([^\n]- tokens%)"))
        assert.is_nil(s:find(KEY, 1, true))
      end)

      it("Ctrl-C stops a streaming answer and the prompt comes back; another Ctrl-C ends the chat (130)", function()
        local img = fx.png(("%s/slow-%s.png"):format(dir, abi), 64, 48)
        local sha = fx.sha256(img)
        -- the first answer pauses 8 s after its second piece; the next is prompt
        local model = standin.scenario_model("tty-stop-" .. abi, "stall=8000", "ok")
        local t = terminal(lua, "--image " .. Q(img) .. " --model " .. Q(model))
        t.wait(t.ready, "the prompt")
        t.type("Tell me slowly.")
        t.wait(function(x) return x:find("\n> Tell me slowly.\nSTANDIN {", 1, true) end, "the answer's start")
        t.key("C-c")
        local s = t.wait(function(x)
          return x:find("(stopped: the question is left out of the conversation; another Ctrl-C ends the chat)",
            1, true) and t.ready(x)
        end, "the note that the answer stopped")
        assert.are.equal(0, count(s, "\n%([^\n]- tokens%)"))   -- it never finished
        assert.is_nil(fx.try_read(t.rc))                       -- and the chat goes on
        -- the transfer was closed under the stand-in's stall (which it
        -- notes as soon as it sees the connection go)
        local deadline = u.now() + TIMEOUT_S
        local reqs
        repeat
          reqs = srv:requests(model)
          if reqs[1] and reqs[1].client_gone then break end
          u.sleep(0.05)
        until u.now() > deadline
        assert.are.equal(1, #reqs)
        assert.is_true(reqs[1].client_gone)
        local a = t.ask("Still there?")
        assert.are.equal("Still there?", report(a).prompt)
        reqs = srv:requests(model)
        assert.are.equal(2, #reqs)
        assert.are.same({ { "user", "Still there?", { sha } } }, turns(reqs[2].body))
        t.key("C-c")
        assert.are.equal(130, t.exit_status())
      end)

      it("Ctrl-C at the prompt ends the chat with 130 and says so", function()
        local t = terminal(lua, "")
        t.wait(t.ready, "the prompt")
        t.key("C-c")
        assert.are.equal(130, t.exit_status())
        local s = t.screen()
        assert.matches("\n> ^C\nqwenvl chat: interrupted\n", s, 1, true)
      end)
    end)
  end
end)
