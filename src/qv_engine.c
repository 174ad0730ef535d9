/*
** qv_engine: curl multi + qv_watch + timers (see qv_engine.h).
** We drive curl through curl_multi_socket_action so that the set of
** sockets is known to us at all times; it lives in a qv_watch set whose
** descriptor (epoll) a host loop can watch.
*/
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "qv_engine.h"
#include "qv_call.h"
#include "qv_watch.h"

#define QV_POOL_MAX 16
#define QV_EVENTS 64
#define QV_KEEP_MIN 8

struct qv_engine {
  int refs;
  long pid;                     /* the process that made it */
  CURLM *multi;
  qv_watch *watch;
  double curl_deadline;         /* < 0: curl wants no timer */
  qv_link calls;                /* live calls: a ring with this head */
  int ncalls;
  CURL *pool[QV_POOL_MAX];      /* easy handles to reuse */
  int npool;
  CURL **kept;                  /* a forked child's calls' easies */
  int nkept;
  qv_engine *next_abandoned;
};

/* Engines a forked child let go of. They are never freed: a cleanup would
** run curl's teardown on connections the parent still uses (closing them,
** perhaps writing TLS alerts), and dropping the pointers would make the
** child's multi and easies unreachable, which leak checkers report as lost
** at the child's exit. Kept reachable here they are merely still in use. */
static qv_engine *abandoned;

