/*
** qv_watch: the set of sockets the engine waits on. Two backends behind
** one interface: epoll (Linux), whose single descriptor a host event loop
** can watch, and poll() (POSIX: macOS, the BSDs, any Linux), which has no
** such descriptor. The backend is chosen at build time: epoll where
** <sys/epoll.h> exists, poll() elsewhere or with -DQV_WATCH_POLL.
** No Lua, no libcurl.
*/
#ifndef QV_WATCH_H
#define QV_WATCH_H

#pragma GCC visibility push(hidden)

#define QV_WATCH_IN 1
#define QV_WATCH_OUT 2
#define QV_WATCH_ERR 4

typedef struct qv_watch qv_watch;

typedef struct qv_watch_event {
  int fd;
  int events;                   /* QV_WATCH_IN | QV_WATCH_OUT | QV_WATCH_ERR */
} qv_watch_event;

qv_watch *qv_watch_new(const char **why);

/* Close the set. After fork, a child must call qv_watch_abandon instead:
** an epoll set is shared with the parent, and removing sockets from it
** would remove the parent's. */
void qv_watch_free(qv_watch *w);
void qv_watch_abandon(qv_watch *w);

/* "epoll" or "poll". */
const char *qv_watch_backend(void);

/* The descriptor that is readable when a watched socket is ready, or -1
** where the backend has none (poll). */
int qv_watch_fd(const qv_watch *w);

/* 1 when a host loop cannot learn from a descriptor that a socket became
** ready (poll(): no single descriptor) and sockets are being watched: it
** must then step on a short timer. */
int qv_watch_needs_tick(const qv_watch *w);

/* Watch fd for events (QV_WATCH_IN | QV_WATCH_OUT); 0 stops watching it.
** Returns 0, or -1 when out of memory or the kernel refused. */
int qv_watch_set(qv_watch *w, int fd, int events);

/* Wait up to ms milliseconds (0: just look) for ready sockets; fills at
** most max events. Returns their number, 0 on timeout, or -1 when a
** signal interrupted the wait (errno EINTR) or the wait failed. */
int qv_watch_wait(qv_watch *w, qv_watch_event *out, int max, long ms);

#pragma GCC visibility pop
#endif
