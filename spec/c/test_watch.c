/*
** Unit tests for qv_watch, the engine's socket set, on real sockets
** (socketpairs). Built twice by `make units-watch` (mk/watch.mk): once as
** the platform picks (epoll on Linux), once with -DQV_WATCH_POLL; every
** case holds for both, except where the backends differ by design (fd).
** WANT_BACKEND is the backend the build asked for. One line per failure,
** then "backend: N passed, N failed".
*/
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "qv_watch.h"

#ifndef WANT_BACKEND
#define WANT_BACKEND "epoll"
#endif

#define CHECK_FAIL_TAG "[" WANT_BACKEND "] "
#include "check.h"


static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static qv_watch *make(void) {
  const char *why = NULL;
  qv_watch *w = qv_watch_new(&why);
  CHECK(w != NULL);
  return w;
}

/* Events reported for fd in one wait, or -1 when fd was not reported. */
static int events_for(qv_watch *w, int fd, long ms) {
  qv_watch_event ev[64];
  int n = qv_watch_wait(w, ev, 64, ms), i, got = -1;
  for (i = 0; i < n; i++)
    if (ev[i].fd == fd) got = ev[i].events;
  return got;
}

static void test_backend(void) {
  qv_watch *w = make();
  CHECK(strcmp(qv_watch_backend(), WANT_BACKEND) == 0);
  if (strcmp(WANT_BACKEND, "poll") == 0) CHECK(qv_watch_fd(w) == -1);
  else CHECK(qv_watch_fd(w) >= 0);
  qv_watch_free(w);
  qv_watch_free(NULL);
}

static void test_readable_writable(void) {
  qv_watch *w = make();
  qv_watch_event ev;
  int sv[2];
  char c = 'x';
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  /* nothing watched yet: an empty wait times out */
  CHECK(qv_watch_wait(w, &ev, 1, 0) == 0);
  CHECK(qv_watch_set(w, sv[0], QV_WATCH_IN) == 0);
  CHECK(events_for(w, sv[0], 0) == -1);                /* no data */
  CHECK(write(sv[1], &c, 1) == 1);
  CHECK(events_for(w, sv[0], 1000) == QV_WATCH_IN);
  /* level-triggered: still readable until read */
  CHECK(events_for(w, sv[0], 0) == QV_WATCH_IN);
  CHECK(read(sv[0], &c, 1) == 1);
  CHECK(events_for(w, sv[0], 0) == -1);
  /* changing the interest of a watched socket (EPOLL_CTL_MOD) */
  CHECK(qv_watch_set(w, sv[0], QV_WATCH_IN | QV_WATCH_OUT) == 0);
  CHECK(events_for(w, sv[0], 0) == QV_WATCH_OUT);
  CHECK(qv_watch_set(w, sv[0], QV_WATCH_IN) == 0);
  CHECK(events_for(w, sv[0], 0) == -1);
  /* removed: data no longer reports; removing twice, or an fd never
  ** watched, is harmless */
  CHECK(write(sv[1], &c, 1) == 1);
  CHECK(qv_watch_set(w, sv[0], 0) == 0);
  CHECK(events_for(w, sv[0], 0) == -1);
  CHECK(qv_watch_set(w, sv[0], 0) == 0);
  CHECK(qv_watch_set(w, 12345, 0) == 0);
  /* and back */
  CHECK(qv_watch_set(w, sv[0], QV_WATCH_IN) == 0);
  CHECK(events_for(w, sv[0], 0) == QV_WATCH_IN);
  close(sv[0]);
  close(sv[1]);
  qv_watch_free(w);
}

static void test_hangup(void) {
  qv_watch *w = make();
  int sv[2], ev;
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  CHECK(qv_watch_set(w, sv[0], QV_WATCH_IN) == 0);
  close(sv[1]);
  /* the peer went away: readable (EOF), maybe with ERR; curl learns
  ** either way when it reads */
  ev = events_for(w, sv[0], 1000);
  CHECK(ev != -1 && (ev & QV_WATCH_IN) != 0);
  close(sv[0]);
  qv_watch_free(w);
}

static void test_timeout(void) {
  qv_watch *w = make();
  qv_watch_event ev;
  int sv[2];
  double t0;
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  CHECK(qv_watch_set(w, sv[0], QV_WATCH_IN) == 0);
  t0 = now_s();
  CHECK(qv_watch_wait(w, &ev, 1, 50) == 0);
  CHECK(now_s() - t0 >= 0.045);          /* it waited (no upper bound) */
  /* an empty set waits too (the engine sleeps on it between retries) */
  CHECK(qv_watch_set(w, sv[0], 0) == 0);
  t0 = now_s();
  CHECK(qv_watch_wait(w, &ev, 1, 30) == 0);
  CHECK(now_s() - t0 >= 0.025);
  close(sv[0]);
  close(sv[1]);
  qv_watch_free(w);
}

