/* qv_messages: the conversation of a chat request (see qv_messages.h). */
#include <stdio.h>
#include <string.h>

#include "qv_messages.h"
#include "qv_error.h"
#include "qv_images.h"
#include "qv_text.h"

#define FIELD_MAX 96

typedef struct build {
  lua_State *L;
  const qv_messages_in *in;
  const void *nonce;
  qv_messages_out *out;
  int nsources, nvideos;
} build;

void qv_messages_placeholder(char *buf, size_t size, const void *nonce, int k) {
  snprintf(buf, size, "qvmedia-%p-%d", nonce, k);
}

static void set_str(lua_State *L, const char *k, const char *v) {
  lua_pushstring(L, v);
  lua_setfield(L, -2, k);
}

/* The frame-count limits DashScope documents per model family. */
static int max_frames(const char *model) {
  size_t n = strlen(model);
  if (qv_text_iprefix(model, n, "qwen3-vl-plus") || qv_text_iprefix(model, n, "qwen3-vl-flash"))
    return 2000;
  if (qv_text_iprefix(model, n, "qwen3.") || qv_text_iprefix(model, n, "qwen3-"))
    return qv_text_iprefix(model, n, "qwen3-vl") ? 512 : 8000;
  if (qv_text_iprefix(model, n, "qwen2.5-vl") || qv_text_iprefix(model, n, "qvq") ||
      qv_text_iprefix(model, n, "qwen-vl"))
    return 512;
  return 80;
}

/* Register the source string on top (popped) as media k; pushes its
** placeholder. slot: 0 for an image, v for a frame of video v. */
static int add_source(build *b, const char *field, int slot) {
  lua_State *L = b->L;
  char ph[64];
  size_t n;
  const char *s = lua_tolstring(L, -1, &n);
  if (s == NULL) return qv_fail_field(L, field, "%s must be a string", field);
  if (n == 0) return qv_fail_field(L, field, "%s must not be empty", field);
  /* a URL is written into the body as it is: no quote or backslash */
  if (!qv_text_iprefix(s, n, "data:") && (memchr(s, '"', n) || memchr(s, '\\', n)))
    return qv_fail_field(L, field, "%s contains a quote or a backslash", field);
  if (b->nsources >= QV_MAX_IMAGES * 40)
    return qv_fail_field(L, field, "too many images and frames");
  b->nsources++;
  lua_rawseti(L, b->out->sources, b->nsources);
  lua_pushstring(L, field);
  lua_rawseti(L, b->out->fields, b->nsources);
  lua_pushinteger(L, slot);
  lua_rawseti(L, b->out->slots, b->nsources);
  qv_messages_placeholder(ph, sizeof ph, b->nonce, b->nsources);
  lua_pushstring(L, ph);
  return 0;
}

/* Remember where the last source's placeholder sits: t[key] or t[index]. */
static void spot(build *b, int t, const char *key, int index) {
  lua_State *L = b->L;
  int n = b->nsources;
  lua_pushvalue(L, t);
  lua_rawseti(L, b->out->spots, 2 * n - 1);
  if (key) lua_pushstring(L, key); else lua_pushinteger(L, index);
  lua_rawseti(L, b->out->spots, 2 * n);
}

/* Pixel limits sent beside an image part. */
static void pixel_limits(build *b) {
  lua_State *L = b->L;
  if (b->in->min_pixels > 0) {
    lua_pushinteger(L, (lua_Integer)b->in->min_pixels);
    lua_setfield(L, -2, "min_pixels");
  }
  if (b->in->max_pixels > 0) {
    lua_pushinteger(L, (lua_Integer)b->in->max_pixels);
    lua_setfield(L, -2, "max_pixels");
  }
}

/* Push {type = "image_url", image_url = {url = <placeholder>, detail}}
** for the source string on top (popped). */
static int image_part(build *b, const char *field, const char *detail) {
  lua_State *L = b->L;
  if (add_source(b, field, 0) < 0) return -1;
  lua_createtable(L, 0, 4);
  set_str(L, "type", "image_url");
  lua_createtable(L, 0, 2);
  lua_pushvalue(L, -3);
  lua_setfield(L, -2, "url");
  set_str(L, "detail", detail ? detail : b->in->detail);
  spot(b, -1, "url", 0);
  lua_setfield(L, -2, "image_url");
  pixel_limits(b);
  lua_remove(L, -2);
  return 0;
}

