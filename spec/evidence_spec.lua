-- qwenvl.evidence on its own: the JSON writer (exact text: numbers,
-- strings, arrays and objects, indentation, cycles), UTF-8 repair at every
-- boundary of RFC 3629, redaction (each secret field name, the key
-- heuristics, data URLs, the forms of opts) and the record files (names,
-- atomic writes, the checks before sending). workflow_spec.lua covers the
-- records a real run writes.
local evidence = require("qwenvl.evidence")
local fx = require("spec.support.fixtures")
local cjson = require("cjson")

local R = "\239\191\189"   -- U+FFFD
local NULL = cjson.null

describe("qwenvl.evidence", function()
  local enc = evidence.encode

  describe("encode", function()
    it("writes scalars as JSON", function()
      assert.are.equal("null", enc(nil))
      assert.are.equal("null", enc(NULL))
      assert.are.equal("true", enc(true))
      assert.are.equal("false", enc(false))
      assert.are.equal("0", enc(0))
      assert.are.equal("-7", enc(-7))
      assert.are.equal("42", enc(42.0))
      assert.are.equal("0.5", enc(0.5))
      assert.are.equal("0.33333333333333", enc(1 / 3))
      assert.are.equal("999999999999999", enc(999999999999999))
      assert.are.equal("-999999999999999", enc(-999999999999999))
      assert.are.equal("1e+15", enc(1e15))
      assert.are.equal("-1e+15", enc(-1e15))
      assert.are.equal("1.5e+20", enc(1.5e20))
      assert.are.equal("null", enc(0 / 0))
      assert.are.equal("null", enc(math.huge))
      assert.are.equal("null", enc(-math.huge))
      assert.are.equal("null", enc(print))
    end)

    it("escapes what JSON requires and nothing more", function()
      assert.are.equal([["a\"b\\c/d"]], enc('a"b\\c/d'))
      assert.are.equal([["\n\r\t\b\f"]], enc("\n\r\t\b\f"))
      assert.are.equal([["\u0000\u0001\u001f\u007f"]], enc("\0\1\31\127"))
      assert.are.equal('" ~"', enc(" ~"))
      assert.are.equal('"中文"', enc("中文"))
    end)

    it("tells arrays from objects", function()
      assert.are.equal("[1,2,3]", enc({ 1, 2, 3 }))
      assert.are.equal("{}", enc({}))
      assert.are.equal("[]", enc(evidence.array()))
      assert.are.equal("[]", enc(evidence.array({})))
      assert.are.equal("{}", enc(evidence.object()))
      assert.are.equal('{"1":"a"}', enc(evidence.object({ "a" })))
      assert.are.equal("[1]", enc(setmetatable({ 1 }, { __jsontype = "array" })))
      assert.are.equal('{"1":1}', enc(setmetatable({ 1 }, { __jsontype = "object" })))
      assert.are.equal("[]", enc(setmetatable({}, { __jsontype = "array" })))
      if cjson.empty_array_mt then
        assert.are.equal("[]", enc(setmetatable({}, cjson.empty_array_mt)))
      end
      -- OpenResty's cjson marks decoded arrays with cjson.array_mt (Debian's
      -- has none: lend it one); any other metatable says nothing
      local had = cjson.array_mt
      cjson.array_mt = had or {}
      local ok, err = pcall(function()
        assert.are.equal("[]", enc(setmetatable({}, cjson.array_mt)))
        assert.are.equal("{}", enc(setmetatable({}, {})))
        assert.are.equal('{"a":1}', enc(setmetatable({ a = 1 }, {})))
      end)
      cjson.array_mt = had
      assert(ok, err)
      -- not a sequence: an object with the keys as strings
      assert.are.equal('{"1":"a","3":"c"}', enc({ [1] = "a", [3] = "c" }))
      assert.are.equal('{"0":"z","1":"a"}', enc({ [0] = "z", [1] = "a" }))
      assert.are.equal('{"-1":"m"}', enc({ [-1] = "m" }))
      assert.are.equal('{"1.5":"h"}', enc({ [1.5] = "h" }))
      assert.are.equal('{"1":"a","x":"b"}', enc({ "a", x = "b" }))
      -- a table with an unrelated metatable is judged by its keys
      assert.are.equal('[1,2]', enc(setmetatable({ 1, 2 }, {})))
    end)

    it("sorts keys, leaves out functions and userdata, keeps null", function()
      assert.are.equal('{"a":1,"b":[1,2],"c":{"d":null}}',
        enc({ c = { d = NULL }, b = { 1, 2 }, a = 1 }))
      assert.are.equal('{"B":2,"a":1}', enc({ a = 1, B = 2 }))
      assert.are.equal('{"k":1}', enc({ k = 1, f = print, co = coroutine.create(print),
                                        u = io.stdout }))
      assert.are.equal("[null,1]", enc({ print, 1 }))
    end)

    it("pretty-prints with indent: a number of spaces, a string, or true", function()
      local v = { b = { 1, { x = true } }, a = {}, e = evidence.array() }
      local two = '{\n  "a": {},\n  "b": [\n    1,\n    {\n      "x": true\n    }\n  ],\n  "e": []\n}'
      assert.are.equal(two, enc(v, { indent = 2 }))
      assert.are.equal(two, enc(v, { indent = "  " }))
      assert.are.equal(two, enc(v, { indent = true }))
      assert.are.equal('{\n\t"a": 1\n}', enc({ a = 1 }, { indent = "\t" }))
      assert.are.equal('[\n   1,\n   2\n]', enc({ 1, 2 }, { indent = 3 }))
      assert.are.equal('{"a":1}', enc({ a = 1 }, {}))
    end)

    it("marks a cycle, and writes a table met twice (not a cycle) twice", function()
      local t = { name = "t" }
      t.self = t
      assert.are.equal('{"name":"t","self":"<cycle>"}', enc(t))
      local shared = { 1 }
      assert.are.equal('{"a":[1],"b":[1]}', enc({ a = shared, b = shared }))
      local list = {}
      list[1] = list
      assert.are.equal('["<cycle>"]', enc(list))
    end)
  end)

  describe("valid_utf8", function()
    local v = evidence.valid_utf8
    it("keeps well-formed text as it is", function()
      for _, s in ipairs { "", "plain", "\194\128", "\223\191", "\224\160\128", "\237\159\191",
                           "\238\128\128", "\239\191\191", "\240\144\128\128", "\243\191\191\191",
                           "\244\143\191\191", "é中😀" } do
        assert.are.equal(s, v(s))
      end
    end)

    it("replaces each byte that begins no well-formed sequence", function()
      local cases = {
        { "\128", R }, { "\191", R },                   -- a lone continuation byte
        { "\192\128", R .. R }, { "\193\191", R .. R },   -- overlong lead bytes
        { "\245\128\128\128", R .. R .. R .. R },         -- past U+10FFFF
        { "\255", R }, { "\254x", R .. "x" },
        { "\224\159\191", R .. R .. R },                  -- E0: overlong below A0
        { "\237\160\128", R .. R .. R },                  -- ED: a surrogate
        { "\240\143\191\191", R .. R .. R .. R },         -- F0: overlong below 90
        { "\244\144\128\128", R .. R .. R .. R },         -- F4: past U+10FFFF
        { "\194", R }, { "\226\130", R .. R },            -- cut at the end
        { "\240\159\152", R .. R .. R },
        { "\194A", R .. "A" },                            -- second byte not a continuation
        { "\194\127", R .. "\127" },                     -- 7F: just below the continuations
        { "\226\130\127", R .. R .. "\127" },
        { "\194\192", R .. R },                           -- C0: just above them
        { "\226\130A", R .. R .. "A" },                   -- third byte
        { "\240\159\152A", R .. R .. R .. "A" },          -- fourth byte
        { "\226\192\128", R .. R .. R },                  -- third byte above BF... and C0
        { "\240\159\255\128", R .. R .. R .. R },
        { "a\255b\226\130c", "a" .. R .. "b" .. R .. R .. "c" },
      }
      for _, c in ipairs(cases) do
        local got = v(c[1])
        assert.are.equal(c[2], got, ("%q"):format(c[1]))
      end
    end)

    it("is what encode writes", function()
      assert.are.equal('"a' .. R .. 'b"', enc("a\255b"))
      assert.are.equal('{"' .. R .. '":1}', enc({ ["\255"] = 1 }))
    end)
  end)

  describe("redact", function()
    local red = evidence.redact
    local RED = evidence.REDACTED

    it("without the C module, the environment's key is redacted from 4 characters on", function()
      -- a process where require("qwenvl") fails: heuristics and the
      -- environment's key are all that is left to scrub
      local proc = require("spec.support.proc")
      local code = [[
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.preload.qwenvl = function() error("not built") end
local ev = require("qwenvl.evidence")
io.write(ev.encode(ev.redact({ note = "key abcd and abc and abcde" })))
]]
      local rc, out, err = proc.run({ proc.LUA, "-e", code }, { env = { DASHSCOPE_API_KEY = "abcd" } })
      assert.are.equal(0, rc, err)
      assert.is_nil(out:find("abcd", 1, true), out)
      assert.matches("and abc and", out, 1, true)       -- a mere prefix stays
      rc, out = proc.run({ proc.LUA, "-e", code }, { env = { DASHSCOPE_API_KEY = "abc" } })
      assert.are.equal(0, rc)
      assert.matches("key abcd and abc and abcde", out, 1, true)   -- too short to be a key
    end)

    it("redacts the value of every secret field, in any case, whatever it holds", function()
      local names = { "api_key", "apikey", "api-key", "x-api-key", "authorization",
                      "proxy-authorization", "password", "passwd", "secret", "client_secret",
                      "dashscope_api_key", "access_key_secret", "access_token", "refresh_token",
                      "cookie", "set-cookie" }
      for _, name in ipairs(names) do
        for _, form in ipairs { name, name:upper(), name:sub(1, 1):upper() .. name:sub(2) } do
          local r = red({ [form] = "hunter2", nested = { [form] = { deep = "x" } }, n = { [form] = 7 } })
          assert.are.equal(RED, r[form], form)
          assert.are.equal(RED, r.nested[form], form)
          assert.are.equal(RED, r.n[form], form)
        end
      end
      assert.are.equal(RED, red({ token_list = { password = true } }).token_list.password)
    end)

    it("keeps false and null in a secret field, and fields that only look alike", function()
      local r = red({ password = false, api_key = NULL, passwords = "p", my_secret = "s",
                      authorization_mode = "auto", total_tokens = 12 })
      assert.is_false(r.password)
      assert.are.equal(NULL, r.api_key)
      assert.are.equal("p", r.passwords)
      assert.are.equal("s", r.my_secret)
      assert.are.equal("auto", r.authorization_mode)
      assert.are.equal(12, r.total_tokens)
    end)

    it("finds sk- keys of 8 characters or more, not inside a word", function()
      assert.are.equal("k=" .. RED, red("k=sk-12345678"))
      assert.are.equal("(" .. RED .. ")", red("(sk-abc_def-gh)"))
      assert.are.equal("k=sk-1234567", red("k=sk-1234567"))
      assert.are.equal("task-abcdefghijk", red("task-abcdefghijk"))
      assert.are.equal("xsk-abcdefghij", red("xsk-abcdefghij"))
      assert.are.equal("_sk-abcdefghij", red("_sk-abcdefghij"))
      assert.are.equal(RED .. " " .. RED, red("sk-aaaaaaaa sk-bbbbbbbbbbbb"))
    end)

    it("finds Bearer and Authorization credentials", function()
      assert.are.equal("Bearer " .. RED, red("Bearer abc.def"))
      assert.are.equal("x bearer " .. RED .. ", y", red("x bearer tok-1, y"))
      assert.are.equal("Authorization: Basic " .. RED, red("Authorization: Basic dXNlcjpw"))
      assert.are.equal('"authorization": "Token ' .. RED .. '"',
        red('"authorization": "Token abc123"'))
      assert.are.equal("AUTHORIZATION=Digest " .. RED, red("AUTHORIZATION=Digest q1w2"))
      assert.are.equal("no credentials here", red("no credentials here"))
    end)

    it("shortens inline base64 data URLs, JSON-escaped ones too, and keeps the core's form", function()
      assert.are.equal("data:image/png;base64,<omitted 8 chars>", red("data:image/png;base64,iVBORw0K"))
      assert.are.equal([[{"url":"data:image\/jpeg;base64,<omitted 6 chars>"}]],
        red([[{"url":"data:image\/jpeg;base64,ab\/cde"}]]))
      assert.are.equal("data:image/png;base64,<omitted 120 chars>",
        red("data:image/png;base64,<omitted 120 chars>"))
      assert.are.equal("data:text/plain,hello", red("data:text/plain,hello"))
    end)

    it("takes the secrets as a string, a list, or opts.secrets; shorter than 4 is no secret", function()
      local text = "a LONGSECRET b SEC c xyz9 d"
      assert.are.equal("a " .. RED .. " b SEC c xyz9 d", red(text, "LONGSECRET"))
      assert.are.equal("a " .. RED .. " b SEC c " .. RED .. " d", red(text, { "LONGSECRET", "xyz9", "SEC" }))
      assert.are.equal("a " .. RED .. " b SEC c xyz9 d", red(text, { secrets = "LONGSECRET" }))
      assert.are.equal("a " .. RED .. " b SEC c " .. RED .. " d",
        red(text, { secrets = { "xyz9", "LONGSECRET" } }))
      -- longest first: a secret that contains another goes whole
      assert.are.equal("x " .. RED .. " y", red("x abcd-efgh y", { "abcd", "abcd-efgh" }))
      -- keys are scrubbed too
      local r = red({ ["LONGSECRET"] = 1 }, "LONGSECRET")
      assert.are.equal(1, r[RED])
      assert.is_nil(r.LONGSECRET)
    end)

    it("takes the secrets a request would use: its key, and credentials in base_url and proxy", function()
      local req = { api_key = "sk-request-key-0001", base_url = "https://u1:basepw99@h.example/v1",
                    proxy = "http://u2:proxypw99@p.example:3128" }
      local r = red({ a = "key sk-request-key-0001", b = "base basepw99", c = "proxy proxypw99",
                      d = "escaped \\u0073k-request-key-0001" }, req)
      local text = enc(r)
      for _, s in ipairs { "request-key-0001", "basepw99", "proxypw99" } do
        assert.is_nil(text:find(s, 1, true), s .. " in " .. text)
      end
    end)

    it("copies deeply: the input is untouched, shared tables stay shared, cycles end, functions go", function()
      local shared = { password = "pw" }
      local input = { a = shared, b = shared, f = print, list = evidence.array({ "sk-abcdefghijk" }) }
      input.self = input
      local r = red(input)
      assert.are.equal("pw", shared.password)
      assert.are.equal(RED, r.a.password)
      assert.are.equal(r.a, r.b)
      assert.are.equal(r, r.self)
      assert.is_nil(r.f)
      assert.are.equal(RED, r.list[1])
      assert.are.equal('["' .. RED .. '"]', enc(r.list))
      assert.are.equal("[]", enc(red({ e = evidence.array() }).e))
      assert.are.equal(5, red(5))
      assert.is_true(red(true))
      assert.are.equal(NULL, red(NULL))
    end)
  end)

  describe("files", function()
    local dir
    setup(function() dir = fx.tmpdir() end)
    teardown(function() if dir then fx.rm(dir) end end)

    local function names(d)
      local t = {}
      for n in fx.sh("ls -A " .. evidence.shell_quote(d)):gmatch("[^\n]+") do t[#t + 1] = n end
      table.sort(t)
      return t
    end

    it("names a record by its UTC time and id, indents it by two, ends it with a newline", function()
      local d = dir .. "/named"
      local path = assert(evidence.write({ b = { 1 }, a = "x" }, { dir = d .. "//", id = "0badcafe",
                                                                    time = 86400 * 365 + 3661 }))
      assert.are.equal(d .. "/19710101T010101Z-0badcafe.json", path)
      assert.are.equal('{\n  "a": "x",\n  "b": [\n    1\n  ]\n}\n', fx.read(path))
      assert.are.same({ "19710101T010101Z-0badcafe.json" }, names(d))
      local p2 = assert(evidence.write({ password = "pw" }, { dir = d, name = "fixed.json" }))
      assert.are.equal(d .. "/fixed.json", p2)
      assert.are.equal('{\n  "password": "[redacted]"\n}\n', fx.read(p2))
    end)

    it("redacts with opts.secrets before writing", function()
      local d = dir .. "/secrets"
      local path = assert(evidence.write({ note = "the word SWORDFISH" }, { dir = d, secrets = "SWORDFISH" }))
      assert.are.equal('{\n  "note": "the word [redacted]"\n}\n', fx.read(path))
    end)

    it("times and ids", function()
      assert.are.equal("19700102T000000Z", evidence.timestamp(86400))
      assert.are.equal("1970-01-02T00:00:00Z", evidence.iso_time(86400))
      assert.matches("^%x%x%x%x%x%x%x%x$", evidence.short_id())
      assert.matches("^" .. ("%x"):rep(12) .. "$", evidence.random_hex(6))
      assert.are_not.equal(evidence.short_id(), evidence.short_id())
    end)

    it("write_file replaces a file whole and leaves no temporary file", function()
      local d = dir .. "/replace"
      assert(evidence.mkdir_p(d))
      fx.write(d .. "/f.json", "old contents, longer than the new")
      assert.are.equal(d .. "/f.json", evidence.write_file(d .. "/f.json", "new"))
      assert.are.equal("new", fx.read(d .. "/f.json"))
      assert.are.same({ "f.json" }, names(d))
      local ok, err = evidence.write_file(d .. "/missing/f.json", "x")
      assert.is_nil(ok)
      assert.matches("cannot write " .. d .. "/missing/f.json", err, 1, true)
    end)

    it("check_dir and check_file", function()
      local f = dir .. "/plain"
      fx.write(f, "x")
      local ok, err = evidence.check_dir(f)
      assert.is_nil(ok)
      assert.matches("not a folder", err)
      assert.is_true(evidence.check_dir(dir .. "/made/here/"))
      assert.is_true(evidence.dir_exists(dir .. "/made/here"))
      assert.are.same({}, names(dir .. "/made/here"))
      assert.is_false(evidence.dir_exists(f))
      ok, err = evidence.check_file("")
      assert.is_nil(ok)
      assert.are.equal("no path", err)
      assert.is_nil(evidence.check_file(nil))
      ok, err = evidence.check_file(dir .. "/made/")
      assert.is_nil(ok)
      assert.matches("it is a folder", err)
      assert.is_true(evidence.check_file(dir .. "/new/dir/file.json"))
      assert.are.same({}, names(dir .. "/new/dir"))
    end)

    it("check_dir('//') checks the root folder (slashes are not trimmed to nothing)", function()
      local ok, err = evidence.check_dir("//")
      if not ok then                         -- not root: the folder is named
        assert.matches("cannot write records to /: ", err, 1, true)
      end
    end)
  end)
end)
