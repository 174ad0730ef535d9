/* qv_result: finished calls -> result or error tables (see qv_result.h). */
#include <stdio.h>
#include <string.h>

#include "qv_result.h"
#include "qv_error.h"
#include "qv_sse.h"
#include "qv_state.h"
#include "qv_text.h"

/* ---- small readers ------------------------------------------------------- */

/* Push t[k] if it is a string and return its bytes; else NULL, nothing. */
static const char *get_string(lua_State *L, int t, const char *k, size_t *n) {
  lua_getfield(L, t, k);
  if (lua_type(L, -1) == LUA_TSTRING) return lua_tolstring(L, -1, n);
  lua_pop(L, 1);
  return NULL;
}

/* Push t[k] if it is a table; 1, else 0 and nothing. */
static int get_table(lua_State *L, int t, const char *k) {
  lua_getfield(L, t, k);
  if (lua_istable(L, -1)) return 1;
  lua_pop(L, 1);
  return 0;
}

/* res[as] = from[k] when it is a string, scrubbed. */
static void copy_string(lua_State *L, int from, const char *k, int res,
                        const char *as, const qv_secrets *sec) {
  size_t n;
  const char *v;
  if ((v = get_string(L, from, k, &n)) == NULL) return;
  qv_push_scrubbed(L, sec, v, n);
  lua_remove(L, -2);
  lua_setfield(L, res, as);
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

/* ---- the request id ------------------------------------------------------ */

/* x-request-id, else the body's request_id, else the uuid in the body's
** "chatcmpl-<uuid>" id (DashScope makes them the same). Pushes it, or
** nothing; returns 1 or 0. */
static int push_request_id(lua_State *L, const qv_call_outcome *out, int st,
                           const qv_secrets *sec) {
  size_t n;
  const char *v;
  if (out->request_id[0]) {
    qv_push_scrubbed(L, sec, out->request_id, strlen(out->request_id));
    return 1;
  }
  if ((v = get_string(L, st, "body_request_id", &n)) == NULL &&
      (v = get_string(L, st, "body_id", &n)) == NULL)
    return 0;
  if (n > 9 && memcmp(v, "chatcmpl-", 9) == 0) { v += 9; n -= 9; }
  qv_push_scrubbed(L, sec, v, n);
  lua_remove(L, -2);
  return 1;
}

/* request_id and elapsed_s on the table at the top. */
static void set_common(lua_State *L, const qv_call_outcome *out, int st,
                       const qv_secrets *sec) {
  if (push_request_id(L, out, st, sec)) lua_setfield(L, -2, "request_id");
  lua_pushnumber(L, out->elapsed_s);
  lua_setfield(L, -2, "elapsed_s");
}

/* Record the ids of a decoded body in st (for the request id). */
static void keep_ids(lua_State *L, int body, int st) {
  size_t n;
  if (get_string(L, body, "request_id", &n)) lua_setfield(L, st, "body_request_id");
  if (get_string(L, body, "id", &n)) lua_setfield(L, st, "body_id");
}

/* ---- errors -------------------------------------------------------------- */

static const char *code_for(long status, const char *api_code) {
  if (api_code && (strcmp(api_code, "data_inspection_failed") == 0 ||
                   strcmp(api_code, "DataInspectionFailed") == 0 ||
                   strncmp(api_code, "InvalidParameter.DataInspection", 31) == 0))
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

/* Push nil and an error from a service error object at idx ({message,
** code, type} or the native {code, message}); -1. */
static int push_api_error(lua_State *L, const qv_call_outcome *out, int st,
                          const qv_secrets *sec, int obj, const char *fallback) {
  size_t mn = 0, an = 0;
  const char *msg = obj ? get_string(L, obj, "message", &mn) : NULL;
  const char *api = obj ? get_string(L, obj, "code", &an) : NULL;
  if (obj && api == NULL) api = get_string(L, obj, "type", &an);
  lua_pushnil(L);
  qv_error_push(L, code_for(out->status, api), "");
  if (msg != NULL) qv_push_scrubbed(L, sec, msg, mn);
  else lua_pushstring(L, fallback);
  lua_setfield(L, -2, "message");
  if (api != NULL) {
    qv_push_scrubbed(L, sec, api, an);
    lua_setfield(L, -2, "api_code");
  }
  qv_error_int(L, "status", out->status > 0 ? out->status : -1);
  qv_error_bool(L, "retryable", out->retryable);
  qv_error_int(L, "attempts", out->attempts);
  qv_error_num(L, "retry_after", out->retry_after);
  qv_push_scrubbed(L, sec, out->body.data ? out->body.data : "", out->body.len);
  lua_setfield(L, -2, "raw");
  set_common(L, out, st, sec);
  return -1;
}

/* The error object of a body: {"error": {...}} or the native {code,
** message}. Pushes the object (1) or nothing (0). */
static int error_object(lua_State *L, int body) {
  size_t n;
  if (get_table(L, body, "error")) return 1;
  if (get_string(L, body, "message", &n)) {
    lua_pop(L, 1);
    lua_pushvalue(L, body);
    return 1;
  }
  return 0;
}

/* An event-stream body ("data: {...}" lines) on an error status: the
** first data payload that is a JSON object. */
typedef struct first_event { const char *p; size_t n; qv_buf copy; } first_event;

static int take_first(void *ud, const char *event, size_t elen,
                      const char *data, size_t dlen) {
  first_event *f = ud;
  (void)event; (void)elen;
  if (dlen > 0 && data[0] == '{') {
    qv_buf_add(&f->copy, data, dlen);
    return 1;                          /* stop: that is the one */
  }
  return 0;
}

static int decode_event_body(lua_State *L, const qv_call_outcome *out) {
  qv_sse sse;
  first_event f;
  int r = -1;
  memset(&f, 0, sizeof f);
  qv_buf_init(&f.copy);
  qv_sse_init(&sse);
  if (qv_sse_feed(&sse, out->body.data, out->body.len, take_first, &f) == 0)
    qv_sse_finish(&sse, take_first, &f);
  qv_sse_free(&sse);
  if (f.copy.len > 0 && !f.copy.oom) {
    /* copied to a Lua string first: decoding may raise (an interrupt) */
    lua_pushlstring(L, f.copy.data, f.copy.len);
    qv_buf_free(&f.copy);
    r = qv_json_decode(L, lua_tostring(L, -1), lua_rawlen(L, -1));
    lua_remove(L, r == 0 ? -2 : -1);
    if (r == 0 && !lua_istable(L, -1)) { lua_pop(L, 1); r = -1; }
  } else {
    qv_buf_free(&f.copy);
  }
  return r;
}

/* An HTTP error status: the service's error object, in JSON or in
** event-stream form, else a message naming the status. */
static int http_error(lua_State *L, const qv_call_outcome *out, int st,
                      const qv_secrets *sec) {
  int top = lua_gettop(L), body = 0, obj = 0;
  char fallback[200];
  const char *b = out->body.data ? out->body.data : "";
  if (out->body.len > 0 &&
      (qv_json_decode(L, b, out->body.len) == 0 || decode_event_body(L, out) == 0)) {
    if (lua_istable(L, -1)) {
      body = lua_gettop(L);
      keep_ids(L, body, st);
      if (error_object(L, body)) obj = lua_gettop(L);
    }
  }
  snprintf(fallback, sizeof fallback, "HTTP %ld from the server%s%s%s", out->status,
           out->content_type[0] ? " (" : "", out->content_type,
           out->content_type[0] ? ")" : "");
  push_api_error(L, out, st, sec, obj, fallback);
  qv_error_settle(L, top);                 /* drop what was decoded below them */
  return -1;
}

static int transport_error(lua_State *L, const qv_call_outcome *out, int st,
                           const qv_secrets *sec, double timeout_s,
                           double idle_s, size_t max_bytes) {
  char msg[CURL_ERROR_SIZE + 96];
  const char *code = "network";
  switch (out->end) {
    case QV_END_BUDGET:
      code = "timeout";
      snprintf(msg, sizeof msg, "no answer within timeout_s (%.3g s)", timeout_s);
      break;
    case QV_END_IDLE:
      code = "timeout";
      snprintf(msg, sizeof msg, "stream stalled: nothing for idle_timeout_s (%.3g s)",
               idle_s);
      break;
    case QV_END_TOO_LARGE:
      code = "bad_response";
      snprintf(msg, sizeof msg, "response larger than max_response_bytes (%lu)",
               (unsigned long)max_bytes);
      break;
    case QV_END_CANCELED:
      code = "canceled";
      snprintf(msg, sizeof msg, "request canceled");
      break;
    default:
      if (out->sse_error) {
        code = "bad_response";
        snprintf(msg, sizeof msg, "malformed event stream");
      } else {
        if (out->curl_code == CURLE_OPERATION_TIMEDOUT) code = "timeout";
        snprintf(msg, sizeof msg, "%s", out->errbuf[0] ? out->errbuf
                 : curl_easy_strerror(out->curl_code));
      }
  }
  lua_pushnil(L);
  qv_error_push(L, code, "");
  qv_push_scrubbed(L, sec, msg, strlen(msg));
  lua_setfield(L, -2, "message");
  if (out->status > 0 && out->end != QV_END_CANCELED) qv_error_int(L, "status", out->status);
  qv_error_bool(L, "retryable", out->retryable);
  qv_error_int(L, "attempts", out->attempts);
  if (out->end == QV_END_TRANSPORT && !out->sse_error)
    qv_error_str(L, "curl_error", curl_easy_strerror(out->curl_code));
  set_common(L, out, st, sec);
  return -1;
}

/* nil and a bad_response error carrying the body as received; -1. */
static int bad_body(lua_State *L, const qv_call_outcome *out, int st,
                    const qv_secrets *sec, const char *why) {
  lua_pushnil(L);
  qv_error_push(L, "bad_response", why);
  qv_error_int(L, "status", out->status);
  qv_error_int(L, "attempts", out->attempts);
  qv_push_scrubbed(L, sec, out->body.data ? out->body.data : "", out->body.len);
  lua_setfield(L, -2, "raw");
  set_common(L, out, st, sec);
  return -1;
}

/* What a stream delivered before it failed, on the error at the top. */
static void set_partial(lua_State *L, qv_stream *s) {
  if (s == NULL) return;
  qv_stream_flush(s);
  if (s->text.len) {
    lua_pushlstring(L, s->text.data, s->text.len);
    lua_setfield(L, -2, "text");
  }
  if (s->reasoning.len) {
    lua_pushlstring(L, s->reasoning.data, s->reasoning.len);
    lua_setfield(L, -2, "reasoning");
  }
}

/* ---- results --------------------------------------------------------------- */

int qv_result_decode(lua_State *L, const char *body, size_t n) {
  if (qv_json_decode(L, body, n) != 0) return -1;
  if (!lua_istable(L, -1)) { lua_pop(L, 1); return -1; }
  return 0;
}

/* result.json from the text at the top of res, by the one rule of
** qv_text_json_spans; json_error when nothing parses. */
static void set_json(lua_State *L, int res) {
  size_t n, off[3], len[3];
  const char *t;
  int k, i;
  lua_getfield(L, res, "text");
  t = lua_tolstring(L, -1, &n);
  k = t ? qv_text_json_spans(t, n, off, len) : 0;
  for (i = 0; i < k; i++) {
    if (qv_json_decode(L, t + off[i], len[i]) == 0) {
      if (lua_istable(L, -1)) {
        lua_setfield(L, res, "json");
        lua_pop(L, 1);
        return;
      }
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  lua_pushliteral(L, "the answer is not valid JSON");
  lua_setfield(L, res, "json_error");
}

/* Fields every result carries from the plan. */
static void copy_plan(lua_State *L, int st, int res) {
  static const char *const keys[] = { "images", "videos", "request",
                                      "base_url", "region", NULL };
  int i;
  lua_getfield(L, st, "plan");
  for (i = 0; keys[i]; i++) {
    lua_getfield(L, -1, keys[i]);
    lua_setfield(L, res, keys[i]);
  }
  lua_pop(L, 1);
}

/* The text of a message's content: a string, or its text parts joined. */
static void push_content(lua_State *L, int msg, const qv_secrets *sec) {
  size_t n;
  const char *s;
  int i, parts = 0;
  lua_getfield(L, msg, "content");
  if (lua_type(L, -1) == LUA_TSTRING) {
    s = lua_tolstring(L, -1, &n);
    qv_push_scrubbed(L, sec, s, n);
    lua_remove(L, -2);
    return;
  }
  if (lua_istable(L, -1)) {
    int list = lua_gettop(L);
    for (i = 1; ; i++) {
      lua_rawgeti(L, list, i);
      if (!lua_istable(L, -1)) { lua_pop(L, 1); break; }
      if ((s = get_string(L, -1, "text", &n)) != NULL) {
        qv_push_scrubbed(L, sec, s, n);
        lua_remove(L, -2);
        lua_insert(L, list + 1 + parts++);
      }
      lua_pop(L, 1);
    }
    lua_settop(L, list + parts);
    lua_concat(L, parts);
    lua_remove(L, list);
    return;
  }
  lua_pop(L, 1);
  lua_pushliteral(L, "");
}

static int models_result(lua_State *L, const qv_call_outcome *out, int st,
                         const qv_secrets *sec, int body) {
  int i, n = 0, list;
  lua_createtable(L, 0, 10);
  lua_newtable(L);
  list = lua_gettop(L);
  if (get_table(L, body, "data")) {
    for (i = 1; ; i++) {
      size_t len;
      const char *id;
      lua_rawgeti(L, -1, i);
      if (!lua_istable(L, -1)) { lua_pop(L, 1); break; }
      if ((id = get_string(L, -1, "id", &len)) != NULL) {
        qv_push_scrubbed(L, sec, id, len);
        lua_rawseti(L, list, ++n);
        lua_pop(L, 1);
      }
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  lua_setfield(L, -2, "models");
  lua_pushinteger(L, n);
  lua_setfield(L, -2, "count");
  lua_pushinteger(L, out->status);
  lua_setfield(L, -2, "status");
  lua_pushinteger(L, out->attempts);
  lua_setfield(L, -2, "attempts");
  copy_plan(L, st, lua_gettop(L));
  set_common(L, out, st, sec);
  return 0;
}

/* Any method and path: status, the body (or where it was written), the
** decoded JSON when the body is JSON. */
static int http_result(lua_State *L, const qv_call_outcome *out, int st,
                       const qv_plan *p) {
  const char *b = out->body.data ? out->body.data : "";
  lua_createtable(L, 0, 10);
  lua_pushinteger(L, out->status);
  lua_setfield(L, -2, "status");
  if (p->call.download == NULL) {
    qv_push_scrubbed(L, &p->secrets, b, out->body.len);
    lua_setfield(L, -2, "body");
    if (out->body.len > 0 && qv_result_decode(L, b, out->body.len) == 0) {
      lua_setfield(L, -2, "json");
      lua_getfield(L, -1, "json");
      keep_ids(L, lua_gettop(L), st);
      lua_pop(L, 1);
    }
  } else {
    lua_pushstring(L, p->download.data);
    lua_setfield(L, -2, "download");
  }
  qv_error_str(L, "content_type", out->content_type);
  lua_pushinteger(L, out->attempts);
  lua_setfield(L, -2, "attempts");
  set_common(L, out, st, &p->secrets);
  return 0;
}

/* The common tail of a chat result at res. */
static void finish_chat(lua_State *L, const qv_call_outcome *out, int st,
                        int res, const qv_plan *p) {
  lua_getfield(L, res, "model");
  if (lua_isnil(L, -1)) {                /* not in the answer: the one asked */
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
  if (p->json) set_json(L, res);
  lua_pushinteger(L, out->attempts);
  lua_setfield(L, res, "attempts");
  copy_plan(L, st, res);
  lua_pushvalue(L, res);
  set_common(L, out, st, &p->secrets);
  lua_pop(L, 1);
}

static int stream_result(lua_State *L, const qv_call_outcome *out, int st,
                         qv_stream *s, const qv_plan *p) {
  int res;
  qv_stream_flush(s);
  lua_createtable(L, 0, 16);
  res = lua_gettop(L);
  lua_pushlstring(L, s->text.data ? s->text.data : "", s->text.len);
  lua_setfield(L, res, "text");
  if (s->reasoning.len) {
    lua_pushlstring(L, s->reasoning.data, s->reasoning.len);
    lua_setfield(L, res, "reasoning");
  }
  copy_string(L, st, "finish_reason", res, "finish_reason", &p->secrets);
  copy_string(L, st, "model", res, "model", &p->secrets);
  lua_getfield(L, st, "usage");
  lua_setfield(L, res, "usage");
  finish_chat(L, out, st, res, p);
  return 0;
}

/* A stream that ended in an error event, or not cleanly. */
static int stream_failure(lua_State *L, const qv_call_outcome *out, int st,
                          qv_stream *s, const qv_plan *p) {
  if (get_table(L, st, "stream_error")) {
    int e = lua_gettop(L);
    qv_call_outcome o = *out;
    o.status = 400;                      /* for the code; status stays real */
    push_api_error(L, &o, st, &p->secrets, e, "error event in stream");
    qv_error_int(L, "status", out->status);
    lua_pushnil(L);
    lua_setfield(L, -2, "raw");
    set_partial(L, s);
    lua_remove(L, e);
    return -1;
  }
  lua_pushnil(L);
  qv_error_push(L, "bad_response", s->failed ? "malformed chunk in stream"
                                             : "stream ended before [DONE]");
  qv_error_int(L, "status", out->status);
  qv_error_int(L, "attempts", out->attempts);
  set_partial(L, s);
  set_common(L, out, st, &p->secrets);
  return -1;
}

/* A complete (non-stream) answer. */
static int body_result(lua_State *L, const qv_call_outcome *out, int st,
                       qv_stream *s, const qv_plan *p) {
  const qv_secrets *sec = &p->secrets;
  int body, res, obj, msg;
  const char *b = out->body.data ? out->body.data : "";
  if (qv_result_decode(L, b, out->body.len) != 0)
    return bad_body(L, out, st, sec, p->kind == QV_KIND_MODELS
                    ? "models list is not JSON" : "response body is not JSON");
  body = lua_gettop(L);
  keep_ids(L, body, st);
  if (p->kind == QV_KIND_MODELS) {
    models_result(L, out, st, sec, body);
    lua_remove(L, body);
    return 0;
  }
  if (!get_table(L, body, "choices") && error_object(L, body)) {
    /* a 200 that carries an error: the service's code and message */
    obj = lua_gettop(L);
    push_api_error(L, out, st, sec, obj, "error in a 200 response");
    qv_error_settle(L, body - 1);
    return -1;
  }
  lua_settop(L, body);
  if (!get_table(L, body, "choices") || (lua_rawgeti(L, -1, 1), !lua_istable(L, -1)) ||
      !get_table(L, -1, "message")) {
    lua_settop(L, body - 1);
    return bad_body(L, out, st, sec, "response has no choices[1].message");
  }
  msg = lua_gettop(L);
  lua_createtable(L, 0, 16);
  res = lua_gettop(L);
  push_content(L, msg, sec);
  lua_setfield(L, res, "text");
  copy_string(L, msg, "reasoning_content", res, "reasoning", sec);
  copy_string(L, msg - 1, "finish_reason", res, "finish_reason", sec);  /* the choice's */
  copy_string(L, body, "model", res, "model", sec);
  lua_getfield(L, body, "usage");
  if (lua_istable(L, -1)) lua_setfield(L, res, "usage"); else lua_pop(L, 1);
  qv_push_scrubbed(L, sec, b, out->body.len);
  lua_setfield(L, res, "raw");
  lua_replace(L, body);
  lua_settop(L, body);
  res = body;
  finish_chat(L, out, st, res, p);
  if (s != NULL && p->call.stream) {
    /* a stream was asked for and a whole answer came: one delta */
    size_t tn, rn;
    const char *t, *r;
    lua_getfield(L, res, "text");
    lua_getfield(L, res, "reasoning");
    t = lua_tolstring(L, -2, &tn);
    r = lua_tolstring(L, -1, &rn);
    qv_stream_whole(s, t, tn, r, rn);
    lua_pop(L, 2);
    if (qv_stream_emit(L, st, s, 1) != 0) {
      lua_pop(L, 1);
      lua_pushnil(L);
      lua_getfield(L, st, "callback_error");
      qv_error_push(L, "callback", lua_tostring(L, -1));
      lua_remove(L, -2);
      qv_error_int(L, "attempts", out->attempts);
      set_common(L, out, st, sec);
      return -1;
    }
  }
  return 0;
}

int qv_result_push(lua_State *L, const qv_call_outcome *out, int st,
                   qv_stream *s, const qv_plan *p) {
  const qv_secrets *sec = &p->secrets;
  int rc;
  lua_getfield(L, st, "callback_error");
  if (!lua_isnil(L, -1)) {
    const char *why = lua_tostring(L, -1);
    lua_pushnil(L);
    qv_error_push(L, "callback", why ? why : "on_delta raised an error");
    qv_error_int(L, "attempts", out->attempts);
    set_partial(L, s);
    set_common(L, out, st, sec);
    lua_remove(L, -3);
    return -1;
  }
  lua_pop(L, 1);
  if (out->end != QV_END_RESPONSE && out->end != QV_END_STREAM) {
    rc = transport_error(L, out, st, sec, p->call.timeout_s,
                         p->call.idle_timeout_s, p->call.max_response_bytes);
    set_partial(L, s);
    return rc;
  }
  if (out->status < 200 || out->status >= 300) return http_error(L, out, st, sec);
  if (p->kind == QV_KIND_HTTP) return http_result(L, out, st, p);
  if (out->streamed) {
    if (s->failed || !s->done || out->end == QV_END_STREAM)
      return stream_failure(L, out, st, s, p);
    return stream_result(L, out, st, s, p);
  }
  return body_result(L, out, st, s, p);
}
