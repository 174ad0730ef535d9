/*
** qv_draw_lua: qwenvl.draw_boxes(image_path, out_path, boxes), the Lua
** face of qv_draw. Boxes are read with raw access (no metamethods run,
** so the label strings stay anchored in the caller's tables while the
** picture is drawn) into a userdata, which the GC frees whatever happens.
*/
#include <math.h>
#include <string.h>

#include "qv_draw.h"
#include "qv_draw_lua.h"
#include "qv_error.h"

/* t[k] (raw) onto the stack. */
static int rawfield(lua_State *L, int t, const char *k) {
  lua_pushstring(L, k);
  lua_rawget(L, t);
  return lua_type(L, -1);
}

static int is_finite(double v) { return v == v && v < HUGE_VAL && v > -HUGE_VAL; }

/* Numbers t[k] for each name in ks into v; 1 when all are finite numbers,
** 0 when none is present, -1 otherwise. */
static int numbers(lua_State *L, int t, const char *const *ks, int n, double *v) {
  int i, got = 0;
  for (i = 0; i < n; i++) {
    int ty = rawfield(L, t, ks[i]);
    if (ty == LUA_TNUMBER) {
      v[i] = (double)lua_tonumber(L, -1);
      if (!is_finite(v[i])) { lua_pop(L, 1); return -1; }
      got++;
    } else if (ty != LUA_TNIL) {
      lua_pop(L, 1);
      return -1;
    }
    lua_pop(L, 1);
  }
  return got == n ? 1 : got == 0 ? 0 : -1;
}

/* color = {r, g, b} with whole numbers 0..255: 1, absent: 0, else -1. */
static int colour(lua_State *L, int t, qv_draw_item *it) {
  int i, ty = rawfield(L, t, "color");
  if (ty == LUA_TNIL) { lua_pop(L, 1); return 0; }
  if (ty != LUA_TTABLE) { lua_pop(L, 1); return -1; }
  for (i = 0; i < 3; i++) {
    double v;
    lua_rawgeti(L, -1, i + 1);
    if (lua_type(L, -1) != LUA_TNUMBER) { lua_pop(L, 2); return -1; }
    v = (double)lua_tonumber(L, -1);
    lua_pop(L, 1);
    if (!(v >= 0 && v <= 255) || v != floor(v)) { lua_pop(L, 1); return -1; }
    it->rgb[i] = (unsigned char)v;
  }
  lua_pop(L, 1);
  it->has_rgb = 1;
  return 1;
}

/* boxes[i] (a table at t) into it; 0, or -1 with nil, err pushed. */
static int read_box(lua_State *L, int t, int i, qv_draw_item *it) {
  static const char *const box[] = { "x1", "y1", "x2", "y2" };
  static const char *const pt[] = { "x", "y" };
  double v[4];
  int b, p, ty;
  char field[32];
  snprintf(field, sizeof field, "boxes[%d]", i);
  if (!lua_istable(L, t)) return qv_fail_field(L, field, "%s must be a table", field);
  b = numbers(L, t, box, 4, v);
  if (b == 1) {
    it->x1 = v[0]; it->y1 = v[1]; it->x2 = v[2]; it->y2 = v[3];
  }
  p = b == 1 ? 0 : numbers(L, t, pt, 2, v);
  if (p == 1) {
    it->point = 1;
    it->x1 = it->x2 = v[0];
    it->y1 = it->y2 = v[1];
  }
  if (b != 1 && p != 1)
    return qv_fail_field(L, field, "%s needs x1, y1, x2, y2 (a box) or x, y (a point), "
                         "as finite numbers", field);
  ty = rawfield(L, t, "label");
  if (ty == LUA_TSTRING) {
    it->label = lua_tolstring(L, -1, &it->label_len);   /* anchored in the box */
  } else if (ty != LUA_TNIL) {
    lua_pop(L, 1);
    return qv_fail_field(L, field, "%s.label must be a string", field);
  }
  lua_pop(L, 1);
  if (colour(L, t, it) < 0)
    return qv_fail_field(L, field, "%s.color must be {r, g, b} with whole numbers 0-255", field);
  return 0;
}

static void set_int(lua_State *L, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}

/* qwenvl.draw_boxes(image_path, out_path, boxes [, {check = true}])
** -> true, info | nil, err */
static int m_draw_boxes(lua_State *L) {
  const char *in = luaL_checkstring(L, 1), *out = luaL_checkstring(L, 2);
  const char *code = NULL, *why = NULL;
  qv_draw_item *items;
  qv_draw_info *info;
  size_t n, i;
  int check = 0;
  luaL_checktype(L, 3, LUA_TTABLE);
  if (!lua_isnoneornil(L, 4)) {
    luaL_checktype(L, 4, LUA_TTABLE);
    rawfield(L, 4, "check");
    check = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  lua_settop(L, 3);
  if (check) {
    qv_draw_info ci;
    if (qv_draw_check(in, out, &ci, &code, &why) != 0)
      return qv_return(L, qv_fail(L, code, "%s", why), 0);
    lua_pushboolean(L, 1);
    lua_createtable(L, 0, 3);
    set_int(L, "original_width", ci.in_width);
    set_int(L, "original_height", ci.in_height);
    if (ci.orientation > 1) set_int(L, "original_orientation", ci.orientation);
    return 2;
  }
  n = (size_t)lua_rawlen(L, 3);
  if (n > QV_DRAW_MAX_ITEMS)
    return qv_return(L, qv_fail_field(L, "boxes", "at most %d boxes are drawn (got %lu)",
                                      QV_DRAW_MAX_ITEMS, (unsigned long)n), 0);
  items = (qv_draw_item *)lua_newuserdata(L, (n ? n : 1) * sizeof *items);
  info = (qv_draw_info *)lua_newuserdata(L, sizeof *info);
  memset(items, 0, (n ? n : 1) * sizeof *items);
  for (i = 0; i < n; i++) {
    lua_rawgeti(L, 3, (int)i + 1);
    if (read_box(L, lua_gettop(L), (int)i + 1, &items[i]) < 0) return qv_return(L, -1, 0);
    lua_pop(L, 1);
  }
  if (qv_draw_boxes(in, out, items, n, info, &code, &why) != 0)
    return qv_return(L, qv_fail(L, code, "%s", why), 0);
  lua_pushboolean(L, 1);
  lua_createtable(L, 0, 6);
  set_int(L, "width", info->width);
  set_int(L, "height", info->height);
  set_int(L, "original_width", info->in_width);
  set_int(L, "original_height", info->in_height);
  set_int(L, "labels", info->labels);
  if (info->orientation > 1) set_int(L, "original_orientation", info->orientation);
  if (info->labels_failed > 0) {
    set_int(L, "labels_failed", info->labels_failed);
    lua_pushliteral(L, "some labels could not be drawn (no fonts for libvips' text?)");
    lua_setfield(L, -2, "warning");
  }
  return 2;
}

void qv_draw_register(lua_State *L, int idx) {
  idx = qv_absindex(L, idx);
  lua_pushcfunction(L, m_draw_boxes);
  lua_setfield(L, idx, "draw_boxes");
}
