/*
** qv_result: what a finished call means to the caller. Error tables
** (code, message, status, ... with a readable __tostring), JSON through
** cjson, stream chunks folded into text, and the final result table.
** The API key is scrubbed from anything the server sent back.
*/
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "qv_lua.h"
#include "qv_retry.h"

/* ---- errors ---------------------------------------------------------- */

static int error_tostring(lua_State *L) {
  luaL_Buffer b;
  const char *s;
  int first = 1;
  static const char *const extras[] = { "status", "api_code", "field",
                                        "request_id", "attempts", NULL };
  int i;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "qwenvl: ");
  lua_getfield(L, 1, "code");
  luaL_addstring(&b, (s = lua_tostring(L, -1)) ? s : "error");
  lua_pop(L, 1);
  lua_getfield(L, 1, "message");
  if ((s = lua_tostring(L, -1)) != NULL) {
    luaL_addstring(&b, ": ");
    luaL_addstring(&b, s);
  }
  lua_pop(L, 1);
  for (i = 0; extras[i]; i++) {
    lua_getfield(L, 1, extras[i]);
    if (!lua_isnil(L, -1)) {
      const char *v = lua_tostring(L, -1);
      if (v != NULL) {
        char piece[200];
        snprintf(piece, sizeof piece, "%s%s=%.150s", first ? " (" : ", ",
                 extras[i], v);
        luaL_addstring(&b, piece);
        first = 0;
      }
    }
    lua_pop(L, 1);
  }
  if (!first) luaL_addchar(&b, ')');
  luaL_pushresult(&b);
  return 1;
}

