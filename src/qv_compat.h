/*
** qv_compat: one source for Lua 5.1, LuaJIT 2.1, 5.3 and 5.4.
** The 5.2+ functions we need get qv_-prefixed replacements on 5.1, so a
** build against LuaJIT's headers neither clashes with LuaJIT's own exports
** nor depends on them (plain 5.1 lacks them, and Neovim may be either).
*/
#ifndef QV_COMPAT_H
#define QV_COMPAT_H

#include <lua.h>
#include <lauxlib.h>

#pragma GCC visibility push(hidden)

#if LUA_VERSION_NUM < 502
void qv_setfuncs(lua_State *L, const luaL_Reg *l, int nup);
void *qv_testudata(lua_State *L, int i, const char *tname);
#undef luaL_setfuncs
#undef luaL_testudata
#define luaL_setfuncs qv_setfuncs
#define luaL_testudata qv_testudata
#undef luaL_newlib
#define luaL_newlib(L, l) (lua_newtable(L), luaL_setfuncs(L, l, 0))
#define lua_rawlen lua_objlen
#define qv_absindex(L, i) \
  (((i) > 0 || (i) <= LUA_REGISTRYINDEX) ? (i) : lua_gettop(L) + (i) + 1)
#else
#define qv_absindex lua_absindex
#endif

/* Userdata with one user value (a table), the same on every version:
** 5.1/LuaJIT keep it as the userdata's environment. */
#if LUA_VERSION_NUM >= 504
#define qv_newudata(L, sz) lua_newuserdatauv(L, (sz), 1)
#define qv_setuservalue(L, i) lua_setiuservalue(L, (i), 1)
#define qv_getuservalue(L, i) ((void)lua_getiuservalue(L, (i), 1))
#elif LUA_VERSION_NUM >= 502
#define qv_newudata(L, sz) lua_newuserdata(L, (sz))
#define qv_setuservalue(L, i) lua_setuservalue(L, (i))
#define qv_getuservalue(L, i) ((void)lua_getuservalue(L, (i)))
#else
#define qv_newudata(L, sz) lua_newuserdata(L, (sz))
#define qv_setuservalue(L, i) ((void)lua_setfenv(L, (i)))
#define qv_getuservalue(L, i) lua_getfenv(L, (i))
#endif

/* Integer check that accepts 3.0 on every version. */
#if LUA_VERSION_NUM >= 503
#define qv_isinteger(L, i) \
  (lua_isinteger(L, i) || (lua_type(L, i) == LUA_TNUMBER && \
   lua_tonumber(L, i) == (lua_Number)(lua_Integer)lua_tonumber(L, i)))
#else
#define qv_isinteger(L, i) (lua_type(L, i) == LUA_TNUMBER && \
   lua_tonumber(L, i) == (lua_Number)(lua_Integer)lua_tonumber(L, i))
#endif

#pragma GCC visibility pop
#endif
