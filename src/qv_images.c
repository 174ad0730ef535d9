/* qv_images: image inputs of a chat request (see qv_images.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qv_images.h"
#include "qv_sys.h"
#include "qv_error.h"
#include "qv_exif.h"
#include "qv_file.h"
#include "qv_text.h"

#define QV_FILE_MAX (64u << 20)     /* read limit for local images */

size_t qv_image_in_url_len(const qv_image_in *im) {
  if (im->b64 != NULL)
    return strlen("data:;base64,") + strlen(qv_image_mime(im->format)) + im->b64_len;
  return qv_resize_data_url_len(im->format, im->bytes.len);
}

void qv_image_in_url(qv_buf *out, const qv_image_in *im) {
  qv_buf_adds(out, "data:");
  qv_buf_adds(out, qv_image_mime(im->format));
  qv_buf_adds(out, ";base64,");
  if (im->b64 != NULL) qv_buf_add(out, im->b64, im->b64_len);
  else qv_base64_encode(out, (const unsigned char *)im->bytes.data, im->bytes.len);
}

void qv_images_free(qv_images *im) {
  int i;
  if (im == NULL) return;
  for (i = 0; i < im->n; i++) qv_buf_free(&im->item[i].bytes);
  free(im->item);
  free(im);
}

/* Estimated image tokens of w x h as Qwen3-VL counts them: one per 32x32
** pixels, plus 2; the server scales down to max_pixels (the request's, else
** the model default of 2,560 tokens; 16,384 with detail="high") and up to
** min_pixels. */
static lua_Integer image_tokens(const qv_images_opts *o, unsigned w, unsigned h) {
  double t = (double)((h + 31) / 32) * (double)((w + 31) / 32), cap, floor_t;
  cap = o->high ? 16384 : o->max_pixels > 0 ? (double)(lua_Integer)(o->max_pixels / 1024) : 2560;
  if (cap < 1) cap = 1;
  floor_t = o->min_pixels > 0 && !o->high ? (double)(lua_Integer)((o->min_pixels + 1023) / 1024) : 0;
  if (t > cap) t = cap;
  if (t < floor_t) t = floor_t;
  return (lua_Integer)t + 2;
}

static void set_int(lua_State *L, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}

static void set_str(lua_State *L, const char *k, const char *v) {
  lua_pushstring(L, v);
  lua_setfield(L, -2, k);
}

/* Downscale/re-encode im as the request asks and record the original in
** the info table on top; *info becomes what is sent. Returns 0 (kept),
** 1 (replaced), or -1 with nil, err pushed. */
static int shrink(lua_State *L, const char *f, qv_image_in *im,
                  qv_image_info *info, const qv_images_opts *o) {
  qv_resize_info ri;
  qv_buf out;
  const char *why = NULL;
  char sha[65];
  qv_buf_init(&out);
  if (qv_resize((const unsigned char *)im->bytes.data, im->bytes.len, info,
                &o->resize, &out, &ri, &why) != 0) {
    qv_buf_free(&out);
    return qv_fail_field(L, f, "%s: cannot resize the image: %s", f, why);
  }
  if (ri.in_w) {
    set_int(L, "original_width", ri.in_w);
    set_int(L, "original_height", ri.in_h);
    if (!info->width) { info->width = ri.in_w; info->height = ri.in_h; }
  }
  /* resize "off" decides without reading EXIF; the orientation is still
  ** recorded: what the model's coordinates mean depends on it (grounding) */
  if (o->resize.mode == QV_RESIZE_OFF)
    ri.orientation = qv_exif_orientation((const unsigned char *)im->bytes.data, im->bytes.len);
  if (ri.orientation > 1 && ri.orientation <= 8)
    set_int(L, "original_orientation", ri.orientation);
  set_int(L, "original_bytes", (lua_Integer)im->bytes.len);
  set_str(L, "original_format", qv_image_name(info->format));
  lua_pushboolean(L, ri.resized);
  lua_setfield(L, -2, "resized");
  if (!ri.resized) { qv_buf_free(&out); return 0; }
  qv_sys_sha256_hex(im->bytes.data, im->bytes.len, sha);
  set_str(L, "original_sha256", sha);
  qv_buf_free(&im->bytes);
  im->bytes = out;
  im->b64 = NULL;
  im->b64_len = 0;
  im->format = info->format = ri.out_format;
  info->width = ri.out_w;
  info->height = ri.out_h;
  return 1;
}