void qv_error_register(lua_State *L) {
  luaL_newmetatable(L, QV_ERROR_MT);
  lua_pushcfunction(L, error_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
}

void qv_error_push(lua_State *L, const char *code, const char *message,
                   long status, int retryable, int attempts) {
  lua_createtable(L, 0, 10);
  lua_pushstring(L, code);
  lua_setfield(L, -2, "code");
  lua_pushstring(L, message);
  lua_setfield(L, -2, "message");
  if (status > 0) {
    lua_pushinteger(L, (lua_Integer)status);
    lua_setfield(L, -2, "status");
  }
  lua_pushboolean(L, retryable);
  lua_setfield(L, -2, "retryable");
  lua_pushinteger(L, attempts);
  lua_setfield(L, -2, "attempts");
  luaL_getmetatable(L, QV_ERROR_MT);
  lua_setmetatable(L, -2);
}

void qv_error_set(lua_State *L, const char *field, const char *value) {
  if (value == NULL || *value == '\0') return;
  lua_pushstring(L, value);
  lua_setfield(L, -2, field);
}

int qv_error_invalid(lua_State *L, const char *field, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  qv_error_invalidv(L, field, fmt, ap);
  va_end(ap);
  return 0;
}

int qv_error_invalidv(lua_State *L, const char *field, const char *fmt,
                      va_list ap) {
  char msg[512];
  vsnprintf(msg, sizeof msg, fmt, ap);
  lua_pushnil(L);
  qv_error_push(L, "invalid_request", msg, 0, 0, 0);
  qv_error_set(L, "field", field);
  return 0;
}

/* ---- JSON through cjson ---------------------------------------------- */

int qv_json_decode(lua_State *L, const char *s, size_t n) {
  lua_getfield(L, QV_UPV_CJSON, "decode");
  lua_pushlstring(L, s, n);
  if (lua_pcall(L, 1, 1, 0) != 0) { lua_pop(L, 1); return 0; }
  return 1;
}

int qv_json_encode(lua_State *L, int idx) {
  idx = qv_absindex(L, idx);
  lua_getfield(L, QV_UPV_CJSON, "encode");
  lua_pushvalue(L, idx);
  if (lua_pcall(L, 1, 1, 0) != 0) { lua_pop(L, 1); return 0; }
  return 1;
}

/* ---- small table readers --------------------------------------------- */

static const char *field_str(lua_State *L, int t, const char *k, size_t *n) {
  const char *s = NULL;
  lua_getfield(L, t, k);
  if (lua_type(L, -1) == LUA_TSTRING) s = lua_tolstring(L, -1, n);
  lua_pop(L, 1);              /* the string stays alive in the table */
  return s;
}

/* Push t[k] if it is a table; returns 1, else pushes nothing. */
static int field_table(lua_State *L, int t, const char *k) {
  lua_getfield(L, t, k);
  if (lua_istable(L, -1)) return 1;
  lua_pop(L, 1);
  return 0;
}

/* Push t[i] if it is a table. */
static int index_table(lua_State *L, int t, int i) {
  lua_rawgeti(L, t, i);
  if (lua_istable(L, -1)) return 1;
  lua_pop(L, 1);
  return 0;
}

/* cjson decodes every number as a float; token counts read better as
** integers (90, not 90.0 on Lua 5.3+). Nested tables: one level deep. */
static void integerize(lua_State *L, int t, int depth) {
#if LUA_VERSION_NUM >= 503
  t = qv_absindex(L, t);
  lua_pushnil(L);
  while (lua_next(L, t) != 0) {
    if (lua_type(L, -1) == LUA_TNUMBER && !lua_isinteger(L, -1)) {
      lua_Number v = lua_tonumber(L, -1);
      if (v >= -9007199254740992.0 && v <= 9007199254740992.0 &&
          v == (lua_Number)(lua_Integer)v) {
        lua_pushvalue(L, -2);
        lua_pushinteger(L, (lua_Integer)v);
        lua_rawset(L, t);
      }
    } else if (depth > 0 && lua_istable(L, -1)) {
      integerize(L, -1, depth - 1);
    }
    lua_pop(L, 1);
  }
#else
  (void)L; (void)t; (void)depth;
#endif
}

/* ---- secrets ---------------------------------------------------------- */

/* The key as sent, read back from our own Authorization header. */
static const char *call_key(const qv_call *c, size_t *n) {
  const struct curl_slist *h;
  for (h = c->headers; h != NULL; h = h->next) {
    if (strncmp(h->data, "Authorization: Bearer ", 22) == 0) {
      *n = strlen(h->data + 22);
      return h->data + 22;
    }
  }
  return NULL;
}

/* Push s with every occurrence of the key replaced. */
static void push_scrubbed(lua_State *L, const qv_call *c, const char *s,
                          size_t n) {
  size_t kn = 0, i = 0;
  const char *key = call_key(c, &kn);
  luaL_Buffer b;
  if (key == NULL || kn < 4 || n < kn) { lua_pushlstring(L, s, n); return; }
  luaL_buffinit(L, &b);
  while (i < n) {
    if (n - i >= kn && memcmp(s + i, key, kn) == 0) {
      luaL_addstring(&b, "[redacted]");
      i += kn;
    } else {
      luaL_addchar(&b, s[i]);
      i++;
    }
  }
  luaL_pushresult(&b);
}

/* Every string field of the error table on top, scrubbed of the key
** (servers echo what they were sent: codes, ids, messages). */
static void scrub_error(lua_State *L, const qv_call *c) {
  int t = lua_gettop(L);
  size_t kn = 0;
  if (call_key(c, &kn) == NULL) return;
  lua_pushnil(L);
  while (lua_next(L, t) != 0) {
    if (lua_type(L, -1) == LUA_TSTRING) {
      size_t n;
      const char *v = lua_tolstring(L, -1, &n);
      lua_pushvalue(L, -2);
      push_scrubbed(L, c, v, n);
      lua_rawset(L, t);                /* existing key: allowed in lua_next */
    }
    lua_pop(L, 1);
  }
}

/* ---- streams ---------------------------------------------------------- */

void qv_stream_init(qv_stream *s) {
  memset(s, 0, sizeof *s);
  qv_buf_init(&s->text); qv_buf_init(&s->reasoning);
  qv_buf_init(&s->pend_text); qv_buf_init(&s->pend_reason);
  qv_buf_init(&s->unread_text); qv_buf_init(&s->unread_reason);
}

void qv_stream_free(qv_stream *s) {
  qv_buf_free(&s->text); qv_buf_free(&s->reasoning);
  qv_buf_free(&s->pend_text); qv_buf_free(&s->pend_reason);
  qv_buf_free(&s->unread_text); qv_buf_free(&s->unread_reason);
}

static void add_delta(qv_stream *s, int reasoning, const char *p, size_t n) {
  if (n == 0) return;
  qv_buf_add(reasoning ? &s->reasoning : &s->text, p, n);
  qv_buf_add(reasoning ? &s->pend_reason : &s->pend_text, p, n);
  qv_buf_add(reasoning ? &s->unread_reason : &s->unread_text, p, n);
}

/* One decoded chunk at the top of the stack. */
static void fold_chunk(lua_State *L, int st, qv_stream *s) {
  int chunk = lua_gettop(L);
  const char *v;
  size_t n;
  if (field_table(L, chunk, "error")) {     /* moderation after HTTP 200 */
    lua_setfield(L, st, "stream_error");
    s->failed = 1;
    return;
  }
  if ((v = field_str(L, chunk, "model", &n)) != NULL) {
    lua_pushlstring(L, v, n);
    lua_setfield(L, st, "model");
  }
  if ((v = field_str(L, chunk, "request_id", &n)) != NULL) {
    lua_pushlstring(L, v, n);
    lua_setfield(L, st, "body_request_id");
  }
  if (field_table(L, chunk, "usage")) lua_setfield(L, st, "usage");
  if (field_table(L, chunk, "choices")) {
    if (index_table(L, -1, 1)) {
      int choice = lua_gettop(L);
      if ((v = field_str(L, choice, "finish_reason", &n)) != NULL) {
        lua_pushlstring(L, v, n);
        lua_setfield(L, st, "finish_reason");
        s->done = 1;
      }
      if (field_table(L, choice, "delta")) {
        if ((v = field_str(L, -1, "reasoning_content", &n)) != NULL)
          add_delta(s, 1, v, n);
        if ((v = field_str(L, -1, "content", &n)) != NULL)
          add_delta(s, 0, v, n);
        lua_pop(L, 1);
      }
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
}

void qv_result_events(lua_State *L, int st, qv_stream *s, const char *p,
                      size_t n) {
  size_t i = 0;
  int top = lua_gettop(L);
  while (i + 5 <= n) {
    uint32_t len;
    int error_event = p[i] == 1;
    memcpy(&len, p + i + 1, 4);
    i += 5;
    if (len > n - i) break;
    if (len == 6 && memcmp(p + i, "[DONE]", 6) == 0) {
      s->done = 1;
    } else if (s->failed) {
      /* nothing after an error counts */
    } else if (qv_json_decode(L, p + i, len) && lua_istable(L, -1)) {
      if (error_event && !field_table(L, -1, "error")) {
        lua_setfield(L, st, "stream_error");  /* "event: error" */
        s->failed = 1;
      } else {
        if (error_event) lua_pop(L, 1);
        fold_chunk(L, st, s);
      }
    } else {
      lua_settop(L, top);
      lua_pushlstring(L, p + i, len > 200 ? 200 : len);
      lua_setfield(L, st, "bad_event");
      s->failed = 1;
    }
    lua_settop(L, top);
    i += len;
  }
}

static int deliver(lua_State *L, int st, qv_buf *pend, const char *kind) {
  int ok;
  if (pend->len == 0) return 0;
  lua_getfield(L, st, "on_delta");
  if (!lua_isfunction(L, -1)) { lua_pop(L, 1); qv_buf_reset(pend); return 0; }
  lua_pushlstring(L, pend->data, pend->len);
  lua_pushstring(L, kind);
  qv_buf_reset(pend);
  ok = lua_pcall(L, 2, 0, 0) == 0;
  if (!ok) {
    lua_setfield(L, st, "callback_error");
    return -1;
  }
  return 0;
}

int qv_result_emit(lua_State *L, int st, qv_stream *s, int force) {
  double now = qv_now(), every = 0.05;
  lua_Integer bytes = 256;
  lua_getfield(L, st, "coalesce_ms");
  if (lua_isnumber(L, -1)) every = lua_tonumber(L, -1) / 1000.0;
  lua_getfield(L, st, "coalesce_bytes");
  if (lua_isnumber(L, -1)) bytes = lua_tointeger(L, -1);
  lua_pop(L, 2);
  if (s->pend_text.len == 0 && s->pend_reason.len == 0) return 0;
  if (!force && (lua_Integer)(s->pend_text.len + s->pend_reason.len) < bytes &&
      now - s->last_emit < every)
    return 0;
  s->last_emit = now;
  if (deliver(L, st, &s->pend_reason, "reasoning") != 0 ||
      deliver(L, st, &s->pend_text, "content") != 0) {
    s->failed = 1;
    return -1;
  }
  return 0;
}

/* ---- final outcome ---------------------------------------------------- */

static const char *status_code(long status, const char *api_code) {
  if (api_code && (strcmp(api_code, "data_inspection_failed") == 0 ||
                   strcmp(api_code, "DataInspectionFailed") == 0))
    return "content_filter";
  if (status == 401 || status == 403) return "auth";
  if (status == 404) return "not_found";
  if (status == 408) return "timeout";
  if (status == 409 || status == 429) return "rate_limited";
  if (status >= 500) return "server";
  if (status == 400 || status == 413 || status == 415 || status == 422)
    return "invalid_request";
  return "api_error";
}

static void set_common(lua_State *L, qv_call *c, int st) {
  const char *rid = c->request_id[0] ? c->request_id : NULL;
  if (rid == NULL) rid = field_str(L, st, "body_request_id", NULL);
  qv_error_set(L, "request_id", rid);
  lua_pushnumber(L, qv_call_elapsed(c));
  lua_setfield(L, -2, "elapsed_s");
}

/* Error from an HTTP error response: DashScope's {"error":{...}} if any. */
static void push_http_error(lua_State *L, qv_call *c, int st) {
  const char *msg = NULL, *api = NULL;
  char fallback[160];
  size_t n;
  int top = lua_gettop(L), body = 0;
  if (c->body_in.len > 0 && qv_json_decode(L, c->body_in.data, c->body_in.len)
      && lua_istable(L, -1)) {
    body = lua_gettop(L);
    if (field_table(L, body, "error")) {
      msg = field_str(L, -1, "message", &n);
      api = field_str(L, -1, "code", &n);
      if (api == NULL) api = field_str(L, -1, "type", &n);
    } else {                          /* native-style {code, message} */
      msg = field_str(L, body, "message", &n);
      api = field_str(L, body, "code", &n);
    }
    if (field_str(L, body, "request_id", &n)) {
      lua_getfield(L, body, "request_id");
      lua_setfield(L, st, "body_request_id");
    }
  }
  if (msg == NULL) {
    snprintf(fallback, sizeof fallback, "HTTP %ld from the server%s%s", c->status,
             c->content_type[0] ? " (" : "", c->content_type[0] ? c->content_type : "");
    if (c->content_type[0]) strncat(fallback, ")", sizeof fallback - strlen(fallback) - 1);
    msg = fallback;
  }
  lua_pushnil(L);
  qv_error_push(L, status_code(c->status, api), "", c->status, c->retryable,
                c->attempts);
  push_scrubbed(L, c, msg, strlen(msg));
  lua_setfield(L, -2, "message");
  qv_error_set(L, "api_code", api);
  if (c->retry_after >= 0) {
    lua_pushnumber(L, c->retry_after);
    lua_setfield(L, -2, "retry_after");
  }
  push_scrubbed(L, c, c->body_in.data ? c->body_in.data : "", c->body_in.len);
  lua_setfield(L, -2, "raw");
  set_common(L, c, st);
  if (lua_gettop(L) > top + 2) {     /* drop the decoded body below */
    lua_replace(L, top + 2);          /* err */
    lua_pushnil(L);
    lua_replace(L, top + 1);
    lua_settop(L, top + 2);
  }
}

static void push_transport_error(lua_State *L, qv_call *c, int st) {
  char msg[CURL_ERROR_SIZE + 64];
  const char *code = "network";
  switch (c->end) {
    case QV_END_BUDGET:
      code = "timeout";
      snprintf(msg, sizeof msg, "no answer within timeout_s (%.3g s)",
               c->o.timeout_s);
      break;
    case QV_END_IDLE:
      code = "timeout";
      snprintf(msg, sizeof msg, "stream stalled: nothing for idle_timeout_s "
               "(%.3g s)", c->o.idle_timeout_s);
      break;
    case QV_END_TOO_LARGE:
      code = "bad_response";
      snprintf(msg, sizeof msg, "response larger than max_response_bytes "
               "(%lu)", (unsigned long)c->o.max_response_bytes);
      break;
    case QV_END_CANCELED:
      code = "canceled";
      snprintf(msg, sizeof msg, "request canceled");
      break;
    default:
      if (c->sse_error) {
        code = "bad_response";
        snprintf(msg, sizeof msg, "malformed event stream");
      } else {
        if (c->curl_code == CURLE_OPERATION_TIMEDOUT) code = "timeout";
        snprintf(msg, sizeof msg, "%s", c->errbuf[0] ? c->errbuf :
                 curl_easy_strerror(c->curl_code));
      }
  }
  lua_pushnil(L);
  qv_error_push(L, code, msg, c->status > 0 && c->end != QV_END_CANCELED ?
                c->status : 0, c->retryable, c->attempts);
  if (c->end == QV_END_TRANSPORT && !c->sse_error) {
    lua_pushstring(L, curl_easy_strerror(c->curl_code));
    lua_setfield(L, -2, "curl_error");
  }
  set_common(L, c, st);
}

/* nil, a bad_response error carrying the body as received; returns 2. */
static int bad_body(lua_State *L, qv_call *c, int st, const char *why) {
  lua_pushnil(L);
  qv_error_push(L, "bad_response", why, c->status, 0, c->attempts);
  push_scrubbed(L, c, c->body_in.data ? c->body_in.data : "", c->body_in.len);
  lua_setfield(L, -2, "raw");
  set_common(L, c, st);
  return 2;
}

/* Attach what a stream delivered before it failed. */
static void set_partial(lua_State *L, qv_stream *s) {
  if (s == NULL) return;
  if (s->text.len) {
    lua_pushlstring(L, s->text.data, s->text.len);
    lua_setfield(L, -2, "text");
  }
  if (s->reasoning.len) {
    lua_pushlstring(L, s->reasoning.data, s->reasoning.len);
    lua_setfield(L, -2, "reasoning");
  }
}

/* Strip a ```json fence and decode; sets result.json on success. */
static void set_json(lua_State *L, int res, const char *t, size_t n) {
  size_t a = 0, b = n;
  while (a < b && (t[a] == ' ' || t[a] == '\n' || t[a] == '\r' || t[a] == '\t')) a++;
  while (b > a && (t[b-1] == ' ' || t[b-1] == '\n' || t[b-1] == '\r' || t[b-1] == '\t')) b--;
  if (b - a >= 6 && memcmp(t + a, "```", 3) == 0) {
    const char *nl = memchr(t + a, '\n', b - a);
    if (nl != NULL) a = (size_t)(nl - t) + 1;
    if (b - a >= 3 && memcmp(t + b - 3, "```", 3) == 0) b -= 3;
  }
  if (qv_json_decode(L, t + a, b - a)) {
    lua_setfield(L, res, "json");
  } else {
    lua_pushliteral(L, "the answer is not valid JSON");
    lua_setfield(L, res, "json_error");
  }
}

/* Copy plan fields every result carries. */
static void copy_plan(lua_State *L, int st, int res) {
  static const char *const keys[] = { "images", "request", "base_url",
                                      "region", NULL };
  int i;
  lua_getfield(L, st, "plan");
  for (i = 0; keys[i]; i++) {
    lua_getfield(L, -1, keys[i]);
    lua_setfield(L, res, keys[i]);
  }
  lua_pop(L, 1);
}

static int plan_flag(lua_State *L, int st, const char *k) {
  int v;
  lua_getfield(L, st, "plan");
  lua_getfield(L, -1, k);
  v = lua_toboolean(L, -1);
  lua_pop(L, 2);
  return v;
}

/* Text of a message's content: a string, or the first text item. */
static int push_content_text(lua_State *L, int msg) {
  size_t n;
  const char *s;
  int i;
  lua_getfield(L, msg, "content");
  if (lua_type(L, -1) == LUA_TSTRING) return 1;
  if (lua_istable(L, -1)) {
    int list = lua_gettop(L);
    for (i = 1; index_table(L, list, i); i++) {
      if ((s = field_str(L, -1, "text", &n)) != NULL) {
        lua_pushlstring(L, s, n);
        lua_replace(L, list);
        lua_pop(L, 1);
        return 1;
      }
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  return 0;
}

static int finish_models(lua_State *L, qv_call *c, int st) {
  int res, body, i, n = 0;
  if (!qv_json_decode(L, c->body_in.data ? c->body_in.data : "", c->body_in.len)
      || !lua_istable(L, -1))
    return bad_body(L, c, st, "models list is not JSON");
  body = lua_gettop(L);
  lua_newtable(L);
  res = lua_gettop(L);
  lua_newtable(L);
  if (field_table(L, body, "data")) {
    for (i = 1; index_table(L, -1, i); i++) {
      const char *id = field_str(L, -1, "id", NULL);
      lua_pop(L, 1);
      if (id) { lua_pushstring(L, id); lua_rawseti(L, -3, ++n); }
    }
    lua_pop(L, 1);
  }
  lua_setfield(L, res, "models");
  lua_pushinteger(L, n);
  lua_setfield(L, res, "count");
  lua_pushinteger(L, c->status);
  lua_setfield(L, res, "status");
  lua_pushinteger(L, c->attempts);
  lua_setfield(L, res, "attempts");
  copy_plan(L, st, res);
  set_common(L, c, st);
  return 1;
}

static int finish_chat(lua_State *L, qv_call *c, int st, qv_stream *s) {
  int res, streamed = s != NULL && c->streaming;
  lua_newtable(L);
  res = lua_gettop(L);
  if (streamed) {
    lua_pushlstring(L, s->text.data ? s->text.data : "", s->text.len);
    lua_setfield(L, res, "text");
    if (s->reasoning.len) {
      lua_pushlstring(L, s->reasoning.data, s->reasoning.len);
      lua_setfield(L, res, "reasoning");
    }
    lua_getfield(L, st, "finish_reason");
    lua_setfield(L, res, "finish_reason");
    lua_getfield(L, st, "model");
    lua_setfield(L, res, "model");
    lua_getfield(L, st, "usage");
    lua_setfield(L, res, "usage");
  } else {
    int body, msg;
    if (!qv_json_decode(L, c->body_in.data ? c->body_in.data : "",
                        c->body_in.len) || !lua_istable(L, -1))
      return bad_body(L, c, st, "response body is not JSON");
    body = lua_gettop(L);
    if (field_table(L, body, "choices") && index_table(L, -1, 1) &&
        field_table(L, -1, "message")) {
      msg = lua_gettop(L);
      if (push_content_text(L, msg)) lua_setfield(L, res, "text");
      lua_getfield(L, msg, "reasoning_content");
      if (lua_type(L, -1) == LUA_TSTRING) lua_setfield(L, res, "reasoning");
      else lua_pop(L, 1);
      lua_getfield(L, msg - 1, "finish_reason");     /* on the choice */
      if (lua_type(L, -1) == LUA_TSTRING) lua_setfield(L, res, "finish_reason");
      else lua_pop(L, 1);
    } else {
      return bad_body(L, c, st, "response has no choices[1].message");
    }
    lua_settop(L, body);
    lua_getfield(L, body, "model");
    if (lua_type(L, -1) == LUA_TSTRING) lua_setfield(L, res, "model");
    else lua_pop(L, 1);
    lua_getfield(L, body, "usage");
    if (lua_istable(L, -1)) lua_setfield(L, res, "usage");
    else lua_pop(L, 1);
    lua_getfield(L, body, "request_id");
    if (lua_type(L, -1) == LUA_TSTRING) lua_setfield(L, st, "body_request_id");
    else lua_pop(L, 1);
    lua_pushlstring(L, c->body_in.data, c->body_in.len);
    lua_setfield(L, res, "raw");
    lua_remove(L, body);
    res = lua_gettop(L);
  }
  lua_getfield(L, res, "text");
  if (lua_isnil(L, -1)) { lua_pushliteral(L, ""); lua_setfield(L, res, "text"); }
  lua_pop(L, 1);
  lua_getfield(L, res, "model");
  if (lua_isnil(L, -1)) {
    lua_getfield(L, st, "plan");
    lua_getfield(L, -1, "model");
    lua_setfield(L, res, "model");
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  lua_getfield(L, res, "usage");
  if (lua_isnil(L, -1)) { lua_newtable(L); lua_setfield(L, res, "usage"); }
  else if (lua_istable(L, -1)) integerize(L, -1, 1);
  lua_pop(L, 1);
  if (plan_flag(L, st, "json")) {
    size_t n;
    const char *t = field_str(L, res, "text", &n);
    set_json(L, res, t, n);
  }
  lua_pushinteger(L, c->attempts);
  lua_setfield(L, res, "attempts");
  copy_plan(L, st, res);
  set_common(L, c, st);
  return 1;
}

static int finish(lua_State *L, qv_call *c, int st, qv_stream *s) {
  int kind_models;
  lua_getfield(L, st, "callback_error");
  if (!lua_isnil(L, -1)) {
    const char *why = lua_tostring(L, -1);
    lua_pushnil(L);
    qv_error_push(L, "callback", why ? why : "on_delta raised an error",
                  0, 0, c->attempts);
    set_partial(L, s);
    set_common(L, c, st);
    lua_remove(L, -3);
    return 2;
  }
  lua_pop(L, 1);
  if (c->end != QV_END_RESPONSE) {
    push_transport_error(L, c, st);
    set_partial(L, s);              /* what a cut stream delivered */
    return 2;
  }
  if (c->status < 200 || c->status >= 300) {
    push_http_error(L, c, st);
    return 2;
  }
  if (s != NULL && c->streaming) {
    lua_getfield(L, st, "stream_error");
    if (lua_istable(L, -1)) {
      int e = lua_gettop(L);
      const char *msg = field_str(L, e, "message", NULL);
      const char *api = field_str(L, e, "code", NULL);
      lua_pushnil(L);
      qv_error_push(L, status_code(400, api), msg ? msg : "error event in stream",
                    c->status, 0, c->attempts);
      qv_error_set(L, "api_code", api);
      set_partial(L, s);
      set_common(L, c, st);
      lua_remove(L, e);
      return 2;
    }
    lua_pop(L, 1);
    if (!s->done || s->failed) {
      lua_pushnil(L);
      qv_error_push(L, "bad_response", s->failed ? "malformed chunk in stream"
                    : "stream ended before [DONE]", c->status, 0, c->attempts);
      set_partial(L, s);
      set_common(L, c, st);
      return 2;
    }
  }
  lua_getfield(L, st, "plan");
  lua_getfield(L, -1, "kind");
  kind_models = lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "models") == 0;
  lua_pop(L, 2);
  if (kind_models) return finish_models(L, c, st);
  return finish_chat(L, c, st, s);
}

int qv_result_finish(lua_State *L, qv_call *c, int st, qv_stream *s) {
  int n = finish(L, c, st, s);
  if (n == 2) scrub_error(L, c);
  return n;
}
