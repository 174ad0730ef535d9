/*
** qv_call: one logical HTTP request and its attempts, on qv_engine.
** A small state machine the engine advances: WAITING (until start_at) ->
** RUNNING (transfer in the multi) -> WAITING again for a retry, or DONE.
** Retries follow qv_retry; the whole call lives within one time budget.
** Response bytes stay in C: the body, or for an event stream a queue of
** framed events (below) that the binding drains between engine steps.
** What a finished call amounts to is its outcome (qv_call_outcome); no
** other member is read outside qv_call.c and qv_engine.c.
** Never calls Lua, so no Lua error can unwind through libcurl.
*/
#ifndef QV_CALL_H
#define QV_CALL_H

#include <stdint.h>
#include <string.h>
#include <curl/curl.h>

#include "qv_buf.h"
#include "qv_engine.h"

#pragma GCC visibility push(hidden)

typedef enum { QV_WAITING, QV_RUNNING, QV_DONE } qv_call_state;

/* Why a call ended. */
typedef enum {
  QV_END_NONE = 0,
  QV_END_RESPONSE,   /* an HTTP response arrived (any status) */
  QV_END_TRANSPORT,  /* curl failed: see curl_code / errbuf */
  QV_END_BUDGET,     /* timeout_s spent (curl timeout or before a retry) */
  QV_END_IDLE,       /* stream sent nothing for idle_timeout_s */
  QV_END_TOO_LARGE,  /* response exceeded max_response_bytes */
  QV_END_CANCELED,   /* qv_call_abort(c, QV_END_CANCELED) */
  QV_END_STREAM      /* the binding stopped a stream (error event, bad chunk) */
} qv_call_end;

/* What the request is; the strings are copied by qv_call_new. */
typedef struct qv_call_opts {
  const char *url;
  const char *method;       /* NULL: POST with a body, else GET */
  int stream;               /* expect text/event-stream */
  struct curl_slist *headers;  /* owned by the call from qv_call_new on */
  int max_retries;          /* < 0: never retry (not idempotent) */
  double backoff_s, timeout_s, connect_timeout_s, idle_timeout_s;
  double retry_after_cap_s; /* a longer Retry-After ends the call */
  size_t max_response_bytes;
  const char *cainfo, *capath, *proxy, *noproxy, *user_agent;
  const struct qv_form_part *form;  /* multipart/form-data body, or NULL */
  int nform;
  const char *download;     /* write a 2xx body to this file, not memory */
  int fresh_connect;        /* a new connection: libcurl re-sends a request
                            ** by itself when a reused one turns out dead,
                            ** which must not happen to a POST that creates
                            ** something (a batch) */
} qv_call_opts;

/* One part of a multipart/form-data body: a value, or a file streamed
** from disk (read again on a retry). */
typedef struct qv_form_part {
  const char *name;
  const char *value;        /* or NULL with file set */
  const char *file;         /* path of the file to send */
  const char *filename;     /* name to send for it (default: the path's) */
  const char *type;         /* its Content-Type, or NULL */
} qv_form_part;

/* The outcome of the current (or last) attempt: all the binding needs. */
typedef struct qv_call_outcome {
  qv_call_end end;
  long status;              /* HTTP status; 0 when none arrived */
  CURLcode curl_code;
  char errbuf[CURL_ERROR_SIZE];
  char request_id[128];     /* x-request-id (or x-dashscope-request-id) */
  char content_type[128];
  double retry_after;       /* from the last response; < 0 if none */
  int attempts;
  int retryable;            /* the last failure was worth retrying */
  int streamed;             /* this response was an event stream */
  int committed;            /* stream events arrived: never retried */
  int sse_error;            /* the event stream was malformed */
  qv_buf body;              /* the body (non-stream, or any error body) */
  double elapsed_s;
} qv_call_outcome;

typedef struct qv_call qv_call;

/* Takes ownership of body (malloc'd) and o->headers, also on failure;
** copies everything else. NULL with *why set on failure. */
qv_call *qv_call_new(qv_engine *e, const qv_call_opts *o, char *body,
                     size_t body_len, const char **why);
void qv_call_free(qv_call *c);                  /* aborts first; NULL-safe */
qv_call_state qv_call_state_of(const qv_call *c);
qv_engine *qv_call_engine(const qv_call *c);

/* End the call now (no retry): QV_END_CANCELED or QV_END_STREAM. */
void qv_call_abort(qv_call *c, qv_call_end why);

/* The outcome so far; final once the state is QV_DONE. */
const qv_call_outcome *qv_call_outcome_of(qv_call *c);

/* Stream events are queued as frames: one flag byte (1 for an
** "event: error" event, else 0), the payload length as a uint32 in host
** byte order, then the payload. qv_call_take_events moves the queued
** frames to the end of out; qv_event_next reads them back. */
size_t qv_call_take_events(qv_call *c, qv_buf *out);

/* The frame at p[*pos..n): sets *error, *data, *len and advances *pos;
** returns 0 at the end or on a truncated frame (never reads past n). */
static inline int qv_event_next(const char *p, size_t n, size_t *pos,
                                int *error, const char **data, size_t *len) {
  uint32_t l;
  if (*pos > n || n - *pos < 5) return 0;
  memcpy(&l, p + *pos + 1, 4);
  if (l > n - *pos - 5) return 0;
  *error = p[*pos] == 1;
  *data = p + *pos + 5;
  *len = l;
  *pos += 5 + (size_t)l;
  return 1;
}

/* For qv_engine: an attempt's transfer finished, time passed, and when
** the call next needs attention (< 0: only on socket activity). A call
** starts with its qv_link, so the engine's list entries are calls. */
void qv_call_finished(qv_call *c, CURLcode code);
void qv_call_tick(qv_call *c, double now);
double qv_call_next_deadline(const qv_call *c);

#pragma GCC visibility pop
#endif
