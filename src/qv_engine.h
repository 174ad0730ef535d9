/*
** qv_engine: the transfer engine, one per Lua state: a curl multi handle
** driven through curl_multi_socket_action, with the sockets in a qv_watch
** set (epoll or poll) and the timers (curl's, retry back-off, stream idle
** limits) folded into one timeout, so a host event loop can drive it
** (qwenvl.fd, qwenvl.timeout_ms, qwenvl.step) or the binding can block on
** it (qv_engine_wait). qv_engine and qv_call are one subsystem, like
** curl's multi and easy handles: the engine owns the multi and the list
** of live calls; each call owns its easy handle and attempts.
** Nothing here calls Lua. Reference counted: the Lua module and every
** call hold a reference, so finalizers may run in any order at lua_close.
** Fork: an engine belongs to the process that made it; in a forked child
** it is abandoned (qv_engine_owned is 0), never used or torn down, since
** its sockets and epoll set are shared with the parent.
*/
#ifndef QV_ENGINE_H
#define QV_ENGINE_H

#include <curl/curl.h>

#pragma GCC visibility push(hidden)

typedef struct qv_engine qv_engine;

/* The head of every qv_call: the engine's list of live calls. */
typedef struct qv_link { struct qv_link *prev, *next; } qv_link;

qv_engine *qv_engine_new(const char **why);
void qv_engine_retain(qv_engine *e);
void qv_engine_release(qv_engine *e);    /* in a forked child: forgets only */
int qv_engine_owned(const qv_engine *e); /* made by this process */

int qv_engine_fd(const qv_engine *e);          /* -1: no single descriptor */
/* When a host loop must step at the latest (-1: nothing scheduled); with
** the poll() backend at most 10 ms while sockets are watched. */
long qv_engine_timeout_ms(qv_engine *e);
void qv_engine_step(qv_engine *e);             /* ready work, never blocks */
/* Sleep until there is work or ms pass (< 0: until the next timer, at
** most a second). Returns -1 when a signal interrupted the sleep. */
int qv_engine_wait(qv_engine *e, long ms);
int qv_engine_busy(const qv_engine *e);        /* calls not finished */

/* Idle connections kept for reuse: at least 8; chat_many raises it to its
** concurrency while it runs and lowers it again for its tail, so that
** connections beyond it are closed as their transfers end. */
void qv_engine_keep_connections(qv_engine *e, long n);

/* For qv_call. */
CURL *qv_engine_take_easy(qv_engine *e);
void qv_engine_give_easy(qv_engine *e, CURL *h);
/* In a forked child: hold h untouched (it shares the parent's connection). */
void qv_engine_keep_easy(qv_engine *e, CURL *h);
int qv_engine_start(qv_engine *e, CURL *h);    /* 0 or -1 */
void qv_engine_stop(qv_engine *e, CURL *h);
void qv_engine_link(qv_engine *e, qv_link *l);
void qv_engine_unlink(qv_engine *e, qv_link *l);

double qv_now(void);                           /* monotonic seconds */

#pragma GCC visibility pop
#endif