/* More ready sockets than one wait reports: successive waits must report
** every one of them (no socket starves behind the first max). Sockets
** are removed from the middle of the set between waits, as curl does
** when a transfer ends. */
#define NPAIRS 40
static void test_many_ready(void) {
  qv_watch *w = make();
  int sv[NPAIRS][2], seen[NPAIRS], i, round, all = 1;
  char c = 'y';
  for (i = 0; i < NPAIRS; i++) {
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv[i]) == 0);
    CHECK(write(sv[i][1], &c, 1) == 1);
    CHECK(qv_watch_set(w, sv[i][0], QV_WATCH_IN) == 0);
    seen[i] = 0;
  }
  /* 6 per wait, 40 ready: 7 waits cover all when nothing starves; allow
  ** a few more */
  for (round = 0; round < 10; round++) {
    qv_watch_event ev[6];
    int n = qv_watch_wait(w, ev, 6, 0), k;
    CHECK(n == 6);
    for (k = 0; k < n; k++) {
      for (i = 0; i < NPAIRS; i++)
        if (sv[i][0] == ev[k].fd) { seen[i]++; CHECK(ev[k].events == QV_WATCH_IN); }
    }
  }
  for (i = 0; i < NPAIRS; i++) if (seen[i] == 0) all = 0;
  CHECK(all);
  /* drop every other socket; the rest still report, the dropped never */
  for (i = 0; i < NPAIRS; i += 2) CHECK(qv_watch_set(w, sv[i][0], 0) == 0);
  for (i = 0; i < NPAIRS; i++) seen[i] = 0;
  for (round = 0; round < 4; round++) {
    qv_watch_event ev[64];
    int n = qv_watch_wait(w, ev, 64, 0), k;
    CHECK(n == NPAIRS / 2);
    for (k = 0; k < n; k++)
      for (i = 0; i < NPAIRS; i++)
        if (sv[i][0] == ev[k].fd) seen[i]++;
  }
  for (i = 0; i < NPAIRS; i++) CHECK(seen[i] == (i % 2 ? 4 : 0));
  for (i = 0; i < NPAIRS; i++) { close(sv[i][0]); close(sv[i][1]); }
  qv_watch_free(w);
}

/* A closed descriptor's number comes back for a new socket (curl closes
** and opens connections all the time): watching the new one must work. */
static void test_fd_reuse(void) {
  qv_watch *w = make();
  int a[2], b[2], old;
  char c = 'z';
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, a) == 0);
  CHECK(qv_watch_set(w, a[0], QV_WATCH_IN) == 0);
  old = a[0];
  CHECK(qv_watch_set(w, a[0], 0) == 0);            /* CURL_POLL_REMOVE */
  close(a[0]);
  close(a[1]);
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, b) == 0);
  CHECK(b[0] == old);                               /* lowest free number */
  CHECK(qv_watch_set(w, b[0], QV_WATCH_IN) == 0);
  CHECK(write(b[1], &c, 1) == 1);
  CHECK(events_for(w, b[0], 1000) == QV_WATCH_IN);
  close(b[0]);
  close(b[1]);
  qv_watch_free(w);
}

/* A descriptor closed while still watched (a host or library bug; curl
** always removes first) must not turn every wait into a busy loop: epoll
** forgets it by itself, poll() reports it once and forgets it. */
static void test_closed_while_watched(void) {
  qv_watch *w = make();
  qv_watch_event ev[4];
  int a[2], b[2], n, i;
  double t0;
  char c = 'q';
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, a) == 0);
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, b) == 0);
  CHECK(qv_watch_set(w, a[0], QV_WATCH_IN) == 0);
  CHECK(qv_watch_set(w, b[0], QV_WATCH_IN) == 0);
  close(a[0]);
  /* at most one report of it, as an error */
  for (i = 0; i < 2; i++) {
    int k;
    n = qv_watch_wait(w, ev, 4, 0);
    CHECK(n >= 0);
    for (k = 0; k < n; k++) CHECK(ev[k].fd == a[0] && ev[k].events == QV_WATCH_ERR && i == 0);
  }
  t0 = now_s();
  CHECK(qv_watch_wait(w, ev, 4, 50) == 0);
  CHECK(now_s() - t0 >= 0.045);
  /* the other socket is still watched */
  CHECK(write(b[1], &c, 1) == 1);
  CHECK(events_for(w, b[0], 1000) == QV_WATCH_IN);
  close(a[1]);
  close(b[0]);
  close(b[1]);
  qv_watch_free(w);
}

static void on_alarm(int sig) { (void)sig; }

/* A signal during a wait ends it with -1/EINTR, so the binding can run
** the interpreter's hook (Ctrl-C) instead of sleeping on. */
static void test_eintr(void) {
  qv_watch *w = make();
  qv_watch_event ev;
  struct sigaction sa;
  struct itimerval it;
  int r, e;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alarm;            /* no SA_RESTART */
  sigemptyset(&sa.sa_mask);
  CHECK(sigaction(SIGALRM, &sa, NULL) == 0);
  memset(&it, 0, sizeof it);
  it.it_value.tv_usec = 20000;
  CHECK(setitimer(ITIMER_REAL, &it, NULL) == 0);
  r = qv_watch_wait(w, &ev, 1, 5000);
  e = errno;
  CHECK(r == -1 && e == EINTR);
  qv_watch_free(w);
}

int main(void) {
  test_backend();
  test_readable_writable();
  test_hangup();
  test_timeout();
  test_many_ready();
  test_fd_reuse();
  test_closed_while_watched();
  test_eintr();
  return check_summary("qv_watch " WANT_BACKEND);
}
