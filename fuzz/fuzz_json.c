/*
** Fuzz qv_json against lua-cjson, the decoder the rest of qwenvl uses:
** Debian's lua-cjson 2.1.0 in a Lua 5.4 state is the oracle.
**
** The input is the JSON text, handed to qv_json_parse in a block of
** exactly its size (so ASan sees any read past n) and to cjson.decode as
** a Lua string. Invariants (abort otherwise):
**  - both accept it or both refuse it; a refusal leaves root NONE;
**  - for accepted text, the whole qv_json tree equals cjson's table:
**    every string (qv_json_string, and qv_json_eq on cjson's bytes), every
**    number (qv_json_number gives cjson's double bit for bit; NaN by its
**    sign), true/false/null, every array element in order (and
**    qv_json_index for the first ones), every object member: the member
**    qv_json_member_n finds for each key is the last of its duplicates,
**    it holds cjson's value, and the count of distinct keys is the count
**    of cjson's; qv_json_member, qv_json_pick and qv_json_get (from the
**    root, along the whole path) agree with the walk;
**  - each number's text is exactly the span glibc strtod reads;
**  - the readers stay inside a value's bytes and end even when handed
**    bytes qv_json_parse never accepted (the input posing as a value of
**    each type): no read past n under ASan, no hang.
*/
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qv_json.h"

#include <lauxlib.h>
#include <lualib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lua_State *G;

#define MAX_PATH 24

typedef struct walk {
  const qv_json_val *root;
  qv_json_step path[MAX_PATH];
  qv_buf keys[MAX_PATH];     /* the unescaped names on the path */
  int depth;                 /* steps in path; -1 once it cannot follow */
} walk;

static void fail(const char *what, const qv_json_val *v) {
  fprintf(stderr, "fuzz_json: %s", what);
  if (v != NULL && v->p != NULL)
    fprintf(stderr, " at value [%.*s]", (int)(v->n > 200 ? 200 : v->n), v->p);
  fprintf(stderr, "\n");
  abort();
}

static int same_val(const qv_json_val *a, const qv_json_val *b) {
  return a->type == b->type && a->p == b->p && a->n == b->n;
}

/* The number's text is what strtod reads, and qv_json_number is cjson's
** double (Lua 5.4 cjson pushes every number as a float). */
static void check_number(lua_State *L, int idx, const qv_json_val *v) {
  char *copy, *end;
  double d, want;
  if (!lua_isnumber(L, idx) || lua_type(L, idx) != LUA_TNUMBER)
    fail("cjson has no number here", v);
  want = lua_tonumber(L, idx);
  if (qv_json_number(v, &d) != 0) fail("qv_json_number refused a number", v);
  if (isnan(want) || isnan(d)) {
    if (!isnan(want) || !isnan(d) || !signbit(want) != !signbit(d))
      fail("NaN differs", v);
  } else if (memcmp(&d, &want, sizeof d) != 0) {
    fprintf(stderr, "qv %.17g cjson %.17g\n", d, want);
    fail("number differs", v);
  }
  copy = malloc(v->n + 1);
  if (copy == NULL) abort();
  memcpy(copy, v->p, v->n);
  copy[v->n] = '\0';
  (void)strtod(copy, &end);
  if (end != copy + v->n) fail("number span is not strtod's", v);
  free(copy);
}

static void check(lua_State *L, int idx, const qv_json_val *v, walk *w);

/* qv_json_get from the root along w's path finds v. */
static void check_path(const qv_json_val *v, walk *w) {
  qv_json_val got;
  if (w->depth < 0) return;
  if (qv_json_get(w->root, w->path, w->depth, &got) != 0 || !same_val(&got, v))
    fail("qv_json_get along the path differs", v);
}

/* Extend the path by one step for a child; a path too deep, or a key
** holding NUL (not a C string), leaves it unfollowable (-1). The caller
** puts w->depth back to what it was after the child. */
static void push_step(walk *w, const char *key, size_t kn, int index) {
  qv_json_step *s;
  if (w->depth < 0 || w->depth >= MAX_PATH ||
      (key != NULL && memchr(key, '\0', kn) != NULL)) {
    w->depth = -1;
    return;
  }
  s = &w->path[w->depth];
  s->index = index;
  s->key = NULL;
  if (key != NULL) {
    qv_buf_reset(&w->keys[w->depth]);
    qv_buf_add(&w->keys[w->depth], key, kn);
    qv_buf_addc(&w->keys[w->depth], '\0');   /* an empty key needs data */
    if (w->keys[w->depth].oom) abort();
    s->key = w->keys[w->depth].data;
  }
  w->depth++;
}