static int check_fps(lua_State *L, const char *field, double fps) {
  if (!(fps >= 0.1 && fps <= 10))
    return qv_fail_field(L, field, "%s: fps must be between 0.1 and 10", field);
  return 0;
}

/* A list of frames at idx: push {type = "video", video = {...}, fps}. */
static int video_part(build *b, int list, const char *field, double fps) {
  lua_State *L = b->L;
  int n = 0, count = 0, i, limit = max_frames(b->in->model), v;
  char f[FIELD_MAX];
  list = qv_absindex(L, list);
  if (!lua_istable(L, list))
    return qv_fail_field(L, field, "%s must be a list of frames (paths, URLs, data URLs)", field);
  lua_pushnil(L);
  while (lua_next(L, list) != 0) { count++; lua_pop(L, 1); }
  n = (int)lua_rawlen(L, list);
  if (count != n) return qv_fail_field(L, field, "%s must be a list (keys 1..n, no holes)", field);
  if (n < 4 || n > limit)
    return qv_fail_field(L, field, "%s has %d frames; %s takes 4 to %d", field, n,
                         b->in->model, limit);
  if (fps > 0 && check_fps(L, field, fps) < 0) return -1;
  if (++b->nvideos > QV_MAX_VIDEOS)
    return qv_fail_field(L, field, "at most %d videos per request", QV_MAX_VIDEOS);
  v = b->nvideos;
  lua_createtable(L, 0, 1);
  lua_pushnumber(L, fps > 0 ? fps : 2);
  lua_setfield(L, -2, "fps");
  lua_rawseti(L, b->out->videos, v);
  lua_createtable(L, 0, 3);
  set_str(L, "type", "video");
  lua_createtable(L, n, 0);
  for (i = 1; i <= n; i++) {
    snprintf(f, sizeof f, "%.60s[%d]", field, i);
    lua_rawgeti(L, list, i);
    if (lua_type(L, -1) != LUA_TSTRING)
      return qv_fail_field(L, f, "%s must be a string", f);
    if (add_source(b, f, v) < 0) return -1;
    lua_rawseti(L, -2, i);
    spot(b, -1, NULL, i);
  }
  lua_setfield(L, -2, "video");
  if (fps > 0) {
    lua_pushnumber(L, fps);
    lua_setfield(L, -2, "fps");
  }
  return 0;
}

/* A clip by URL (https only: the service fetches it). */
static int video_url_part(build *b, const char *url, size_t n, const char *field,
                          double fps) {
  lua_State *L = b->L;
  if (!qv_text_iprefix(url, n, "https://") && !qv_text_iprefix(url, n, "http://"))
    return qv_fail_field(L, field, "%s must be an http(s) URL of the clip", field);
  if (qv_text_has_ctl(url, n, QV_CTL_SPACE) || !qv_text_utf8_valid(url, n, NULL) ||
      memchr(url, '"', n) || memchr(url, '\\', n))
    return qv_fail_field(L, field, "%s is not a usable URL", field);
  if (fps > 0 && check_fps(L, field, fps) < 0) return -1;
  lua_createtable(L, 0, 3);
  set_str(L, "type", "video_url");
  lua_createtable(L, 0, 1);
  lua_pushlstring(L, url, n);
  lua_setfield(L, -2, "url");
  lua_setfield(L, -2, "video_url");
  if (fps > 0) {
    lua_pushnumber(L, fps);
    lua_setfield(L, -2, "fps");
  }
  return 0;
}

/* ---- from prompt, image(s), video, system ---------------------------- */

