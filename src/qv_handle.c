/* qv_handle: requests in flight (see qv_handle.h). */
#include <math.h>
#include <string.h>

#include "qv_handle.h"
#include "qv_call.h"
#include "qv_error.h"
#include "qv_request.h"
#include "qv_result.h"
#include "qv_state.h"
#include "qv_stream.h"

#define WAIT_MAX_MS 60000L

struct qv_handle {
  qv_call *call;
  qv_plan *plan;              /* kept alive by st.plan_ud */
  qv_stream stream;
  int finished;               /* st.final1 / st.final2 hold the outcome */
  int closed;                 /* nothing left but the outcome or "closed" */
  int busy;                   /* pump is running (a callback may be) */
  int close_pending;          /* close was asked for inside a callback */
};

static qv_handle *check(lua_State *L, int i) {
  return luaL_checkudata(L, i, QV_HANDLE_MT);
}

/* ---- state table ----------------------------------------------------------- */

static int push_state(lua_State *L, int hidx) {
  qv_getuservalue(L, hidx);
  return lua_gettop(L);
}

void qv_handle_push_info(lua_State *L, int hidx) {
  push_state(L, hidx);
  lua_getfield(L, -1, "plan");
  lua_remove(L, -2);
}

/* ---- lifetime ---------------------------------------------------------------- */

static void release(qv_handle *h) {
  qv_call_free(h->call);             /* aborts the transfer; connection closed */
  h->call = NULL;
  qv_stream_free(&h->stream);
  h->closed = 1;
  h->close_pending = 0;
}

void qv_handle_close(lua_State *L, int hidx) {
  qv_handle *h = check(L, hidx);
  if (h->busy) {                      /* inside its own callback: later */
    if (h->call) qv_call_abort(h->call, QV_END_CANCELED);
    h->close_pending = 1;
    return;
  }
  if (!h->closed) release(h);
}

static int handle_gc(lua_State *L) {
  qv_handle *h = check(L, 1);
  h->busy = 0;                        /* nothing runs during a finalizer */
  if (!h->closed) release(h);
  return 0;
}

int qv_handle_new(lua_State *L, int idx, int kind) {
  if (qv_request_plan(L, idx, (qv_kind)kind) < 0)
    return -1;
  return qv_handle_from_plan(L, lua_gettop(L));
}

int qv_handle_from_plan(lua_State *L, int plan) {
  const char *why = "cannot start the request";
  qv_handle *h;
  qv_plan *p;
  int st;
  plan = qv_absindex(L, plan);
  p = qv_request_check(L, plan);
  lua_createtable(L, 0, 8);
  st = lua_gettop(L);
  lua_pushvalue(L, plan);
  lua_setfield(L, st, "plan_ud");
  qv_getuservalue(L, plan);
  lua_setfield(L, st, "plan");
  qv_getuservalue(L, plan);
  lua_getfield(L, -1, "on_delta");
  lua_setfield(L, st, "on_delta");
  lua_pop(L, 1);
  h = qv_newudata(L, sizeof *h);
  memset(h, 0, sizeof *h);
  h->plan = p;
  h->closed = 1;                      /* until the call exists */
  qv_stream_init(&h->stream, &p->secrets, p->coalesce_s, p->coalesce_bytes);
  luaL_getmetatable(L, QV_HANDLE_MT);
  lua_setmetatable(L, -2);
  lua_pushvalue(L, st);
  qv_setuservalue(L, -2);
  h->call = qv_request_start(p, qv_state_engine(L), &why);
  if (h->call == NULL) {
    lua_settop(L, plan - 1);
    return qv_fail(L, "network", "%s", why);
  }
  h->closed = 0;
  lua_replace(L, plan);
  lua_settop(L, plan);
  return 0;
}

/* ---- progress ------------------------------------------------------------------ */

/* A forked child inherits handles it must not touch. */
static int inherited(const qv_handle *h) {
  return h->call != NULL && !qv_engine_owned(qv_call_engine(h->call));
}