static void check_array(lua_State *L, int idx, const qv_json_val *v, walk *w) {
  qv_json_iter it;
  qv_json_val el, by_index, key;
  lua_Integer i = 0;
  int saved = w->depth;
  size_t count = 0;
  if (qv_json_iter_init(&it, v) != 0) fail("iter_init refused an array", v);
  while (qv_json_next(&it, &key, &el)) {
    if (key.type != QV_JSON_NONE) fail("array element with a key", v);
    i++;
    if (i <= 4 && (qv_json_index(v, (int)(i - 1), &by_index) != 0 ||
                   !same_val(&by_index, &el)))
      fail("qv_json_index differs from the walk", &el);
    if (lua_rawgeti(L, idx, i) == LUA_TNIL) fail("cjson array is shorter", v);
    push_step(w, NULL, 0, (int)(i - 1));
    check(L, lua_gettop(L), &el, w);
    w->depth = saved;
    lua_pop(L, 1);
  }
  if (qv_json_index(v, (int)i, &by_index) == 0 || by_index.type != QV_JSON_NONE)
    fail("qv_json_index past the end found something", v);
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) { count++; lua_pop(L, 1); }
  if (count != (size_t)i) fail("cjson array has other members", v);
}

static void check_object(lua_State *L, int idx, const qv_json_val *v, walk *w) {
  qv_json_iter it;
  qv_json_val key, val, last, by_name;
  qv_buf name;
  size_t distinct = 0, count = 0;
  int saved = w->depth;
  qv_buf_init(&name);
  if (qv_json_iter_init(&it, v) != 0) fail("iter_init refused an object", v);
  while (qv_json_next(&it, &key, &val)) {
    qv_buf_reset(&name);
    if (key.type != QV_JSON_STRING || qv_json_string(&key, &name) != 0)
      fail("member without a string key", &key);
    if (name.oom) abort();
    if (!qv_json_eq(&key, name.data ? name.data : "", name.len))
      fail("qv_json_eq on its own unescaping", &key);
    if (qv_json_member_n(v, name.data ? name.data : "", name.len, &last) != 0)
      fail("qv_json_member_n misses a member", &key);
    if (!same_val(&last, &val)) {
      if (last.p < val.p) fail("qv_json_member_n is not the last duplicate", &key);
      continue;   /* an earlier duplicate: cjson kept the last */
    }
    distinct++;
    if (name.len == 0 || memchr(name.data, '\0', name.len) == NULL) {
      const char *keys[3];
      qv_json_val outs[3];
      keys[0] = "\x01";
      keys[1] = name.len ? name.data : "";
      keys[2] = "model";
      if (qv_json_member(v, keys[1], &by_name) != 0 || !same_val(&by_name, &val))
        fail("qv_json_member differs from member_n", &key);
      if (qv_json_pick(v, keys, 3, outs) < 1 || !same_val(&outs[1], &val))
        fail("qv_json_pick differs", &key);
    }
    lua_pushlstring(L, name.data ? name.data : "", name.len);
    if (lua_rawget(L, idx) == LUA_TNIL) fail("cjson lacks this key", &key);
    push_step(w, name.data ? name.data : "", name.len, 0);
    check(L, lua_gettop(L), &val, w);
    w->depth = saved;
    lua_pop(L, 1);
  }
  qv_buf_free(&name);
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    if (lua_type(L, -2) != LUA_TSTRING) fail("cjson object has a non-string key", v);
    count++;
    lua_pop(L, 1);
  }
  if (count != distinct) fail("cjson has another count of keys", v);
}