static int from_fields(build *b) {
  lua_State *L = b->L;
  const qv_messages_in *in = b->in;
  int content, n = 0, msgs = b->out->messages, i, count;
  char f[FIELD_MAX];
  if (in->system) {
    lua_createtable(L, 0, 2);
    set_str(L, "role", "system");
    set_str(L, "content", in->system);
    lua_rawseti(L, msgs, (int)lua_rawlen(L, msgs) + 1);
  }
  lua_createtable(L, 4, 0);
  content = lua_gettop(L);
  if (in->image) {
    if (lua_type(L, in->image) != LUA_TSTRING)
      return qv_fail_field(L, "image", "image must be a string");
    lua_pushvalue(L, in->image);
    if (image_part(b, "image", NULL) < 0) return -1;
    lua_rawseti(L, content, ++n);
  }
  if (in->images) {
    if (!lua_istable(L, in->images))
      return qv_fail_field(L, "images", "images must be a list of strings");
    count = 0;
    lua_pushnil(L);
    while (lua_next(L, in->images) != 0) { count++; lua_pop(L, 1); }
    if (count == 0) return qv_fail_field(L, "images", "images must not be empty");
    if ((size_t)count != (size_t)lua_rawlen(L, in->images))
      return qv_fail_field(L, "images", "images must be a list (keys 1..n, no holes)");
    for (i = 1; i <= count; i++) {
      lua_rawgeti(L, in->images, i);
      if (lua_type(L, -1) != LUA_TSTRING)
        return qv_fail_field(L, "images", "images must be a list of strings");
      snprintf(f, sizeof f, "images[%d]", i);
      if (image_part(b, f, NULL) < 0) return -1;
      lua_rawseti(L, content, ++n);
    }
  }
  if (in->video) {
    if (video_part(b, in->video, "video", in->fps) < 0) return -1;
    lua_rawseti(L, content, ++n);
  }
  if (in->video_url) {
    size_t un;
    const char *u = lua_tolstring(L, in->video_url, &un);
    if (u == NULL) return qv_fail_field(L, "video_url", "video_url must be a string");
    if (video_url_part(b, u, un, "video_url", in->fps) < 0) return -1;
    lua_rawseti(L, content, ++n);
  }
  if (n == 0)
    return qv_fail_field(L, "image", "image (or images, video, video_url) is required");
  if (in->fps > 0 && !in->video && !in->video_url)
    return qv_fail_field(L, "fps", "fps goes with video or video_url");
  lua_createtable(L, 0, 2);
  set_str(L, "type", "text");
  lua_pushlstring(L, in->text, in->text_len);
  lua_setfield(L, -2, "text");
  lua_rawseti(L, content, ++n);
  lua_createtable(L, 0, 2);
  set_str(L, "role", "user");
  lua_pushvalue(L, content);
  lua_setfield(L, -2, "content");
  lua_rawseti(L, msgs, (int)lua_rawlen(L, msgs) + 1);
  lua_pop(L, 1);
  return 0;
}

/* ---- from the caller's messages ---------------------------------------- */

/* t[k] of the part at idx, as a string with its checks; NULL, nothing
** pushed when absent; -1 via *bad with an error pushed. */
static const char *part_string(lua_State *L, int idx, const char *k, size_t *n,
                               const char *field, int *bad) {
  const char *s;
  lua_getfield(L, idx, k);
  if (lua_isnil(L, -1)) { lua_pop(L, 1); return NULL; }
  if (lua_type(L, -1) != LUA_TSTRING) {
    *bad = qv_fail_field(L, field, "%s.%s must be a string", field, k);
    return NULL;
  }
  s = lua_tolstring(L, -1, n);
  if (!qv_text_utf8_valid(s, *n, NULL) || memchr(s, '\0', *n)) {
    *bad = qv_fail_field(L, field, "%s.%s is not valid UTF-8 text", field, k);
    return NULL;
  }
  lua_pop(L, 1);                      /* anchored in the caller's part */
  return s;
}

static int number_field(lua_State *L, int idx, const char *k, const char *field,
                        double lo, double hi, double *out) {
  double v;
  lua_getfield(L, idx, k);
  if (lua_isnil(L, -1)) { lua_pop(L, 1); return 0; }
  if (lua_type(L, -1) != LUA_TNUMBER) {
    lua_pop(L, 1);
    return qv_fail_field(L, field, "%s.%s must be a number", field, k);
  }
  v = (double)lua_tonumber(L, -1);
  lua_pop(L, 1);
  if (!(v >= lo && v <= hi) || v != (double)(long long)v)
    return qv_fail_field(L, field, "%s.%s is out of range", field, k);
  *out = v;
  return 1;
}

