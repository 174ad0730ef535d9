/*
** qv_many: qwenvl.chat_many(requests, opts), a batch on one engine. At
** most `concurrency` requests are in flight; each starts when the rpm and
** tpm limits allow (qv_rate, with the request's estimated tokens); the
** results come back in input order, each a result or an error table,
** never a lost entry; on_result(i, res, err) runs as each one finishes
** (an error it raises is kept in a third return value, never loses an
** entry; if it returns false, nothing more is started and the requests
** not started end as canceled). The batch's own memory belongs to a userdata, and whatever
** raises while it runs (the interpreter's interrupt) closes every
** request in flight before it propagates. Builds on qv_handle.
*/
#ifndef QV_MANY_H
#define QV_MANY_H

#include "qv_compat.h"

#pragma GCC visibility push(hidden)

int qv_many_chat(lua_State *L);          /* qwenvl.chat_many */
void qv_many_register(lua_State *L);

#pragma GCC visibility pop
#endif
