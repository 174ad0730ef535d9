/*
** qv_call: attempts, retries and response capture for one request
** (see qv_call.h). Runs inside libcurl callbacks and engine steps only:
** it never calls Lua, so no Lua error can unwind through libcurl.
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "qv_call.h"
#include "qv_retry.h"

/* Failures where another attempt may well succeed. TLS verification,
** bad URLs and the like are not among them. */
static int transient(CURLcode code) {
  switch (code) {
    case CURLE_COULDNT_RESOLVE_HOST: case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT: case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR: case CURLE_GOT_NOTHING: case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2: case CURLE_HTTP2_STREAM: case CURLE_SSL_CONNECT_ERROR:
      return 1;
    default:
      return 0;
  }
}

static char *dupstr(const char *s) {
  size_t n;
  char *p;
  if (s == NULL) return NULL;
  n = strlen(s) + 1;
  p = malloc(n);
  if (p) memcpy(p, s, n);
  return p;
}

static void done(qv_call *c, qv_call_end why) {
  if (c->state == QV_DONE) return;
  if (c->state == QV_RUNNING) qv_engine_stop(c->engine, c->easy);
  c->state = QV_DONE;
  c->end = why;
  qv_engine_unlink(c->engine, c);
}

static int on_event(void *ud, const char *event, size_t elen,
                    const char *data, size_t dlen) {
  qv_call *c = ud;
  unsigned char head[5];
  uint32_t n = (uint32_t)dlen;
  head[0] = (elen == 5 && memcmp(event, "error", 5) == 0) ? 1 : 0;
  memcpy(head + 1, &n, 4);
  qv_buf_add(&c->events, head, 5);
  qv_buf_add(&c->events, data, dlen);
  c->committed = 1;
  return c->events.oom ? 1 : 0;
}

static size_t on_write(char *p, size_t size, size_t nmemb, void *ud) {
  qv_call *c = ud;
  size_t n = size * nmemb;
  c->last_byte = qv_now();
  if (c->streaming) {
    c->stream_bytes += n;
    if (c->stream_bytes > c->o.max_response_bytes) {
      c->end = QV_END_TOO_LARGE;
      return 0;
    }
    if (qv_sse_feed(&c->sse, p, n, on_event, c) != 0) {
      c->sse_error = 1;
      return 0;
    }
    return n;
  }
  if (c->body_in.len + n > c->o.max_response_bytes) {
    c->end = QV_END_TOO_LARGE;   /* noted; the transfer now fails */
    return 0;
  }
  qv_buf_add(&c->body_in, p, n);
  return c->body_in.oom ? 0 : n;
}

/* Copy a header value (trimmed) into dst if the line names `name`. */
static int header_value(const char *line, size_t n, const char *name,
                        char *dst, size_t cap) {
  size_t k = strlen(name), i, j;
  if (n <= k || line[k] != ':' || strncasecmp(line, name, k) != 0) return 0;
  i = k + 1;
  while (i < n && (line[i] == ' ' || line[i] == '\t')) i++;
  j = n;
  while (j > i && (line[j - 1] == '\r' || line[j - 1] == '\n' ||
                   line[j - 1] == ' ' || line[j - 1] == '\t')) j--;
  if (j - i >= cap) j = i + cap - 1;
  memcpy(dst, line + i, j - i);
  dst[j - i] = '\0';
  return 1;
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *ud) {
  qv_call *c = ud;
  size_t n = size * nmemb;
  char v[64];
  c->last_byte = qv_now();
  if (n >= 5 && memcmp(p, "HTTP/", 5) == 0) {   /* a new response */
    const char *sp = memchr(p, ' ', n);
    c->status = sp ? strtol(sp + 1, NULL, 10) : 0;
    c->request_id[0] = c->content_type[0] = '\0';
    c->retry_after = -1;
    c->in_headers = 1;
  } else if (n <= 2 && (p[0] == '\r' || p[0] == '\n')) {
    if (c->in_headers && c->status >= 200) {
      c->streaming = c->o.stream && c->status == 200 &&
        strncasecmp(c->content_type, "text/event-stream", 17) == 0;
    }
    c->in_headers = 0;
  } else if (header_value(p, n, "x-request-id", c->request_id,
                          sizeof c->request_id) ||
             header_value(p, n, "x-dashscope-request-id", c->request_id,
                          sizeof c->request_id) ||
             header_value(p, n, "content-type", c->content_type,
                          sizeof c->content_type)) {
    /* stored */
  } else if (header_value(p, n, "retry-after-ms", v, sizeof v)) {
    double s = qv_retry_after_ms_parse(v, strlen(v));
    if (s >= 0) c->retry_after = s;            /* more precise: wins */
  } else if (header_value(p, n, "retry-after", v, sizeof v)) {
    if (c->retry_after < 0)
      c->retry_after = qv_retry_after_parse(v, strlen(v), (double)time(NULL));
  }
  return n;
}

