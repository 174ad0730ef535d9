/* qv_body: the chat request body (see qv_body.h). */
#include <stdio.h>
#include <string.h>

#include "qv_body.h"
#include "qv_error.h"
#include "qv_messages.h"
#include "qv_state.h"
#include "qv_text.h"

/* Fields qwenvl sets itself; `extra` may not override them. */
static const char *const reserved[] = { "model", "messages", "stream",
                                        "stream_options", NULL };

static void set_str(lua_State *L, const char *k, const char *v) {
  lua_pushstring(L, v);
  lua_setfield(L, -2, k);
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

static void push_body(lua_State *L, const qv_body_in *in) {
  lua_createtable(L, 0, 12);
  set_str(L, "model", in->model);
  lua_pushvalue(L, in->messages);
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
  if (in->stream) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "stream");
    lua_createtable(L, 0, 1);
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "include_usage");
    lua_setfield(L, -2, "stream_options");
  }
}

/* The source number in a placeholder at json[i..n) ("qvmedia-<nonce>-k"
** in quotes), or 0. */
static int placeholder_at(const char *json, size_t i, size_t n,
                          const char *prefix, size_t plen, size_t *len) {
  size_t j = i + 1 + plen;
  int k = 0;
  if (json[i] != '"' || n - i < plen + 3 || memcmp(json + i + 1, prefix, plen) != 0)
    return 0;
  while (j < n && json[j] >= '0' && json[j] <= '9' && k < 1000000)
    k = k * 10 + (json[j++] - '0');
  if (j >= n || json[j] != '"' || k == 0) return 0;
  *len = j + 1 - i;
  return k;
}

/* Write json into out with each placeholder replaced by its data URL or
** URL. */
static void splice(qv_buf *out, const char *json, size_t n, const qv_images *im,
                   const void *nonce) {
  char prefix[64];
  size_t plen, i = 0, run = 0, len;
  qv_messages_placeholder(prefix, sizeof prefix, nonce, 0);
  plen = strlen(prefix) - 1;                 /* "qvmedia-<nonce>-" */
  qv_buf_reserve(out, n);
  while (i < n) {
    int k = json[i] == '"' ? placeholder_at(json, i, n, prefix, plen, &len) : 0;
    if (k == 0 || im == NULL || k > im->n) { i++; continue; }
    qv_buf_add(out, json + run, i - run);
    qv_buf_addc(out, '"');
    if (im->item[k - 1].inline_data) qv_image_in_url(out, &im->item[k - 1]);
    else qv_buf_add(out, im->item[k - 1].url, im->item[k - 1].url_len);
    qv_buf_addc(out, '"');
    i += len;
    run = i;
  }
  qv_buf_add(out, json + run, n - run);
}

/* The body as results show it: each placeholder (at its spot) becomes a
** note for an inline image or the URL. */
static void make_safe(lua_State *L, int spots, const qv_images *im) {
  int k;
  char note[96];
  for (k = 1; im != NULL && k <= im->n; k++) {
    const qv_image_in *m = &im->item[k - 1];
    lua_rawgeti(L, spots, 2 * k - 1);
    lua_rawgeti(L, spots, 2 * k);
    if (m->inline_data) {
      snprintf(note, sizeof note, "data:%s;base64,<omitted %lu chars>",
               qv_image_mime(m->format), (unsigned long)(m->b64 ? m->b64_len
               : qv_base64_len(m->bytes.len)));
      lua_pushstring(L, note);
    } else {
      lua_pushlstring(L, m->url, m->url_len);
    }
    lua_rawset(L, -3);
    lua_pop(L, 1);
  }
}

int qv_body_build(lua_State *L, const qv_body_in *in, qv_buf *out) {
  int body, extra = in->extra ? qv_absindex(L, in->extra) : 0;
  size_t n, bad;
  const char *json;
  push_body(L, in);
  body = lua_gettop(L);
  if (extra && merge_extra(L, body, extra) < 0) {
    lua_remove(L, body);               /* nil, err stay */
    return -1;
  }
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
  splice(out, json, n, in->images, in->nonce);
  lua_pop(L, 1);
  if (out->oom) {
    lua_settop(L, body - 1);
    return qv_fail_field(L, "image", "out of memory");
  }
  make_safe(L, in->spots, in->images);
  return 0;
}
