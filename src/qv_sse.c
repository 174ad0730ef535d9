/*
** qv_sse: event-stream interpretation as in the WHATWG HTML standard,
** section "Server-sent events". Bytes that do not end a line go to
** p->line once, so feeding one byte at a time stays linear.
*/
#include <string.h>

#include "qv_sse.h"

#define QV_SSE_MAX_LINE (8u << 20)

static const char bom[3] = { '\xEF', '\xBB', '\xBF' };

void qv_sse_init(qv_sse *p) {
  qv_buf_init(&p->line);
  qv_buf_init(&p->data);
  qv_buf_init(&p->event);
  p->has_data = 0;
  p->last_cr = 0;
  p->started = 0;
  p->max_line = 0;
}

void qv_sse_free(qv_sse *p) {
  qv_buf_free(&p->line);
  qv_buf_free(&p->data);
  qv_buf_free(&p->event);
}

static int oom(const qv_sse *p) {
  return p->line.oom || p->data.oom || p->event.oom;
}

static int field_is(const char *f, size_t n, const char *name) {
  return strlen(name) == n && memcmp(f, name, n) == 0;
}

static int dispatch(qv_sse *p, qv_sse_event_fn fn, void *ud) {
  const char *ev = "message";
  size_t evlen = 7, dlen;
  int r = 0;
  if (p->has_data) {
    /* data always ends with the '\n' added after its last line */
    dlen = p->data.len - 1;
    p->data.data[dlen] = '\0';
    if (p->event.len > 0) {
      ev = p->event.data;
      evlen = p->event.len;
    }
    r = fn(ud, ev, evlen, p->data.data, dlen);
  }
  qv_buf_reset(&p->data);
  qv_buf_reset(&p->event);
  p->has_data = 0;
  return r;
}

/* One complete line, without its terminator. */
static int process_line(qv_sse *p, const char *s, size_t n, qv_sse_event_fn fn,
                        void *ud) {
  const char *colon, *v;
  size_t flen, vlen;
  if (n == 0) return dispatch(p, fn, ud);
  if (s[0] == ':') return 0;                       /* comment */
  colon = (const char *)memchr(s, ':', n);
  if (colon) {
    flen = (size_t)(colon - s);
    v = colon + 1;
    vlen = n - flen - 1;
    if (vlen > 0 && *v == ' ') { v++; vlen--; }
  } else {
    flen = n;
    v = "";
    vlen = 0;
  }
  if (field_is(s, flen, "data")) {
    qv_buf_add(&p->data, v, vlen);
    qv_buf_addc(&p->data, '\n');
    p->has_data = 1;
  } else if (field_is(s, flen, "event")) {
    qv_buf_reset(&p->event);
    qv_buf_add(&p->event, v, vlen);
  }
  /* "id", "retry" and unknown fields are ignored */
  return oom(p) ? -1 : 0;
}

/* A line ends at s[0..n): with whatever was carried in p->line. */
static int end_line(qv_sse *p, const char *s, size_t n, qv_sse_event_fn fn,
                    void *ud) {
  int r;
  if (p->line.len == 0) return process_line(p, s, n, fn, ud);
  qv_buf_add(&p->line, s, n);
  if (p->line.oom) return -1;
  r = process_line(p, p->line.data, p->line.len, fn, ud);
  qv_buf_reset(&p->line);
  return r;
}

int qv_sse_feed(qv_sse *p, const char *s, size_t n, qv_sse_event_fn fn,
                void *ud) {
  size_t max = p->max_line ? p->max_line : QV_SSE_MAX_LINE;
  size_t i, start;
  int r;
  if (oom(p)) return -1;
  /* A BOM may itself arrive split: hold its prefix in p->line until it
  ** is complete (dropped) or proves to be ordinary text (kept). */
  while (!p->started && n > 0) {
    if (p->line.len < 3 && *s == bom[p->line.len]) {
      qv_buf_addc(&p->line, *s++);
      n--;
      if (p->line.len == 3) {
        qv_buf_reset(&p->line);
        p->started = 1;
      }
    } else {
      p->started = 1;
    }
  }
  /* still undecided: the held bytes are not a line (yet) */
  if (!p->started) return p->line.oom ? -1 : 0;
  if (n > 0 && p->last_cr) {
    p->last_cr = 0;
    if (*s == '\n') { s++; n--; }
  }
  start = 0;
  for (i = 0; i < n; i++) {
    char c = s[i];
    if (c != '\n' && c != '\r') continue;
    if (p->line.len + (i - start) > max) return -1;
    r = end_line(p, s + start, i - start, fn, ud);
    if (r != 0) return r;
    if (c == '\r') {
      if (i + 1 < n) {
        if (s[i + 1] == '\n') i++;
      } else {
        p->last_cr = 1;
      }
    }
    start = i + 1;
  }
  if (p->line.len + (n - start) > max) return -1;
  qv_buf_add(&p->line, s + start, n - start);
  return p->line.oom ? -1 : 0;
}

int qv_sse_finish(qv_sse *p, qv_sse_event_fn fn, void *ud) {
  int r = 0;
  if (oom(p)) {
    r = -1;
  } else if (p->line.len > 0) {
    r = process_line(p, p->line.data, p->line.len, fn, ud);
  }
  /* a pending event without its blank line is dropped */
  qv_buf_reset(&p->line);
  qv_buf_reset(&p->data);
  qv_buf_reset(&p->event);
  p->has_data = 0;
  p->last_cr = 0;
  p->started = 0;
  return r;
}