static void set_options(qv_call *c) {
  CURL *h = c->easy;
  curl_easy_setopt(h, CURLOPT_URL, c->url);
  curl_easy_setopt(h, CURLOPT_PRIVATE, (char *)c);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->errbuf);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, c->headers);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, c);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, c);
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);  /* the key stays put */
#if LIBCURL_VERSION_NUM >= 0x075500
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
#else
  curl_easy_setopt(h, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
  curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
  /* Wait for an HTTP/2 connection to multiplex on: only over TLS, where
  ** ALPN settles the protocol early; over plain HTTP it would serialize. */
  if (strncmp(c->url, "https://", 8) == 0)
    curl_easy_setopt(h, CURLOPT_PIPEWAIT, 1L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                   (long)(c->o.connect_timeout_s * 1000.0));
  if (c->o.user_agent) curl_easy_setopt(h, CURLOPT_USERAGENT, c->o.user_agent);
  if (c->o.cainfo) curl_easy_setopt(h, CURLOPT_CAINFO, c->o.cainfo);
  if (c->o.capath) curl_easy_setopt(h, CURLOPT_CAPATH, c->o.capath);
  if (c->o.proxy) curl_easy_setopt(h, CURLOPT_PROXY, c->o.proxy);
  if (c->o.noproxy) curl_easy_setopt(h, CURLOPT_NOPROXY, c->o.noproxy);
  if (!c->o.stream) curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
  if (c->o.post) {
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, c->body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->body_len);
  } else {
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
  }
}

static void start_attempt(qv_call *c, double now) {
  double left = c->deadline - now;
  if (left <= 0) { done(c, QV_END_BUDGET); return; }
  c->attempts++;
  c->status = 0;
  c->curl_code = CURLE_OK;
  c->errbuf[0] = c->request_id[0] = c->content_type[0] = '\0';
  c->retry_after = -1;
  c->streaming = c->sse_error = 0;
  c->stream_bytes = 0;
  c->end = QV_END_NONE;
  qv_buf_reset(&c->body_in);
  qv_sse_free(&c->sse);
  qv_sse_init(&c->sse);
  c->last_byte = now;
  curl_easy_setopt(c->easy, CURLOPT_TIMEOUT_MS, (long)(left * 1000.0) + 1);
  if (qv_engine_start(c->engine, c->easy) != 0) {
    c->curl_code = CURLE_FAILED_INIT;
    snprintf(c->errbuf, sizeof c->errbuf, "could not start the transfer");
    done(c, QV_END_TRANSPORT);
    return;
  }
  c->state = QV_RUNNING;
}

qv_call *qv_call_new(qv_engine *e, const qv_call_opts *o, char *body,
                     size_t body_len, const char **why) {
  qv_call *c = calloc(1, sizeof *c);
  if (c == NULL) { *why = "out of memory"; goto fail; }
  c->o = *o;
  c->url = dupstr(o->url);
  c->o.cainfo = c->cainfo = dupstr(o->cainfo);
  c->o.capath = c->capath = dupstr(o->capath);
  c->o.proxy = c->proxy = dupstr(o->proxy);
  c->o.noproxy = c->noproxy = dupstr(o->noproxy);
  c->o.user_agent = c->user_agent = dupstr(o->user_agent);
  c->o.url = c->url;
  c->body = body;
  c->body_len = body_len;
  c->headers = o->headers;
  body = NULL;
  c->engine = e;
  c->easy = qv_engine_take_easy(e);
  if (c->url == NULL || c->easy == NULL) {
    *why = c->easy ? "out of memory" : "curl_easy_init failed";
    c->engine = NULL;
    qv_call_free(c);
    return NULL;
  }
  if (c->o.max_response_bytes == 0) c->o.max_response_bytes = 64u << 20;
  qv_engine_retain(e);
  qv_buf_init(&c->body_in);
  qv_buf_init(&c->events);
  qv_sse_init(&c->sse);
  c->started = qv_now();
  c->deadline = c->started + (o->timeout_s > 0 ? o->timeout_s : 120.0);
  c->seed = (unsigned)((uintptr_t)c ^ (uintptr_t)(c->started * 1e6));
  c->state = QV_WAITING;
  qv_engine_link(e, c);
  set_options(c);
  start_attempt(c, c->started);
  return c;
fail:
  free(body);
  curl_slist_free_all(o->headers);
  return NULL;
}

