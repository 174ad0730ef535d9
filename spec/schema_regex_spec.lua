-- qwenvl.schema patterns on PCRE2: the adversarial probe's cases (patterns
-- that backtracked for hours, bytes taken for characters, a recursive $ref
-- that hung), the limits that bound every validation, ECMA-262 where PCRE2
-- reads a pattern differently, and what happens without rex_pcre2.
--
-- Cases that hung before run in a child interpreter under a generous kill
-- timeout: a hang fails the spec instead of stalling the run. Nothing here
-- asserts how long anything takes.
local schema = require("qwenvl.schema")
local fx = require("spec.support.fixtures")
local cjson = require("cjson")

local function J(s) return cjson.decode(s) end

local LUA = type(jit) == "table" and "luajit" or ("lua" .. _VERSION:match("(%d+%.%d+)"))
local ABI = type(jit) == "table" and "luajit" or LUA
local KILL = "timeout -k 10 300 "   -- seconds; the old translator took hours

local check = require("spec.support.schema_check")

-- schema.validate(doc, s) in a fresh interpreter; doc and s are JSON text,
-- or `build` is Lua code that sets the locals doc and s. Returns ok, errors
-- (or fails when the child died or was killed).
local function validate_in_child(doc_json, schema_json, prelude, build)
  local code = (prelude or "") .. [[
    local cjson = require("cjson")
    local schema = require("qwenvl.schema")
    local doc, s = cjson.decode(]] .. ("%q"):format(doc_json or "null") .. [[), ]]
      .. ("%q"):format(schema_json or "true") .. "\n" .. (build or "") .. [[
    local ok, errs = schema.validate(doc, s)
    io.write("RESULT ", cjson.encode({ ok = ok, errors = errs }), "\n")
  ]]
  local out, ok, status = fx.lua(KILL .. LUA, nil, code, "./build/" .. ABI .. "/?.so")
  assert(ok, "child failed (status " .. tostring(status) .. "; 124 is the kill timeout): " .. out)
  local res = assert(out:match("RESULT (.-)\n"), out)
  res = cjson.decode(res)
  return res.ok, res.errors
end

local function utf8_ok(s)
  -- every lead byte followed by its continuation bytes
  local i, n = 1, #s
  while i <= n do
    local c = s:byte(i)
    local need = c < 0x80 and 0 or c >= 0xF0 and 3 or c >= 0xE0 and 2 or c >= 0xC2 and 1 or -1
    if need < 0 then return false end
    for k = 1, need do
      local ck = s:byte(i + k)
      if not ck or ck < 0x80 or ck >= 0xC0 then return false end
    end
    i = i + need + 1
  end
  return true
end

