/*
** qv_handle: a request in flight, as Lua sees it. Also the blocking
** call (a handle waited on at once) and chat_many (a pool of handles).
** Lua callbacks (on_delta, on_result) only ever run here, between engine
** steps, under lua_pcall: never inside a libcurl callback.
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qv_lua.h"

typedef struct qv_handle {
  qv_call *call;
  qv_stream stream;
  int st;                 /* registry ref to the state table */
  int finished;           /* final values cached in st.final1/final2 */
  int closed;
} qv_handle;

static qv_handle *check_handle(lua_State *L, int i) {
  return luaL_checkudata(L, i, QV_HANDLE_MT);
}

/* Plan the request at idx and start it; pushes the handle, or nil, err.
** kind is "chat" or "models". */
static int handle_new(lua_State *L, int idx, const char *kind) {
  qv_call_opts o;
  char *body = NULL;
  size_t len = 0;
  const char *why = NULL;
  qv_handle *h;
  int plan, st;
  idx = qv_absindex(L, idx);
  if (!qv_request_plan(L, idx, kind, &o, &body, &len)) return 0;
  plan = lua_gettop(L);
  lua_createtable(L, 0, 8);
  st = lua_gettop(L);
  lua_pushvalue(L, plan);
  lua_setfield(L, st, "plan");
  lua_getfield(L, idx, "on_delta");
  lua_setfield(L, st, "on_delta");
  lua_getfield(L, idx, "coalesce_ms");
  lua_setfield(L, st, "coalesce_ms");
  lua_getfield(L, idx, "coalesce_bytes");
  lua_setfield(L, st, "coalesce_bytes");
  h = qv_newudata(L, sizeof *h);
  memset(h, 0, sizeof *h);
  h->st = LUA_NOREF;
  qv_stream_init(&h->stream);
  luaL_getmetatable(L, QV_HANDLE_MT);
  lua_setmetatable(L, -2);
  h->call = qv_call_new(qv_lua_engine(L), &o, body, len, &why);
  if (h->call == NULL) {
    h->closed = 1;
    lua_pushnil(L);
    qv_error_push(L, "network", why ? why : "cannot start the request", 0, 0, 0);
    return 0;
  }
  lua_pushvalue(L, st);
  h->st = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_replace(L, plan);
  lua_settop(L, plan);
  return 1;
}

/* Move stream events to Lua, call on_delta when due, and settle the
** outcome once the call is over. */
static void pump(lua_State *L, qv_handle *h) {
  int st, top = lua_gettop(L);
  qv_buf ev;
  if (h->finished || h->closed) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->st);
  st = lua_gettop(L);
  qv_buf_init(&ev);
  if (qv_call_take_events(h->call, &ev) > 0)
    qv_result_events(L, st, &h->stream, ev.data, ev.len);
  qv_buf_free(&ev);
  if (h->stream.failed && h->call->state != QV_DONE) {
    qv_call_cancel(h->call);        /* an error event or a malformed chunk: */
    h->call->end = QV_END_RESPONSE; /* the outcome is the stream's, not ours */
  }
  if (qv_result_emit(L, st, &h->stream, h->call->state == QV_DONE) != 0)
    qv_call_cancel(h->call);      /* on_delta raised: stop this request */
  if (h->call->state == QV_DONE) {
    int n = qv_result_finish(L, h->call, st, &h->stream);
    if (n == 1) {
      lua_setfield(L, st, "final1");   /* the result */
    } else {
      lua_setfield(L, st, "final2");   /* the error; nil below it */
      lua_pop(L, 1);
    }
    h->finished = 1;
  }
  lua_settop(L, top);
}

static int push_final(lua_State *L, qv_handle *h) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->st);
  lua_getfield(L, -1, "final1");
  if (!lua_isnil(L, -1)) { lua_remove(L, -2); return 1; }
  lua_getfield(L, -2, "final2");
  lua_remove(L, -3);
  return 2;
}

static int closed_error(lua_State *L) {
  lua_pushnil(L);
  qv_error_push(L, "closed", "the handle is closed", 0, 0, 0);
  return 2;
}

static int handle_poll(lua_State *L) {
  qv_handle *h = check_handle(L, 1);
  if (h->closed) return closed_error(L);
  if (!h->finished) {
    qv_engine_step(qv_lua_engine(L));
    pump(L, h);
  }
  if (h->finished) return push_final(L, h);
  lua_pushliteral(L, "pending");
  return 1;
}

