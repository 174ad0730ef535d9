/* qv_body: the chat request body (see qv_body.h). */
#include <stdio.h>
#include <string.h>

#include "qv_body.h"
#include "qv_error.h"
#include "qv_state.h"
#include "qv_text.h"

/* Fields qwenvl sets itself; `extra` may not override them. */
static const char *const reserved[] = { "model", "messages", "stream",
                                        "stream_options", NULL };

static void set_str(lua_State *L, const char *k, const char *v) {
  lua_pushstring(L, v);
  lua_setfield(L, -2, k);
}

/* A placeholder no caller text can contain by accident. */
static void placeholder(char *out, size_t size, const void *nonce, int k) {
  snprintf(out, size, "qvimg-%p-%d", nonce, k);
}

/* The user content: image parts, then the text part. */
static void push_content(lua_State *L, const qv_body_in *in, const void *nonce) {
  int i, n = in->images ? in->images->n : 0;
  char ph[64];
  lua_createtable(L, n + 1, 0);
  for (i = 0; i < n; i++) {
    const qv_image_in *im = &in->images->item[i];
    lua_createtable(L, 0, 4);
    set_str(L, "type", "image_url");
    lua_createtable(L, 0, 2);
    if (im->inline_data) {
      placeholder(ph, sizeof ph, nonce, i);
      set_str(L, "url", ph);
    } else {
      lua_rawgeti(L, in->sources, i + 1);
      lua_setfield(L, -2, "url");
    }
    set_str(L, "detail", in->detail);
    lua_setfield(L, -2, "image_url");
    /* DashScope's per-image limits sit beside image_url */
    if (in->min_pixels > 0) {
      lua_pushinteger(L, (lua_Integer)in->min_pixels);
      lua_setfield(L, -2, "min_pixels");
    }
    if (in->max_pixels > 0) {
      lua_pushinteger(L, (lua_Integer)in->max_pixels);
      lua_setfield(L, -2, "max_pixels");
    }
    lua_rawseti(L, -2, i + 1);
  }
  lua_createtable(L, 0, 2);
  set_str(L, "type", "text");
  lua_pushlstring(L, in->text, in->text_len);
  lua_setfield(L, -2, "text");
  lua_rawseti(L, -2, n + 1);
}

static void push_messages(lua_State *L, const qv_body_in *in, const void *nonce) {
  int n = 0;
  lua_createtable(L, 2, 0);
  if (in->system) {
    lua_createtable(L, 0, 2);
    set_str(L, "role", "system");
    set_str(L, "content", in->system);
    lua_rawseti(L, -2, ++n);
  }
  lua_createtable(L, 0, 2);
  set_str(L, "role", "user");
  push_content(L, in, nonce);
  lua_setfield(L, -2, "content");
  lua_rawseti(L, -2, ++n);
}

/* Copy extra's fields into the body at idx. */
static int merge_extra(lua_State *L, int body, int extra) {
  int i;
  lua_pushnil(L);
  while (lua_next(L, extra) != 0) {
    const char *k;
    if (lua_type(L, -2) != LUA_TSTRING) {
      lua_pop(L, 2);
      return qv_fail_field(L, "extra", "extra keys must be strings");
    }
    k = lua_tostring(L, -2);
    for (i = 0; reserved[i]; i++)
      if (strcmp(k, reserved[i]) == 0) {
        lua_pop(L, 2);
        return qv_fail_field(L, "extra", "extra.%s is set by qwenvl; use the "
                             "request field", reserved[i]);
      }
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, body);
  }
  return 0;
}

static void push_body(lua_State *L, const qv_body_in *in, const void *nonce) {
  lua_createtable(L, 0, 12);
  set_str(L, "model", in->model);
  push_messages(L, in, nonce);
  lua_setfield(L, -2, "messages");
  lua_pushinteger(L, in->max_tokens);
  lua_setfield(L, -2, "max_tokens");
  lua_pushnumber(L, in->temperature);
  lua_setfield(L, -2, "temperature");
  if (in->json) {
    lua_createtable(L, 0, 1);
    set_str(L, "type", "json_object");
    lua_setfield(L, -2, "response_format");
  }
  if (in->high) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "vl_high_resolution_images");
  }
  if (in->thinking >= 0) {
    lua_pushboolean(L, in->thinking);
    lua_setfield(L, -2, "enable_thinking");
  }
  if (in->thinking_budget > 0) {
    lua_pushinteger(L, in->thinking_budget);
    lua_setfield(L, -2, "thinking_budget");
  }
}