describe("qwenvl.schema patterns", function()
  describe("the probe's cases", function()
    it("^.{1,40}$ answers at once (the Lua-pattern translation took hours)", function()
      local ok, errs = validate_in_child(cjson.encode(("A"):rep(45)), '{"type":"string","pattern":"^.{1,40}$"}')
      assert.is_false(ok)
      assert.are.same({ '$: "' .. ("A"):rep(37) .. '..." does not match pattern "^.{1,40}$"' }, errs)
      ok, errs = validate_in_child(cjson.encode(("A"):rep(40)), '{"type":"string","pattern":"^.{1,40}$"}')
      assert.is_true(ok)
      assert.are.same({}, errs)
    end)

    it("^[A-Z0-9-]{1,32}$ against 40 characters answers (once 24 s and more)", function()
      local ok, errs = validate_in_child(cjson.encode(("B"):rep(40)), '{"pattern":"^[A-Z0-9-]{1,32}$"}')
      assert.is_false(ok)
      assert.matches('does not match pattern "^[A-Z0-9-]{1,32}$"', errs[1], 1, true)
      ok = validate_in_child(cjson.encode(("B"):rep(32)), '{"pattern":"^[A-Z0-9-]{1,32}$"}')
      assert.is_true(ok)
    end)

    it("patternProperties with ^.{1,40}$ answers too", function()
      local key = ("k"):rep(45)
      local ok, errs = validate_in_child('{"' .. key .. '":1,"short":"x"}',
        '{"patternProperties":{"^.{1,40}$":{"type":"string"}},"additionalProperties":false}')
      assert.is_false(ok)
      assert.are.same({ '$: additional property "' .. key .. '" is not allowed' }, errs)
    end)

    it('"." is a character: 发票号码 matches ^.{1,4}$, é matches ^.$', function()
      check("发票号码", { type = "string", pattern = "^.{1,4}$" })
      check("é", { type = "string", pattern = "^.$" })
      check("发票号码五", { pattern = "^.{1,4}$" }, '$: "发票号码五" does not match pattern "^.{1,4}$"')
      check("😀", { pattern = "^.$" })                 -- 4 bytes, one code point
      check("发票", { pattern = "^[^a-z]{2}$" })       -- classes take characters too
    end)

    it("minLength/maxLength count code points", function()
      check("发票号码", { minLength = 4, maxLength = 4 })
      check("发票号码", { maxLength = 3 }, "$: string of length 4 is longer than maxLength 3")
    end)

    it("a recursive $ref through allOf ends with a clear error", function()
      local ok, errs = validate_in_child("{}", '{"allOf":[{"$ref":"#"},{"$ref":"#"}]}')
      assert.is_false(ok)
      assert.are.same({ "$: schema nesting too deep (recursive $ref?)" }, errs)
    end)

    it("an exponential $ref graph under the depth limit ends: schema too complex", function()
      local defs = {}
      for i = 0, 29 do
        defs["a" .. i] = { allOf = { { ["$ref"] = "#/$defs/a" .. (i + 1) }, { ["$ref"] = "#/$defs/a" .. (i + 1) } } }
      end
      defs.a30 = { type = "string", pattern = "^x$" }
      local ok, errs = validate_in_child('"x"', cjson.encode({ ["$defs"] = defs, ["$ref"] = "#/$defs/a0" }))
      assert.is_false(ok)
      assert.are.equal(1, #errs)
      assert.matches("^%$: schema too complex: the validation passed its work limit %(500000, about one per schema node visited%): a recursive or exponential %$ref/allOf graph%?$", errs[1])
    end)
  end)

  describe("limits", function()
    local evil = ("a"):rep(40) .. "!"

    it("catastrophic backtracking is a validation error naming path and pattern", function()
      local ok, errs = schema.validate({ code = evil }, { properties = { code = { pattern = "^(a+)+$" } } })
      assert.is_false(ok)
      assert.are.same({ '$.code: pattern "^(a+)+$" could not be checked against "' .. ("a"):rep(37)
        .. '...": it exceeded the regular-expression match limit (2000000 steps; catastrophic backtracking?)' }, errs)
    end)

    it("deep backtracking hits the heap limit, also an error", function()
      local ok, errs = schema.validate(("a"):rep(20000), { pattern = "^" .. ("(x)?"):rep(200) .. "(a|aa)+$" })
      assert.is_false(ok)
      assert.matches("it exceeded the regular-expression heap limit (16384 KiB)", errs[1], 1, true)
    end)

    it("an unanchored runaway pattern too (one count for all start positions)", function()
      local ok, errs = schema.validate(evil, { pattern = "(\\w+\\s?)*$" })
      assert.is_false(ok)
      assert.matches("exceeded the regular-expression match limit", errs[1], 1, true)
    end)

    it("in patternProperties", function()
      local ok, errs = schema.validate({ [evil] = 1 }, { patternProperties = { ["^(a|aa)+$"] = {} } })
      assert.is_false(ok)
      assert.matches('^%$%["a+!"%]: pattern "%^%(a|aa%)%+%$" could not be checked', errs[1])
    end)

    it("a limit inside not/anyOf fails the document instead of counting as a mismatch", function()
      local ok, errs = schema.validate(evil, { ["not"] = { pattern = "^(a+)+$" } })
      assert.is_false(ok)
      assert.matches("match limit", errs[1], 1, true)
      ok = schema.validate(evil, { anyOf = { { pattern = "^(a+)+$" }, { type = "string" } } })
      assert.is_false(ok)
    end)

    it("the next validation starts afresh", function()
      assert.is_false((schema.validate(evil, { pattern = "^(a+)+$" })))
      check("aaa", { pattern = "^(a+)+$" })
    end)

    it("legitimate work on long strings stays inside the limits", function()
      check(("a"):rep(20000), { pattern = "^(a|aa)+$" })
      check(("ab "):rep(5000), { pattern = "^(\\w+\\s?)*$" })
      check(("x"):rep(20000) .. "y", { pattern = "y" })
    end)

    it("a string too long to check within the work budget is refused, not checked for hours", function()
      local ok, errs = schema.validate(("a"):rep(100000), { pattern = "[a-z]{2,}\\d" })
      assert.is_false(ok)
      assert.are.same({ '$: schema too complex: checking pattern "[a-z]{2,}\\\\d" against a string of 100000 bytes would pass the work limit (500000)' }, errs)
    end)

    it("an $anchor is looked for once in a table schema that shares its subtables", function()
      -- 28 levels of two keys naming the same table: 2^28 paths, 29 tables
      local build = [[
        local t = { ["$anchor"] = "here", type = "string" }
        for _ = 1, 28 do t = { a = t, b = t } end
        doc, s = ANY_DOC, { ["$ref"] = ANY_REF, ["$defs"] = { d = t } }
      ]]
      local ok, errs = validate_in_child(nil, nil, nil, build:gsub("ANY_DOC", '"x"'):gsub("ANY_REF", '"#here"'))
      assert.is_true(ok)
      assert.are.same({}, errs)
      ok, errs = validate_in_child(nil, nil, nil, build:gsub("ANY_DOC", "1"):gsub("ANY_REF", '"#nowhere"'))
      assert.is_false(ok)
      assert.are.same({ '$: cannot resolve $ref "#nowhere"' }, errs)
    end)

    it("a large legitimate document fits in the budget", function()
      local items = {}
      for i = 1, 20000 do items[i] = { id = "INV-" .. i, qty = i % 7, name = "item " .. i } end
      check(items, { type = "array", uniqueItems = false, items = { type = "object", required = { "id", "qty" },
        properties = { id = { type = "string", pattern = "^INV-\\d+$" }, qty = { type = "integer", minimum = 0 },
          name = { type = "string", maxLength = 100 } } } })
    end)

    it("revisiting a big value costs what the schema does, not the value's size", function()
      -- 2^16 visits of a 3000-key object: without the memo each would sort the keys
      local defs = {}
      for i = 0, 15 do
        defs["a" .. i] = { allOf = { { ["$ref"] = "#/$defs/a" .. (i + 1) }, { ["$ref"] = "#/$defs/a" .. (i + 1) } } }
      end
      defs.a16 = { type = "object", minProperties = 1 }
      local doc = {}
      for i = 1, 3000 do doc["k" .. i] = i end
      local ok, errs = schema.validate(doc, { ["$defs"] = defs, ["$ref"] = "#/$defs/a0" })
      assert.is_false(ok)
      assert.matches("^%$: schema too complex: the validation passed its work limit", errs[1])
    end)

    it("lists at most 100 errors, and says how many more there were", function()
      local doc = {}
      for i = 1, 150 do doc[i] = "x" end
      local ok, errs = schema.validate(doc, { items = { type = "number" } })
      assert.is_false(ok)
      assert.are.equal(101, #errs)
      assert.are.equal("$[99]: expected number, got string", errs[100])
      assert.are.equal("$: 50 more errors not listed", errs[101])
    end)

    it("uniqueItems over a huge array is paid for from the same budget", function()
      local big = {}
      for i = 1, 10000 do big[i] = i end
      local ok, errs = schema.validate(big, { uniqueItems = true })
      assert.is_false(ok)
      assert.matches("^%$: schema too complex: uniqueItems over 10000 items would pass the work limit %(500000%)$", errs[1])
      local fine = {}
      for i = 1, 1000 do fine[i] = i end
      check(fine, { uniqueItems = true })
    end)
  end)

  describe("subjects that are not UTF-8", function()
    it("are an error, not undefined behaviour", function()
      local ok, errs = schema.validate({ a = "ok\255" }, { properties = { a = { pattern = "ok" } } })
      assert.is_false(ok)
      assert.are.same({ '$.a: string is not valid UTF-8 (byte 3), so pattern "ok" cannot be checked' }, errs)
      for _, bad in ipairs({ "\192\128", "\237\160\128", "\244\144\128\128", "\226\130", "x\128" }) do
        ok, errs = schema.validate(bad, { pattern = "." })
        assert.is_false(ok)
        assert.matches("is not valid UTF-8", errs[1], 1, true)
      end
    end)

    it("in property names too, and the path shows the bytes escaped", function()
      local ok, errs = schema.validate({ ["k\255"] = 1 }, { patternProperties = { ["^k"] = {} } })
      assert.is_false(ok)
      assert.are.same({ '$["k\\xff"]: string is not valid UTF-8 (byte 2), so pattern "^k" cannot be checked' }, errs)
      assert.is_true(utf8_ok(errs[1]))
    end)

    it("strings without a pattern are not checked for it", function()
      check("ok\255", { type = "string" })
    end)

    it("messages cut long strings at a character boundary", function()
      local s = ("发"):rep(20)
      local ok, errs = schema.validate(s, { pattern = "^x" })
      assert.is_false(ok)
      assert.is_true(utf8_ok(errs[1]))
      assert.matches('^%$: "' .. ("发"):rep(12) .. '%.%.%." does not match', errs[1])
    end)
  end)

  describe("bad patterns are refused when the schema is loaded", function()
    it("with the place and PCRE2's reason", function()
      local s, err = schema.load({ properties = { code = { pattern = "^(INV" } } })
      assert.is_nil(s)
      assert.are.equal('pattern "^(INV" at #/properties/code/pattern: missing closing parenthesis', err)
      s, err = schema.load('{"items":{"patternProperties":{"[z-a]":{}}}}')
      assert.is_nil(s)
      assert.matches('^pattern "%[z%-a%]" at #/items/patternProperties: range out of order', err)
    end)

    it("schema.validate reports it at $", function()
      local ok, errs = schema.validate("x", { allOf = { { pattern = "(?<=a+)b" } } })
      assert.is_false(ok)
      assert.are.same({ '$: pattern "(?<=a+)b" at #/allOf/0/pattern: lookbehind assertion is not fixed length' }, errs)
    end)

    it("a pattern cannot close the group it is wrapped in", function()
      local s, err = schema.load({ pattern = "a)(?:b" })
      assert.is_nil(s)
      assert.matches("parenthesis", err)
    end)

    it("PCRE2-only escapes are refused", function()
      local s, err = schema.load({ pattern = "\\Qa.b\\E" })
      assert.is_nil(s)
      assert.matches("\\Q is not an ECMA-262 escape", err, 1, true)
    end)

    it("a pattern only reachable through $ref is checked when used", function()
      local ok, errs = schema.validate("x", { ["$ref"] = "#/elsewhere/p", elsewhere = { p = { pattern = "(" } } })
      assert.is_false(ok)
      assert.are.same({ '$: cannot check pattern "(": missing closing parenthesis' }, errs)
    end)

    it("each pattern is compiled once per schema", function()
      local rex = require("rex_pcre2")
      local real, calls = rex.new, 0
      rex.new = function(...) calls = calls + 1; return real(...) end
      local ok, err = pcall(function()
        local s = assert(schema.load({ items = { pattern = "^INV-\\d+$" }, propertyNames = { pattern = "x" } }))
        check({ "INV-1" }, s)
        local after_first = calls
        for _ = 1, 50 do check({ "INV-1", "INV-22" }, s) end
        assert.is_true(after_first >= 1)
        assert.are.equal(after_first, calls)
      end)
      rex.new = real
      assert(ok, err)
    end)
  end)

  describe("ECMA-262 where PCRE2 differs", function()
    it("$ is the end of the string, not before a final newline", function()
      check("a\n", { pattern = "^a$" }, '$: "a\\n" does not match pattern "^a$"')
      check("a", { pattern = "^a$" })
    end)

    it(". excludes ECMA-262's four line terminators", function()
      check("\r", { pattern = "^.$" }, '$: "\\u000d" does not match pattern "^.$"')
      check("\226\128\168", { pattern = "^.$" }, '$: "\226\128\168" does not match pattern "^.$"')
      check("\t", { pattern = "^.$" })
      check("a\nb", { pattern = "^[^]+$" })            -- [^] is any character
    end)

    it("\\s is ECMA-262 white space (no-break space, ideographic space, BOM)", function()
      check("a\194\160b", { pattern = "^a\\sb$" })
      check("a\227\128\128b", { pattern = "^a[\\s]b$" })
      check("a\239\187\191b", { pattern = "^a\\sb$" })
      check("a\194\160b", { pattern = "^a\\Sb$" }, '$: "a\194\160b" does not match pattern "^a\\\\Sb$"')
      check("a\11b", { pattern = "^a\\vb$" })
    end)

    it("\\d and \\w stay ASCII", function()
      check("٣", { pattern = "^\\d$" }, '$: "٣" does not match pattern "^\\\\d$"')
      check("é", { pattern = "^\\w$" }, '$: "é" does not match pattern "^\\\\w$"')
    end)

    it("\\uXXXX, surrogate pairs and \\u{...} are code points", function()
      check("é", { pattern = "^\\u00e9$" })
      check("😀", { pattern = "^\\uD83D\\uDE00$" })
      check("😀", { pattern = "^\\u{1F600}$" })
      check("A", { pattern = "^\\u{0000000041}$" })
      local s0, err0 = schema.load({ pattern = "\\u{10000000000000041}" })   -- would wrap to "A"
      assert.is_nil(s0)
      assert.matches("beyond U+10FFFF", err0, 1, true)
      local s, err = schema.load({ pattern = "\\uD800" })   -- a lone surrogate
      assert.is_nil(s)
      assert.matches("disallowed Unicode code point", err, 1, true)
    end)

    it("[] matches nothing; a [ inside a class is a literal", function()
      check("x", { pattern = "[]" }, '$: "x" does not match pattern "[]"')
      -- ECMA-262: the class [[:alph] then a literal "]"; PCRE2 alone would read [:alpha:]
      check(":]", { pattern = "^[[:alpha:]]$" })
      check("a", { pattern = "^[[:alpha:]]$" }, '$: "a" does not match pattern "^[[:alpha:]]$"')
    end)

    it("Unicode properties: short, long and gc= names", function()
      check("Ä", { pattern = "^\\p{Lu}$" })
      check("Ä", { pattern = "^\\p{Uppercase_Letter}$" })
      check("Ä", { pattern = "^\\p{General_Category=Lu}$" })
      check("α", { pattern = "^\\p{Script=Greek}$" })
      check("a", { pattern = "^\\P{L}$" }, '$: "a" does not match pattern "^\\\\P{L}$"')
    end)

    it("lookahead, backreferences and named groups work", function()
      check("abab", { pattern = "^(?<p>ab)\\k<p>$" })
      check("abab", { pattern = "^(ab)\\1$" })
      check("a1", { pattern = "^(?=.*\\d)[a-z0-9]+$" })
      check("ab", { pattern = "^(?=.*\\d)[a-z0-9]+$" }, '$: "ab" does not match pattern "^(?=.*\\\\d)[a-z0-9]+$"')
    end)
  end)

  describe("without rex_pcre2", function()
    local prelude = [[
      package.preload["rex_pcre2"] = function() error("module 'rex_pcre2' not found") end
    ]]

    it("a schema with a pattern is refused, saying what to install", function()
      local ok, errs = validate_in_child('"x"', '{"properties":{"a":{"pattern":"^x$"}}}', prelude)
      assert.is_false(ok)
      assert.are.same({ '$: pattern "^x$" at #/properties/a/pattern: the rex_pcre2 module (PCRE2) is not '
        .. "installed: apt-get install lua-rex-pcre2, or luarocks install lrexlib-pcre2" }, errs)
      ok, errs = validate_in_child('{"k":1}', '{"patternProperties":{"^k":{}}}', prelude)
      assert.is_false(ok)
      assert.matches("apt-get install lua-rex-pcre2", errs[1], 1, true)
    end)

    it("schemas without patterns work as before", function()
      local ok, errs = validate_in_child('{"a":"x"}', '{"properties":{"a":{"type":"string","maxLength":3}}}', prelude)
      assert.is_true(ok)
      assert.are.same({}, errs)
      ok, errs = validate_in_child('{"a":1}', '{"properties":{"a":{"type":"string"}}}', prelude)
      assert.is_false(ok)
      assert.are.same({ "$.a: expected string, got number" }, errs)
    end)
  end)

  describe("qwenvl analyze --schema, end to end against the stand-in", function()
    local KEY = "sk-schemaregex-FAKEKEY-31c0"
    local srv, work
    local ROOT = (fx.sh("pwd"):gsub("%s+$", ""))

    setup(function()
      srv = require("spec.support.standin").start { key = KEY }
      work = fx.tmpdir()
      fx.png(work .. "/invoice.png", 32, 24)
    end)

    teardown(function()
      if srv then srv:stop() end
      if work then fx.rm(work) end
    end)

    -- the command in a child with a kill timeout; returns code, stdout, stderr
    local function analyze(schema_json)
      fx.write(work .. "/s.json", schema_json)
      local Q = fx.quote
      local cmd = "cd " .. Q(work) .. " && env -u DASHSCOPE_REGION HOME=" .. Q(work)
        .. " DASHSCOPE_API_KEY=" .. Q(KEY) .. " DASHSCOPE_BASE_URL=" .. Q(srv.base_url) .. " "
        .. KILL .. LUA .. " " .. Q(ROOT .. "/bin/qwenvl")
        .. " analyze --prompt 'Extract invoice fields' --image invoice.png --schema s.json --print-response"
        .. " </dev/null >out.txt 2>err.txt; echo $?"
      local code = tonumber(fx.sh(cmd):match("(%d+)%s*$"))
      local out, err = fx.read(work .. "/out.txt"), fx.read(work .. "/err.txt")
      assert.is_nil(out:find(KEY, 1, true))
      assert.is_nil(err:find(KEY, 1, true))
      return code, out, err
    end

    it("^.{1,40}$ on a 45-character answer: verification fails (exit 7), it does not hang", function()
      -- the stand-in answers "sample code" padded with x to minLength
      local code, out, err = analyze('{"type":"object","properties":{"code":{"type":"string",'
        .. '"minLength":45,"pattern":"^.{1,40}$"}},"required":["code"]}')
      assert.are.equal(7, code, err)
      local res = cjson.decode(out)
      assert.is_false(res.verification.ok)
      local e = res.verification.errors[1] or res.verification.attempts[#res.verification.attempts].errors[1]
      assert.are.equal('$.code: "sample codexxxxxxxxxxxxxxxxxxxxxxxxxx..." does not match pattern "^.{1,40}$"', e)
    end)

    it("a pattern counting characters accepts a Chinese answer (exit 0)", function()
      local code, out, err = analyze('{"type":"object","properties":{"发票号码":{"type":"string",'
        .. '"pattern":"^sample .{4}$"}},"required":["发票号码"]}')
      assert.are.equal(0, code, err)
      local res = cjson.decode(out)
      assert.is_true(res.verification.ok)
      assert.are.equal("sample 发票号码", res.json["发票号码"])
    end)

    it("an invalid pattern is bad input (exit 3) and nothing is sent", function()
      srv:reset()
      local code, _, err = analyze('{"type":"object","properties":{"a":{"type":"string","pattern":"(("}}}')
      assert.are.equal(3, code, err)
      assert.matches('pattern "((" at #/properties/a/pattern', err, 1, true)
      assert.are.equal(0, #srv:requests())
    end)
  end)
end)
