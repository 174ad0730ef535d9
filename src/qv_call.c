/*
** qv_call: attempts, retries and response capture for one request (see
** qv_call.h). Runs inside libcurl callbacks and engine steps only: it
** never calls Lua, so no Lua error can unwind through libcurl.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "qv_call.h"
#include "qv_retry.h"
#include "qv_sse.h"
#include "qv_text.h"

struct qv_call {
  qv_link link;                  /* first: the engine's list entry */
  qv_engine *engine;
  CURL *easy;
  qv_call_state state;
  qv_call_outcome out;
  /* the request, owned */
  qv_call_opts o;                /* its strings point at the copies below */
  char *url, *method, *body, *cainfo, *capath, *proxy, *noproxy, *user_agent,
       *download;
  size_t body_len;
  curl_mime *mime;
  /* timing */
  double started, deadline, start_at, last_byte;
  unsigned seed;
  /* the current attempt */
  int in_headers;                /* between status line and body */
  qv_sse sse;
  qv_buf events;                 /* queued stream events, framed */
  size_t stream_bytes;           /* event-stream bytes of this attempt */
  FILE *dl;                      /* the download file, once a 2xx body starts */
  int dl_failed;
};

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

static char *dupstr(const char *s, int *ok) {
  size_t n;
  char *p;
  if (s == NULL) return NULL;
  n = strlen(s) + 1;
  p = malloc(n);
  if (p) memcpy(p, s, n); else *ok = 0;
  return p;
}

qv_call_state qv_call_state_of(const qv_call *c) { return c->state; }
qv_engine *qv_call_engine(const qv_call *c) { return c->engine; }

const qv_call_outcome *qv_call_outcome_of(qv_call *c) {
  c->out.elapsed_s = qv_now() - c->started;
  return &c->out;
}

static void done(qv_call *c, qv_call_end why) {
  if (c->state == QV_DONE) return;
  if (c->state == QV_RUNNING) qv_engine_stop(c->engine, c->easy);
  c->state = QV_DONE;
  c->out.end = why;
  if (c->dl != NULL) { fclose(c->dl); c->dl = NULL; }
  qv_engine_unlink(c->engine, &c->link);
}

void qv_call_abort(qv_call *c, qv_call_end why) {
  if (c != NULL && qv_engine_owned(c->engine)) done(c, why);
}

/* ---- libcurl callbacks ------------------------------------------------- */

static int on_event(void *ud, const char *event, size_t elen,
                    const char *data, size_t dlen) {
  qv_call *c = ud;
  unsigned char head[5];
  uint32_t n = (uint32_t)dlen;
  head[0] = (elen == 5 && memcmp(event, "error", 5) == 0) ? 1 : 0;
  memcpy(head + 1, &n, 4);
  qv_buf_add(&c->events, head, 5);
  qv_buf_add(&c->events, data, dlen);
  c->out.committed = 1;
  return c->events.oom ? 1 : 0;
}

static size_t to_file(qv_call *c, const char *p, size_t n) {
  if (c->dl == NULL && !c->dl_failed) {
    c->dl = fopen(c->download, "wb");
    if (c->dl == NULL) c->dl_failed = 1;
  }
  if (c->dl == NULL || fwrite(p, 1, n, c->dl) != n) {
    c->dl_failed = 1;
    return 0;
  }
  return n;
}

static size_t on_write(char *p, size_t size, size_t nmemb, void *ud) {
  qv_call *c = ud;
  size_t n = size * nmemb;
  c->last_byte = qv_now();
  if (c->out.streamed) {
    c->stream_bytes += n;
    if (c->stream_bytes > c->o.max_response_bytes) {
      c->out.end = QV_END_TOO_LARGE;
      return 0;
    }
    if (qv_sse_feed(&c->sse, p, n, on_event, c) != 0) {
      c->out.sse_error = 1;
      return 0;
    }
    return n;
  }
  if (c->download != NULL && c->out.status >= 200 && c->out.status < 300)
    return to_file(c, p, n);
  if (c->out.body.len + n > c->o.max_response_bytes) {
    c->out.end = QV_END_TOO_LARGE;   /* noted; the transfer now fails */
    return 0;
  }
  qv_buf_add(&c->out.body, p, n);
  return c->out.body.oom ? 0 : n;
}

