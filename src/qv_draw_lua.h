/*
** qv_draw_lua: registers qwenvl.draw_boxes (qv_draw's Lua face) in the
** module table. Builds on qv_draw and qv_error.
*/
#ifndef QV_DRAW_LUA_H
#define QV_DRAW_LUA_H

#include "qv_compat.h"

#pragma GCC visibility push(hidden)

/* Set draw_boxes in the table at idx. */
void qv_draw_register(lua_State *L, int idx);

#pragma GCC visibility pop
#endif