static void check(lua_State *L, int idx, const qv_json_val *v, walk *w) {
  int t = lua_type(L, idx);
  check_path(v, w);
  switch (v->type) {
  case QV_JSON_OBJECT:
    if (t != LUA_TTABLE) fail("cjson has no table for an object", v);
    check_object(L, idx, v, w);
    break;
  case QV_JSON_ARRAY:
    if (t != LUA_TTABLE) fail("cjson has no table for an array", v);
    check_array(L, idx, v, w);
    break;
  case QV_JSON_STRING: {
    qv_buf b;
    size_t n;
    const char *s;
    if (t != LUA_TSTRING) fail("cjson has no string here", v);
    s = lua_tolstring(L, idx, &n);
    qv_buf_init(&b);
    if (qv_json_string(v, &b) != 0 || b.oom) fail("qv_json_string failed", v);
    if (b.len != n || (n > 0 && memcmp(b.data, s, n) != 0))
      fail("string differs", v);
    if (!qv_json_eq(v, s, n)) fail("qv_json_eq false on cjson's string", v);
    if (n > 0 && qv_json_eq(v, s, n - 1)) fail("qv_json_eq true on a prefix", v);
    qv_buf_free(&b);
    break;
  }
  case QV_JSON_NUMBER:
    check_number(L, idx, v);
    break;
  case QV_JSON_TRUE:
  case QV_JSON_FALSE:
    if (t != LUA_TBOOLEAN || lua_toboolean(L, idx) != (v->type == QV_JSON_TRUE))
      fail("boolean differs", v);
    break;
  case QV_JSON_NULL:
    if (t != LUA_TLIGHTUSERDATA || lua_touserdata(L, idx) != NULL)
      fail("cjson has no cjson.null here", v);
    break;
  default:
    fail("a value of type NONE", v);
  }
}

/* Every reader on the raw input as if it were a value of each type. */
static void garbage(const char *text, size_t size) {
  static const qv_json_type types[] = { QV_JSON_OBJECT, QV_JSON_ARRAY,
                                        QV_JSON_STRING, QV_JSON_NUMBER };
  static const char *const keys[] = { "a", "", "model" };
  static const qv_json_step path[] = { { NULL, 0 }, { "a", 0 }, { NULL, 1 } };
  size_t t;
  for (t = 0; t < sizeof types / sizeof *types; t++) {
    qv_json_val g, out, k, outs[3];
    qv_json_iter it;
    qv_buf b;
    double d;
    int guard = 0;
    g.type = types[t];
    g.p = text;
    g.n = size;
    qv_buf_init(&b);
    (void)qv_json_member(&g, "a", &out);
    (void)qv_json_member_n(&g, "a\0b", 3, &out);
    (void)qv_json_index(&g, 3, &out);
    (void)qv_json_pick(&g, keys, 3, outs);
    (void)qv_json_get(&g, path, 3, &out);
    if (qv_json_iter_init(&it, &g) == 0)
      while (qv_json_next(&it, &k, &out)) {
        if (++guard > (int)size + 1) fail("qv_json_next does not end", &g);
        (void)qv_json_string(&k, &b);
        (void)qv_json_string(&out, &b);
        (void)qv_json_number(&out, &d);
      }
    (void)qv_json_string(&g, &b);
    (void)qv_json_eq(&g, "ab", 2);
    (void)qv_json_number(&g, &d);
    qv_buf_free(&b);
  }
}

static lua_State *setup(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  if (luaL_dostring(L, "package.cpath = '/usr/lib/x86_64-linux-gnu/lua/5.4/?.so;'"
                       " .. package.cpath; return require('cjson').decode") != 0) {
    fprintf(stderr, "fuzz_json: %s\n", lua_tostring(L, -1));
    abort();
  }
  /* cjson's settings stay at their defaults: decode_max_depth 1000,
  ** decode_invalid_numbers on */
  lua_setfield(L, LUA_REGISTRYINDEX, "fuzz.decode");
  return L;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  qv_json_val root;
  walk w;
  int mine, theirs, i;
  char *text;
  if (G == NULL) G = setup();
  /* exactly size bytes: a read past n is a heap overflow for ASan */
  text = malloc(size ? size : 1);
  if (text == NULL) abort();
  if (size) memcpy(text, data, size);
  mine = qv_json_parse(text, size, &root) == 0;
  if (!mine && (root.type != QV_JSON_NONE || root.p != NULL)) fail("refusal left a root", NULL);
  lua_getfield(G, LUA_REGISTRYINDEX, "fuzz.decode");
  lua_pushlstring(G, (const char *)data, size);
  theirs = lua_pcall(G, 1, 1, 0) == LUA_OK;
  if (mine != theirs) {
    fprintf(stderr, "qv_json %s, cjson %s (%s)\n", mine ? "accepts" : "refuses",
            theirs ? "accepts" : "refuses", theirs ? "" : lua_tostring(G, -1));
    fail("acceptance differs", NULL);
  }
  if (mine) {
    w.root = &root;
    w.depth = 0;
    for (i = 0; i < MAX_PATH; i++) qv_buf_init(&w.keys[i]);
    check(G, lua_gettop(G), &root, &w);
    for (i = 0; i < MAX_PATH; i++) qv_buf_free(&w.keys[i]);
  }
  lua_settop(G, 0);
  lua_gc(G, LUA_GCSTEP, 0);
  garbage(text, size);
  free(text);
  return 0;
}
