/*
** qv_lua: the pieces of the Lua binding and how they meet.
** Module functions carry two upvalues (no C globals): the engine
** userdata and the cjson module. Requests are validated and encoded by
** qv_request, run as qv_call under a handle (qv_handle), and turned into
** result or error tables by qv_result.
*/
#ifndef QV_LUA_H
#define QV_LUA_H

#include <stdarg.h>

#include "qv_compat.h"
#include "qv_call.h"

#define QV_VERSION "0.1.0"
#define QV_ENGINE_MT "qwenvl.engine"
#define QV_HANDLE_MT "qwenvl.handle"
#define QV_ERROR_MT "qwenvl.error"

#define QV_UPV_ENGINE lua_upvalueindex(1)
#define QV_UPV_CJSON lua_upvalueindex(2)

/* The engine is made on first use, and made again in a forked child (an
** nginx worker after init_by_lua): the parent's epoll set and connections
** are not the child's to use, nor to close. */
typedef struct qv_engine_ud { qv_engine *engine; long pid; } qv_engine_ud;

/* qwenvl.c */
qv_engine *qv_lua_engine(lua_State *L);       /* from the upvalue; raises
                                                 only if none can be made */

/* qv_request.c: validate request table at idx. On success pushes the
** "plan" table (what qv_handle and qv_result need: body without base64,
** images, url, flags) and fills *o, *body, *len (caller owns them);
** returns 1. On invalid input pushes nil, err and returns 0. Needs the
** module upvalues. `kind` is "chat" or "models". */
int qv_request_plan(lua_State *L, int idx, const char *kind,
                    qv_call_opts *o, char **body, size_t *len);
/* Push {region = base URL} for the known regions. */
void qv_request_regions(lua_State *L);
/* Push {base_url, region, has_key, key_source} for an options table. */
void qv_request_config(lua_State *L, int idx);

/* Text gathered from a stream, and what the caller has not seen yet. */
typedef struct qv_stream {
  qv_buf text, reasoning;          /* everything so far */
  qv_buf pend_text, pend_reason;   /* not yet given to on_delta */
  qv_buf unread_text, unread_reason; /* not yet returned by h:read() */
  double last_emit;
  int done;                        /* saw [DONE] or finish_reason */
  int failed;                      /* an error event or a callback error */
} qv_stream;

void qv_stream_init(qv_stream *s);
void qv_stream_free(qv_stream *s);

/* qv_result.c */
void qv_error_push(lua_State *L, const char *code, const char *message,
                   long status, int retryable, int attempts);
void qv_error_set(lua_State *L, const char *field, const char *value);
#if defined(__GNUC__)
#define QV_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define QV_PRINTF(f, a)
#endif
/* Push nil, {code="invalid_request", field=field, message=...}; returns 0. */
int qv_error_invalid(lua_State *L, const char *field, const char *fmt, ...)
  QV_PRINTF(3, 4);
int qv_error_invalidv(lua_State *L, const char *field, const char *fmt,
                      va_list ap) QV_PRINTF(3, 0);
void qv_error_register(lua_State *L);
/* Decode a JSON string with cjson (upvalue); pushes value or nothing. */
int qv_json_decode(lua_State *L, const char *s, size_t n);
int qv_json_encode(lua_State *L, int idx);     /* pushes string or nothing */
/* Stream events -> s and the state table at st (usage, model, error). */
void qv_result_events(lua_State *L, int st, qv_stream *s, const char *p,
                      size_t n);
/* Call st.on_delta with pending text when due (force: all of it). Returns
** 0, or -1 after a callback error (recorded in st.callback_error). */
int qv_result_emit(lua_State *L, int st, qv_stream *s, int force);
/* Final outcome of a finished call: pushes result or nil, err; 2 values. */
int qv_result_finish(lua_State *L, qv_call *c, int st, qv_stream *s);

/* qv_handle.c */
void qv_handle_register(lua_State *L);
int qv_handle_start(lua_State *L);             /* qwenvl.start */
int qv_handle_chat(lua_State *L);              /* qwenvl.chat */
int qv_handle_models(lua_State *L);            /* qwenvl.list_models */
int qv_handle_chat_many(lua_State *L);         /* qwenvl.chat_many */

#endif
