/*
** Fuzz qv_result and qv_stream: response-body field extraction and
** stream-event folding, through the real binding code (qv_result_push,
** qv_stream_events, qv_stream_emit) in a real lua_State with cjson.
** No network: the harness fills a qv_call_outcome as a call would.
**
** Input: byte 0 picks the mode, byte 1 the HTTP status, byte 2 the
** flags (json_mode, models, on_delta, coalescing, idle end, ...), the
** rest is the body.
**   mode & 3 == 0  plain body -> qv_result_push
**   mode & 3 == 1  stream: the rest split at '\n' into SSE payloads (a
**                  payload starting with '!' is an "event: error"),
**                  folded in pieces as the handle's pump does
**   mode & 3 == 2  stream: the rest is taken as the event frames
**                  themselves (qv_call.h), never read out of bounds
**   mode & 3 == 3  plain body, and the call ends on a transport error
** Invariants (abort otherwise): the Lua stack is balanced, exactly the
** documented values come back (a result table, or nil + an error table
** with a string code), tostring(err) works, and the fake API key never
** appears anywhere in what comes back (result or error, tostring too).
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qv_error.h"
#include "qv_request.h"
#include "qv_result.h"
#include "qv_state.h"
#include "qv_stream.h"

#include <lualib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FAKE_KEY "sk-FUZZKEY-0123456789abcdef"

static lua_State *G;

typedef struct job {
  const uint8_t *data;
  size_t size;
} job;

static const long statuses[] = { 200, 200, 200, 200, 400, 401, 403, 404,
                                 408, 409, 413, 429, 500, 502, 503, 504,
                                 201, 204, 301, 307, 100, 0, 599, 299 };

static int on_delta(lua_State *L) {
  luaL_checkstring(L, 1);
  luaL_checkstring(L, 2);
  lua_pushvalue(L, 1);
  lua_setglobal(L, "last_delta");
  return 0;
}

static int key_in(const char *s, size_t n) {
  size_t kn = sizeof FAKE_KEY - 1, i;
  if (s == NULL || n < kn) return 0;
  for (i = 0; i + kn <= n; i++)
    if (memcmp(s + i, FAKE_KEY, kn) == 0) return 1;
  return 0;
}

static void check_field_clean(lua_State *L, int t, const char *k) {
  size_t n;
  const char *s;
  lua_getfield(L, t, k);
  s = lua_tolstring(L, -1, &n);
  if (s != NULL && key_in(s, n)) {
    fprintf(stderr, "fake key leaked in err.%s\n", k);
    abort();
  }
  lua_pop(L, 1);
}

/* Every string reachable from the value at idx (one level of tables,
** and tostring of an error) is free of the fake key. */
static void check_clean(lua_State *L, int idx) {
  size_t n;
  const char *s;
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) == LUA_TSTRING) {
    s = lua_tolstring(L, idx, &n);
    if (key_in(s, n)) { fprintf(stderr, "fake key leaked\n"); abort(); }
    return;
  }
  if (!lua_istable(L, idx)) return;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    if (lua_type(L, -1) == LUA_TSTRING) check_clean(L, -1);
    lua_pop(L, 1);
  }
}

/* Fill the outcome's event frames from the body (mode 1 and 2). */
static void frames(qv_buf *ev, const char *body, size_t body_n, int mode) {
  size_t a = 0;
  if (mode == 2) { qv_buf_add(ev, body, body_n); return; }
  while (a <= body_n) {
    const char *nl = memchr(body + a, '\n', body_n - a);
    size_t e = nl ? (size_t)(nl - body) : body_n;
    unsigned char head[5];
    uint32_t len;
    int err = e > a && body[a] == '!';
    len = (uint32_t)(e - a - (size_t)err);
    head[0] = (unsigned char)err;
    memcpy(head + 1, &len, 4);
    qv_buf_add(ev, head, 5);
    qv_buf_add(ev, body + a + err, len);
    a = e + 1;
  }
}

/* Fold the frames in pieces at frame boundaries, as the handle's pump. */
static void fold(lua_State *L, int st, qv_stream *s, const qv_buf *ev) {
  size_t at = 0, k = 0;
  int base;
  while (at < ev->len && !s->failed) {
    size_t p = at;
    int frames_n = 1 + (int)(k++ % 3);
    while (frames_n-- > 0 && p + 5 <= ev->len) {
      uint32_t len;
      memcpy(&len, ev->data + p + 1, 4);
      if (len > ev->len - p - 5) { p = ev->len; break; }
      p += 5 + len;
    }
    if (p == at) p = ev->len;
    base = lua_gettop(L);
    qv_stream_events(L, st, s, ev->data + at, p - at);
    if (lua_gettop(L) != base) abort();
    qv_stream_emit(L, st, s, 0);
    if (lua_gettop(L) != base) abort();
    at = p;
  }
  qv_stream_flush(s);
  base = lua_gettop(L);
  qv_stream_emit(L, st, s, 1);
  if (lua_gettop(L) != base) abort();
}