/* Block up to `limit` seconds (< 0: until done). */
static int wait_for(lua_State *L, qv_handle *h, double limit) {
  qv_engine *e = qv_lua_engine(L);
  double until = limit < 0 ? -1 : qv_now() + limit;
  for (;;) {
    long ms;
    qv_engine_step(e);
    pump(L, h);
    if (h->finished) return push_final(L, h);
    ms = -1;
    /* text held back by coalescing: look again soon, emit decides */
    if (h->stream.pend_text.len || h->stream.pend_reason.len) ms = 10;
    if (until >= 0) {
      double left = until - qv_now();
      if (left <= 0) break;
      if (ms < 0 || left * 1000 < ms) ms = (long)ceil(left * 1000);
    }
    qv_engine_wait(e, ms);
  }
  lua_pushliteral(L, "pending");
  return 1;
}

static int handle_wait(lua_State *L) {
  qv_handle *h = check_handle(L, 1);
  double limit = luaL_optnumber(L, 2, -1);
  if (h->closed) return closed_error(L);
  if (h->finished) return push_final(L, h);
  return wait_for(L, h, limit);
}

static int handle_cancel(lua_State *L) {
  qv_handle *h = check_handle(L, 1);
  if (!h->closed && !h->finished) {
    qv_call_cancel(h->call);
    pump(L, h);
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int handle_close(lua_State *L) {
  qv_handle *h = check_handle(L, 1);
  if (h->closed) return 0;
  h->closed = 1;
  qv_call_free(h->call);
  h->call = NULL;
  qv_stream_free(&h->stream);
  luaL_unref(L, LUA_REGISTRYINDEX, h->st);
  h->st = LUA_NOREF;
  return 0;
}

/* Text and reasoning that arrived since the last read (nil if none). */
static int handle_read(lua_State *L) {
  qv_handle *h = check_handle(L, 1);
  qv_buf *t, *r;
  if (h->closed) { lua_pushnil(L); lua_pushnil(L); return 2; }
  pump(L, h);
  t = &h->stream.unread_text;
  r = &h->stream.unread_reason;
  if (t->len) lua_pushlstring(L, t->data, t->len); else lua_pushnil(L);
  if (r->len) lua_pushlstring(L, r->data, r->len); else lua_pushnil(L);
  qv_buf_reset(t);
  qv_buf_reset(r);
  return 2;
}

static int handle_status(lua_State *L) {
  qv_handle *h = check_handle(L, 1);
  lua_pushstring(L, h->closed ? "closed" : h->finished ? "done" :
                 h->call->state == QV_WAITING ? "waiting" : "running");
  return 1;
}

static int handle_attempts(lua_State *L) {
  qv_handle *h = check_handle(L, 1);
  lua_pushinteger(L, h->call ? h->call->attempts : 0);
  return 1;
}

static int handle_tostring(lua_State *L) {
  qv_handle *h = check_handle(L, 1);
  lua_pushfstring(L, "qwenvl.handle (%s): %p", h->closed ? "closed" :
                  h->finished ? "done" : "pending", (void *)h);
  return 1;
}

void qv_handle_register(lua_State *L) {
  static const luaL_Reg methods[] = {
    { "poll", handle_poll }, { "wait", handle_wait },
    { "cancel", handle_cancel }, { "close", handle_close },
    { "read", handle_read }, { "status", handle_status },
    { "attempts", handle_attempts }, { NULL, NULL }
  };
  static const luaL_Reg meta[] = {
    { "__gc", handle_close }, { "__tostring", handle_tostring },
#if LUA_VERSION_NUM >= 504
    { "__close", handle_close },
#endif
    { NULL, NULL }
  };
  /* expects the two module upvalues on the stack top */
  luaL_newmetatable(L, QV_HANDLE_MT);
  lua_pushvalue(L, -3);
  lua_pushvalue(L, -3);
  luaL_setfuncs(L, meta, 2);
  lua_newtable(L);
  lua_pushvalue(L, -4);
  lua_pushvalue(L, -4);
  luaL_setfuncs(L, methods, 2);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

/* ---- module functions ------------------------------------------------- */

int qv_handle_start(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  return handle_new(L, 1, "chat") ? 1 : 2;
}

/* A handle waited on at once, then freed (not left to the next GC). */
static int run_blocking(lua_State *L, const char *kind) {
  qv_handle *h;
  int n;
  lua_settop(L, 1);
  if (!handle_new(L, 1, kind)) return 2;
  h = check_handle(L, 2);
  n = wait_for(L, h, -1);
  lua_pushcfunction(L, handle_close);
  lua_pushvalue(L, 2);
  lua_call(L, 1, 0);
  return n;
}

int qv_handle_chat(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  return run_blocking(L, "chat");
}

int qv_handle_models(lua_State *L) {
  if (lua_isnoneornil(L, 1)) { lua_settop(L, 0); lua_newtable(L); }
  luaL_checktype(L, 1, LUA_TTABLE);
  return run_blocking(L, "models");
}

/* ---- chat_many ---------------------------------------------------------- */

/* Rough token cost of a planned request, for the tpm limit: image tokens
** (32x32 pixels each, at most 2,560 per image by default) + text/4 +
** max_tokens. */
static double estimate_tokens(lua_State *L, int st, int req) {
  double tokens = 0;
  int i;
  lua_getfield(L, st, "plan");
  lua_getfield(L, -1, "images");
  for (i = 1; lua_istable(L, -1); i++) {
    double w, hgt, t;
    lua_rawgeti(L, -1, i);
    if (!lua_istable(L, -1)) { lua_pop(L, 1); break; }
    lua_getfield(L, -1, "width");
    lua_getfield(L, -2, "height");
    w = lua_tonumber(L, -2);
    hgt = lua_tonumber(L, -1);
    t = (w > 0 && hgt > 0) ? ceil(w / 32) * ceil(hgt / 32) : 2560;
    tokens += (t > 2560 ? 2560 : t) + 2;
    lua_pop(L, 3);
  }
  lua_pop(L, 2);
  lua_getfield(L, req, "prompt");
  tokens += (double)lua_rawlen(L, -1) / 4.0;
  lua_getfield(L, req, "max_tokens");
  tokens += lua_isnumber(L, -1) ? lua_tonumber(L, -1) : 512;
  lua_pop(L, 2);
  return tokens;
}

typedef struct many_slot { qv_handle *h; int index; } many_slot;

/* Seconds until `tok` more tokens fit in the last minute's starts (0: now). */
static double tpm_wait(const double *t, const double *tok_at, int n, double now,
                       double tok, double tpm) {
  double window = 0, oldest = now;
  int k;
  for (k = 0; k < n; k++)
    if (now - t[k] < 60) {
      window += tok_at[k];
      if (t[k] < oldest) oldest = t[k];
    }
  if (window == 0 || window + tok <= tpm) return 0;
  return oldest + 60 - now;
}

/* Store entry i and tell on_result; an error raised by on_result is kept
** in the list at cb_errors (third return value), never loses an entry. */
static void many_report(lua_State *L, int results, int on_result, int cb_errors,
                        int i, int value, int err) {
  lua_pushvalue(L, value);
  lua_rawseti(L, results, i);
  if (on_result) {
    lua_pushvalue(L, on_result);
    lua_pushinteger(L, i);
    if (err) { lua_pushnil(L); lua_pushvalue(L, value); }
    else { lua_pushvalue(L, value); lua_pushnil(L); }
    if (lua_pcall(L, 3, 0, 0) != 0) {
      lua_pushfstring(L, "on_result(%d): %s", i, lua_tostring(L, -1) ?
                      lua_tostring(L, -1) : "error");
      lua_rawseti(L, cb_errors, (int)lua_rawlen(L, cb_errors) + 1);
      lua_pop(L, 1);
    }
  }
}

int qv_handle_chat_many(lua_State *L) {
  qv_engine *e = qv_lua_engine(L);
  int n, next = 1, active = 0, finished = 0, failures = 0, results, handles,
      on_result = 0, conc = 8, i, nstarts = 0, cb_errors;
  double rpm = 0, tpm = 0, last_start = -1e9, pending_tok = 0;
  many_slot *slots;
  double *start_t, *start_tok;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 2);
  if (!lua_isnil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_getfield(L, 2, "concurrency");
    if (!lua_isnil(L, -1)) conc = (int)luaL_checkinteger(L, -1);
    lua_getfield(L, 2, "rpm");
    rpm = luaL_optnumber(L, -1, 0);
    lua_getfield(L, 2, "tpm");
    tpm = luaL_optnumber(L, -1, 0);
    lua_getfield(L, 2, "on_result");
    if (lua_isfunction(L, -1)) on_result = lua_gettop(L);
    else if (!lua_isnil(L, -1)) luaL_argerror(L, 2, "on_result must be a function");
    luaL_argcheck(L, conc >= 1 && conc <= 256, 2, "concurrency must be 1..256");
  }
  n = (int)lua_rawlen(L, 1);
  lua_createtable(L, n, 0);
  results = lua_gettop(L);
  lua_createtable(L, conc, 0);    /* keeps active handles alive */
  handles = lua_gettop(L);
  lua_newtable(L);
  cb_errors = lua_gettop(L);
  slots = calloc((size_t)conc, sizeof *slots);
  start_t = calloc((size_t)n + 1, sizeof *start_t);
  start_tok = calloc((size_t)n + 1, sizeof *start_tok);
  if (slots == NULL || start_t == NULL || start_tok == NULL) {
    free(slots); free(start_t); free(start_tok);
    return luaL_error(L, "out of memory");
  }
  while (finished < n) {
    double now = qv_now(), wait_s = -1;
    long ms;
    /* start what the concurrency and rate limits allow */
    while (active < conc && next <= n) {
      int top = lua_gettop(L), slot;
      double tok = 0;
      if (rpm > 0 && now < last_start + 60.0 / rpm) {
        wait_s = last_start + 60.0 / rpm - now;
        break;
      }
      if (tpm > 0 && pending_tok > 0) {   /* known not to fit: wait, don't re-plan */
        double w = tpm_wait(start_t, start_tok, nstarts, now, pending_tok, tpm);
        if (w > 0) { wait_s = w; break; }
      }
      lua_rawgeti(L, 1, next);
      if (!lua_istable(L, -1)) {
        lua_pushnil(L);
        qv_error_push(L, "invalid_request", "request is not a table", 0, 0, 0);
        qv_error_set(L, "field", "request");
        many_report(L, results, on_result, cb_errors, next++, lua_gettop(L), 1);
        failures++; finished++;
        lua_settop(L, top);
        continue;
      }
      if (!handle_new(L, top + 1, "chat")) {
        many_report(L, results, on_result, cb_errors, next++, lua_gettop(L), 1);
        failures++; finished++;
        lua_settop(L, top);
        continue;
      }
      if (tpm > 0) {
        qv_handle *h = lua_touserdata(L, -1);
        double w;
        lua_rawgeti(L, LUA_REGISTRYINDEX, h->st);
        tok = estimate_tokens(L, lua_gettop(L), top + 1);
        lua_pop(L, 1);
        w = tpm_wait(start_t, start_tok, nstarts, now, tok, tpm);
        if (w > 0) {                       /* nothing was sent yet */
          pending_tok = tok;
          wait_s = w;
          lua_pushcfunction(L, handle_close);
          lua_pushvalue(L, -2);
          lua_call(L, 1, 0);
          lua_settop(L, top);
          break;
        }
        pending_tok = 0;
      }
      for (slot = 0; slots[slot].h != NULL; slot++) {}
      slots[slot].h = lua_touserdata(L, -1);
      slots[slot].index = next;
      lua_rawseti(L, handles, slot + 1);
      start_t[nstarts] = now;
      start_tok[nstarts++] = tok;
      last_start = now;
      next++;
      active++;
      lua_settop(L, top);
    }
    qv_engine_step(e);
    for (i = 0; i < conc; i++) {
      qv_handle *h = slots[i].h;
      int top = lua_gettop(L), nv;
      if (h == NULL) continue;
      pump(L, h);
      if (!h->finished) continue;
      nv = push_final(L, h);
      if (nv == 1) many_report(L, results, on_result, cb_errors, slots[i].index, top + 1, 0);
      else { many_report(L, results, on_result, cb_errors, slots[i].index, top + 2, 1); failures++; }
      lua_settop(L, top);
      lua_rawgeti(L, handles, i + 1);
      lua_pushcfunction(L, handle_close);
      lua_insert(L, -2);
      lua_call(L, 1, 0);
      lua_pushnil(L);
      lua_rawseti(L, handles, i + 1);
      slots[i].h = NULL;
      active--;
      finished++;
    }
    if (finished >= n) break;
    if (active < conc && next <= n && wait_s < 0) continue;  /* refill now */
    ms = wait_s >= 0 ? (long)ceil(wait_s * 1000) : -1;
    if (active > 0 || ms >= 0) qv_engine_wait(e, ms);
  }
  free(slots);
  free(start_t);
  free(start_tok);
  lua_pushvalue(L, results);
  lua_pushinteger(L, failures);
  if (lua_rawlen(L, cb_errors) == 0) return 2;
  lua_pushvalue(L, cb_errors);
  return 3;
}