/* One part of a user message's content at idx: push the normalized part. */
static int message_part(build *b, int idx, const char *field, int user) {
  lua_State *L = b->L;
  size_t n = 0;
  int bad = 0;
  const char *type, *s;
  char f[FIELD_MAX];
  if (!lua_istable(L, idx)) return qv_fail_field(L, field, "%s must be a table", field);
  type = part_string(L, idx, "type", &n, field, &bad);
  if (bad) return -1;
  if (type == NULL) return qv_fail_field(L, field, "%s.type is required", field);
  if (strcmp(type, "text") == 0) {
    s = part_string(L, idx, "text", &n, field, &bad);
    if (bad) return -1;
    if (s == NULL) return qv_fail_field(L, field, "%s.text is required", field);
    lua_createtable(L, 0, 2);
    set_str(L, "type", "text");
    lua_pushlstring(L, s, n);
    lua_setfield(L, -2, "text");
    return 0;
  }
  if (!user)
    return qv_fail_field(L, field, "%s: only user messages carry images and videos", field);
  if (strcmp(type, "image_url") == 0) {
    const char *detail = NULL;
    double px;
    int obj;
    snprintf(f, sizeof f, "%.60s.image_url", field);
    lua_getfield(L, idx, "image_url");
    if (!lua_istable(L, -1)) return qv_fail_field(L, f, "%s must be a table with url", f);
    obj = lua_gettop(L);
    detail = part_string(L, obj, "detail", &n, f, &bad);
    if (bad) return -1;
    if (detail && strcmp(detail, "auto") && strcmp(detail, "low") && strcmp(detail, "high"))
      return qv_fail_field(L, f, "%s.detail must be auto, low or high", f);
    lua_getfield(L, obj, "url");
    snprintf(f, sizeof f, "%.60s.image_url.url", field);
    if (lua_type(L, -1) != LUA_TSTRING) return qv_fail_field(L, f, "%s must be a string", f);
    if (image_part(b, f, detail) < 0) return -1;
    lua_remove(L, obj);
    if (number_field(L, idx, "min_pixels", field, 1, 1e10, &px) < 0) return -1;
    if (number_field(L, idx, "max_pixels", field, 1, 1e10, &px) < 0) return -1;
    lua_getfield(L, idx, "min_pixels");
    lua_setfield(L, -2, "min_pixels");
    lua_getfield(L, idx, "max_pixels");
    lua_setfield(L, -2, "max_pixels");
    return 0;
  }
  if (strcmp(type, "video") == 0 || strcmp(type, "video_url") == 0) {
    double fps = 0;
    lua_getfield(L, idx, "fps");
    if (!lua_isnil(L, -1)) {
      if (lua_type(L, -1) != LUA_TNUMBER)
        return qv_fail_field(L, field, "%s.fps must be a number", field);
      fps = (double)lua_tonumber(L, -1);
      if (check_fps(L, field, fps) < 0) return -1;
    }
    lua_pop(L, 1);
    if (type[5] == '\0') {
      snprintf(f, sizeof f, "%.60s.video", field);
      lua_getfield(L, idx, "video");
      if (video_part(b, -1, f, fps) < 0) return -1;
      lua_remove(L, -2);
      return 0;
    }
    snprintf(f, sizeof f, "%.60s.video_url", field);
    lua_getfield(L, idx, "video_url");
    if (!lua_istable(L, -1)) return qv_fail_field(L, f, "%s must be a table with url", f);
    s = part_string(L, lua_gettop(L), "url", &n, f, &bad);
    if (bad) return -1;
    if (s == NULL) return qv_fail_field(L, f, "%s.url is required", f);
    if (video_url_part(b, s, n, f, fps) < 0) return -1;
    lua_remove(L, -2);
    return 0;
  }
  return qv_fail_field(L, field, "%s.type must be text, image_url, video or video_url "
                       "(got '%.40s')", field, type);
}

