/*
** Fuzz qwenvl.schema: JSON Schema validation with patterns on PCRE2
** (rex_pcre2), $ref graphs and the work budget, through the real Lua
** module in a Lua 5.4 state with Debian's lua-cjson and lua-rex-pcre2.
** The target's libFuzzer -timeout (fuzz.mk) makes a slow input a finding:
** the validator must answer, whatever the schema and the document.
**
** Input: byte 0 picks the mode; the rest is split at the first NUL.
**   even  schema JSON text \0 document JSON (the raw bytes as a string
**         document when they do not decode): schema.validate(doc, text)
**   odd   pattern \0 subject: the subject against {pattern = p}, as a key
**         against {patternProperties = {[p] = ...}} and as a key against
**         {propertyNames = {pattern = p}}
** Invariants (abort otherwise): nothing raises; validate returns a boolean
** and a list of strings, ok exactly when the list is empty; every error
** reads "$...: message" and is valid UTF-8 (errors end up in JSON);
** schema.load returns a table or boolean, or nil and a string.
**
** Coverage: the code under test is Lua (and Debian's uninstrumented
** PCRE2), which the compiler's instrumentation does not see; a Lua line
** hook feeds libFuzzer's extra counters with (previous line, line) pairs
** instead, for the first HOOK_EVENTS lines of each input (a run that goes
** on repeats itself: the budget-bound graphs), so the hook costs little.
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#ifndef QV_LUA_DIR
#define QV_LUA_DIR "lua"
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lua_State *G;

#define NCOUNTERS 65536
#define HOOK_EVENTS 200000
__attribute__((section("__libfuzzer_extra_counters"), used))
static uint8_t counters[NCOUNTERS];
static unsigned prev_line;
static long hook_events;

static void line_hook(lua_State *L, lua_Debug *ar) {
  unsigned line = (unsigned)ar->currentline;
  counters[((prev_line * 2654435761u) ^ line) % NCOUNTERS]++;
  prev_line = line;
  if (++hook_events >= HOOK_EVENTS) lua_sethook(L, NULL, 0, 0);
}

/* Returns the checker: function(mode, a, b) that raises on a violation. */
static const char *const CHECKER =
  "local cjson, schema = ...\n"
  "local function utf8_ok(s)\n"
  "  local i, n = 1, #s\n"
  "  while i <= n do\n"
  "    local c = s:byte(i)\n"
  "    local need, lo, hi = 0, 0x80, 0xBF\n"
  "    if c < 0x80 then need = 0\n"
  "    elseif c >= 0xC2 and c <= 0xDF then need = 1\n"
  "    elseif c == 0xE0 then need, lo = 2, 0xA0\n"
  "    elseif c == 0xED then need, hi = 2, 0x9F\n"
  "    elseif c >= 0xE1 and c <= 0xEF then need = 2\n"
  "    elseif c == 0xF0 then need, lo = 3, 0x90\n"
  "    elseif c == 0xF4 then need, hi = 3, 0x8F\n"
  "    elseif c >= 0xF1 and c <= 0xF3 then need = 3\n"
  "    else return false end\n"
  "    for k = 1, need do\n"
  "      local ck = s:byte(i + k)\n"
  "      if not ck then return false end\n"
  "      if k == 1 and (ck < lo or ck > hi) then return false end\n"
  "      if k > 1 and (ck < 0x80 or ck > 0xBF) then return false end\n"
  "    end\n"
  "    i = i + need + 1\n"
  "  end\n"
  "  return true\n"
  "end\n"
  "local function check(doc, s)\n"
  "  local ok, errs = schema.validate(doc, s)\n"
  "  assert(type(ok) == 'boolean', 'ok is not a boolean')\n"
  "  assert(type(errs) == 'table', 'errors is not a table')\n"
  "  assert(ok == (#errs == 0), 'ok disagrees with the errors')\n"
  "  for i, e in ipairs(errs) do\n"
  "    assert(type(e) == 'string', 'error ' .. i .. ' is not a string')\n"
  "    assert(e:match('^%$[^\\n]*: '), 'malformed error: ' .. e)\n"
  "    assert(utf8_ok(e), 'error is not UTF-8: ' .. e)\n"
  "  end\n"
  "  local n = 0\n"
  "  for _ in pairs(errs) do n = n + 1 end\n"
  "  assert(n == #errs, 'errors is not a list')\n"
  "end\n"
  "return function(mode, a, b)\n"
  "  if mode % 2 == 0 then\n"
  "    local s, err = schema.load(a)\n"
  "    assert(s ~= nil or type(err) == 'string', 'load: no schema and no message')\n"
  "    assert(s == nil or type(s) == 'table' or type(s) == 'boolean', 'load: a ' .. type(s))\n"
  "    local okd, doc = pcall(cjson.decode, b)\n"
  "    if not okd then doc = b end\n"
  "    check(doc, a)\n"
  "  else\n"
  "    check(b, { pattern = a })\n"
  "    check({ [b] = 1 }, { patternProperties = { [a] = { type = 'string' } } })\n"
  "    check({ [b] = 1 }, { propertyNames = { pattern = a } })\n"
  "  end\n"
  "end\n";

static lua_State *setup(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  if (luaL_dostring(L,
        "package.path = '" QV_LUA_DIR "/?.lua;' .. package.path\n"
        "package.cpath = '/usr/lib/x86_64-linux-gnu/lua/5.4/?.so;' .. package.cpath\n"
        "local cjson = require('cjson')\n"
        "local schema = require('qwenvl.schema')\n"
        "assert(schema.load({ pattern = '^a$' }), 'rex_pcre2 is missing: apt-get install lua-rex-pcre2')\n"
        "return cjson, schema") != 0) {
    fprintf(stderr, "fuzz_schema: %s\n", lua_tostring(L, -1));
    abort();
  }
  if (luaL_loadstring(L, CHECKER) != 0) {
    fprintf(stderr, "fuzz_schema: %s\n", lua_tostring(L, -1));
    abort();
  }
  lua_insert(L, -3);
  lua_call(L, 2, 1);
  lua_setfield(L, LUA_REGISTRYINDEX, "fuzz.check");
  lua_settop(L, 0);
  return L;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *rest, *nul;
  size_t n, an;
  if (size < 1) return 0;
  if (G == NULL) G = setup();
  rest = (const char *)data + 1;
  n = size - 1;
  nul = memchr(rest, '\0', n);
  an = nul ? (size_t)(nul - rest) : n;
  prev_line = 0;
  hook_events = 0;
  lua_sethook(G, line_hook, LUA_MASKLINE, 0);
  lua_getfield(G, LUA_REGISTRYINDEX, "fuzz.check");
  lua_pushinteger(G, data[0]);
  lua_pushlstring(G, rest, an);
  if (nul) lua_pushlstring(G, nul + 1, n - an - 1);
  else lua_pushliteral(G, "");
  if (lua_pcall(G, 3, 0, 0) != 0) {
    fprintf(stderr, "fuzz_schema: %s\n", lua_tostring(G, -1));
    abort();
  }
  lua_sethook(G, NULL, 0, 0);
  lua_settop(G, 0);
  /* a full cycle now and then: the per-schema pattern caches are weak */
  lua_gc(G, LUA_GCSTEP, 0);
  return 0;
}
