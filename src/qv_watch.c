/* qv_watch: epoll or poll() behind one interface (see qv_watch.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qv_watch.h"

#if !defined(QV_WATCH_POLL) && !defined(__linux__)
#define QV_WATCH_POLL 1
#endif

#ifndef QV_WATCH_POLL

#include <sys/epoll.h>

struct qv_watch { int epfd; };

const char *qv_watch_backend(void) { return "epoll"; }

qv_watch *qv_watch_new(const char **why) {
  qv_watch *w = malloc(sizeof *w);
  if (w == NULL) { *why = "out of memory"; return NULL; }
  w->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (w->epfd < 0) {
    *why = "epoll_create1 failed";
    free(w);
    return NULL;
  }
  return w;
}

void qv_watch_free(qv_watch *w) {
  if (w == NULL) return;
  close(w->epfd);
  free(w);
}

void qv_watch_abandon(qv_watch *w) {
  /* closing our copy of the descriptor leaves the parent's set intact */
  qv_watch_free(w);
}

int qv_watch_fd(const qv_watch *w) { return w->epfd; }
int qv_watch_needs_tick(const qv_watch *w) { (void)w; return 0; }

int qv_watch_set(qv_watch *w, int fd, int events) {
  struct epoll_event ev;
  if (events == 0) {
    epoll_ctl(w->epfd, EPOLL_CTL_DEL, fd, NULL);   /* may already be gone */
    return 0;
  }
  memset(&ev, 0, sizeof ev);
  ev.data.fd = fd;
  if (events & QV_WATCH_IN) ev.events |= EPOLLIN;
  if (events & QV_WATCH_OUT) ev.events |= EPOLLOUT;
  if (epoll_ctl(w->epfd, EPOLL_CTL_MOD, fd, &ev) == 0) return 0;
  if (errno == ENOENT && epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) == 0)
    return 0;
  return -1;
}

int qv_watch_wait(qv_watch *w, qv_watch_event *out, int max, long ms) {
  struct epoll_event evs[64];
  int n, i;
  if (max > 64) max = 64;
  n = epoll_wait(w->epfd, evs, max, ms > 60000 ? 60000 : (int)ms);
  if (n < 0) return -1;
  for (i = 0; i < n; i++) {
    out[i].fd = evs[i].data.fd;
    out[i].events = 0;
    if (evs[i].events & EPOLLIN) out[i].events |= QV_WATCH_IN;
    if (evs[i].events & EPOLLOUT) out[i].events |= QV_WATCH_OUT;
    if (evs[i].events & (EPOLLERR | EPOLLHUP)) out[i].events |= QV_WATCH_ERR;
  }
  return n;
}

#else

#include <poll.h>

struct qv_watch {
  struct pollfd *fds;
  int n, cap;
  int next;                     /* where the last wait stopped reporting */
};

const char *qv_watch_backend(void) { return "poll"; }

qv_watch *qv_watch_new(const char **why) {
  qv_watch *w = calloc(1, sizeof *w);
  if (w == NULL) *why = "out of memory";
  return w;
}

void qv_watch_free(qv_watch *w) {
  if (w == NULL) return;
  free(w->fds);
  free(w);
}

void qv_watch_abandon(qv_watch *w) { qv_watch_free(w); }

int qv_watch_fd(const qv_watch *w) { (void)w; return -1; }
int qv_watch_needs_tick(const qv_watch *w) { return w->n > 0; }

int qv_watch_set(qv_watch *w, int fd, int events) {
  int i;
  short want = (short)(((events & QV_WATCH_IN) ? POLLIN : 0) |
                       ((events & QV_WATCH_OUT) ? POLLOUT : 0));
  for (i = 0; i < w->n; i++) {
    if (w->fds[i].fd != fd) continue;
    if (events == 0) w->fds[i] = w->fds[--w->n];
    else w->fds[i].events = want;
    return 0;
  }
  if (events == 0) return 0;
  if (w->n == w->cap) {
    int cap = w->cap ? w->cap * 2 : 16;
    struct pollfd *p = realloc(w->fds, (size_t)cap * sizeof *p);
    if (p == NULL) return -1;
    w->fds = p;
    w->cap = cap;
  }
  w->fds[w->n].fd = fd;
  w->fds[w->n].events = want;
  w->fds[w->n].revents = 0;
  w->n++;
  return 0;
}

int qv_watch_wait(qv_watch *w, qv_watch_event *out, int max, long ms) {
  int r, i, k, got = 0;
  r = poll(w->fds, (nfds_t)w->n, ms > 60000 ? 60000 : (int)ms);
  if (r < 0) return -1;
  /* start where the last report stopped, so no socket starves when more
  ** than max are ready */
  for (k = 0; k < w->n && got < max && r > 0; k++) {
    struct pollfd *p;
    i = (w->next + k) % w->n;
    p = &w->fds[i];
    if (p->revents == 0) continue;
    out[got].fd = p->fd;
    out[got].events = 0;
    if (p->revents & POLLIN) out[got].events |= QV_WATCH_IN;
    if (p->revents & POLLOUT) out[got].events |= QV_WATCH_OUT;
    if (p->revents & (POLLERR | POLLHUP | POLLNVAL)) out[got].events |= QV_WATCH_ERR;
    /* closed without being removed: report it once, then forget it, as
    ** epoll does; kept, it would end every wait at once (a busy loop) */
    if (p->revents & POLLNVAL) p->fd = -1;
    p->revents = 0;
    got++;
  }
  if (w->n > 0) w->next = (w->next + k) % w->n;
  for (i = 0; i < w->n;) {
    if (w->fds[i].fd < 0) w->fds[i] = w->fds[--w->n];
    else i++;
  }
  if (w->next >= w->n) w->next = 0;
  return got;
}

#endif
