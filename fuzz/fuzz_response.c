/*
** Fuzz qv_result: response-body field extraction and stream-event
** folding, through the real Lua-facing code (qv_result_finish,
** qv_result_events, qv_result_emit) in a real lua_State with cjson.
** No network: the harness fills a fake qv_call as the engine would.
**
** Input: byte 0 picks the mode, byte 1 the HTTP status, byte 2 the
** flags (json_mode, models, idle end, coalescing), the rest is the body.
**   mode & 3 == 0  plain body -> qv_result_finish
**   mode & 3 == 1  stream: the rest split at '\n' into SSE payloads (a
**                  payload starting with '!' is an "event: error"),
**                  folded in pieces as the handle's pump does
**   mode & 3 == 2  stream: the rest is taken as the internal event queue
**                  itself (flag byte, u32 length, payload), which must
**                  never be read out of bounds
**   mode & 3 == 3  plain body, and the call ends on a transport error
** Invariants (abort otherwise): the Lua stack is balanced, exactly the
** documented values come back (a result table, or nil + an error table
** with a string code), tostring(err) works, and the fake API key never
** appears in err.message, err.raw or tostring(err) (the scrubbed fields).
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qv_lua.h"

#include <lualib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FAKE_KEY "sk-FUZZKEY-0123456789abcdef"

/* qv_result.c needs these two from qv_engine.c / qv_call.c. */
double qv_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double qv_call_elapsed(const qv_call *c) { return qv_now() - c->started; }

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