/* The module's upvalues are this closure's (cjson is upvalue 2). */
static int run(lua_State *L) {
  job *j = lua_touserdata(L, 1);
  const uint8_t *d = j->data;
  size_t n = j->size, body_n;
  const char *body;
  int mode, flags, st, base, rc;
  qv_call_outcome out;
  qv_plan *p;
  qv_stream s;
  qv_buf ev;

  if (n < 3) return 0;
  mode = d[0] & 3;
  flags = d[2];
  body = (const char *)d + 3;
  body_n = n - 3;

  memset(&out, 0, sizeof out);
  out.end = QV_END_RESPONSE;
  out.status = statuses[d[1] % (sizeof statuses / sizeof statuses[0])];
  out.attempts = 1 + (d[1] >> 5);
  out.retry_after = (d[1] & 16) ? 2.5 : -1;
  out.retryable = out.status >= 500 || out.status == 429;
  if (flags & 64) snprintf(out.request_id, sizeof out.request_id, "rid-%d", d[1]);
  if (flags & 128) snprintf(out.content_type, sizeof out.content_type,
                            "text/html; charset=utf-8");
  qv_buf_init(&out.body);
  qv_buf_init(&ev);

  /* the plan: a userdata, as qv_request makes it */
  p = lua_newuserdatauv(L, sizeof *p, 0);
  memset(p, 0, sizeof *p);
  p->kind = (flags & 2) ? QV_KIND_MODELS : QV_KIND_CHAT;
  p->json = flags & 1;
  p->call.timeout_s = 1;
  p->call.idle_timeout_s = 1;
  p->call.max_response_bytes = 1 << 20;
  p->call.stream = mode == 1 || mode == 2 || (flags & 32);
  qv_secrets_init(&p->secrets);
  qv_secrets_add(&p->secrets, FAKE_KEY, sizeof FAKE_KEY - 1);
  qv_stream_init(&s, &p->secrets, (flags & 8) ? 0 : 0.05, (flags & 16) ? 1 : 256);

  /* the state table the handle keeps */
  lua_createtable(L, 0, 8);
  st = lua_gettop(L);
  lua_createtable(L, 0, 8);
  lua_pushliteral(L, "qwen3-vl-plus");
  lua_setfield(L, -2, "model");
  lua_pushliteral(L, "http://127.0.0.1:1/compatible-mode/v1");
  lua_setfield(L, -2, "base_url");
  lua_setfield(L, st, "plan");
  if (flags & 4) {
    lua_pushcfunction(L, on_delta);
    lua_setfield(L, st, "on_delta");
  }

  if (mode == 1 || mode == 2) {
    out.streamed = 1;
    frames(&ev, body, body_n, mode);
    fold(L, st, &s, &ev);
    if (flags & 32) out.end = QV_END_IDLE;
  } else {
    qv_buf_add(&out.body, body, body_n);
    if (mode == 3) {
      static const qv_call_end ends[] = { QV_END_TRANSPORT, QV_END_BUDGET,
                                          QV_END_TOO_LARGE, QV_END_CANCELED };
      out.end = ends[(flags >> 2) & 3];
      out.curl_code = (flags & 32) ? CURLE_OPERATION_TIMEDOUT : CURLE_RECV_ERROR;
      out.sse_error = (flags & 16) != 0;
    }
  }

  base = lua_gettop(L);
  rc = qv_result_push(L, &out, st, &s, p);
  if (rc == 0) {
    if (lua_gettop(L) != base + 1 || !lua_istable(L, -1)) abort();
    check_clean(L, -1);
  } else {
    int e = lua_gettop(L);
    size_t tn;
    const char *ts;
    if (rc != -1 || e != base + 2 || !lua_isnil(L, -2) || !lua_istable(L, e)) abort();
    lua_getfield(L, e, "code");
    if (lua_type(L, -1) != LUA_TSTRING) abort();
    lua_pop(L, 1);
    check_clean(L, e);
    ts = luaL_tolstring(L, e, &tn);   /* the error's __tostring */
    if (ts == NULL || strncmp(ts, "qwenvl: ", 8) != 0) abort();
    if (key_in(ts, tn)) { fprintf(stderr, "fake key leaked in tostring(err)\n"); abort(); }
    lua_pop(L, 1);
  }
  lua_settop(L, 0);
  qv_stream_free(&s);
  qv_secrets_wipe(&p->secrets);
  qv_buf_free(&p->scratch);
  qv_buf_free(&out.body);
  qv_buf_free(&ev);
  return 0;
}

static lua_State *setup(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  if (luaL_dostring(L, "package.cpath = '/usr/lib/x86_64-linux-gnu/lua/5.4/?.so;'"
                       " .. package.cpath; return require('cjson')") != 0) {
    fprintf(stderr, "fuzz_response: %s\n", lua_tostring(L, -1));
    abort();
  }
  /* cjson.decode_max_depth stays at its default (1000) */
  lua_setfield(L, LUA_REGISTRYINDEX, "fuzz.cjson");
  qv_error_register(L);
  return L;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  job j;
  int rc;
  if (G == NULL) G = setup();
  j.data = data;
  j.size = size;
  lua_pushnil(G);                            /* the state: not used */
  lua_getfield(G, LUA_REGISTRYINDEX, "fuzz.cjson");
  lua_pushnil(G);                            /* the hook point: no hooks */
  lua_pushcclosure(G, run, QV_NUPVALUES);
  lua_pushlightuserdata(G, &j);
  rc = lua_pcall(G, 1, 0, 0);
  if (rc != 0) {
    /* Only memory errors may escape; anything else is a binding bug
    ** (a raised error where nil, err was due). */
    fprintf(stderr, "fuzz_response: Lua error: %s\n", lua_tostring(G, -1));
    abort();
  }
  lua_settop(G, 0);
  /* keep the heap small and exercise __gc of the error tables */
  lua_gc(G, LUA_GCSTEP, 0);
  return 0;
}
