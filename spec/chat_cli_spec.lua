-- `qwenvl chat` with standard input that is not a terminal: one question
-- per line, answers on stdout, no prompts. Run as a subprocess (bin/qwenvl
-- on the running interpreter) against the stand-in; what the stand-in
-- received proves the follow-ups carried the history and the images.
-- (spec/hosts/chat_tty_test.lua drives it in a real terminal, in tmux.)
local standin = require("spec.support.standin")
local fx = require("spec.support.fixtures")
local cli = require("qwenvl.cli")
local cjson = require("cjson")

local KEY = "sk-qwenvlchat-FAKEKEY-5e0c19"
local Q = fx.quote
local proc = require("spec.support.proc")
local LUA, ROOT, BIN = proc.LUA, proc.root, proc.BIN   -- this interpreter, the checkout's bin/qwenvl

-- What the stand-in received: per message {role, text, {image SHA-256s}}.
local turns = standin.turns

describe("qwenvl chat (standard input not a terminal)", function()
  local srv, dir, img1, img2, sha1, sha2

  setup(function()
    srv = standin.start { key = KEY }
    dir = fx.tmpdir()
    img1 = fx.png(dir .. "/first.png", 64, 48)
    img2 = fx.png(dir .. "/second.png", 40, 30)
    sha1, sha2 = fx.sha256(img1), fx.sha256(img2)
    fx.sh("ln -s " .. Q(ROOT .. "/examples") .. " " .. Q(dir .. "/examples"))
  end)
  teardown(function()
    if srv then srv:stop() end
    if dir then fx.rm(dir) end
  end)

  -- `qwenvl chat <args>` with `input` on stdin, in dir: code, stdout, stderr.
  local function chat(args, input, env)
    local inp, out, err = dir .. "/in.txt", dir .. "/out.txt", dir .. "/err.txt"
    fx.write(inp, input or "")
    local parts = { "cd", Q(dir), "&& env -u DASHSCOPE_REGION -u DASHSCOPE_BASE_URL -u DASHSCOPE_API_KEY",
                    "HOME=" .. Q(dir) }
    for k, v in pairs(env or { DASHSCOPE_API_KEY = KEY }) do parts[#parts + 1] = k .. "=" .. Q(v) end
    parts[#parts + 1] = ("%s %s chat --base-url %s %s <%s >%s 2>%s; echo $?"):format(
      LUA, Q(BIN), Q(srv.base_url), args, Q(inp), Q(out), Q(err))
    local code = tonumber(fx.sh(table.concat(parts, " ")):match("(%d+)%s*$"))
    local o, e = fx.read(out), fx.read(err)
    assert.is_nil(o:find(KEY, 1, true), "the key is on stdout")
    assert.is_nil(e:find(KEY, 1, true), "the key is on stderr")
    return code, o, e
  end

  local function answers(out)
    local list = {}
    for json in out:gmatch("STANDIN (%b{})\n") do list[#list + 1] = cjson.decode(json) end
    return list
  end

  it("follow-ups carry the history and the first image; /image adds one that stays", function()
    local model = standin.scenario_model("chat-pipe", "ok")
    local code, out, err = chat("--image first.png --model " .. Q(model),
      "What is it?\n\nAnd its colour?\n/image second.png\nCompare them.\nWhich is larger?\n")
    assert.are.equal(0, code, err)
    assert.are.equal("", err)                       -- no prompts, notes or footers
    local a = answers(out)
    assert.are.equal(4, #a, out)
    assert.are.same({ "What is it?", "And its colour?", "Compare them.", "Which is larger?" },
      { a[1].prompt, a[2].prompt, a[3].prompt, a[4].prompt })
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.are.equal(4, #lines)                     -- one line per answer
    local reqs = srv:requests(model)
    assert.are.equal(4, #reqs)
    for _, r in ipairs(reqs) do assert.is_true(r.body.stream) end
    assert.are.same({ { "user", "What is it?", { sha1 } } }, turns(reqs[1].body))
    assert.are.same({ { "user", "What is it?", { sha1 } },
                      { "assistant", lines[1], {} },
                      { "user", "And its colour?", {} } }, turns(reqs[2].body))
    local t3 = turns(reqs[3].body)
    assert.are.equal(5, #t3)
    assert.are.same({ "user", "Compare them.", { sha2 } }, t3[5])
    local t4 = turns(reqs[4].body)
    assert.are.equal(7, #t4)
    assert.are.same({ sha1 }, t4[1][3])
    assert.are.same({ sha2 }, t4[5][3])
    assert.are.same({ "user", "Which is larger?", {} }, t4[7])
  end)

  it("/save writes the transcript (no image data, the model, usage per answer); /reset starts over", function()
    local model = standin.scenario_model("chat-save", "ok")
    local code, out, err = chat("--image first.png --system 'Be brief.' --model " .. Q(model),
      "One?\n/image second.png\nTwo?\n/save deep/er/talk.json\n/reset\nThree?\n/save after.json\n")
    assert.are.equal(0, code, err)
    local text = fx.read(dir .. "/deep/er/talk.json")
    assert.is_nil(text:find("base64", 1, true))
    assert.is_nil(text:find(KEY, 1, true))
    local t = cjson.decode(text)
    assert.are.equal("qwenvl.chat", t.kind)
    assert.are.equal(model, t.model)
    assert.are.equal("Be brief.", t.system)
    assert.are.equal(srv.base_url, t.base_url)
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT", t.saved_at)
    assert.are.equal(4, #t.turns)
    assert.are.same({ "user", "assistant", "user", "assistant" },
      { t.turns[1].role, t.turns[2].role, t.turns[3].role, t.turns[4].role })
    assert.are.equal("One?", t.turns[1].text)
    assert.are.equal(sha1, t.turns[1].images[1].sha256)
    assert.are.equal("first.png", t.turns[1].images[1].path)
    assert.are.equal(64, t.turns[1].images[1].width)
    assert.are.equal(sha2, t.turns[3].images[1].sha256)
    assert.are.equal("second.png", t.turns[3].images[1].path)
    local shown = {}
    for l in out:gmatch("[^\n]+") do shown[#shown + 1] = l end
    assert.are.equal(3, #shown)
    for i, turn in ipairs({ t.turns[2], t.turns[4] }) do
      assert.are.equal(shown[i], turn.text)          -- the answer as it was printed
      assert.are.equal(answers(out)[i].model, turn.model)  -- as the service named it
      assert.is_number(turn.usage.total_tokens)
      assert.is_number(turn.usage.prompt_tokens)
      assert.are.equal("stop", turn.finish_reason)
      assert.is_string(turn.request_id)
    end
    -- after /reset: the first question's image again, none of the history
    local reqs = srv:requests(model)
    assert.are.equal(3, #reqs)
    assert.are.same({ { "system", "Be brief.", {} }, { "user", "Three?", { sha1 } } }, turns(reqs[3].body))
    local after = cjson.decode(fx.read(dir .. "/after.json"))
    assert.are.equal(2, #after.turns)
    assert.are.equal("Three?", after.turns[1].text)
  end)

  it("an error is one line on stderr and the conversation goes on; the exit code is the first failure's", function()
    local model = standin.scenario_model("chat-err", "ok", "500", "ok")
    local code, out, err = chat("--max-retries 0 --image first.png --model " .. Q(model),
      "One?\nTwo?\n/image missing.png\n/bogus\n/save\nThree?\n")
    assert.are.equal(6, code)
    local e = {}
    for l in err:gmatch("[^\n]+") do e[#e + 1] = l end
    assert.are.equal(4, #e, err)
    assert.matches("^qwenvl chat: server %(HTTP 500", e[1])
    assert.matches("^qwenvl chat: invalid_request: image: cannot use 'missing.png'", e[2])
    assert.are.equal("qwenvl chat: unknown command /bogus (/help lists them)", e[3])
    assert.are.equal("qwenvl chat: /save needs a file name: /save talk.json", e[4])
    assert.are.same({ "One?", "Three?" }, { answers(out)[1].prompt, answers(out)[2].prompt })
    -- the failed question is not part of the conversation
    local reqs = srv:requests(model)
    assert.are.equal(3, #reqs)
    local t3 = turns(reqs[3].body)
    assert.are.equal(3, #t3)
    assert.are.same({ "One?", "Three?" }, { t3[1][2], t3[3][2] })
  end)

  it("refuses what it cannot use before reading a line, and sends nothing", function()
    local before = #srv:requests()
    local code, _, err = chat("--image first.png", "Hello?\n", { DASHSCOPE_API_KEY = "" })
    assert.are.equal(4, code)
    assert.matches("^qwenvl chat: auth: no DashScope API key", err)
    code, _, err = chat("--image nothere.png", "Hello?\n")
    assert.are.equal(3, code)
    assert.matches("nothere.png", err, 1, true)
    code, _, err = chat("first.png", "Hello?\n")
    assert.are.equal(2, code)
    assert.matches("chat takes no arguments", err, 1, true)
    code, _, err = chat("--max-history-tokens 0", "Hello?\n")
    assert.are.equal(2, code)
    assert.matches("--max-history-tokens must be a whole number", err, 1, true)
    assert.are.equal(before, #srv:requests())
  end)

  it("--no-stream asks without streaming; --max-history-tokens bounds what is sent; // asks a slash", function()
    local model = standin.scenario_model("chat-nostream", "ok")
    local code, out, err = chat("--no-stream --max-history-tokens 200 --image first.png --model " .. Q(model),
      "//etc/passwd?\n" .. string.rep("Tell me more, in detail, please.\n", 4))
    assert.are.equal(0, code, err)
    assert.are.equal(5, #answers(out))
    local reqs = srv:requests(model)
    assert.is_falsy(reqs[1].body.stream)
    assert.are.equal("/etc/passwd?", turns(reqs[1].body)[1][2])
    -- the history outgrew 200 estimated tokens: older turns were left out,
    -- never the first image
    local last = turns(reqs[5].body)
    assert.is_true(#last < 9, #last)
    assert.are.same({ sha1 }, last[1][3])
  end)

  it("ends at once on empty input; the help's examples parse and the first runs", function()
    local code, out, err = chat("--image first.png", "")
    assert.are.equal(0, code, err)
    assert.are.equal("", out)
    local examples = {}
    for line in cli.HELP.chat:gmatch("[^\n]+") do
      local ex = line:match("^%s+qwenvl chat(.*)$")
      if ex then examples[#examples + 1] = ex end
    end
    assert.is_true(#examples >= 2)
    for _, ex in ipairs(examples) do
      local c = chat(ex .. " --help", "")
      assert.are.equal(0, c, ex)
    end
    local c2, _, e2 = chat(examples[1], "What is in it?\n")
    assert.are.equal(0, c2, e2)
  end)
end)
