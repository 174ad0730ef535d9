/* qv_error: error tables and the one error rule (see qv_error.h). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "qv_error.h"

#define QV_MSG_MAX 1024

/* "qwenvl: <code>: <message> (status=..., ...)". The pieces are pushed
** and concatenated at the end, so the message may be any length. */
static int error_tostring(lua_State *L) {
  static const char *const extras[] = { "status", "api_code", "field",
                                        "request_id", "attempts", NULL };
  int i, n = 0, first = 1;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  lua_pushliteral(L, "qwenvl: "); n++;
  lua_getfield(L, 1, "code");
  if (!lua_isstring(L, -1)) { lua_pop(L, 1); lua_pushliteral(L, "error"); }
  n++;
  lua_getfield(L, 1, "message");
  if (lua_isstring(L, -1)) {
    lua_pushliteral(L, ": ");
    lua_insert(L, -2);
    n += 2;
  } else {
    lua_pop(L, 1);
  }
  for (i = 0; extras[i]; i++) {
    lua_getfield(L, 1, extras[i]);
    if (lua_isstring(L, -1)) {      /* strings and numbers */
      lua_pushfstring(L, "%s%s=", first ? " (" : ", ", extras[i]);
      lua_insert(L, -2);
      n += 2;
      first = 0;
    } else {
      lua_pop(L, 1);
    }
  }
  if (!first) { lua_pushliteral(L, ")"); n++; }
  lua_concat(L, n);
  return 1;
}

void qv_error_register(lua_State *L) {
  if (luaL_newmetatable(L, QV_ERROR_MT)) {
    lua_pushcfunction(L, error_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
}

void qv_error_push(lua_State *L, const char *code, const char *message) {
  lua_createtable(L, 0, 8);
  lua_pushstring(L, code);
  lua_setfield(L, -2, "code");
  lua_pushstring(L, message ? message : code);
  lua_setfield(L, -2, "message");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "retryable");
  lua_pushinteger(L, 0);
  lua_setfield(L, -2, "attempts");
  luaL_getmetatable(L, QV_ERROR_MT);
  lua_setmetatable(L, -2);
}

void qv_error_str(lua_State *L, const char *k, const char *v) {
  if (v == NULL || *v == '\0') return;
  lua_pushstring(L, v);
  lua_setfield(L, -2, k);
}

void qv_error_num(lua_State *L, const char *k, double v) {
  if (v < 0) return;
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}

void qv_error_int(lua_State *L, const char *k, long v) {
  if (v < 0) return;
  lua_pushinteger(L, (lua_Integer)v);
  lua_setfield(L, -2, k);
}

void qv_error_bool(lua_State *L, const char *k, int v) {
  lua_pushboolean(L, v);
  lua_setfield(L, -2, k);
}

static int failv(lua_State *L, const char *code, const char *field,
                 const char *fmt, va_list ap) {
  char msg[QV_MSG_MAX];
  vsnprintf(msg, sizeof msg, fmt, ap);
  lua_pushnil(L);
  qv_error_push(L, code, msg);
  qv_error_str(L, "field", field);
  return -1;
}

int qv_fail(lua_State *L, const char *code, const char *fmt, ...) {
  va_list ap;
  int r;
  va_start(ap, fmt);
  r = failv(L, code, NULL, fmt, ap);
  va_end(ap);
  return r;
}

int qv_fail_field(lua_State *L, const char *field, const char *fmt, ...) {
  va_list ap;
  int r;
  va_start(ap, fmt);
  r = failv(L, "invalid_request", field, fmt, ap);
  va_end(ap);
  return r;
}

void qv_error_settle(lua_State *L, int base) {
  int top = lua_gettop(L);
  if (top == base + 2) return;
  lua_pushvalue(L, top - 1);
  lua_replace(L, base + 1);
  lua_pushvalue(L, top);
  lua_replace(L, base + 2);
  lua_settop(L, base + 2);
}

int qv_return(lua_State *L, int rc, int n) {
  (void)L;
  return rc < 0 ? 2 : n;
}

int qv_error_new(lua_State *L) {
  const char *code = luaL_checkstring(L, 1);
  const char *msg = luaL_optstring(L, 2, code);
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
  qv_error_push(L, code, msg);
  if (lua_istable(L, 3)) {
    lua_pushnil(L);
    while (lua_next(L, 3) != 0) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_settable(L, -4);
    }
    /* the arguments win over the fields of the same name */
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, "code");
    lua_pushstring(L, msg);
    lua_setfield(L, -2, "message");
  }
  return 1;
}
