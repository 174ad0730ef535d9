/*
** qv_error: the one error rule of the binding, and the error table.
** A helper that fails pushes nil and an error table and returns -1;
** one that succeeds returns 0 (or a count). A function Lua calls ends in
** `return qv_return(L, rc, n)`: the two values on top after a failure,
** else its n results. Only misuse raises (a request that is not a
** table); everything that can go wrong at run time is a value.
** The table: code, message, status, api_code, request_id, retryable,
** attempts, field, ..., with a readable __tostring. Builds on Lua only.
*/
#ifndef QV_ERROR_H
#define QV_ERROR_H

#include "qv_compat.h"

#pragma GCC visibility push(hidden)

#define QV_ERROR_MT "qwenvl.error"

#if defined(__GNUC__)
#define QV_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define QV_PRINTF(f, a)
#endif

/* Push nil and {code=, message=, retryable=false, attempts=0}; -1. */
int qv_fail(lua_State *L, const char *code, const char *fmt, ...) QV_PRINTF(3, 4);

/* The same for a refused request: code "invalid_request" and field. */
int qv_fail_field(lua_State *L, const char *field, const char *fmt, ...)
  QV_PRINTF(3, 4);

/* Move the nil, err at the top of the stack down to base+1, base+2 and
** drop what was between (a helper's scratch values). */
void qv_error_settle(lua_State *L, int base);

/* rc < 0: the nil, err pushed by the failing helper; else n results. */
int qv_return(lua_State *L, int rc, int n);

/* Push a new error table (no nil below it). */
void qv_error_push(lua_State *L, const char *code, const char *message);

/* Set err[k] on the table at the top (strings: nothing when NULL or
** empty; numbers: nothing when negative). */
void qv_error_str(lua_State *L, const char *k, const char *v);
void qv_error_num(lua_State *L, const char *k, double v);
void qv_error_int(lua_State *L, const char *k, long v);
void qv_error_bool(lua_State *L, const char *k, int v);

/* qwenvl.error(code, message [, fields]): the same table from Lua, for
** Lua modules that fail in the core's shape. */
int qv_error_new(lua_State *L);

/* Create the metatable (once per state). */
void qv_error_register(lua_State *L);

#pragma GCC visibility pop
#endif