static void settle(lua_State *L, qv_handle *h, int st) {
  const qv_call_outcome *out = qv_call_outcome_of(h->call);
  if (qv_result_push(L, out, st, &h->stream, h->plan) == 0) {
    lua_setfield(L, st, "final1");
  } else {
    lua_setfield(L, st, "final2");
    lua_pop(L, 1);
  }
  h->finished = 1;
}

/* Fold the stream events queued so far; returns how many bytes. */
static size_t fold_events(lua_State *L, qv_handle *h, int st) {
  qv_buf ev;
  size_t n;
  qv_buf_init(&ev);
  n = qv_call_take_events(h->call, &ev);
  if (n > 0) {
    /* the frames into a Lua string first: folding may raise */
    lua_pushlstring(L, ev.data, ev.len);
    qv_buf_free(&ev);
    qv_stream_events(L, st, &h->stream, lua_tostring(L, -1), lua_rawlen(L, -1));
    lua_pop(L, 1);
  }
  qv_buf_free(&ev);
  return n;
}

void qv_handle_pump(lua_State *L, int hidx) {
  qv_handle *h = check(L, hidx);
  int st, top = lua_gettop(L);
  if (h->finished || h->closed || h->busy || inherited(h)) return;
  h->busy = 1;
  st = push_state(L, hidx);
  fold_events(L, h, st);
  for (;;) {
    int done;
    if (h->stream.failed && qv_call_state_of(h->call) != QV_DONE)
      qv_call_abort(h->call, QV_END_STREAM);  /* the stream's outcome, not ours */
    done = qv_call_state_of(h->call) == QV_DONE;
    if (done) qv_stream_flush(&h->stream);   /* the held-back tail, too */
    if (qv_stream_emit(L, st, &h->stream, done) != 0)
      qv_call_abort(h->call, QV_END_CANCELED);  /* on_delta raised: stop it */
    if (h->close_pending || !done) break;
    /* on_delta may have run the engine (a blocking call inside it): what
    ** arrived meanwhile is folded before the outcome is settled */
    if (fold_events(L, h, st) == 0) {
      settle(L, h, st);
      break;
    }
  }
  h->busy = 0;
  if (h->close_pending) release(h);
  lua_settop(L, top);
}

int qv_handle_done(lua_State *L, int hidx) {
  qv_handle *h = check(L, hidx);
  return h->finished || h->closed || inherited(h);
}

static int fail_closed(lua_State *L, const qv_handle *h) {
  if (inherited(h))
    return qv_fail(L, "closed", "this request was started by the parent process "
                   "(the process has forked since); start it again here");
  return qv_fail(L, "closed", "the handle is closed");
}

int qv_handle_push_final(lua_State *L, int hidx) {
  qv_handle *h = check(L, hidx);
  if (!h->finished) return fail_closed(L, h);
  push_state(L, hidx);
  lua_getfield(L, -1, "final1");
  if (!lua_isnil(L, -1)) { lua_remove(L, -2); return 0; }
  lua_pop(L, 1);
  lua_getfield(L, -1, "final2");
  lua_pushnil(L);
  lua_replace(L, -3);                 /* nil, err */
  return -1;
}

/* The engine this handle runs on (its own, even if the module was loaded
** again since). */
static qv_engine *engine_of(const qv_handle *h) {
  return qv_call_engine(h->call);
}

/* Wait up to `limit` seconds (< 0: until done) for the handle at hidx. */
static int wait_for(lua_State *L, int hidx, double limit) {
  qv_handle *h = check(L, hidx);
  qv_engine *e = engine_of(h);
  double until = limit < 0 ? -1 : qv_now() + limit;
  for (;;) {
    long ms = -1;
    qv_engine_step(e);
    qv_handle_pump(L, hidx);
    if (h->finished || h->closed) break;
    /* text held back by coalescing: look again soon, emit decides */
    if (h->stream.pend_text.len || h->stream.pend_reason.len) ms = 10;
    if (until >= 0) {
      double left = until - qv_now();
      if (left <= 0) break;
      if (left * 1000.0 < WAIT_MAX_MS && (ms < 0 || left * 1000.0 < (double)ms))
        ms = (long)ceil(left * 1000.0);
    }
    qv_engine_wait(e, ms);
    qv_state_hookpoint(L);            /* Ctrl-C: raises; the guard closes */
  }
  if (h->finished) return qv_handle_push_final(L, hidx) < 0 ? 2 : 1;
  if (h->closed) return qv_return(L, fail_closed(L, h), 0);
  lua_pushliteral(L, "pending");
  return 1;
}