/* Copy a header value (trimmed) into dst if the line names `name`. */
static int header_value(const char *line, size_t n, const char *name,
                        char *dst, size_t cap) {
  size_t k = strlen(name), vn;
  const char *v;
  if (n <= k || line[k] != ':' || !qv_text_iprefix(line, n, name)) return 0;
  vn = n - k - 1;
  v = qv_text_trim(line + k + 1, &vn);
  if (vn >= cap) vn = cap - 1;
  memcpy(dst, v, vn);
  dst[vn] = '\0';
  return 1;
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *ud) {
  qv_call *c = ud;
  qv_call_outcome *out = &c->out;
  size_t n = size * nmemb;
  char v[64];
  c->last_byte = qv_now();
  if (n >= 5 && memcmp(p, "HTTP/", 5) == 0) {   /* a new response */
    const char *sp = memchr(p, ' ', n);
    out->status = sp ? strtol(sp + 1, NULL, 10) : 0;
    out->request_id[0] = out->content_type[0] = '\0';
    out->retry_after = -1;
    c->in_headers = 1;
  } else if (n <= 2 && (p[0] == '\r' || p[0] == '\n')) {
    if (c->in_headers && out->status >= 200)
      out->streamed = c->o.stream && out->status == 200 &&
        qv_text_iprefix(out->content_type, strlen(out->content_type),
                        "text/event-stream");
    c->in_headers = 0;
  } else if (header_value(p, n, "x-request-id", out->request_id,
                          sizeof out->request_id) ||
             header_value(p, n, "x-dashscope-request-id", out->request_id,
                          sizeof out->request_id) ||
             header_value(p, n, "content-type", out->content_type,
                          sizeof out->content_type)) {
    /* stored */
  } else if (header_value(p, n, "retry-after-ms", v, sizeof v)) {
    double s = qv_retry_after_ms_parse(v, strlen(v));
    if (s >= 0) out->retry_after = s;            /* more precise: wins */
  } else if (header_value(p, n, "retry-after", v, sizeof v)) {
    if (out->retry_after < 0)
      out->retry_after = qv_retry_after_parse(v, strlen(v), (double)time(NULL));
  }
  return n;
}

/* ---- attempts ---------------------------------------------------------- */

static int build_form(qv_call *c, const qv_form_part *parts, int n) {
  int i;
  c->mime = curl_mime_init(c->easy);
  if (c->mime == NULL) return -1;
  for (i = 0; i < n; i++) {
    curl_mimepart *part = curl_mime_addpart(c->mime);
    if (part == NULL || curl_mime_name(part, parts[i].name) != CURLE_OK)
      return -1;
    if (parts[i].file != NULL) {
      if (curl_mime_filedata(part, parts[i].file) != CURLE_OK) return -1;
      if (parts[i].filename && curl_mime_filename(part, parts[i].filename) != CURLE_OK)
        return -1;
    } else if (curl_mime_data(part, parts[i].value ? parts[i].value : "",
                              CURL_ZERO_TERMINATED) != CURLE_OK) {
      return -1;
    }
    if (parts[i].type && curl_mime_type(part, parts[i].type) != CURLE_OK)
      return -1;
  }
  return 0;
}