double qv_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int on_socket(CURL *easy, curl_socket_t s, int what, void *ud,
                     void *sockp) {
  qv_engine *e = ud;
  int events = 0;
  (void)easy; (void)sockp;
  if (what != CURL_POLL_REMOVE) {
    if (what & CURL_POLL_IN) events |= QV_WATCH_IN;
    if (what & CURL_POLL_OUT) events |= QV_WATCH_OUT;
  }
  return qv_watch_set(e->watch, (int)s, events) == 0 ? 0 : -1;
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
  e->pid = (long)getpid();
  e->curl_deadline = -1.0;
  e->calls.prev = e->calls.next = &e->calls;
  e->watch = qv_watch_new(why);
  e->multi = e->watch ? curl_multi_init() : NULL;
  if (e->multi == NULL) {
    if (e->watch) *why = "curl_multi_init failed";
    qv_watch_free(e->watch);
    free(e);
    return NULL;
  }
  curl_multi_setopt(e->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(e->multi, CURLMOPT_SOCKETDATA, e);
  curl_multi_setopt(e->multi, CURLMOPT_TIMERFUNCTION, on_timer);
  curl_multi_setopt(e->multi, CURLMOPT_TIMERDATA, e);
  curl_multi_setopt(e->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
  curl_multi_setopt(e->multi, CURLMOPT_MAXCONNECTS, (long)QV_KEEP_MIN);
  return e;
}

int qv_engine_owned(const qv_engine *e) {
  return e != NULL && e->pid == (long)getpid();
}

void qv_engine_retain(qv_engine *e) { e->refs++; }

void qv_engine_release(qv_engine *e) {
  int i;
  if (e == NULL || --e->refs > 0) return;
  if (!qv_engine_owned(e)) {
    /* a forked child: the multi's connections are the parent's too; a
    ** cleanup would close them under it (and could write TLS alerts) */
    qv_watch_abandon(e->watch);
    e->watch = NULL;
    e->next_abandoned = abandoned;
    abandoned = e;
    return;
  }
  for (i = 0; i < e->npool; i++) curl_easy_cleanup(e->pool[i]);
  curl_multi_cleanup(e->multi);   /* may still call on_socket: watch alive */
  qv_watch_free(e->watch);
  free(e->kept);
  free(e);
}

void qv_engine_keep_easy(qv_engine *e, CURL *h) {
  CURL **kept;
  if (h == NULL) return;
  if (e->npool < QV_POOL_MAX) { e->pool[e->npool++] = h; return; }
  kept = realloc(e->kept, (size_t)(e->nkept + 1) * sizeof *kept);
  if (kept == NULL) return;   /* then it is lost, which is harmless */
  kept[e->nkept++] = h;
  e->kept = kept;
}

int qv_engine_fd(const qv_engine *e) { return qv_watch_fd(e->watch); }
int qv_engine_busy(const qv_engine *e) { return e->ncalls; }

void qv_engine_keep_connections(qv_engine *e, long n) {
  curl_multi_setopt(e->multi, CURLMOPT_MAXCONNECTS, n > QV_KEEP_MIN ? n : (long)QV_KEEP_MIN);
}

CURL *qv_engine_take_easy(qv_engine *e) {
  if (e->npool > 0) return e->pool[--e->npool];
  return curl_easy_init();
}

void qv_engine_give_easy(qv_engine *e, CURL *h) {
  if (h == NULL) return;
  if (e->npool < QV_POOL_MAX) {
    curl_easy_reset(h);           /* keeps the connection and DNS caches */
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

void qv_engine_link(qv_engine *e, qv_link *l) {
  l->prev = &e->calls;
  l->next = e->calls.next;
  e->calls.next->prev = l;
  e->calls.next = l;
  e->ncalls++;
}

void qv_engine_unlink(qv_engine *e, qv_link *l) {
  if (l->next == NULL) return;
  l->prev->next = l->next;
  l->next->prev = l->prev;
  l->prev = l->next = NULL;
  e->ncalls--;
}

/* Without a descriptor to watch (poll()), a host cannot learn that a
** socket became ready: it must step soon while sockets are watched. */
#define QV_POLL_TICK_MS 10

/* Milliseconds to the next timer (-1: none); for a host loop (tick) also
** the poll() tick while sockets are watched. */
static long next_timer(qv_engine *e, int tick) {
  double now = qv_now(), best = e->curl_deadline, ms;
  qv_link *l;
  for (l = e->calls.next; l != &e->calls; l = l->next) {
    double d = qv_call_next_deadline((qv_call *)l);
    if (d >= 0 && (best < 0 || d < best)) best = d;
  }
  if (tick && qv_watch_needs_tick(e->watch)) {
    double t = now + QV_POLL_TICK_MS / 1000.0;
    if (best < 0 || t < best) best = t;
  }
  if (best < 0) return -1;
  ms = (best - now) * 1000.0;
  if (ms <= 0) return 0;
  return ms > 86400000.0 ? 86400000L : (long)ms + 1;  /* round up */
}

long qv_engine_timeout_ms(qv_engine *e) { return next_timer(e, 1); }

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

/* Advance the calls' own timers (retry waits, idle limits). */
static int tick_calls(qv_engine *e, double now) {
  qv_link *l, *next;
  int acted = 0;
  for (l = e->calls.next; l != &e->calls; l = next) {
    qv_call *c = (qv_call *)l;
    qv_call_state before = qv_call_state_of(c);
    next = l->next;                /* a tick may unlink l */
    qv_call_tick(c, now);
    if (qv_call_state_of(c) != before) acted = 1;
  }
  return acted;
}

void qv_engine_step(qv_engine *e) {
  qv_watch_event evs[QV_EVENTS];
  int round;
  /* A few rounds: starting a transfer arms a zero timer that curl wants
  ** serviced at once, and finishing one may start a retry. */
  for (round = 0; round < 4; round++) {
    int n, i, running, acted = 0;
    n = qv_watch_wait(e->watch, evs, QV_EVENTS, 0);
    for (i = 0; i < n; i++) {
      int mask = 0;
      if (evs[i].events & QV_WATCH_IN) mask |= CURL_CSELECT_IN;
      if (evs[i].events & QV_WATCH_OUT) mask |= CURL_CSELECT_OUT;
      if (evs[i].events & QV_WATCH_ERR) mask |= CURL_CSELECT_ERR;
      curl_multi_socket_action(e->multi, evs[i].fd, mask, &running);
      acted = 1;
    }
    if (e->curl_deadline >= 0 && e->curl_deadline <= qv_now()) {
      e->curl_deadline = -1.0;
      curl_multi_socket_action(e->multi, CURL_SOCKET_TIMEOUT, 0, &running);
      acted = 1;
    }
    read_done(e);
    if (tick_calls(e, qv_now())) acted = 1;
    if (!acted && n < QV_EVENTS) break;
  }
}

int qv_engine_wait(qv_engine *e, long ms) {
  qv_watch_event ev;
  long t = next_timer(e, 0);            /* our own wait sees the sockets */
  if (t >= 0 && (ms < 0 || t < ms)) ms = t;
  if (ms < 0) ms = 1000;          /* nothing scheduled: do not sleep forever */
  if (ms == 0) return 0;
  /* both backends are level-triggered: what this wait sees, the next
  ** step sees again and acts on */
  return qv_watch_wait(e->watch, &ev, 1, ms) < 0 ? -1 : 0;
}
