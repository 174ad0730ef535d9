/*
** qv_call: one logical HTTP request and its attempts. A small state
** machine the engine advances: WAITING (until start_at) -> RUNNING
** (transfer in the multi) -> WAITING again for a retry, or DONE. Retries
** follow qv_retry; the whole call lives within one time budget. Response
** bytes stay in C: a body buffer, or for event streams a queue of SSE
** event payloads that the Lua binding drains between steps.
*/
#ifndef QV_CALL_H
#define QV_CALL_H

#include <curl/curl.h>
#include "qv_buf.h"
#include "qv_sse.h"
#include "qv_engine.h"

typedef enum { QV_WAITING, QV_RUNNING, QV_DONE } qv_call_state;

/* Why a call ended. */
typedef enum {
  QV_END_NONE = 0,
  QV_END_RESPONSE,   /* an HTTP response arrived (any status) */
  QV_END_TRANSPORT,  /* curl failed: see curl_code / errbuf */
  QV_END_BUDGET,     /* timeout_s spent (curl timeout or before a retry) */
  QV_END_IDLE,       /* stream sent nothing for idle_timeout_s */
  QV_END_TOO_LARGE,  /* response exceeded max_response_bytes */
  QV_END_CANCELED
} qv_call_end;

typedef struct qv_call_opts {
  const char *url;
  int post;                 /* POST body, else GET */
  int stream;               /* expect text/event-stream */
  struct curl_slist *headers;
  int max_retries;
  double backoff_s, timeout_s, connect_timeout_s, idle_timeout_s;
  double retry_after_cap_s; /* a longer Retry-After ends the call */
  size_t max_response_bytes;
  const char *cainfo, *capath, *proxy, *noproxy, *user_agent;
} qv_call_opts;

typedef struct qv_call {
  qv_engine *engine;
  struct qv_call *prev, *next;   /* engine's live list */
  CURL *easy;
  qv_call_state state;
  qv_call_end end;
  /* request, owned */
  char *url, *body;
  size_t body_len;
  struct curl_slist *headers;
  qv_call_opts o;                /* copy; its strings point at the owned ones */
  char *cainfo, *capath, *proxy, *noproxy, *user_agent;
  /* timing */
  double started, deadline, start_at, last_byte;
  unsigned seed;
  /* the current (or last) attempt */
  int attempts;
  long status;
  CURLcode curl_code;
  char errbuf[CURL_ERROR_SIZE];
  char request_id[128];
  char content_type[128];
  double retry_after;            /* from the last response; -1 if none */
  int in_headers;                /* between status line and body */
  qv_buf body_in;                /* non-stream (or error) body */
  qv_sse sse;
  qv_buf events;                 /* queued SSE payloads: u32 len + bytes */
  int streaming;                 /* this response is an event stream */
  size_t stream_bytes;           /* event-stream bytes of this attempt */
  int committed;                 /* stream events arrived: never retry */
  int sse_error;                 /* parser failure */
  int retryable;                 /* the last failure was worth retrying */
} qv_call;

/* Takes ownership of body (malloc'd) and headers. NULL on failure. */
qv_call *qv_call_new(qv_engine *e, const qv_call_opts *o, char *body,
                     size_t body_len, const char **why);
void qv_call_cancel(qv_call *c);
void qv_call_free(qv_call *c);          /* cancels first; NULL-safe */
double qv_call_elapsed(const qv_call *c);

/* Move queued SSE events into out (appended); returns bytes moved. */
size_t qv_call_take_events(qv_call *c, qv_buf *out);

/* Engine hooks. */
void qv_call_tick(qv_call *c, double now);          /* start, idle checks */
void qv_call_finished(qv_call *c, CURLcode code);   /* attempt over */
double qv_call_next_deadline(const qv_call *c);     /* < 0: none */

#endif