static void set_options(qv_call *c) {
  CURL *h = c->easy;
  curl_easy_setopt(h, CURLOPT_URL, c->url);
  curl_easy_setopt(h, CURLOPT_PRIVATE, (char *)c);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->out.errbuf);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, c->o.headers);
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
  if (c->user_agent) curl_easy_setopt(h, CURLOPT_USERAGENT, c->user_agent);
  if (c->cainfo) curl_easy_setopt(h, CURLOPT_CAINFO, c->cainfo);
  if (c->capath) curl_easy_setopt(h, CURLOPT_CAPATH, c->capath);
  if (c->proxy) curl_easy_setopt(h, CURLOPT_PROXY, c->proxy);
  if (c->noproxy) curl_easy_setopt(h, CURLOPT_NOPROXY, c->noproxy);
  if (!c->o.stream) curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
  if (c->o.fresh_connect) curl_easy_setopt(h, CURLOPT_FRESH_CONNECT, 1L);
  if (c->mime != NULL) {
    curl_easy_setopt(h, CURLOPT_MIMEPOST, c->mime);
  } else if (c->method == NULL || strcmp(c->method, "POST") == 0) {
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, c->body ? c->body : "");
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->body_len);
  } else if (strcmp(c->method, "GET") == 0) {
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
  } else {
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, c->method);
  }
}

static void start_attempt(qv_call *c, double now) {
  qv_call_outcome *out = &c->out;
  double left = c->deadline - now;
  if (left <= 0) { done(c, QV_END_BUDGET); return; }
  out->attempts++;
  out->status = 0;
  out->curl_code = CURLE_OK;
  out->errbuf[0] = out->request_id[0] = out->content_type[0] = '\0';
  out->retry_after = -1;
  out->streamed = out->sse_error = 0;
  out->end = QV_END_NONE;
  c->stream_bytes = 0;
  qv_buf_reset(&out->body);
  qv_sse_free(&c->sse);
  qv_sse_init(&c->sse);
  if (c->dl != NULL) { fclose(c->dl); c->dl = NULL; }   /* reopened, truncated */
  c->dl_failed = 0;
  c->last_byte = now;
  curl_easy_setopt(c->easy, CURLOPT_TIMEOUT_MS, (long)(left * 1000.0) + 1);
  if (qv_engine_start(c->engine, c->easy) != 0) {
    out->curl_code = CURLE_FAILED_INIT;
    snprintf(out->errbuf, sizeof out->errbuf, "could not start the transfer");
    done(c, QV_END_TRANSPORT);
    return;
  }
  c->state = QV_RUNNING;
}

qv_call *qv_call_new(qv_engine *e, const qv_call_opts *o, char *body,
                     size_t body_len, const char **why) {
  int ok = 1;
  qv_call *c = calloc(1, sizeof *c);
  if (c == NULL) {
    *why = "out of memory";
    free(body);
    curl_slist_free_all(o->headers);
    return NULL;
  }
  c->o = *o;
  c->body = body;
  c->body_len = body_len;
  c->url = dupstr(o->url, &ok);
  c->method = dupstr(o->method, &ok);
  c->cainfo = dupstr(o->cainfo, &ok);
  c->capath = dupstr(o->capath, &ok);
  c->proxy = dupstr(o->proxy, &ok);
  c->noproxy = dupstr(o->noproxy, &ok);
  c->user_agent = dupstr(o->user_agent, &ok);
  c->download = dupstr(o->download, &ok);
  /* the caller's strings are not kept: only the copies above */
  c->o.url = c->o.method = c->o.cainfo = c->o.capath = c->o.proxy = NULL;
  c->o.noproxy = c->o.user_agent = c->o.download = NULL;
  c->o.form = NULL;
  qv_buf_init(&c->out.body);
  qv_buf_init(&c->events);
  qv_sse_init(&c->sse);
  c->out.retry_after = -1;
  if (c->o.max_response_bytes == 0) c->o.max_response_bytes = 64u << 20;
  c->easy = ok ? qv_engine_take_easy(e) : NULL;
  if (c->easy == NULL || (o->nform > 0 && build_form(c, o->form, o->nform) != 0)) {
    *why = !ok ? "out of memory" : c->easy ? "cannot build the form"
                                           : "curl_easy_init failed";
    if (c->easy) curl_easy_cleanup(c->easy);
    c->easy = NULL;
    qv_call_free(c);
    return NULL;
  }
  c->engine = e;
  qv_engine_retain(e);
  c->started = qv_now();
  c->deadline = c->started + (o->timeout_s > 0 ? o->timeout_s : 120.0);
  c->seed = (unsigned)((uintptr_t)c ^ (uintptr_t)(c->started * 1e6));
  c->state = QV_WAITING;
  qv_engine_link(e, &c->link);
  set_options(c);
  start_attempt(c, c->started);
  return c;
}