static void add_stream(lua_State *L, int body) {
  lua_pushboolean(L, 1);
  lua_setfield(L, body, "stream");
  lua_createtable(L, 0, 1);
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "include_usage");
  lua_setfield(L, body, "stream_options");
}

/* Write json into out with each placeholder replaced by its data URL. */
static void splice(qv_buf *out, const char *json, size_t n,
                   const qv_images *im, const void *nonce) {
  size_t i = 0;
  int k;
  char ph[80];
  for (k = 0; im != NULL && k < im->n; k++) {
    const char *at;
    size_t plen, j;
    if (!im->item[k].inline_data) continue;
    ph[0] = '"';
    placeholder(ph + 1, sizeof ph - 2, nonce, k);
    plen = strlen(ph);
    ph[plen++] = '"';
    ph[plen] = '\0';
    for (at = NULL, j = i; j + plen <= n; j++)
      if (json[j] == '"' && memcmp(json + j, ph, plen) == 0) { at = json + j; break; }
    if (at == NULL) continue;
    qv_buf_reserve(out, (size_t)(at - (json + i)) + qv_image_in_url_len(&im->item[k]) + 2);
    qv_buf_add(out, json + i, (size_t)(at - (json + i)));
    qv_buf_addc(out, '"');
    qv_image_in_url(out, &im->item[k]);
    qv_buf_addc(out, '"');
    i = (size_t)(at - json) + plen;
  }
  qv_buf_add(out, json + i, n - i);
}

/* The body as results show it: each placeholder replaced by a note. */
static void make_safe(lua_State *L, int body, const qv_images *im) {
  int i;
  char note[96];
  lua_getfield(L, body, "messages");
  lua_rawgeti(L, -1, (int)lua_rawlen(L, -1));    /* the user message */
  lua_getfield(L, -1, "content");
  for (i = 0; im != NULL && i < im->n; i++) {
    const qv_image_in *m = &im->item[i];
    if (!m->inline_data) continue;
    lua_rawgeti(L, -1, i + 1);
    lua_getfield(L, -1, "image_url");
    snprintf(note, sizeof note, "data:%s;base64,<omitted %lu chars>",
             qv_image_mime(m->format), (unsigned long)(m->b64 ? m->b64_len
             : qv_base64_len(m->bytes.len)));
    set_str(L, "url", note);
    lua_pop(L, 2);
  }
  lua_pop(L, 3);
}

int qv_body_build(lua_State *L, const qv_body_in *in, qv_buf *out) {
  int body, extra = in->extra ? qv_absindex(L, in->extra) : 0;
  size_t n, bad;
  const char *json;
  const void *nonce = (const void *)out;
  push_body(L, in, nonce);
  body = lua_gettop(L);
  if (extra && merge_extra(L, body, extra) < 0) {
    lua_remove(L, body);               /* nil, err stay */
    return -1;
  }
  if (in->stream) add_stream(L, body);
  if (qv_json_encode(L, body) != 0) {
    lua_settop(L, body - 1);
    return qv_fail_field(L, "extra", "the request cannot be encoded as JSON "
                         "(check extra)");
  }
  json = lua_tolstring(L, -1, &n);
  if (!qv_text_utf8_valid(json, n, &bad)) {
    lua_settop(L, body - 1);
    return qv_fail_field(L, "extra", "a string in extra is not valid UTF-8");
  }
  splice(out, json, n, in->images, nonce);
  lua_pop(L, 1);
  if (out->oom) {
    lua_settop(L, body - 1);
    return qv_fail_field(L, "image", "out of memory");
  }
  make_safe(L, body, in->images);
  return 0;
}