/* A data URL: decoded, and checked against its own bytes. */
static int from_data_url(lua_State *L, const char *f, const char *s, size_t n,
                         qv_image_in *im, qv_image_info *info) {
  const char *payload, *why = NULL;
  size_t plen;
  qv_format declared;
  if (qv_data_url_check(s, n, &declared, &payload, &plen, &why) != 0)
    return qv_fail_field(L, f, "%s: %s", f, why);
  if (qv_base64_decode(&im->bytes, payload, plen) != 0 ||
      qv_image_probe((const unsigned char *)im->bytes.data, im->bytes.len,
                     info, &why) != 0)
    return qv_fail_field(L, f, "%s: data URL payload is not a readable image (%s)",
                         f, why ? why : "bad base64");
  im->inline_data = 1;
  im->b64 = payload;
  im->b64_len = plen;
  /* the bytes decide: a PNG labelled image/jpeg goes as image/png */
  im->format = info->format;
  set_str(L, "source", "data_url");
  if (declared != info->format)
    set_str(L, "declared_format", qv_image_name(declared));
  return 0;
}

static int from_file(lua_State *L, const char *f, const char *s, size_t n,
                     qv_image_in *im, qv_image_info *info) {
  const char *why = NULL;
  if (qv_file_read(s, QV_FILE_MAX, &im->bytes, &why) != 0)
    return qv_fail_field(L, f, "%s: cannot use '%.300s': %s", f, s, why);
  if (qv_image_probe((const unsigned char *)im->bytes.data, im->bytes.len,
                     info, &why) != 0)
    return qv_fail_field(L, f, "%s: '%.300s' is not a supported image: %s", f, s, why);
  im->inline_data = 1;
  im->format = info->format;
  set_str(L, "source", "file");
  lua_pushlstring(L, s, n);
  lua_setfield(L, -2, "path");
  return 0;
}

/* Resolve source s (field f) into im; pushes its info table. */
static int one(lua_State *L, const char *f, const char *s, size_t n,
               qv_image_in *im, const qv_images_opts *o) {
  qv_image_info info;
  char sha[65];
  int r;
  memset(&info, 0, sizeof info);
  lua_createtable(L, 0, 12);
  if (n == 0) return qv_fail_field(L, f, "%s must not be empty", f);
  if (memchr(s, '\0', n) != NULL) return qv_fail_field(L, f, "%s contains a NUL byte", f);
  if (qv_text_iprefix(s, n, "https://") || qv_text_iprefix(s, n, "http://")) {
    if (qv_text_has_ctl(s, n, QV_CTL_SPACE))
      return qv_fail_field(L, f, "%s: URL contains spaces or control characters", f);
    if (!qv_text_utf8_valid(s, n, NULL))
      return qv_fail_field(L, f, "%s: URL is not valid UTF-8", f);
    set_str(L, "source", "url");
    lua_pushlstring(L, s, n);
    lua_setfield(L, -2, "url");
    im->url = s;                       /* anchored in the source list */
    im->url_len = n;
    return 0;
  }
  r = qv_text_iprefix(s, n, "data:") ? from_data_url(L, f, s, n, im, &info)
                                     : from_file(L, f, s, n, im, &info);
  if (r < 0 || (r = shrink(L, f, im, &info, o)) < 0) return -1;
  if (qv_image_in_url_len(im) > QV_DATA_URL_LIMIT)
    return qv_fail_field(L, f, "%s: image is %lu bytes; as a base64 data URL it "
                         "would be %lu bytes, over DashScope's 10 MiB limit (pass "
                         "a URL or a smaller image)", f, (unsigned long)im->bytes.len,
                         (unsigned long)qv_image_in_url_len(im));
  qv_sys_sha256_hex(im->bytes.data, im->bytes.len, sha);
  set_str(L, "format", qv_image_name(info.format));
  set_int(L, "bytes", (lua_Integer)im->bytes.len);
  set_str(L, "sha256", sha);
  if (r == 0) set_str(L, "original_sha256", sha);
  if (info.width) {
    set_int(L, "width", info.width);
    set_int(L, "height", info.height);
    set_int(L, "image_tokens", image_tokens(o, info.width, info.height));
  }
  return 0;
}

int qv_images_read(lua_State *L, qv_images **out, int list, int fields,
                   const qv_images_opts *o) {
  int n = (int)lua_rawlen(L, list), i, infos;
  qv_images *im = calloc(1, sizeof *im);
  *out = im;
  if (im == NULL || (im->item = calloc((size_t)(n ? n : 1), sizeof *im->item)) == NULL)
    return qv_fail_field(L, "image", "out of memory");
  for (i = 0; i < n; i++) qv_buf_init(&im->item[i].bytes);
  im->n = n;
  lua_createtable(L, n, 0);
  infos = lua_gettop(L);
  for (i = 0; i < n; i++) {
    size_t len;
    const char *s, *f;
    lua_rawgeti(L, fields, i + 1);
    f = lua_tostring(L, -1);                  /* anchored in `fields` */
    lua_pop(L, 1);
    lua_rawgeti(L, list, i + 1);
    s = lua_tolstring(L, -1, &len);           /* anchored in `list` */
    lua_pop(L, 1);
    if (one(L, f, s, len, &im->item[i], o) < 0) {
      qv_error_settle(L, infos - 1);    /* infos, info, nil, err -> nil, err */
      return -1;
    }
    lua_rawseti(L, infos, i + 1);
  }
  return 0;
}
