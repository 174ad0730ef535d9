/* qv_many: batches of requests (see qv_many.h). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "qv_many.h"
#include "qv_engine.h"
#include "qv_error.h"
#include "qv_handle.h"
#include "qv_rate.h"
#include "qv_request.h"
#include "qv_state.h"

#define QV_MANY_MT "qwenvl.many"
#define QV_CONC_MAX 256

/* The stack of the protected body. */
enum { REQS = 1, POOL, RESULTS, HANDLES, ERRORS, ON_RESULT, PENDING };

typedef struct many {
  qv_rate rate;
  int conc, n, next, active, finished, failures;
  int stopped;                  /* on_result returned false */
  double pending_tokens;        /* the planned request waiting to start */
  int slot[QV_CONC_MAX];        /* request index per slot; 0: free */
} many;

static int many_gc(lua_State *L) {
  many *m = luaL_checkudata(L, 1, QV_MANY_MT);
  qv_rate_free(&m->rate);
  return 0;
}

void qv_many_register(lua_State *L) {
  if (luaL_newmetatable(L, QV_MANY_MT)) {
    lua_pushcfunction(L, many_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
}

/* An option in [lo, hi], read before any conversion; misuse raises. */
static double opt_num(lua_State *L, int opts, const char *k, double dflt,
                      double lo, double hi, int integer) {
  double v;
  lua_getfield(L, opts, k);
  if (lua_isnil(L, -1)) { lua_pop(L, 1); return dflt; }
  if (lua_type(L, -1) != LUA_TNUMBER)
    luaL_error(L, "chat_many: %s must be a number", k);
  v = (double)lua_tonumber(L, -1);
  lua_pop(L, 1);
  if (!(v >= lo && v <= hi) || (integer && v != floor(v))) {
    char msg[160];          /* lua_pushfstring has no precision: format here */
    snprintf(msg, sizeof msg, "chat_many: %s must be %s between %.17g and %.17g",
             k, integer ? "an integer" : "a number", lo, hi);
    luaL_error(L, "%s", msg);
  }
  return v;
}

/* Rough token cost of a plan, for tpm: the images' estimated tokens,
** the text / 4, and max_tokens. */
static double tokens_of(lua_State *L, int plan) {
  double t = 0;
  int i;
  qv_getuservalue(L, plan);
  lua_getfield(L, -1, "images");
  for (i = 1; lua_istable(L, -1); i++) {
    lua_rawgeti(L, -1, i);
    if (!lua_istable(L, -1)) { lua_pop(L, 1); break; }
    lua_getfield(L, -1, "image_tokens");
    t += lua_isnumber(L, -1) ? lua_tonumber(L, -1) : 2562;
    lua_pop(L, 2);
  }
  lua_pop(L, 1);
  lua_getfield(L, -1, "text_bytes");
  t += lua_tonumber(L, -1) / 4.0;
  lua_getfield(L, -2, "request");
  lua_getfield(L, -1, "max_tokens");
  t += lua_isnumber(L, -1) ? lua_tonumber(L, -1) : 512;
  lua_pop(L, 4);
  return t;
}

/* results[i] = the value at v (err: it is an error); then on_result. */
static void report(lua_State *L, many *m, int i, int v, int err) {
  lua_pushvalue(L, v);
  lua_rawseti(L, RESULTS, i);
  if (err) m->failures++;
  m->finished++;
  if (lua_isnil(L, ON_RESULT)) return;
  lua_pushvalue(L, ON_RESULT);
  lua_pushinteger(L, i);
  if (err) { lua_pushnil(L); lua_pushvalue(L, v); }
  else { lua_pushvalue(L, v); lua_pushnil(L); }
  if (qv_pcall(L, 3, 1) != 0) {
    lua_pushfstring(L, "on_result(%d): %s", i, lua_isstring(L, -1) ?
                    lua_tostring(L, -1) : "an error object");
    lua_rawseti(L, ERRORS, (int)lua_rawlen(L, ERRORS) + 1);
    lua_pop(L, 1);
    return;
  }
  /* false (not nil): start nothing more */
  if (lua_isboolean(L, -1) && !lua_toboolean(L, -1)) m->stopped = 1;
  lua_pop(L, 1);
}

/* After on_result asked to stop: every request not started is canceled. */
static void stop_rest(lua_State *L, many *m) {
  lua_pushnil(L);
  lua_replace(L, PENDING);
  while (m->next <= m->n) {
    int top = lua_gettop(L);
    lua_pushnil(L);
    qv_error_push(L, "canceled", "not started: on_result returned false");
    report(L, m, m->next++, lua_gettop(L), 1);
    lua_settop(L, top);
  }
}

/* Plan the next request into PENDING; 0, or -1 after reporting it. */
static int plan_next(lua_State *L, many *m) {
  int top = lua_gettop(L);
  lua_rawgeti(L, REQS, m->next);
  if (!lua_istable(L, -1)) {
    lua_pushnil(L);
    qv_error_push(L, "invalid_request", "request is not a table");
    qv_error_str(L, "field", "request");
    report(L, m, m->next++, lua_gettop(L), 1);
    lua_settop(L, top);
    return -1;
  }
  if (qv_request_plan(L, top + 1, QV_KIND_CHAT) < 0) {
    report(L, m, m->next++, lua_gettop(L), 1);
    lua_settop(L, top);
    return -1;
  }
  m->pending_tokens = m->rate.tpm > 0 ? tokens_of(L, lua_gettop(L)) : 0;
  lua_replace(L, PENDING);
  lua_settop(L, top);
  return 0;
}

/* Start what the concurrency and the limits allow; returns the seconds
** to wait before the next start may happen (< 0: none pending). */
static double start_some(lua_State *L, many *m, qv_engine *e) {
  if (m->stopped) stop_rest(L, m);
  while (m->active < m->conc && m->next <= m->n && !m->stopped) {
    double now = qv_now(), w;
    int slot;
    if (lua_isnil(L, PENDING) && plan_next(L, m) < 0) continue;
    w = qv_rate_wait(&m->rate, now, m->pending_tokens);
    if (w > 0) return w;
    lua_pushvalue(L, PENDING);
    lua_pushnil(L);
    lua_replace(L, PENDING);
    if (qv_handle_from_plan(L, lua_gettop(L)) < 0) {
      report(L, m, m->next++, lua_gettop(L), 1);
      lua_settop(L, PENDING);
      continue;
    }
    for (slot = 0; m->slot[slot] != 0; slot++) {}
    m->slot[slot] = m->next++;
    lua_rawseti(L, HANDLES, slot + 1);
    m->active++;
    if (qv_rate_note(&m->rate, now, m->pending_tokens) != 0)
      luaL_error(L, "chat_many: out of memory");
    /* the tail: let connections beyond the usual pool close as they end */
    if (m->next > m->n) qv_engine_keep_connections(e, 0);
  }
  return -1;
}

/* Collect the requests that finished. */
static void collect(lua_State *L, many *m) {
  int i;
  for (i = 0; i < m->conc; i++) {
    int h, top = lua_gettop(L);
    if (m->slot[i] == 0) continue;
    lua_rawgeti(L, HANDLES, i + 1);
    h = lua_gettop(L);
    qv_handle_pump(L, h);
    if (qv_handle_done(L, h)) {
      int failed = qv_handle_push_final(L, h) < 0;
      report(L, m, m->slot[i], lua_gettop(L), failed);
      qv_handle_close(L, h);
      lua_pushnil(L);
      lua_rawseti(L, HANDLES, i + 1);
      m->slot[i] = 0;
      m->active--;
    }
    lua_settop(L, top);
  }
}

/* (requests, pool, on_result): the batch, protected by qv_many_chat. */
static int many_body(lua_State *L) {
  many *m = lua_touserdata(L, POOL);
  qv_engine *e = qv_state_engine(L);
  lua_settop(L, POOL);
  lua_createtable(L, m->n, 0);                  /* RESULTS */
  lua_pushvalue(L, lua_upvalueindex(QV_NUPVALUES + 1));   /* HANDLES */
  lua_newtable(L);                              /* ERRORS */
  lua_pushvalue(L, lua_upvalueindex(QV_NUPVALUES + 2));   /* ON_RESULT */
  lua_pushnil(L);                               /* PENDING */
  qv_engine_keep_connections(e, m->conc);
  while (m->finished < m->n) {
    double wait_s = start_some(L, m, e);
    long ms;
    qv_engine_step(e);
    collect(L, m);
    if (m->stopped) stop_rest(L, m);
    if (m->finished >= m->n) break;
    if (m->active < m->conc && m->next <= m->n && wait_s < 0) continue;
    ms = wait_s < 0 ? -1 : wait_s * 1000.0 > 60000.0 ? 60000L : (long)ceil(wait_s * 1000.0);
    if (m->active > 0 || ms >= 0) qv_engine_wait(e, ms);
    qv_state_hookpoint(L);
  }
  qv_engine_keep_connections(e, 0);
  lua_pushvalue(L, RESULTS);
  lua_pushinteger(L, m->failures);
  if (lua_rawlen(L, ERRORS) == 0) return 2;
  lua_pushvalue(L, ERRORS);
  return 3;
}

int qv_many_chat(lua_State *L) {
  many *m;
  int k, handles;
  double n;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 2);
  if (!lua_isnil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
  else { lua_newtable(L); lua_replace(L, 2); }
  lua_getfield(L, 2, "on_result");
  if (!lua_isnil(L, -1) && !lua_isfunction(L, -1))
    luaL_argerror(L, 2, "on_result must be a function");
  m = qv_newudata(L, sizeof *m);                /* 4 */
  memset(m, 0, sizeof *m);
  qv_rate_init(&m->rate, 0, 0);
  luaL_getmetatable(L, QV_MANY_MT);
  lua_setmetatable(L, -2);
  m->conc = (int)opt_num(L, 2, "concurrency", 8, 1, QV_CONC_MAX, 1);
  qv_rate_init(&m->rate, opt_num(L, 2, "rpm", 0, 0, 1e7, 0),
               opt_num(L, 2, "tpm", 0, 0, 1e13, 0));
  if (m->rate.rpm > 0 && m->rate.rpm < 1e-3)
    luaL_error(L, "chat_many: rpm must be 0 (no limit) or at least 0.001");
  n = (double)lua_rawlen(L, 1);
  m->n = (int)n;
  m->next = 1;
  lua_newtable(L);                              /* 5: the handles */
  handles = lua_gettop(L);
  for (k = 1; k <= QV_NUPVALUES; k++) lua_pushvalue(L, lua_upvalueindex(k));
  lua_pushvalue(L, handles);
  lua_pushvalue(L, 3);
  lua_pushcclosure(L, many_body, QV_NUPVALUES + 2);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 4);
  if (lua_pcall(L, 2, LUA_MULTRET, 0) != 0) {
    /* stop every request in flight before the error goes on */
    lua_pushnil(L);
    while (lua_next(L, handles) != 0) {
      qv_handle_close(L, lua_gettop(L));
      lua_pop(L, 1);
    }
    lua_error(L);
  }
  return lua_gettop(L) - handles;
}