void qv_call_cancel(qv_call *c) {
  if (c != NULL) done(c, QV_END_CANCELED);
}

void qv_call_free(qv_call *c) {
  if (c == NULL) return;
  if (c->engine != NULL) {
    qv_call_cancel(c);
    qv_engine_give_easy(c->engine, c->easy);
    qv_engine_release(c->engine);
  } else if (c->easy != NULL) {
    curl_easy_cleanup(c->easy);
  }
  free(c->url);
  free(c->cainfo);
  free(c->capath);
  free(c->proxy);
  free(c->noproxy);
  free(c->user_agent);
  free(c->body);
  curl_slist_free_all(c->headers);
  qv_buf_free(&c->body_in);
  qv_buf_free(&c->events);
  qv_sse_free(&c->sse);
  free(c);
}

double qv_call_elapsed(const qv_call *c) { return qv_now() - c->started; }

size_t qv_call_take_events(qv_call *c, qv_buf *out) {
  size_t n = c->events.len;
  if (n == 0) return 0;
  qv_buf_add(out, c->events.data, n);
  qv_buf_reset(&c->events);
  return n;
}

/* Schedule another attempt if the policy and the budget allow it. */
static int retry_later(qv_call *c, double now) {
  double wait;
  if (c->attempts > c->o.max_retries || c->committed) return 0;
  if (c->retry_after >= 0) {
    if (c->retry_after > c->o.retry_after_cap_s) return 0;
    wait = c->retry_after;
  } else {
    wait = qv_retry_backoff(c->o.backoff_s, c->attempts, &c->seed);
  }
  if (now + wait >= c->deadline) return 0;   /* would not fit the budget */
  qv_engine_stop(c->engine, c->easy);
  c->state = QV_WAITING;
  c->start_at = now + wait;
  return 1;
}

void qv_call_finished(qv_call *c, CURLcode code) {
  double now = qv_now();
  if (c->state != QV_RUNNING) return;
  c->curl_code = code;
  if (code == CURLE_OK) {
    long status = 0;
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
    c->status = status;
    if (c->streaming) qv_sse_finish(&c->sse, on_event, c);
    c->retryable = qv_retry_status(status) && !c->committed;
    if (c->retryable && retry_later(c, now)) return;
    done(c, QV_END_RESPONSE);
  } else if (c->end == QV_END_TOO_LARGE) {
    c->retryable = 0;
    done(c, QV_END_TOO_LARGE);
  } else if (code == CURLE_OPERATION_TIMEDOUT && now >= c->deadline - 0.01) {
    c->retryable = 1;
    done(c, QV_END_BUDGET);
  } else {
    c->retryable = transient(code) && !c->sse_error && !c->committed;
    if (c->retryable && retry_later(c, now)) return;
    done(c, QV_END_TRANSPORT);
  }
}

void qv_call_tick(qv_call *c, double now) {
  if (c->state == QV_WAITING && now >= c->start_at) {
    start_attempt(c, now);
  } else if (c->state == QV_RUNNING && c->o.stream &&
             c->o.idle_timeout_s > 0 &&
             now - c->last_byte >= c->o.idle_timeout_s) {
    done(c, QV_END_IDLE);
  }
}

double qv_call_next_deadline(const qv_call *c) {
  if (c->state == QV_WAITING) return c->start_at;
  if (c->state == QV_RUNNING && c->o.stream && c->o.idle_timeout_s > 0)
    return c->last_byte + c->o.idle_timeout_s;
  return -1;
}