/* Upvalue 2 is cjson (upvalue 1, the engine, is not used by qv_result). */
static int run(lua_State *L) {
  job *j = lua_touserdata(L, 1);
  const uint8_t *d = j->data;
  size_t n = j->size, body_n;
  const char *body;
  int mode, flags, st, base, nret;
  qv_call c;
  qv_stream s;

  if (n < 3) return 0;
  mode = d[0] & 3;
  flags = d[2];
  body = (const char *)d + 3;
  body_n = n - 3;

  memset(&c, 0, sizeof c);
  c.state = QV_DONE;
  c.end = QV_END_RESPONSE;
  c.status = statuses[d[1] % (sizeof statuses / sizeof statuses[0])];
  c.attempts = 1 + (d[1] >> 5);
  c.retry_after = (d[1] & 16) ? 2.5 : -1;
  c.retryable = c.status >= 500 || c.status == 429;
  c.started = qv_now();
  c.o.timeout_s = 1;
  c.o.idle_timeout_s = 1;
  c.o.max_response_bytes = 1 << 20;
  if (flags & 64) snprintf(c.request_id, sizeof c.request_id, "rid-%d", d[1]);
  if (flags & 128) snprintf(c.content_type, sizeof c.content_type,
                            "text/html; charset=utf-8");
  c.headers = curl_slist_append(NULL, "Content-Type: application/json");
  c.headers = curl_slist_append(c.headers, "Authorization: Bearer " FAKE_KEY);
  qv_buf_init(&c.body_in);
  qv_buf_init(&c.events);
  qv_stream_init(&s);

  /* the state table the handle keeps: plan, on_delta, coalescing */
  lua_createtable(L, 0, 8);
  st = lua_gettop(L);
  lua_createtable(L, 0, 8);
  lua_pushstring(L, (flags & 2) ? "models" : "chat");
  lua_setfield(L, -2, "kind");
  lua_pushboolean(L, flags & 1);
  lua_setfield(L, -2, "json");
  lua_pushliteral(L, "qwen3-vl-plus");
  lua_setfield(L, -2, "model");
  lua_pushliteral(L, "http://127.0.0.1:1/compatible-mode/v1");
  lua_setfield(L, -2, "base_url");
  lua_setfield(L, st, "plan");
  if (flags & 4) {
    lua_pushcfunction(L, on_delta);
    lua_setfield(L, st, "on_delta");
  }
  lua_pushinteger(L, (flags & 8) ? 0 : 50);
  lua_setfield(L, st, "coalesce_ms");
  lua_pushinteger(L, (flags & 16) ? 1 : 256);
  lua_setfield(L, st, "coalesce_bytes");

  if (mode == 1 || mode == 2) {
    c.streaming = 1;
    if (mode == 2) {
      qv_buf_add(&c.events, body, body_n);
    } else {
      size_t a = 0;
      while (a <= body_n) {
        const char *nl = memchr(body + a, '\n', body_n - a);
        size_t e = nl ? (size_t)(nl - body) : body_n;
        unsigned char head[5];
        uint32_t len;
        int err = e > a && body[a] == '!';
        len = (uint32_t)(e - a - (size_t)err);
        head[0] = (unsigned char)err;
        memcpy(head + 1, &len, 4);
        qv_buf_add(&c.events, head, 5);
        qv_buf_add(&c.events, body + a + err, len);
        a = e + 1;
      }
    }
    /* fold in pieces at frame boundaries, like the handle's pump */
    {
      size_t at = 0, k = 0;
      while (at < c.events.len && !s.failed) {
        size_t take = 0, p = at;
        int frames = 1 + (int)(k++ % 3);
        while (frames-- > 0 && p + 5 <= c.events.len) {
          uint32_t len;
          memcpy(&len, c.events.data + p + 1, 4);
          if (len > c.events.len - p - 5) { p = c.events.len; break; }
          p += 5 + len;
        }
        if (p == at) p = c.events.len;
        take = p - at;
        base = lua_gettop(L);
        qv_result_events(L, st, &s, c.events.data + at, take);
        if (lua_gettop(L) != base) abort();
        qv_result_emit(L, st, &s, 0);
        if (lua_gettop(L) != base) abort();
        at += take;
      }
      base = lua_gettop(L);
      qv_result_emit(L, st, &s, 1);
      if (lua_gettop(L) != base) abort();
    }
    if (flags & 32) c.end = QV_END_IDLE;
  } else {
    qv_buf_add(&c.body_in, body, body_n);
    if (mode == 3) {
      static const qv_call_end ends[] = { QV_END_TRANSPORT, QV_END_BUDGET,
                                          QV_END_TOO_LARGE, QV_END_CANCELED };
      c.end = ends[(flags >> 2) & 3];
      c.curl_code = (flags & 32) ? CURLE_OPERATION_TIMEDOUT : CURLE_RECV_ERROR;
      c.sse_error = (flags & 16) != 0;
    }
  }

  base = lua_gettop(L);
  nret = qv_result_finish(L, &c, st, (mode == 1 || mode == 2) ? &s : NULL);
  if (nret != 1 && nret != 2) abort();
  if (lua_gettop(L) < base + nret) abort();
  if (nret == 1) {
    if (!lua_istable(L, -1)) abort();
  } else {
    int e = lua_gettop(L);
    size_t tn;
    const char *ts;
    if (!lua_isnil(L, -2) || !lua_istable(L, e)) abort();
    lua_getfield(L, e, "code");
    if (lua_type(L, -1) != LUA_TSTRING) abort();
    lua_pop(L, 1);
    check_field_clean(L, e, "message");
    check_field_clean(L, e, "raw");
    ts = luaL_tolstring(L, e, &tn);   /* the error's __tostring */
    if (ts == NULL || strncmp(ts, "qwenvl: ", 8) != 0) abort();
    if (key_in(ts, tn)) {
      /* tostring shows message (scrubbed) plus api_code and request_id,
      ** which are copied from the body unscrubbed: only fail when the key
      ** came in through the scrubbed fields */
      lua_getfield(L, e, "api_code");
      lua_getfield(L, e, "request_id");
      if (!key_in(lua_tostring(L, -2), lua_isstring(L, -2) ? lua_rawlen(L, -2) : 0) &&
          !key_in(lua_tostring(L, -1), lua_isstring(L, -1) ? lua_rawlen(L, -1) : 0)) {
        fprintf(stderr, "fake key leaked in tostring(err)\n");
        abort();
      }
      lua_pop(L, 2);
    }
    lua_pop(L, 1);
  }
  lua_settop(L, 0);

  qv_stream_free(&s);
  qv_buf_free(&c.body_in);
  qv_buf_free(&c.events);
  curl_slist_free_all(c.headers);
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
  lua_newtable(L);   /* pretend engine upvalue: qv_result never reads it */
  lua_setfield(L, LUA_REGISTRYINDEX, "fuzz.engine");
  qv_error_register(L);
  return L;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  job j;
  int rc;
  if (G == NULL) G = setup();
  j.data = data;
  j.size = size;
  lua_getfield(G, LUA_REGISTRYINDEX, "fuzz.engine");
  lua_getfield(G, LUA_REGISTRYINDEX, "fuzz.cjson");
  lua_pushcclosure(G, run, 2);
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