static int from_messages(build *b) {
  lua_State *L = b->L;
  int list = b->in->messages, n, count = 0, i, users = 0;
  char f[FIELD_MAX];
  if (!lua_istable(L, list)) return qv_fail_field(L, "messages", "messages must be a list");
  lua_pushnil(L);
  while (lua_next(L, list) != 0) { count++; lua_pop(L, 1); }
  n = (int)lua_rawlen(L, list);
  if (n == 0) return qv_fail_field(L, "messages", "messages must not be empty");
  if (count != n) return qv_fail_field(L, "messages", "messages must be a list (keys 1..n, no holes)");
  for (i = 1; i <= n; i++) {
    int m, user, j, parts;
    size_t rn = 0, cn;
    const char *role, *s;
    int bad = 0;
    snprintf(f, sizeof f, "messages[%d]", i);
    lua_rawgeti(L, list, i);
    m = lua_gettop(L);
    if (!lua_istable(L, m)) return qv_fail_field(L, f, "%s must be a table", f);
    role = part_string(L, m, "role", &rn, f, &bad);
    if (bad) return -1;
    if (role == NULL || (strcmp(role, "system") && strcmp(role, "user") &&
                         strcmp(role, "assistant")))
      return qv_fail_field(L, f, "%s.role must be system, user or assistant", f);
    user = strcmp(role, "user") == 0;
    users += user;
    lua_createtable(L, 0, 2);
    lua_pushlstring(L, role, rn);
    lua_setfield(L, -2, "role");
    lua_getfield(L, m, "content");
    if (lua_type(L, -1) == LUA_TSTRING) {
      s = lua_tolstring(L, -1, &cn);
      if (!qv_text_utf8_valid(s, cn, NULL) || memchr(s, '\0', cn))
        return qv_fail_field(L, f, "%s.content is not valid UTF-8 text", f);
      lua_setfield(L, -2, "content");
    } else if (lua_istable(L, -1)) {
      int src = lua_gettop(L), dst;
      if (!user && strcmp(role, "assistant") != 0)
        return qv_fail_field(L, f, "%s.content of a system message must be a string", f);
      parts = (int)lua_rawlen(L, src);
      if (parts == 0) return qv_fail_field(L, f, "%s.content must not be empty", f);
      lua_createtable(L, parts, 0);
      dst = lua_gettop(L);
      for (j = 1; j <= parts; j++) {
        char pf[FIELD_MAX];
        snprintf(pf, sizeof pf, "%.40s.content[%d]", f, j);
        lua_rawgeti(L, src, j);
        if (message_part(b, lua_gettop(L), pf, user) < 0) return -1;
        lua_rawseti(L, dst, j);
        lua_pop(L, 1);
      }
      lua_setfield(L, src - 1, "content");
      lua_pop(L, 1);
    } else {
      return qv_fail_field(L, f, "%s.content must be a string or a list of parts", f);
    }
    lua_rawseti(L, b->out->messages, i);
    lua_pop(L, 1);
  }
  if (users == 0) return qv_fail_field(L, "messages", "messages need at least one user message");
  return 0;
}

int qv_messages_build(lua_State *L, const qv_messages_in *in, const void *nonce,
                      qv_messages_out *out) {
  build b;
  int top = lua_gettop(L), r;
  memset(&b, 0, sizeof b);
  b.L = L;
  b.in = in;
  b.nonce = nonce;
  b.out = out;
  lua_newtable(L);
  out->messages = lua_gettop(L);
  lua_newtable(L);
  out->sources = lua_gettop(L);
  lua_newtable(L);
  out->fields = lua_gettop(L);
  lua_newtable(L);
  out->slots = lua_gettop(L);
  lua_newtable(L);
  out->videos = lua_gettop(L);
  lua_newtable(L);
  out->spots = lua_gettop(L);
  r = in->messages ? from_messages(&b) : from_fields(&b);
  if (r < 0) {
    qv_error_settle(L, top);
    return -1;
  }
  lua_settop(L, out->spots);
  return 0;
}
