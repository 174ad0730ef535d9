/* qv_stream: streamed answers (see qv_stream.h). */
#include <string.h>

#include "qv_stream.h"
#include "qv_call.h"
#include "qv_state.h"

void qv_stream_init(qv_stream *s, const qv_secrets *sec, double coalesce_s,
                    long coalesce_bytes) {
  memset(s, 0, sizeof *s);
  s->secrets = sec;
  s->coalesce_s = coalesce_s;
  s->coalesce_bytes = coalesce_bytes;
}

void qv_stream_free(qv_stream *s) {
  qv_buf_free(&s->text); qv_buf_free(&s->reasoning);
  qv_buf_free(&s->pend_text); qv_buf_free(&s->pend_reason);
  qv_buf_free(&s->unread_text); qv_buf_free(&s->unread_reason);
  qv_buf_free(&s->held_text); qv_buf_free(&s->held_reason);
}

/* Where scrubbed text goes: the whole, on_delta's and h:read()'s parts. */
typedef struct sink { qv_buf *all, *pend, *unread; } sink;

static void to_sink(void *ud, const char *p, size_t n) {
  sink *k = ud;
  qv_buf_add(k->all, p, n);
  qv_buf_add(k->pend, p, n);
  qv_buf_add(k->unread, p, n);
}

/* Release held[0..upto) (scrubbed) and keep the rest held. */
static void release(qv_stream *s, qv_buf *held, sink *k, size_t upto) {
  size_t rest = held->len - upto;
  qv_scrub(s->secrets, held->data, upto, to_sink, k);
  memmove(held->data, held->data + upto, rest);
  held->len = rest;
  held->data[rest] = '\0';
}

static void add_delta(qv_stream *s, int reasoning, const char *p, size_t n) {
  qv_buf *held = reasoning ? &s->held_reason : &s->held_text;
  sink k;
  if (n == 0) return;
  k.all = reasoning ? &s->reasoning : &s->text;
  k.pend = reasoning ? &s->pend_reason : &s->pend_text;
  k.unread = reasoning ? &s->unread_reason : &s->unread_text;
  qv_buf_add(held, p, n);
  if (held->oom) return;
  release(s, held, &k, held->len - qv_scrub_holdback(s->secrets, held->data,
                                                      held->len));
}

void qv_stream_flush(qv_stream *s) {
  sink k;
  k.all = &s->text; k.pend = &s->pend_text; k.unread = &s->unread_text;
  if (s->held_text.len) release(s, &s->held_text, &k, s->held_text.len);
  k.all = &s->reasoning; k.pend = &s->pend_reason; k.unread = &s->unread_reason;
  if (s->held_reason.len) release(s, &s->held_reason, &k, s->held_reason.len);
}

void qv_stream_whole(qv_stream *s, const char *text, size_t n,
                     const char *reasoning, size_t rn) {
  if (reasoning != NULL) add_delta(s, 1, reasoning, rn);
  if (text != NULL) add_delta(s, 0, text, n);
  qv_stream_flush(s);
  s->done = 1;
}

/* Copy chunk[k] to st[as] when it is a string. */
static void keep_string(lua_State *L, int chunk, const char *k, int st,
                        const char *as) {
  size_t n;
  if (qv_field_string(L, chunk, k, &n) != NULL) lua_setfield(L, st, as);
}

/* One decoded chunk, at the top of the stack. */
static void fold_chunk(lua_State *L, int st, qv_stream *s) {
  int chunk = lua_gettop(L);
  const char *v;
  size_t n;
  if (qv_field_table(L, chunk, "error")) {       /* moderation after HTTP 200 */
    lua_setfield(L, st, "stream_error");
    s->failed = 1;
    return;
  }
  keep_string(L, chunk, "model", st, "model");
  keep_string(L, chunk, "request_id", st, "body_request_id");
  keep_string(L, chunk, "id", st, "body_id");
  if (qv_field_table(L, chunk, "usage")) lua_setfield(L, st, "usage");
  if (!qv_field_table(L, chunk, "choices")) return;
  lua_rawgeti(L, -1, 1);
  if (lua_istable(L, -1)) {
    int choice = lua_gettop(L);
    if (qv_field_string(L, choice, "finish_reason", &n) != NULL) {
      lua_setfield(L, st, "finish_reason");
      s->done = 1;
    }
    if (qv_field_table(L, choice, "delta")) {
      if ((v = qv_field_string(L, -1, "reasoning_content", &n)) != NULL) {
        add_delta(s, 1, v, n);
        lua_pop(L, 1);
      }
      if ((v = qv_field_string(L, -1, "content", &n)) != NULL) {
        add_delta(s, 0, v, n);
        lua_pop(L, 1);
      }
    }
  }
}

void qv_stream_events(lua_State *L, int st, qv_stream *s, const char *p,
                      size_t n) {
  size_t pos = 0, len;
  int top = lua_gettop(L), error_event;
  const char *data;
  while (qv_event_next(p, n, &pos, &error_event, &data, &len)) {
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
      s->done = 1;
    } else if (s->failed) {
      /* nothing after an error counts */
    } else if (qv_json_decode(L, data, len) == 0 && lua_istable(L, -1)) {
      if (error_event && !qv_field_table(L, -1, "error")) {
        lua_setfield(L, st, "stream_error");  /* "event: error" */
        s->failed = 1;
      } else {
        if (error_event) lua_pop(L, 1);
        fold_chunk(L, st, s);
      }
    } else {
      lua_settop(L, top);
      lua_pushlstring(L, data, len > 200 ? 200 : len);
      lua_setfield(L, st, "bad_event");
      s->failed = 1;
    }
    lua_settop(L, top);
  }
  if (s->done || s->failed) qv_stream_flush(s);
}

static int deliver(lua_State *L, int st, qv_buf *pend, const char *kind) {
  if (pend->len == 0) return 0;
  lua_getfield(L, st, "on_delta");
  if (!lua_isfunction(L, -1)) {
    lua_pop(L, 1);
    qv_buf_reset(pend);
    return 0;
  }
  lua_pushlstring(L, pend->data, pend->len);
  lua_pushstring(L, kind);
  qv_buf_reset(pend);
  if (qv_pcall(L, 2, 0) != 0) {
    lua_setfield(L, st, "callback_error");
    return -1;
  }
  return 0;
}

int qv_stream_emit(lua_State *L, int st, qv_stream *s, int force) {
  double now;
  if (s->callback_failed) {          /* what arrives after the raise is dropped */
    qv_buf_reset(&s->pend_text);
    qv_buf_reset(&s->pend_reason);
    return 0;
  }
  if (s->pend_text.len == 0 && s->pend_reason.len == 0) return 0;
  now = qv_now();
  if (!force && (long)(s->pend_text.len + s->pend_reason.len) < s->coalesce_bytes &&
      now - s->last_emit < s->coalesce_s)
    return 0;
  s->last_emit = now;
  if (deliver(L, st, &s->pend_reason, "reasoning") != 0 ||
      deliver(L, st, &s->pend_text, "content") != 0) {
    s->failed = s->callback_failed = 1;
    return -1;
  }
  return 0;
}
