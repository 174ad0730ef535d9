/*
** qv_state: what the binding keeps per Lua state, and the three services
** every binding unit uses: the engine, JSON through lua-cjson, and the
** interpreter's interrupt. Module functions carry three upvalues (no C
** globals): the state userdata (the engine, made on first use and made
** again in a forked child), the cjson module, and a tiny Lua function
** that gives a pending debug hook (the interpreter's Ctrl-C) its chance
** while C code waits. The state userdata is also kept in the registry,
** so a module loaded twice in one Lua state shares one engine.
*/
#ifndef QV_STATE_H
#define QV_STATE_H

#include "qv_compat.h"
#include "qv_engine.h"
#include "qv_scrub.h"

#pragma GCC visibility push(hidden)

#define QV_VERSION "0.2.0"
#define QV_STATE_MT "qwenvl.state"
#define QV_UPV_STATE lua_upvalueindex(1)
#define QV_UPV_CJSON lua_upvalueindex(2)
#define QV_UPV_HOOKPOINT lua_upvalueindex(3)
#define QV_NUPVALUES 3

/* Push the three upvalues (creating the state on first use). */
void qv_state_push_upvalues(lua_State *L);

/* The engine of this process; raises only if none can be made. */
qv_engine *qv_state_engine(lua_State *L);

/* Let a debug hook set by a signal handler run now: lua.c and luajit.c
** turn Ctrl-C into a hook that raises "interrupted!" at the next Lua
** instruction, and C code that waits never reaches one. Raises that
** error (and only when a hook is set). */
void qv_state_hookpoint(lua_State *L);

/* 1 if the value at idx is the interpreter's interrupt error. */
int qv_state_is_interrupt(lua_State *L, int idx);

/* lua_pcall that lets the interrupt through: 0 with the results, or -1
** with the error object on top; an interrupt is raised again. */
int qv_pcall(lua_State *L, int nargs, int nresults);

/* JSON through the cjson upvalue. Decode pushes the value and returns 0,
** or pushes nothing and returns -1 when s is not JSON. Encode pushes the
** text of the value at idx, or nothing and -1. */
int qv_json_decode(lua_State *L, const char *s, size_t n);
int qv_json_encode(lua_State *L, int idx);

/* Push t[k] when it is a string and return its bytes (*n set); else
** NULL and nothing pushed. */
const char *qv_field_string(lua_State *L, int t, const char *k, size_t *n);

/* Push t[k] when it is a table and return 1; else 0 and nothing pushed. */
int qv_field_table(lua_State *L, int t, const char *k);

/* Push s[0..n) with every secret replaced (qv_scrub). */
void qv_push_scrubbed(lua_State *L, const qv_secrets *sec, const char *s,
                      size_t n);

/* Replace every string value of the table at idx (one level) by its
** scrubbed form. */
void qv_scrub_fields(lua_State *L, int idx, const qv_secrets *sec);

#pragma GCC visibility pop
#endif