void qv_call_free(qv_call *c) {
  if (c == NULL) return;
  if (c->engine != NULL && !qv_engine_owned(c->engine)) {
    /* a forked child: the transfer is the parent's; forget it without
    ** touching curl (its socket and TLS state are shared); the easy
    ** handle may still point at the mime, so both are kept */
    qv_engine_keep_easy(c->engine, c->easy);
    qv_engine_release(c->engine);
    c->engine = NULL;
    c->easy = NULL;
    c->mime = NULL;
  }
  if (c->engine != NULL) {
    done(c, QV_END_CANCELED);
    if (c->mime) curl_easy_setopt(c->easy, CURLOPT_MIMEPOST, NULL);
    qv_engine_give_easy(c->engine, c->easy);
    qv_engine_release(c->engine);
  } else if (c->easy != NULL) {
    curl_easy_cleanup(c->easy);
  }
  curl_mime_free(c->mime);
  if (c->dl != NULL) fclose(c->dl);
  free(c->url); free(c->method); free(c->cainfo); free(c->capath);
  free(c->proxy); free(c->noproxy); free(c->user_agent); free(c->download);
  free(c->body);
  curl_slist_free_all(c->o.headers);
  qv_buf_free(&c->out.body);
  qv_buf_free(&c->events);
  qv_sse_free(&c->sse);
  free(c);
}

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
  if (c->out.attempts > c->o.max_retries || c->out.committed) return 0;
  if (c->out.retry_after >= 0) {
    if (c->out.retry_after > c->o.retry_after_cap_s) return 0;
    wait = c->out.retry_after;
  } else {
    wait = qv_retry_backoff(c->o.backoff_s, c->out.attempts, &c->seed);
  }
  if (now + wait >= c->deadline) return 0;   /* would not fit the budget */
  qv_engine_stop(c->engine, c->easy);
  c->state = QV_WAITING;
  c->start_at = now + wait;
  return 1;
}

void qv_call_finished(qv_call *c, CURLcode code) {
  qv_call_outcome *out = &c->out;
  double now = qv_now();
  if (c->state != QV_RUNNING) return;
  out->curl_code = code;
  if (c->dl != NULL) {           /* flush now: a full disk shows here */
    if (fclose(c->dl) != 0) c->dl_failed = 1;
    c->dl = NULL;
  }
  if (c->dl_failed) {
    out->retryable = 0;
    snprintf(out->errbuf, sizeof out->errbuf, "cannot write the download to %s",
             c->download);
    done(c, QV_END_TRANSPORT);
  } else if (code == CURLE_OK) {
    long status = 0;
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
    out->status = status;
    if (out->streamed) qv_sse_finish(&c->sse, on_event, c);
    out->retryable = qv_retry_status(status) && !out->committed;
    if (out->retryable && retry_later(c, now)) return;
    done(c, QV_END_RESPONSE);
  } else if (out->end == QV_END_TOO_LARGE) {
    out->retryable = 0;
    done(c, QV_END_TOO_LARGE);
  } else if (code == CURLE_OPERATION_TIMEDOUT && now >= c->deadline - 0.01) {
    out->retryable = 1;
    done(c, QV_END_BUDGET);
  } else {
    out->retryable = transient(code) && !out->sse_error && !out->committed;
    if (out->retryable && retry_later(c, now)) return;
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