/* ---- methods (the bodies; see guard) ------------------------------------------- */

static int m_poll(lua_State *L) {
  qv_handle *h = check(L, 1);
  if (h->busy) { lua_pushliteral(L, "pending"); return 1; }
  if (h->closed || inherited(h)) return qv_return(L, fail_closed(L, h), 0);
  if (!h->finished) {
    qv_engine_step(engine_of(h));
    qv_handle_pump(L, 1);
  }
  if (h->finished) return qv_handle_push_final(L, 1) < 0 ? 2 : 1;
  if (h->closed) return qv_return(L, fail_closed(L, h), 0);
  lua_pushliteral(L, "pending");
  return 1;
}

static int m_wait(lua_State *L) {
  qv_handle *h = check(L, 1);
  double limit = luaL_optnumber(L, 2, -1);
  if (limit != limit) luaL_argerror(L, 2, "timeout must be a number of seconds");
  if (h->busy) { lua_pushliteral(L, "pending"); return 1; }
  if (h->closed || inherited(h)) return qv_return(L, fail_closed(L, h), 0);
  if (h->finished) return qv_handle_push_final(L, 1) < 0 ? 2 : 1;
  return wait_for(L, 1, limit);
}

static int m_cancel(lua_State *L) {
  qv_handle *h = check(L, 1);
  if (!h->closed && !h->finished && !inherited(h)) {
    qv_call_abort(h->call, QV_END_CANCELED);
    qv_handle_pump(L, 1);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* Text and reasoning that arrived since the last read (nil if none). */
static int m_read(lua_State *L) {
  qv_handle *h = check(L, 1);
  qv_buf *t = &h->stream.unread_text, *r = &h->stream.unread_reason;
  if (h->closed) { lua_pushnil(L); lua_pushnil(L); return 2; }
  qv_handle_pump(L, 1);
  if (h->closed) { lua_pushnil(L); lua_pushnil(L); return 2; }
  if (t->len) lua_pushlstring(L, t->data, t->len); else lua_pushnil(L);
  if (r->len) lua_pushlstring(L, r->data, r->len); else lua_pushnil(L);
  qv_buf_reset(t);
  qv_buf_reset(r);
  return 2;
}

static int m_close(lua_State *L) {
  qv_handle_close(L, 1);
  return 0;
}

static int m_status(lua_State *L) {
  qv_handle *h = check(L, 1);
  lua_pushstring(L, h->closed || inherited(h) ? "closed" : h->finished ? "done" :
                 qv_call_state_of(h->call) == QV_WAITING ? "waiting" : "running");
  return 1;
}

static int m_attempts(lua_State *L) {
  qv_handle *h = check(L, 1);
  lua_pushinteger(L, h->call ? qv_call_outcome_of(h->call)->attempts : 0);
  return 1;
}

static int m_tostring(lua_State *L) {
  qv_handle *h = check(L, 1);
  lua_pushfstring(L, "qwenvl.handle (%s): %p", h->closed ? "closed" :
                  h->finished ? "done" : "pending", (void *)h);
  return 1;
}

/* Run the body (upvalue 4) protected; whatever it raises closes the
** handle before it propagates, so an interrupted wait leaves no transfer
** behind. */
static int guard(lua_State *L) {
  int n = lua_gettop(L);
  check(L, 1);
  lua_pushvalue(L, lua_upvalueindex(QV_NUPVALUES + 1));
  lua_insert(L, 1);
  lua_pushvalue(L, 2);                /* the handle, kept below the call */
  lua_insert(L, 1);
  if (lua_pcall(L, n, LUA_MULTRET, 0) != 0) {
    qv_handle *h = check(L, 1);
    h->busy = 0;
    qv_handle_close(L, 1);
    lua_error(L);
  }
  return lua_gettop(L) - 1;
}

void qv_handle_register(lua_State *L) {
  static const luaL_Reg guarded[] = {
    { "poll", m_poll }, { "wait", m_wait }, { "cancel", m_cancel },
    { "read", m_read }, { NULL, NULL }
  };
  static const luaL_Reg plain[] = {
    { "close", m_close }, { "status", m_status }, { "attempts", m_attempts },
    { NULL, NULL }
  };
  int i, up = lua_gettop(L) - QV_NUPVALUES + 1, methods;
  if (!luaL_newmetatable(L, QV_HANDLE_MT)) { lua_pop(L, 1); return; }
#if LUA_VERSION_NUM >= 504
  lua_pushcfunction(L, m_close);
  lua_setfield(L, -2, "__close");
#endif
  lua_pushcfunction(L, handle_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, m_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_createtable(L, 0, 8);
  methods = lua_gettop(L);
  for (i = 0; guarded[i].name; i++) {
    int k;
    for (k = 0; k < QV_NUPVALUES; k++) lua_pushvalue(L, up + k);
    for (k = 0; k < QV_NUPVALUES; k++) lua_pushvalue(L, up + k);
    lua_pushcclosure(L, guarded[i].func, QV_NUPVALUES);
    lua_pushcclosure(L, guard, QV_NUPVALUES + 1);
    lua_setfield(L, methods, guarded[i].name);
  }
  for (i = 0; plain[i].name; i++) {
    lua_pushcfunction(L, plain[i].func);
    lua_setfield(L, methods, plain[i].name);
  }
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

/* ---- module functions -------------------------------------------------------- */

int qv_handle_start(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  return qv_return(L, qv_handle_new(L, 1, QV_KIND_CHAT), 1);
}

/* A handle waited on at once, then closed (not left to the next GC).
** (req, kind, keeper): keeper.handle is where the guard finds it. */
static int blocking_body(lua_State *L) {
  int n;
  if (qv_handle_new(L, 1, (int)lua_tointeger(L, 2)) < 0) return 2;
  lua_pushvalue(L, 4);
  lua_setfield(L, 3, "handle");
  n = wait_for(L, 4, -1);
  qv_handle_close(L, 4);
  return n;
}

/* Run blocking_body protected: whatever it raises (the interpreter's
** interrupt) closes the handle first, then propagates. */
static int run_blocking(lua_State *L, qv_kind kind) {
  int k;
  lua_settop(L, 1);
  lua_newtable(L);                          /* 2: keeper */
  for (k = 1; k <= QV_NUPVALUES; k++) lua_pushvalue(L, lua_upvalueindex(k));
  lua_pushcclosure(L, blocking_body, QV_NUPVALUES);
  lua_pushvalue(L, 1);
  lua_pushinteger(L, kind);
  lua_pushvalue(L, 2);
  if (lua_pcall(L, 3, LUA_MULTRET, 0) != 0) {
    lua_getfield(L, 2, "handle");
    if (!lua_isnil(L, -1)) {
      check(L, -1)->busy = 0;
      qv_handle_close(L, lua_gettop(L));
    }
    lua_pop(L, 1);
    lua_error(L);
  }
  return lua_gettop(L) - 2;
}

int qv_handle_chat(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  return run_blocking(L, QV_KIND_CHAT);
}

int qv_handle_models(lua_State *L) {
  if (lua_isnoneornil(L, 1)) { lua_settop(L, 0); lua_newtable(L); }
  luaL_checktype(L, 1, LUA_TTABLE);
  return run_blocking(L, QV_KIND_MODELS);
}

int qv_handle_http(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  return run_blocking(L, QV_KIND_HTTP);
}
