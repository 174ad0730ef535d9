/*
** qv_handle: a request in flight, as Lua sees it (qwenvl.start), and the
** blocking call (a handle waited on at once: qwenvl.chat,
** qwenvl.list_models). A handle owns its call (qv_call), the streamed
** text (qv_stream) and a state table (its user value: the plan's info,
** what the stream kept, the final values). Builds on qv_request,
** qv_result and qv_state.
**
** Lua callbacks (on_delta) run only here, between engine steps, under a
** protected call: never inside a libcurl callback. Methods called from
** inside the handle's own callback are safe: close and cancel stop the
** request (the handle is released once the callback returns), poll and
** wait return "pending" at once (no re-entry), read returns what is
** unread. Any error raised while a method runs (the interpreter's
** interrupt, out of memory) closes the handle first, then propagates.
** A handle belongs to the process that started it: in a forked child
** every method fails at once with code "closed".
*/
#ifndef QV_HANDLE_H
#define QV_HANDLE_H

#include "qv_compat.h"

#pragma GCC visibility push(hidden)

#define QV_HANDLE_MT "qwenvl.handle"

typedef struct qv_handle qv_handle;

/* Plan the request at idx (a qv_kind) and start it: pushes the handle
** and returns 0, or pushes nil, err and returns -1. Needs the module's
** upvalues. */
int qv_handle_new(lua_State *L, int idx, int kind);

/* Start the plan (qv_request) at idx, the top of the stack: replaces it
** by the handle and returns 0, or by nil, err (-1). */
int qv_handle_from_plan(lua_State *L, int idx);

/* Move stream text along, run on_delta when due, settle the outcome once
** the call is over (the handle at hidx). */
void qv_handle_pump(lua_State *L, int hidx);

/* 1 when the final outcome is known (or the handle is closed). */
int qv_handle_done(lua_State *L, int hidx);

/* Push the final outcome: the result (0) or nil, err (-1). */
int qv_handle_push_final(lua_State *L, int hidx);

/* Release the call and buffers now (idempotent). */
void qv_handle_close(lua_State *L, int hidx);

/* The plan's info table of the handle at hidx, pushed. */
void qv_handle_push_info(lua_State *L, int hidx);

/* Module functions: qwenvl.start, qwenvl.chat, qwenvl.list_models,
** qwenvl.http. */
int qv_handle_start(lua_State *L);
int qv_handle_chat(lua_State *L);
int qv_handle_models(lua_State *L);
int qv_handle_http(lua_State *L);

/* The metatable, its methods bound to the module's upvalues (on top). */
void qv_handle_register(lua_State *L);

#pragma GCC visibility pop
#endif
