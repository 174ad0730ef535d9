/*
** qv_result: what a finished call means to the caller: a result table
** (text, model, usage, json, ...) or nil and an error table with the
** code a caller can switch on. Reads only the call's outcome
** (qv_call_outcome), the stream (qv_stream) and the handle's state table
** (the plan's info, what the stream kept). Every string that came from
** the server is scrubbed of the key before the caller sees it.
**
** The state table at st: plan (the info table of qv_request), and what
** qv_stream kept: model, usage, finish_reason, body_request_id, body_id,
** stream_error, bad_event, callback_error.
*/
#ifndef QV_RESULT_H
#define QV_RESULT_H

#include "qv_compat.h"
#include "qv_call.h"
#include "qv_request.h"
#include "qv_stream.h"

#pragma GCC visibility push(hidden)

/* Push the result and return 0, or push nil, err and return -1. */
int qv_result_push(lua_State *L, const qv_call_outcome *out, int st,
                   qv_stream *s, qv_plan *p);

/* The parts of a chat completion body the result needs, decoded: pushes
** the body table and returns 0, or -1 with nothing pushed. */
int qv_result_decode(lua_State *L, const char *body, size_t n);

#pragma GCC visibility pop
#endif
