-- Self-test of `make mutate`'s operators and ordering (mk/mutate/): runs
-- them on fixture snippets and on the project's own Lua files and checks
-- the mutants produced. It does not run the project's suite, builds
-- nothing and mutates no file.
local ops = require("mk.mutate.ops")
local lex = require("mk.mutate.lex")
local plan = require("mk.mutate.plan")

local loadstring = loadstring or load

-- "<op> <original> -> <replacement> @<line>" for each mutant, for
-- readable assertions.
local function summary(list, src, op)
  local out = {}
  for _, m in ipairs(list) do
    if not op or m.op == op then
      out[#out + 1] = ("%s %s -> %s @%d"):format(m.op, src:sub(m.s, m.e), m.repl, m.line)
    end
  end
  return out
end

local function mutated_lines(src, list, op)
  local out = {}
  for _, m in ipairs(list) do
    if not op or m.op == op then
      local _, after = ops.lines_of(src, m)
      out[#out + 1] = (after:gsub("^%s+", ""))
    end
  end
  return out
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

describe("make mutate: tokenizers", function()
  it("C: comments, strings, chars and directives are single tokens or skipped", function()
    local src = table.concat({
      '#include <stdio.h>',
      '/* a < b */ // c > d',
      'x = "a < b" < \'<\';',
      '#if A < B',
      '#endif',
    }, "\n")
    local types = {}
    for _, t in ipairs(lex.c(src)) do types[#types + 1] = t.t .. ":" .. t.text end
    assert.are.same({ "pp:#include <stdio.h>", "id:x", "op:=", 'str:"a < b"', "op:<",
      "chr:'<'", "op:;", "pp:#if A < B", "pp:#endif" }, types)
  end)

  it("C: a #define body is tokenized (pp = true), its head is not", function()
    local toks = lex.c("#define QV_MAX(a, b) ((a) > (b) ? \\\n (a) : 16)\nint y;\n")
    assert.are.equal("pp", toks[1].t)
    assert.are.equal("#define QV_MAX(a, b)", toks[1].text)
    local gt, sixteen, y
    for _, t in ipairs(toks) do
      if t.text == ">" then gt = t end
      if t.text == "16" then sixteen = t end
      if t.text == "y" then y = t end
    end
    assert.is_true(gt.pp)
    assert.is_true(sixteen.pp)
    assert.are.equal(2, sixteen.line)
    assert.is_nil(y.pp)
    assert.are.equal(3, y.line)
  end)

  it("Lua: comments and long strings of every level are skipped or single tokens", function()
    local src = table.concat({
      "-- a < b",
      "--[[ a < b",
      "]] local s = [==[ x < y ]] ]==] .. 'q\\'<' .. \"<\"",
      "--[=[ ]] < ]=] if a < b then end",
    }, "\n")
    local seen = {}
    for _, t in ipairs(lex.lua(src)) do seen[#seen + 1] = t.t .. ":" .. t.text end
    assert.are.same({ "name:local", "name:s", "op:=", "str:[==[ x < y ]] ]==]", "op:..",
      "str:'q\\'<'", "op:..", 'str:"<"', "name:if", "name:a", "op:<", "name:b",
      "name:then", "name:end" }, seen)
  end)

  it("Lua: numbers in every notation are one token", function()
    local texts = {}
    for _, t in ipairs(lex.lua("x = 0x1F + 1e-3 + .5 + 3.25E+2 + 7 .. y")) do
      if t.t == "num" then texts[#texts + 1] = t.text end
    end
    assert.are.same({ "0x1F", "1e-3", ".5", "3.25E+2", "7" }, texts)
  end)
end)

describe("make mutate: C operators", function()
  local function gen(src, opnames)
    local set = {}
    for w in opnames:gmatch("%S+") do set[w] = true end
    return ops.generate("src/x.c", src, { ops = set })
  end

  it("cmp and bound flip comparisons in code only", function()
    local src = 'int f(int a) {\n  /* a < 1 */ g("a < b");\n  return a < 2 && a != 3;\n}\n'
    assert.are.same({ "cmp < -> >= @3", "cmp != -> == @3" }, summary(gen(src, "cmp"), src))
    assert.are.same({ "bound < -> <= @3" }, summary(gen(src, "bound"), src))
  end)

  it("bool swaps && and ||, deletes !, swaps true and false", function()
    local src = "int f(int a, int b) {\n  return !a || (b && true);\n}\n"
    assert.are.same({ "bool ! ->  @2", "bool || -> && @2", "bool && -> || @2",
      "bool true -> false @2" }, summary(gen(src, "bool"), src))
  end)

  it("const moves a number by one in its own notation, and skips array sizes", function()
    local src = table.concat({
      "#define QV_CAP 16",
      "static int f(int x) {",
      "  char buf[64];",
      "  return x - 0 + 0x10 + 10u + buf[3] + (int)(0.5 * x);",
      "}",
    }, "\n")
    assert.are.same({
      "const 16 -> 17 @1", "const 16 -> 15 @1",
      "const 0 -> 1 @4", "const 0 -> (-1) @4",
      "const 0x10 -> 0x11 @4", "const 0x10 -> 0xf @4",
      "const 10u -> 11u @4", "const 10u -> 9u @4",
      "const 3 -> 4 @4", "const 3 -> 2 @4",
      "const 0.5 -> 1.5 @4", "const 0.5 -> (-0.5) @4",
    }, summary(gen(src, "const"), src))
  end)

  it("delete removes expression statements, break and continue, never declarations", function()
    local src = table.concat({
      "static void f(lua_State *L, char *p, int n) {",
      "  int i = 0;",
      "  size_t len;",
      "  qv_buf *b = qv_buf_new();",
      "  for (i = 0; i < n; i++) {",
      "    if (p[i] == 'x') continue;",
      "    p[i] = 'y';",
      "  }",
      "  lua_pushinteger(L,",
      "                  n);",
      "  switch (n) { case 1: n++; break; default: break; }",
      "  free(p);",
      "  qv_buf_free(b);",
      "  assert(n > 0);",
      "  (void)len;",
      "  (void)lua_tostring(L, 1);",
      "  return;",
      "}",
    }, "\n")
    assert.are.same({
      "delete continue; -> ; @6",
      "delete p[i] = 'y'; -> ; @7",
      "delete lua_pushinteger(L,\n                  n); -> ; @9",
      "delete n++; -> ; @11",
      "delete break; -> ; @11",
      "delete break; -> ; @11",
      "delete (void)lua_tostring(L, 1); -> ; @16",
    }, summary(gen(src, "delete"), src))
  end)

  it("return inserts an early return that fits the return type", function()
    local src = table.concat({
      "static void a(int x) { g(x); }",
      "int b(void) { return 2; }",
      "static const char *c(void) { return \"c\"; }",
      "qv_state d(void) { return QV_RUNNING; }",
      "struct pair e(void) { struct pair p = {0}; return p; }",
      "static int f(void) {}",
      "qv_plan g(void) { qv_plan p; return p; }",
    }, "\n")
    local list = ops.generate("src/x.c", src,
      { ops = { ["return"] = true }, c_scalars = { qv_state = true } })
    assert.are.same({
      "static void a(int x) { return; g(x); }",
      "int b(void) { return 0; return 2; }",
      "static const char *c(void) { return 0; return \"c\"; }",
      "qv_state d(void) { return 0; return QV_RUNNING; }",
    }, mutated_lines(src, list))
  end)

  it("errcode swaps error-code strings and QV_END_ constants, nothing else", function()
    local src = table.concat({
      "static const char *f(int e) {",
      '  if (e == QV_END_IDLE) return "timeout";',
      '  return e ? "rate_limited" : "rate_limited_x";',
      "}",
    }, "\n")
    assert.are.same({
      'if (e == QV_END_BUDGET) return "timeout";',
      'if (e == QV_END_IDLE) return "network";',
      'return e ? "server" : "rate_limited_x";',
    }, mutated_lines(src, gen(src, "errcode")))
  end)
end)

describe("make mutate: Lua operators", function()
  local function gen(src, opnames)
    local set = {}
    for w in opnames:gmatch("%S+") do set[w] = true end
    return ops.generate("lua/qwenvl/x.lua", src, { ops = set })
  end

  it("cmp, bound and bool in code, not in comments or strings", function()
    local src = 'local ok = a ~= b and not (c <= 1) -- a == b\nprint("x < y", true)\n'
    assert.are.same({ "cmp ~= -> == @1", "cmp <= -> > @1" }, summary(gen(src, "cmp"), src))
    assert.are.same({ "bound <= -> < @1" }, summary(gen(src, "bound"), src))
    assert.are.same({ "bool and -> or @1", "bool not ->  @1", "bool true -> false @2" },
      summary(gen(src, "bool"), src))
  end)

  it("const keeps the subtraction a subtraction (x - 0 is not x --1)", function()
    local src = "return x - 0, t[#t + 1], 2.5\n"
    local out = {}
    for _, m in ipairs(gen(src, "const")) do out[#out + 1] = ops.apply(src, m) end
    assert.are.same({
      "return x - 1, t[#t + 1], 2.5\n", "return x - (-1), t[#t + 1], 2.5\n",
      "return x - 0, t[#t + 2], 2.5\n", "return x - 0, t[#t + 0], 2.5\n",
      "return x - 0, t[#t + 1], 3.5\n", "return x - 0, t[#t + 1], 1.5\n",
    }, out)
  end)

  it("delete removes calls and assignments, whole, and leaves `local` alone", function()
    local src = table.concat({
      "local x = f(1)",
      "f(x,",
      "  2)",
      "t.a, t.b = 1, g(2) .. 'z'",
      "obj:method 'arg'",
      "if x then y = 1; z() end",
      "local function h() return 1 end",
      "cb = function(a)",
      "  return a",
      "end",
      "x = {",
      "  k = 1,",
      "}",
      "return x",
    }, "\n")
    assert.are.same({
      "delete f(x,\n  2) ->  @2",
      "delete t.a, t.b = 1, g(2) .. 'z' ->  @4",
      "delete obj:method 'arg' ->  @5",
      "delete y = 1; ->  @6",
      "delete z() ->  @6",
      "delete cb = function(a)\n  return a\nend ->  @8",
      "delete x = {\n  k = 1,\n} ->  @11",
    }, summary(gen(src, "delete"), src))
  end)

  it("return puts `do return end` after the parameters of non-empty functions", function()
    local src = "local function a(x) return x end\nlocal b = function() end\nfunction M.c:d(...) f() end\n"
    assert.are.same({
      "local function a(x) do return end return x end",
      "function M.c:d(...) do return end f() end",
    }, mutated_lines(src, gen(src, "return")))
  end)

  it("errcode swaps the string of an error code, in any quotes", function()
    local src = "return { code = 'invalid_request' }, [[server]], \"bad_responses\"\n"
    assert.are.same({
      "return { code = 'bad_response' }, [[server]], \"bad_responses\"",
      "return { code = 'invalid_request' }, [[rate_limited]], \"bad_responses\"",
    }, mutated_lines(src, gen(src, "errcode")))
  end)

  it("every mutant of the project's Lua modules still loads", function()
    local files = { "lua/qwenvl/schema.lua", "lua/qwenvl/cli.lua", "lua/qwenvl/evidence.lua",
      "lua/qwenvl/workflow.lua" }
    local n = 0
    for _, f in ipairs(files) do
      local src = read(f)
      for _, m in ipairs(ops.generate(f, src)) do
        local fn, err = loadstring(ops.apply(src, m), "=" .. f)
        assert(fn, ("%s line %d %s %s: %s"):format(f, m.line, m.op, m.desc, tostring(err)))
        n = n + 1
      end
    end
    assert.is_true(n > 1000)
  end)
end)

describe("make mutate: ids, diffs and order", function()
  local src = "int f(int a) {\n  if (a < 1) return 1;\n  if (a < 1) return 1;\n  return 0;\n}\n"

  it("ids are distinct, and survive edits elsewhere in the file", function()
    local list = ops.generate("src/x.c", src)
    local ids = {}
    for _, m in ipairs(list) do
      assert.is_nil(ids[m.id], "duplicate id " .. m.id)
      ids[m.id] = m
      assert.matches("^%x%x%x%x%x%x%x%x$", m.id)
    end
    local shifted = "/* a new comment\n   of two lines */\n" .. src
    local again = ops.generate("src/x.c", shifted)
    assert.are.equal(#list, #again)
    for i, m in ipairs(again) do
      assert.are.equal(list[i].id, m.id)
      assert.are.equal(list[i].line + 2, m.line)
    end
    local other = ops.generate("src/y.c", src)
    assert.are_not.equal(list[1].id, other[1].id)
  end)

  it("a diff is one unified hunk with three lines of context", function()
    local m
    for _, x in ipairs(ops.generate("src/x.c", src, { ops = { bound = true } })) do
      if x.line == 3 then m = x end
    end
    assert.are.equal(table.concat({
      "--- a/src/x.c",
      "+++ b/src/x.c",
      "@@ -1,5 +1,5 @@",
      " int f(int a) {",
      "   if (a < 1) return 1;",
      "-  if (a < 1) return 1;",
      "+  if (a <= 1) return 1;",
      "   return 0;",
      " }",
    }, "\n") .. "\n", ops.diff(src, m, "src/x.c"))
  end)

  it("the seeded order is reproducible, interleaves files and operators", function()
    local by = {
      ["src/a.c"] = ops.generate("src/a.c", src),
      ["lua/b.lua"] = ops.generate("lua/b.lua", "if a < 1 and b then f(2) end\n"),
    }
    local files = { "src/a.c", "lua/b.lua" }
    local function ids(seed)
      local out = {}
      for _, m in ipairs(plan.order(files, by, seed, ops.OPS)) do out[#out + 1] = m.id end
      return out
    end
    local o1 = plan.order(files, by, 7, ops.OPS)
    assert.are.same(ids(7), ids(7))
    assert.are_not.same(ids(7), ids(8))
    assert.are.equal(#by["src/a.c"] + #by["lua/b.lua"], #o1)
    assert.are.equal("src/a.c", o1[1].file)
    assert.are.equal("lua/b.lua", o1[2].file)
    assert.are.equal("cmp", o1[1].op)
    assert.are.equal("bound", o1[3].op)
  end)

  it("the exceptions file names mutants by id, with a reason", function()
    local eq = plan.parse_equivalent("# comment\n\n0123abcd src/x.c  the bound is never reached\n")
    assert.are.same({ ["0123abcd"] = { file = "src/x.c", reason = "the bound is never reached" } }, eq)
    local ok, err = pcall(plan.parse_equivalent, "0123abcd src/x.c\n", "eq.txt")
    assert.is_false(ok)
    assert.are.equal("mutate: eq.txt:1: expected `<id> <file> <reason>`", err)
  end)

  it("requires are read from code and from child Lua in strings", function()
    local r = plan.requires_of([==[local a = require("qwenvl.schema")
local ok = pcall(require, "qwenvl.evidence")
sh([[lua5.4 -e 'local q = require("qwenvl")']]) sh("bin/qwenvl describe")]==])
    assert.are.same({ ["qwenvl.schema"] = true, ["qwenvl.evidence"] = true,
      qwenvl = true, ["qwenvl.cli"] = true }, r)
  end)
end)
