/*
** qv_engine: one curl multi handle per Lua state, driven without threads.
** Sockets are watched by an epoll set whose own descriptor is what a host
** event loop polls (readable = there is transfer work); timers (curl's,
** retry back-off, stream idle limits) are folded into timeout_ms. Nothing
** here blocks except qv_engine_wait, and nothing here calls Lua.
** The engine is reference counted: the Lua module and every call hold a
** reference, so finalizers may run in any order at lua_close.
*/
#ifndef QV_ENGINE_H
#define QV_ENGINE_H

#include <curl/curl.h>

typedef struct qv_engine qv_engine;
struct qv_call;

qv_engine *qv_engine_new(const char **why);
void qv_engine_retain(qv_engine *e);
void qv_engine_release(qv_engine *e);

int qv_engine_fd(const qv_engine *e);          /* -1 where epoll is missing */
long qv_engine_timeout_ms(qv_engine *e);       /* -1: nothing scheduled */
void qv_engine_step(qv_engine *e);             /* ready work, never blocks */
void qv_engine_wait(qv_engine *e, long ms);    /* sleep until work or ms */
int qv_engine_busy(const qv_engine *e);        /* calls not finished */

/* For qv_call: transfers and the list of live calls. */
CURL *qv_engine_take_easy(qv_engine *e);
void qv_engine_give_easy(qv_engine *e, CURL *h);
int qv_engine_start(qv_engine *e, CURL *h);    /* 0 or -1 */
void qv_engine_stop(qv_engine *e, CURL *h);
void qv_engine_link(qv_engine *e, struct qv_call *c);
void qv_engine_unlink(qv_engine *e, struct qv_call *c);

double qv_now(void);                           /* monotonic seconds */

#endif
