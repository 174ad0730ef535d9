/* qv_result: finished calls -> result or error tables (see qv_result.h). */
#include <stdio.h>
#include <string.h>

#include "qv_result.h"
#include "qv_error.h"
#include "qv_json.h"
#include "qv_sse.h"
#include "qv_state.h"
#include "qv_text.h"

/* ---- small readers ------------------------------------------------------- */

/* res[as] = from[k] when it is a string, scrubbed. */
static void copy_string(lua_State *L, int from, const char *k, int res,
                        const char *as, const qv_secrets *sec) {
  size_t n;
  const char *v;
  if ((v = qv_field_string(L, from, k, &n)) == NULL) return;
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
  if ((v = qv_field_string(L, st, "body_request_id", &n)) == NULL &&
      (v = qv_field_string(L, st, "body_id", &n)) == NULL)
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
  if (qv_field_string(L, body, "request_id", &n)) lua_setfield(L, st, "body_request_id");
  if (qv_field_string(L, body, "id", &n)) lua_setfield(L, st, "body_id");
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
  const char *msg = obj ? qv_field_string(L, obj, "message", &mn) : NULL;
  const char *api = obj ? qv_field_string(L, obj, "code", &an) : NULL;
  if (obj && api == NULL) api = qv_field_string(L, obj, "type", &an);
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
  if (qv_field_table(L, body, "error")) return 1;
  if (qv_field_string(L, body, "message", &n)) {
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

/* nil, err for an on_delta that raised (st.callback_error says why), with
** the text that had arrived when s is given; -1. */
static int callback_error(lua_State *L, const qv_call_outcome *out, int st,
                          qv_stream *s, const qv_secrets *sec) {
  const char *why;
  lua_pushnil(L);
  lua_getfield(L, st, "callback_error");
  why = lua_tostring(L, -1);             /* anchored until the remove */
  qv_error_push(L, "callback", why ? why : "on_delta raised an error");
  lua_remove(L, -2);
  qv_error_int(L, "attempts", out->attempts);
  set_partial(L, s);
  set_common(L, out, st, sec);
  return -1;
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

static int models_result(lua_State *L, const qv_call_outcome *out, int st,
                         const qv_secrets *sec, int body) {
  int i, n = 0, list;
  lua_createtable(L, 0, 10);
  lua_newtable(L);
  list = lua_gettop(L);
  if (qv_field_table(L, body, "data")) {
    for (i = 1; ; i++) {
      size_t len;
      const char *id;
      lua_rawgeti(L, -1, i);
      if (!lua_istable(L, -1)) { lua_pop(L, 1); break; }
      if ((id = qv_field_string(L, -1, "id", &len)) != NULL) {
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
  if (qv_field_table(L, st, "stream_error")) {
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

/* ---- a complete answer, read with qv_json ---------------------------------
** A chat completion is read where it lies: one validating pass, then only
** the fields the result needs are unescaped (into the plan's scratch
** buffer) and pushed. cjson decodes nothing on this path but rare shapes
** (a content list, an error object, usage with arrays or nulls), each
** handed its own span, so what a caller sees is what cjson would give. */

/* The unescaped bytes of string v in p->scratch (valid until the next
** call); NULL when v is not a string. Raises on out of memory. */
static const char *unescaped(lua_State *L, qv_plan *p, const qv_json_val *v,
                             size_t *n) {
  if (v->type != QV_JSON_STRING) return NULL;
  qv_buf_reset(&p->scratch);
  if (qv_json_string(v, &p->scratch) != 0 || p->scratch.oom)
    luaL_error(L, "not enough memory");
  *n = p->scratch.len;
  return p->scratch.data ? p->scratch.data : "";
}

/* Push a number as cjson would, made an integer when it is one (as
** integerize does). */
static void push_number(lua_State *L, double d) {
#if LUA_VERSION_NUM >= 503
  if (d >= -9007199254740992.0 && d <= 9007199254740992.0 &&
      d == (double)(lua_Integer)d) {
    lua_pushinteger(L, (lua_Integer)d);
    return;
  }
#endif
  lua_pushnumber(L, (lua_Number)d);
}

/* usage as a table: objects of numbers, strings and booleans, two levels
** deep, are built here; anything else (arrays, nulls, deeper nesting)
** goes through cjson, with token counts made integers. */
static int push_usage_fast(lua_State *L, qv_plan *p, const qv_json_val *obj,
                           int depth) {
  qv_json_iter it;
  qv_json_val k, v;
  int t;
  size_t n = 0;
  const char *s;
  double d;
  luaL_checkstack(L, 4, "usage");
  lua_createtable(L, 0, 8);
  t = lua_gettop(L);
  qv_json_iter_init(&it, obj);
  while (qv_json_next(&it, &k, &v)) {
    switch (v.type) {
      case QV_JSON_NUMBER:
        if (qv_json_number(&v, &d) != 0) return -1;
        push_number(L, d);
        break;
      case QV_JSON_STRING:
        s = unescaped(L, p, &v, &n);
        qv_push_scrubbed(L, &p->secrets, s, n);
        break;
      case QV_JSON_TRUE: case QV_JSON_FALSE:
        lua_pushboolean(L, v.type == QV_JSON_TRUE);
        break;
      case QV_JSON_OBJECT:
        if (depth == 0 || push_usage_fast(L, p, &v, depth - 1) != 0) return -1;
        break;
      default:
        return -1;
    }
    s = unescaped(L, p, &k, &n);
    lua_pushlstring(L, s, n);
    lua_insert(L, -2);
    lua_rawset(L, t);
  }
  return 0;
}

static void push_usage(lua_State *L, qv_plan *p, const qv_json_val *usage) {
  int top = lua_gettop(L);
  if (push_usage_fast(L, p, usage, 1) == 0) return;
  lua_settop(L, top);
  if (qv_json_decode(L, usage->p, usage->n) != 0) lua_newtable(L);
  else integerize(L, -1, 1);
}

/* Push string value v, scrubbed (or as it is); 1, else 0 and nothing. */
static int push_string(lua_State *L, qv_plan *p, const qv_json_val *v, int scrub) {
  size_t n;
  const char *s = unescaped(L, p, v, &n);
  if (s == NULL) return 0;
  if (scrub) qv_push_scrubbed(L, &p->secrets, s, n);
  else lua_pushlstring(L, s, n);
  return 1;
}

static void set_string(lua_State *L, qv_plan *p, const qv_json_val *v, int t,
                       const char *as) {
  if (push_string(L, p, v, 1)) lua_setfield(L, t, as);
}

/* The text of message.content c: a string, or the text parts of a list
** joined; "" for anything else. */
static void push_text(lua_State *L, qv_plan *p, const qv_json_val *c) {
  qv_json_val part, text;
  qv_json_iter it;
  int parts = 0;
  if (push_string(L, p, c, 1)) return;
  if (c->type == QV_JSON_ARRAY) {
    qv_json_iter_init(&it, c);
    while (qv_json_next(&it, NULL, &part)) {
      if (part.type != QV_JSON_OBJECT || qv_json_member(&part, "text", &text) != 0)
        continue;
      luaL_checkstack(L, 2, "content");
      if (push_string(L, p, &text, 1) && ++parts > 1) lua_concat(L, 2);
    }
    if (parts > 0) return;
  }
  lua_pushliteral(L, "");
}

/* A 200 whose body is the service's error ({"error": {...}}, or the native
** {code, message}): nil, err with its code and message; -1. 0 and nothing
** pushed when the body is not an error. */
static int error_in_body(lua_State *L, const qv_call_outcome *out, int st,
                         qv_plan *p, const qv_json_val *root) {
  qv_json_val e;
  int top = lua_gettop(L);
  if (qv_json_member(root, "error", &e) != 0 || e.type != QV_JSON_OBJECT) {
    if (qv_json_member(root, "message", &e) != 0 || e.type != QV_JSON_STRING)
      return 0;
    e = *root;
  }
  if (qv_json_decode(L, e.p, e.n) != 0) return 0;
  push_api_error(L, out, st, &p->secrets, top + 1, "error in a 200 response");
  qv_error_settle(L, top);
  return -1;
}

/* The models list (GET /models), decoded whole: it is read once a run. */
static int models_body(lua_State *L, const qv_call_outcome *out, int st,
                       qv_plan *p) {
  const char *b = out->body.data ? out->body.data : "";
  int body;
  if (qv_result_decode(L, b, out->body.len) != 0)
    return bad_body(L, out, st, &p->secrets, "models list is not JSON");
  body = lua_gettop(L);
  keep_ids(L, body, st);
  models_result(L, out, st, &p->secrets, body);
  lua_remove(L, body);
  return 0;
}

/* A stream was asked for and a whole answer came: one delta. */
static int whole_as_delta(lua_State *L, const qv_call_outcome *out, int st,
                          qv_stream *s, qv_plan *p, int res) {
  size_t tn, rn;
  const char *t, *r;
  lua_getfield(L, res, "text");
  lua_getfield(L, res, "reasoning");
  t = lua_tolstring(L, -2, &tn);
  r = lua_tolstring(L, -1, &rn);
  qv_stream_whole(s, t, tn, r, rn);
  lua_pop(L, 2);
  if (qv_stream_emit(L, st, s, 1) == 0) return 0;
  lua_pop(L, 1);
  return callback_error(L, out, st, NULL, &p->secrets);
}

/* A complete (non-stream) answer. Each object on the way is read in one
** pass (qv_json_pick): the answer's text is the long value every lookup
** would otherwise skip again. */
static int body_result(lua_State *L, const qv_call_outcome *out, int st,
                       qv_stream *s, qv_plan *p) {
  enum { R_CHOICES, R_MODEL, R_USAGE, R_REQUEST_ID, R_ID, R_N };
  static const char *const root_keys[R_N] = { "choices", "model", "usage",
                                              "request_id", "id" };
  enum { C_MESSAGE, C_FINISH, C_N };
  static const char *const choice_keys[C_N] = { "message", "finish_reason" };
  enum { M_CONTENT, M_REASONING, M_N };
  static const char *const msg_keys[M_N] = { "content", "reasoning_content" };
  qv_json_val root, r[R_N], choice, c[C_N], m[M_N];
  const char *b = out->body.data ? out->body.data : "";
  int res;
  if (p->kind == QV_KIND_MODELS) return models_body(L, out, st, p);
  if (qv_json_parse(b, out->body.len, &root) != 0 || root.type != QV_JSON_OBJECT)
    return bad_body(L, out, st, &p->secrets, "response body is not JSON");
  qv_json_pick(&root, root_keys, R_N, r);
  if (push_string(L, p, &r[R_REQUEST_ID], 0)) lua_setfield(L, st, "body_request_id");
  if (push_string(L, p, &r[R_ID], 0)) lua_setfield(L, st, "body_id");
  if (r[R_CHOICES].type != QV_JSON_ARRAY && r[R_CHOICES].type != QV_JSON_OBJECT &&
      error_in_body(L, out, st, p, &root) != 0)
    return -1;
  if (r[R_CHOICES].type != QV_JSON_ARRAY || qv_json_index(&r[R_CHOICES], 0, &choice) != 0 ||
      qv_json_pick(&choice, choice_keys, C_N, c) < 0 || c[C_MESSAGE].type != QV_JSON_OBJECT)
    return bad_body(L, out, st, &p->secrets, "response has no choices[1].message");
  qv_json_pick(&c[C_MESSAGE], msg_keys, M_N, m);
  lua_createtable(L, 0, 16);
  res = lua_gettop(L);
  push_text(L, p, &m[M_CONTENT]);
  lua_setfield(L, res, "text");
  set_string(L, p, &m[M_REASONING], res, "reasoning");
  set_string(L, p, &c[C_FINISH], res, "finish_reason");
  set_string(L, p, &r[R_MODEL], res, "model");
  if (r[R_USAGE].type == QV_JSON_OBJECT) {
    push_usage(L, p, &r[R_USAGE]);
    lua_setfield(L, res, "usage");
  }
  qv_push_scrubbed(L, &p->secrets, b, out->body.len);
  lua_setfield(L, res, "raw");
  finish_chat(L, out, st, res, p);
  if (s != NULL && p->call.stream) return whole_as_delta(L, out, st, s, p, res);
  return 0;
}

int qv_result_push(lua_State *L, const qv_call_outcome *out, int st,
                   qv_stream *s, qv_plan *p) {
  const qv_secrets *sec = &p->secrets;
  int rc, raised;
  lua_getfield(L, st, "callback_error");
  raised = !lua_isnil(L, -1);
  lua_pop(L, 1);
  if (raised) return callback_error(L, out, st, s, sec);
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
