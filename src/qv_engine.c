/*
** qv_engine: curl multi + epoll + timers (see qv_engine.h).
** We drive curl through curl_multi_socket_action so the set of sockets is
** known to us at all times; that set lives in an epoll instance whose fd
** a host loop can watch.
*/
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/epoll.h>

#include "qv_engine.h"
#include "qv_call.h"

#define QV_POOL_MAX 16
#define QV_EVENTS 64

struct qv_engine {
  int refs;
  CURLM *multi;
  int epfd;
  double curl_deadline;         /* < 0: curl wants no timer */
  qv_call *calls;               /* live calls */
  int ncalls;
  CURL *pool[QV_POOL_MAX];
  int npool;
};

double qv_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int on_socket(CURL *easy, curl_socket_t s, int what, void *ud,
                     void *sockp) {
  qv_engine *e = ud;
  struct epoll_event ev;
  (void)easy; (void)sockp;
  if (what == CURL_POLL_REMOVE) {
    epoll_ctl(e->epfd, EPOLL_CTL_DEL, s, NULL);  /* may already be gone */
    return 0;
  }
  memset(&ev, 0, sizeof ev);
  ev.data.fd = s;
  if (what & CURL_POLL_IN) ev.events |= EPOLLIN;
  if (what & CURL_POLL_OUT) ev.events |= EPOLLOUT;
  if (epoll_ctl(e->epfd, EPOLL_CTL_MOD, s, &ev) != 0 && errno == ENOENT)
    epoll_ctl(e->epfd, EPOLL_CTL_ADD, s, &ev);
  return 0;
}

static int on_timer(CURLM *multi, long ms, void *ud) {
  qv_engine *e = ud;
  (void)multi;
  e->curl_deadline = ms < 0 ? -1.0 : qv_now() + (double)ms / 1000.0;
  return 0;
}

qv_engine *qv_engine_new(const char **why) {
  qv_engine *e = calloc(1, sizeof *e);
  if (e == NULL) { *why = "out of memory"; return NULL; }
  e->refs = 1;
  e->curl_deadline = -1.0;
  e->epfd = epoll_create1(EPOLL_CLOEXEC);
  e->multi = curl_multi_init();
  if (e->epfd < 0 || e->multi == NULL) {
    *why = e->epfd < 0 ? "epoll_create1 failed" : "curl_multi_init failed";
    if (e->epfd >= 0) close(e->epfd);
    if (e->multi) curl_multi_cleanup(e->multi);
    free(e);
    return NULL;
  }
  curl_multi_setopt(e->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(e->multi, CURLMOPT_SOCKETDATA, e);
  curl_multi_setopt(e->multi, CURLMOPT_TIMERFUNCTION, on_timer);
  curl_multi_setopt(e->multi, CURLMOPT_TIMERDATA, e);
  curl_multi_setopt(e->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
  return e;
}

void qv_engine_retain(qv_engine *e) { e->refs++; }

void qv_engine_release(qv_engine *e) {
  int i;
  if (e == NULL || --e->refs > 0) return;
  for (i = 0; i < e->npool; i++) curl_easy_cleanup(e->pool[i]);
  curl_multi_cleanup(e->multi);   /* may still call on_socket: epfd open */
  close(e->epfd);
  free(e);
}

int qv_engine_fd(const qv_engine *e) { return e->epfd; }
int qv_engine_busy(const qv_engine *e) { return e->ncalls; }

CURL *qv_engine_take_easy(qv_engine *e) {
  if (e->npool > 0) return e->pool[--e->npool];
  return curl_easy_init();
}

void qv_engine_give_easy(qv_engine *e, CURL *h) {
  if (h == NULL) return;
  if (e->npool < QV_POOL_MAX) {
    curl_easy_reset(h);           /* keeps the connection/DNS caches */
    e->pool[e->npool++] = h;
  } else {
    curl_easy_cleanup(h);
  }
}

int qv_engine_start(qv_engine *e, CURL *h) {
  return curl_multi_add_handle(e->multi, h) == CURLM_OK ? 0 : -1;
}

void qv_engine_stop(qv_engine *e, CURL *h) {
  curl_multi_remove_handle(e->multi, h);
}

void qv_engine_link(qv_engine *e, qv_call *c) {
  c->prev = NULL;
  c->next = e->calls;
  if (e->calls) e->calls->prev = c;
  e->calls = c;
  e->ncalls++;
}

void qv_engine_unlink(qv_engine *e, qv_call *c) {
  if (c->prev) c->prev->next = c->next; else e->calls = c->next;
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = NULL;
  e->ncalls--;
}

long qv_engine_timeout_ms(qv_engine *e) {
  double now = qv_now(), best = e->curl_deadline, ms;
  qv_call *c;
  for (c = e->calls; c != NULL; c = c->next) {
    double d = qv_call_next_deadline(c);
    if (d >= 0 && (best < 0 || d < best)) best = d;
  }
  if (best < 0) return -1;
  ms = (best - now) * 1000.0;
  if (ms <= 0) return 0;
  return ms > 86400000.0 ? 86400000L : (long)ms + 1;  /* round up */
}

static void read_done(qv_engine *e) {
  CURLMsg *m;
  int left;
  while ((m = curl_multi_info_read(e->multi, &left)) != NULL) {
    qv_call *c = NULL;
    if (m->msg != CURLMSG_DONE) continue;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&c);
    if (c != NULL) qv_call_finished(c, m->data.result);
  }
}

void qv_engine_step(qv_engine *e) {
  struct epoll_event evs[QV_EVENTS];
  int round;
  /* A few rounds: starting a transfer arms a zero timer that curl wants
  ** serviced at once, and finishing one may start a retry. */
  for (round = 0; round < 4; round++) {
    int n, i, running, acted = 0;
    double now;
    qv_call *c, *next;
    n = epoll_wait(e->epfd, evs, QV_EVENTS, 0);
    for (i = 0; i < n; i++) {
      int mask = 0;
      if (evs[i].events & EPOLLIN) mask |= CURL_CSELECT_IN;
      if (evs[i].events & EPOLLOUT) mask |= CURL_CSELECT_OUT;
      if (evs[i].events & (EPOLLERR | EPOLLHUP)) mask |= CURL_CSELECT_ERR;
      curl_multi_socket_action(e->multi, evs[i].data.fd, mask, &running);
      acted = 1;
    }
    now = qv_now();
    if (e->curl_deadline >= 0 && e->curl_deadline <= now) {
      e->curl_deadline = -1.0;
      curl_multi_socket_action(e->multi, CURL_SOCKET_TIMEOUT, 0, &running);
      acted = 1;
    }
    read_done(e);
    now = qv_now();
    for (c = e->calls; c != NULL; c = next) {
      qv_call_state before = c->state;
      next = c->next;
      qv_call_tick(c, now);
      if (c->state != before) acted = 1;
    }
    if (!acted && n < QV_EVENTS) break;
  }
}

void qv_engine_wait(qv_engine *e, long ms) {
  struct epoll_event ev;
  long t = qv_engine_timeout_ms(e);
  if (t >= 0 && (ms < 0 || t < ms)) ms = t;
  if (ms < 0) ms = 1000;          /* nothing scheduled: do not sleep forever */
  if (ms > 0) epoll_wait(e->epfd, &ev, 1, (int)(ms > 60000 ? 60000 : ms));
}
