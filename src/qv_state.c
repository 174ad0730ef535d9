/* qv_state: per-state context, JSON and interrupts (see qv_state.h). */
#include <string.h>
#include <unistd.h>

#include "qv_state.h"

typedef struct qv_state { qv_engine *engine; } qv_state;

static int state_gc(lua_State *L) {
  qv_state *s = luaL_checkudata(L, 1, QV_STATE_MT);
  qv_engine_release(s->engine);       /* calls still alive keep it */
  s->engine = NULL;
  return 0;
}

void qv_state_push_upvalues(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, QV_STATE_MT ".ud");
  if (lua_isnil(L, -1)) {
    qv_state *s;
    lua_pop(L, 1);
    s = qv_newudata(L, sizeof *s);
    s->engine = NULL;
    if (luaL_newmetatable(L, QV_STATE_MT)) {
      lua_pushcfunction(L, state_gc);
      lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, QV_STATE_MT ".ud");
  }
  lua_getglobal(L, "require");
  lua_pushliteral(L, "cjson");
  lua_call(L, 1, 1);
  /* the interrupt's message names this chunk on LuaJIT: "qwenvl:0:" */
  if (luaL_loadbuffer(L, "local _ = 0 return", 18, "=qwenvl") != 0) lua_error(L);
}

qv_engine *qv_state_engine(lua_State *L) {
  qv_state *s = lua_touserdata(L, QV_UPV_STATE);
  if (s->engine == NULL || !qv_engine_owned(s->engine)) {
    const char *why = "unknown";
    qv_engine *e = qv_engine_new(&why);
    if (e == NULL) luaL_error(L, "qwenvl: cannot make the engine: %s", why);
    /* a forked child abandons the parent's engine (see qv_engine.h) */
    qv_engine_release(s->engine);
    s->engine = e;
  }
  return s->engine;
}

void qv_state_hookpoint(lua_State *L) {
  if (lua_gethook(L) == NULL) return;
  lua_pushvalue(L, QV_UPV_HOOKPOINT);
  lua_call(L, 0, 0);                 /* the hook raises from in here */
}

int qv_state_is_interrupt(lua_State *L, int idx) {
  size_t n;
  const char *s;
  static const char word[] = "interrupted!";
  if (lua_type(L, idx) != LUA_TSTRING) return 0;
  s = lua_tolstring(L, idx, &n);
  return n >= sizeof word - 1 && memcmp(s + n - (sizeof word - 1), word,
                                        sizeof word - 1) == 0;
}

int qv_pcall(lua_State *L, int nargs, int nresults) {
  if (lua_pcall(L, nargs, nresults, 0) == 0) return 0;
  if (qv_state_is_interrupt(L, -1)) lua_error(L);
  return -1;
}

int qv_json_decode(lua_State *L, const char *s, size_t n) {
  lua_getfield(L, QV_UPV_CJSON, "decode");
  lua_pushlstring(L, s, n);
  if (qv_pcall(L, 1, 1) != 0) { lua_pop(L, 1); return -1; }
  return 0;
}

int qv_json_encode(lua_State *L, int idx) {
  idx = qv_absindex(L, idx);
  lua_getfield(L, QV_UPV_CJSON, "encode");
  lua_pushvalue(L, idx);
  if (qv_pcall(L, 1, 1) != 0) { lua_pop(L, 1); return -1; }
  return 0;
}

/* ---- secrets ----------------------------------------------------------- */

static void add_to_buffer(void *ud, const char *p, size_t n) {
  luaL_addlstring((luaL_Buffer *)ud, p, n);
}

const char *qv_field_string(lua_State *L, int t, const char *k, size_t *n) {
  lua_getfield(L, t, k);
  if (lua_type(L, -1) == LUA_TSTRING) return lua_tolstring(L, -1, n);
  lua_pop(L, 1);
  return NULL;
}

int qv_field_table(lua_State *L, int t, const char *k) {
  lua_getfield(L, t, k);
  if (lua_istable(L, -1)) return 1;
  lua_pop(L, 1);
  return 0;
}

void qv_push_scrubbed(lua_State *L, const qv_secrets *sec, const char *s,
                      size_t n) {
  luaL_Buffer b;
  if (sec == NULL || !qv_scrub_found(sec, s, n)) {
    lua_pushlstring(L, s, n);
    return;
  }
  /* nothing but luaL_add* while the buffer is open */
  luaL_buffinit(L, &b);
  qv_scrub(sec, s, n, add_to_buffer, &b);
  luaL_pushresult(&b);
}

void qv_scrub_fields(lua_State *L, int idx, const qv_secrets *sec) {
  if (sec == NULL || sec->count == 0) return;
  idx = qv_absindex(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    size_t n = 0;
    const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &n) : NULL;
    if (v != NULL && qv_scrub_found(sec, v, n)) {
      lua_pushvalue(L, -2);
      qv_push_scrubbed(L, sec, v, n);
      lua_rawset(L, idx);            /* an existing key: allowed in lua_next */
    }
    lua_pop(L, 1);
  }
}
