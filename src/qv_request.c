/*
** qv_request: from the caller's request table to the bytes on the wire.
** Every field is checked before anything is sent; a bad one yields
** nil, {code="invalid_request", field=...}. The body is encoded by cjson,
** except inline images: cjson would escape every '/' of the base64 and
** copy it twice, so the body carries a placeholder per image and the
** base64 is written straight into the final buffer (JSON-safe as is).
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/evp.h>

#include "qv_lua.h"
#include "qv_image.h"
#include "qv_target.h"
#include "qv_resize.h"

#define QV_FILE_MAX (64u << 20)     /* read limit for local images */
#define QV_PROMPT_MAX (1u << 20)
#define QV_MAX_IMAGES 250           /* DashScope's base64 per-request cap */


static const char *const chat_fields[] = {
  "prompt", "image", "images", "model", "max_tokens", "temperature",
  "detail", "json_mode", "schema", "system", "max_retries",
  "retry_backoff_s", "timeout_s", "connect_timeout_s", "idle_timeout_s",
  "max_retry_after_s", "max_response_bytes", "api_key", "base_url",
  "region", "extra", "stream", "on_delta", "coalesce_ms", "coalesce_bytes",
  "enable_thinking", "thinking_budget", "cainfo", "capath", "proxy",
  "noproxy", "resize", "max_pixels", "max_side", "image_format", "quality",
  "min_pixels", NULL
};

static const char *const models_fields[] = {
  "api_key", "base_url", "region", "max_retries", "retry_backoff_s",
  "timeout_s", "connect_timeout_s", "max_retry_after_s", "cainfo", "capath",
  "proxy", "noproxy", NULL
};

/* One image input, resolved. */
typedef struct image_in {
  int inline_data;            /* sent as a data URL we splice in */
  qv_buf bytes;               /* raw image bytes (files, decoded data URLs) */
  const char *b64; size_t b64_len;  /* caller's own base64 (data URLs) */
  qv_format format;
} image_in;

typedef struct plan_ctx {
  lua_State *L;
  int req, plan;
  image_in *img;
  int nimg;
  char nonce[24];
  qv_resize_opts ropts;       /* client-side resize (qv_resize) */
  double min_pixels, max_pixels;  /* per-image fields for DashScope; 0: none */
  int high;                   /* detail == "high" */
} plan_ctx;

/* ---- field readers: 1 ok, 0 absent, -1 error pushed ------------------- */

static int bad(lua_State *L, const char *field, const char *fmt, ...)
  QV_PRINTF(3, 4);

static int bad(lua_State *L, const char *field, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  qv_error_invalidv(L, field, fmt, ap);
  va_end(ap);
  return -1;
}

static int has_ctl(const char *s, size_t n, int allow_space) {
  size_t i;
  for (i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch < 0x20 || ch == 0x7f || (!allow_space && ch == ' ')) return 1;
  }
  return 0;
}

static int get_str(lua_State *L, int t, const char *k, const char **out,
                   size_t *n, size_t max) {
  int ty;
  lua_getfield(L, t, k);
  ty = lua_type(L, -1);
  if (ty == LUA_TNIL) { lua_pop(L, 1); return 0; }
  if (ty != LUA_TSTRING) {
    lua_pop(L, 1);
    return bad(L, k, "%s must be a string", k);
  }
  *out = lua_tolstring(L, -1, n);
  lua_pop(L, 1);                 /* still referenced by the table */
  if (*n == 0) return bad(L, k, "%s must not be empty", k);
  if (*n > max) return bad(L, k, "%s is too long", k);
  if (memchr(*out, '\0', *n)) return bad(L, k, "%s contains a NUL byte", k);
  return 1;
}

static int get_num(lua_State *L, int t, const char *k, double *out,
                   double lo, double hi, int integer) {
  int ty;
  char msg[160];
  lua_getfield(L, t, k);
  ty = lua_type(L, -1);
  if (ty == LUA_TNIL) { lua_pop(L, 1); return 0; }
  if (ty != LUA_TNUMBER) {
    lua_pop(L, 1);
    return bad(L, k, integer ? "%s must be an integer" : "%s must be a number", k);
  }
  *out = lua_tonumber(L, -1);
  lua_pop(L, 1);
  if (integer && *out != (double)(long long)*out)
    return bad(L, k, "%s must be an integer", k);
  if (!(*out >= lo && *out <= hi)) {
    snprintf(msg, sizeof msg, "%s must be between %g and %g", k, lo, hi);
    return bad(L, k, "%s", msg);
  }
  return 1;
}

static int get_bool(lua_State *L, int t, const char *k, int *out) {
  int ty;
  lua_getfield(L, t, k);
  ty = lua_type(L, -1);
  if (ty == LUA_TNIL) { lua_pop(L, 1); return 0; }
  if (ty != LUA_TBOOLEAN) { lua_pop(L, 1); return bad(L, k, "%s must be a boolean", k); }
  *out = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return 1;
}

static int check_known(lua_State *L, int t, const char *const *names) {
  lua_pushnil(L);
  while (lua_next(L, t) != 0) {
    int i, known = 0;
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING) {
      const char *k = lua_tostring(L, -1);
      for (i = 0; names[i]; i++) if (strcmp(names[i], k) == 0) known = 1;
      if (!known) {
        char field[64];
        snprintf(field, sizeof field, "%s", k);
        lua_pop(L, 1);
        return bad(L, field, "unknown request field '%s' (DashScope "
                   "parameters go in `extra`)", field);
      }
    } else {
      lua_pop(L, 1);
      return bad(L, "request", "%s", "request keys must be strings");
    }
  }
  return 1;
}

/* ---- where to send it, with which key --------------------------------- */

/* The request's key, region and base URL, resolved by qv_target into the
** plan table (base_url, region) and key. Returns 1, or -1 with an error. */
static int resolve_target(lua_State *L, int req, int plan, qv_buf *key,
                          const char **key_source) {
  const char *k = NULL, *region = NULL, *base = NULL, *field = NULL;
  size_t kn = 0, n;
  char msg[160];
  qv_target t;
  if (get_str(L, req, "api_key", &k, &kn, 512) < 0 ||
      get_str(L, req, "region", &region, &n, 16) < 0 ||
      get_str(L, req, "base_url", &base, &n, 2048) < 0)
    return -1;
  if (qv_target_resolve(k, kn, region, base, key, &t, &field, msg, sizeof msg) != 0)
    return bad(L, field, "%s", msg);
  *key_source = t.key_source;
  lua_pushlstring(L, t.base, t.base_len);
  lua_setfield(L, plan, "base_url");
  lua_pushstring(L, t.region);
  lua_setfield(L, plan, "region");
  return 1;
}

void qv_request_regions(lua_State *L) {
  int i;
  lua_newtable(L);
  for (i = 0; qv_regions[i][0]; i++) {
    lua_pushstring(L, qv_regions[i][1]);
    lua_setfield(L, -2, qv_regions[i][0]);
  }
}

void qv_request_config(lua_State *L, int idx) {
  qv_buf key;
  const char *source = NULL;
  int plan;
  qv_buf_init(&key);
  lua_newtable(L);
  plan = lua_gettop(L);
  if (resolve_target(L, idx, plan, &key, &source) < 0) {
    qv_buf_free(&key);
    return;                      /* nil, err pushed above the table */
  }
  lua_pushboolean(L, key.len > 0);
  lua_setfield(L, plan, "has_key");
  if (source) { lua_pushstring(L, source); lua_setfield(L, plan, "key_source"); }
  if (key.data) memset(key.data, 0, key.len);
  qv_buf_free(&key);
}

/* ---- images ----------------------------------------------------------- */

static void sha256_hex(const unsigned char *p, size_t n, char out[65]) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0, i;
  static const char hex[] = "0123456789abcdef";
  EVP_Digest(p, n, md, &len, EVP_sha256(), NULL);
  for (i = 0; i < len && i < 32; i++) {
    out[2 * i] = hex[md[i] >> 4];
    out[2 * i + 1] = hex[md[i] & 15];
  }
  out[64] = '\0';
}

static size_t data_url_len(const image_in *im) {
  size_t b64 = im->b64 ? im->b64_len : qv_base64_len(im->bytes.len);
  return strlen("data:;base64,") + strlen(qv_image_mime(im->format)) + b64;
}

/* Estimated image tokens of w x h as Qwen3-VL counts them: one per 32x32
** pixels, plus 2; the server scales down to max_pixels (the request's, else
** the model default of 2,560 tokens; 16,384 with detail="high") and up to
** min_pixels. */
static lua_Integer image_tokens(const plan_ctx *x, unsigned w, unsigned h) {
  double t = (double)((h + 31) / 32) * (double)((w + 31) / 32), cap, floor_t;
  cap = x->high ? 16384 : x->max_pixels > 0 ? (double)(lua_Integer)(x->max_pixels / 1024) : 2560;
  if (cap < 1) cap = 1;
  floor_t = x->min_pixels > 0 && !x->high ? (double)(lua_Integer)((x->min_pixels + 1023) / 1024) : 0;
  if (t > cap) t = cap;
  if (t < floor_t) t = floor_t;
  return (lua_Integer)t + 2;
}

/* Downscale/re-encode im as the request asks (qv_resize) and record the
** original in the info table on top; *info becomes what is sent.
** Returns 1 (kept), 2 (replaced), or -1 with an error pushed. */
static int shrink_image(plan_ctx *x, const char *f, image_in *im,
                        qv_image_info *info) {
  lua_State *L = x->L;
  qv_resize_info ri;
  qv_buf out;
  const char *why = NULL;
  char sha[65], msg[600];
  qv_buf_init(&out);
  if (qv_resize((const unsigned char *)im->bytes.data, im->bytes.len, info,
                &x->ropts, &out, &ri, &why) != 0) {
    qv_buf_free(&out);
    snprintf(msg, sizeof msg, "%s: cannot resize the image: %s", f, why);
    return bad(L, f, "%s", msg);
  }
  if (ri.in_w) {
    lua_pushinteger(L, ri.in_w); lua_setfield(L, -2, "original_width");
    lua_pushinteger(L, ri.in_h); lua_setfield(L, -2, "original_height");
    if (!info->width) { info->width = ri.in_w; info->height = ri.in_h; }
  }
  if (ri.orientation > 1) {
    lua_pushinteger(L, ri.orientation); lua_setfield(L, -2, "original_orientation");
  }
  lua_pushinteger(L, (lua_Integer)im->bytes.len); lua_setfield(L, -2, "original_bytes");
  lua_pushstring(L, qv_image_name(info->format)); lua_setfield(L, -2, "original_format");
  lua_pushboolean(L, ri.resized); lua_setfield(L, -2, "resized");
  if (!ri.resized) { qv_buf_free(&out); return 1; }
  sha256_hex((const unsigned char *)im->bytes.data, im->bytes.len, sha);
  lua_pushstring(L, sha); lua_setfield(L, -2, "original_sha256");
  qv_buf_free(&im->bytes);
  im->bytes = out;
  im->b64 = NULL;
  im->b64_len = 0;
  im->format = info->format = ri.out_format;
  info->width = ri.out_w;
  info->height = ri.out_h;
  return 2;
}

/* Resolve image source s (field name f) into im and an info table (top). */
static int image_source(plan_ctx *x, const char *f, const char *s, size_t n,
                        image_in *im) {
  lua_State *L = x->L;
  const char *why = NULL;
  qv_image_info info;
  if (memchr(s, '\0', n) != NULL) return bad(L, f, "%s contains a NUL byte", f);
  char sha[65], msg[600];
  int shrunk;
  lua_newtable(L);
  if (n >= 8 && (strncmp(s, "https://", 8) == 0 || strncmp(s, "http://", 7) == 0)) {
    if (has_ctl(s, n, 0)) return bad(L, f, "%s: URL contains spaces or control characters", f);
    lua_pushliteral(L, "url"); lua_setfield(L, -2, "source");
    lua_pushlstring(L, s, n); lua_setfield(L, -2, "url");
    return 1;
  }
  if (n >= 5 && strncasecmp(s, "data:", 5) == 0) {
    const char *payload;
    size_t plen;
    qv_format fmt;
    if (qv_data_url_check(s, n, &fmt, &payload, &plen, &why) != 0) {
      snprintf(msg, sizeof msg, "%s: %s", f, why);
      return bad(L, f, "%s", msg);
    }
    if (qv_base64_decode(&im->bytes, payload, plen) != 0 ||
        qv_image_probe((const unsigned char *)im->bytes.data, im->bytes.len,
                       &info, &why) != 0) {
      snprintf(msg, sizeof msg, "%s: data URL payload is not a readable image (%s)",
               f, why ? why : "bad base64");
      return bad(L, f, "%s", msg);
    }
    im->inline_data = 1;
    im->b64 = payload;
    im->b64_len = plen;
    im->format = fmt;
    lua_pushliteral(L, "data_url"); lua_setfield(L, -2, "source");
  } else {
    if (qv_image_read_file(s, QV_FILE_MAX, &im->bytes, &why) != 0) {
      snprintf(msg, sizeof msg, "%s: cannot use '%.300s': %s", f, s, why);
      return bad(L, f, "%s", msg);
    }
    if (qv_image_probe((const unsigned char *)im->bytes.data, im->bytes.len,
                       &info, &why) != 0) {
      snprintf(msg, sizeof msg, "%s: '%.300s' is not a supported image: %s", f, s, why);
      return bad(L, f, "%s", msg);
    }
    im->inline_data = 1;
    im->format = info.format;
    lua_pushliteral(L, "file"); lua_setfield(L, -2, "source");
    lua_pushlstring(L, s, n); lua_setfield(L, -2, "path");
  }
  if ((shrunk = shrink_image(x, f, im, &info)) < 0) return -1;
  if (data_url_len(im) > QV_DATA_URL_LIMIT) {
    snprintf(msg, sizeof msg, "%s: image is %lu bytes; as a base64 data URL it "
             "would be %lu bytes, over DashScope's 10 MiB limit (pass a URL or "
             "a smaller image)", f, (unsigned long)im->bytes.len,
             (unsigned long)data_url_len(im));
    return bad(L, f, "%s", msg);
  }
  sha256_hex((const unsigned char *)im->bytes.data, im->bytes.len, sha);
  lua_pushstring(L, qv_image_name(info.format)); lua_setfield(L, -2, "format");
  lua_pushinteger(L, (lua_Integer)im->bytes.len); lua_setfield(L, -2, "bytes");
  lua_pushstring(L, sha); lua_setfield(L, -2, "sha256");
  if (shrunk == 1) { lua_pushstring(L, sha); lua_setfield(L, -2, "original_sha256"); }
  if (info.width) {
    lua_pushinteger(L, info.width); lua_setfield(L, -2, "width");
    lua_pushinteger(L, info.height); lua_setfield(L, -2, "height");
    lua_pushinteger(L, image_tokens(x, info.width, info.height));
    lua_setfield(L, -2, "image_tokens");
  }
  return 1;
}

/* Push the list of image sources (strings) from image/images. */
static int image_list(plan_ctx *x, int *count) {
  lua_State *L = x->L;
  int has_one, has_many, n = 0, i;
  lua_getfield(L, x->req, "image");
  has_one = !lua_isnil(L, -1);
  lua_getfield(L, x->req, "images");
  has_many = !lua_isnil(L, -1);
  lua_newtable(L);               /* list of {field, source} */
  if (has_one) {
    if (lua_type(L, -3) != LUA_TSTRING) return bad(L, "image", "%s", "image must be a string");
    lua_pushvalue(L, -3);
    lua_rawseti(L, -2, ++n);
  }
  if (has_many) {
    if (!lua_istable(L, -2)) return bad(L, "images", "%s", "images must be a list of strings");
    for (i = 1; ; i++) {
      lua_rawgeti(L, -2, i);
      if (lua_isnil(L, -1)) { lua_pop(L, 1); break; }
      if (lua_type(L, -1) != LUA_TSTRING) return bad(L, "images", "%s", "images must be a list of strings");
      lua_rawseti(L, -2, ++n);
    }
    if (i == 1) return bad(L, "images", "%s", "images must not be empty");
  }
  if (n == 0) return bad(L, "image", "%s", "image (or images) is required");
  if (n > QV_MAX_IMAGES) return bad(L, "images", "%s", "too many images (DashScope takes at most 250)");
  lua_replace(L, -3);
  lua_pop(L, 1);
  *count = n;
  return 1;
}

/* ---- the body --------------------------------------------------------- */

static void set_str(lua_State *L, const char *k, const char *v) {
  lua_pushstring(L, v);
  lua_setfield(L, -2, k);
}

/* Build content parts (images then text) into a new table; images info
** into plan.images. */
static int build_content(plan_ctx *x, const char *prompt, size_t plen,
                         const char *detail, int content) {
  lua_State *L = x->L;
  int n = 0, i, infos;
  if (image_list(x, &n) < 0) return -1;
  x->img = calloc((size_t)n, sizeof *x->img);
  if (x->img == NULL) return bad(L, "image", "%s", "out of memory");
  x->nimg = n;
  lua_newtable(L);
  infos = lua_gettop(L);
  for (i = 0; i < n; i++) {
    size_t len;
    const char *s;
    char field[32], ph[64];
    lua_rawgeti(L, infos - 1, i + 1);
    s = lua_tolstring(L, -1, &len);
    if (n == 1) {
      lua_getfield(L, x->req, "image");
      snprintf(field, sizeof field, "%s", lua_isnil(L, -1) ? "images[1]" : "image");
      lua_pop(L, 1);
    } else snprintf(field, sizeof field, "images[%d]", i + 1);
    qv_buf_init(&x->img[i].bytes);
    if (image_source(x, field, s, len, &x->img[i]) < 0) return -1;
    lua_rawseti(L, infos, i + 1);
    lua_pop(L, 1);
    /* {"type":"image_url","image_url":{"url":..,"detail":..}} */
    lua_createtable(L, 0, 2);
    set_str(L, "type", "image_url");
    lua_createtable(L, 0, 2);
    if (x->img[i].inline_data) {
      snprintf(ph, sizeof ph, "qvimg-%s-%d", x->nonce, i);
      set_str(L, "url", ph);
    } else {
      lua_pushlstring(L, s, len);
      lua_setfield(L, -2, "url");
    }
    set_str(L, "detail", detail);
    lua_setfield(L, -2, "image_url");
    /* DashScope's per-image limits sit beside image_url */
    if (x->min_pixels > 0) {
      lua_pushinteger(L, (lua_Integer)x->min_pixels);
      lua_setfield(L, -2, "min_pixels");
    }
    if (x->max_pixels > 0) {
      lua_pushinteger(L, (lua_Integer)x->max_pixels);
      lua_setfield(L, -2, "max_pixels");
    }
    lua_rawseti(L, content, i + 1);
  }
  lua_setfield(L, x->plan, "images");
  lua_pop(L, 1);                 /* source list */
  lua_createtable(L, 0, 2);
  set_str(L, "type", "text");
  lua_pushlstring(L, prompt, plen);
  lua_setfield(L, -2, "text");
  lua_rawseti(L, content, n + 1);
  return 1;
}

/* Splice the images into the encoded body at the placeholders. */
static char *splice(plan_ctx *x, const char *json, size_t n, size_t *out_len) {
  qv_buf b;
  size_t i = 0;
  int k;
  char ph[64];
  qv_buf_init(&b);
  for (k = 0; k < x->nimg; k++) {
    image_in *im = &x->img[k];
    const char *at;
    size_t plen;
    if (!im->inline_data) continue;
    plen = (size_t)snprintf(ph, sizeof ph, "\"qvimg-%s-%d\"", x->nonce, k);
    at = NULL;
    { /* find the placeholder from i on */
      size_t j;
      for (j = i; j + plen <= n; j++)
        if (json[j] == '"' && memcmp(json + j, ph, plen) == 0) { at = json + j; break; }
    }
    if (at == NULL) continue;
    qv_buf_reserve(&b, (size_t)(at - (json + i)) + data_url_len(im) + 2);
    qv_buf_add(&b, json + i, (size_t)(at - (json + i)));
    qv_buf_adds(&b, "\"data:");
    qv_buf_adds(&b, qv_image_mime(im->format));
    qv_buf_adds(&b, ";base64,");
    if (im->b64) qv_buf_add(&b, im->b64, im->b64_len);
    else qv_base64_encode(&b, (const unsigned char *)im->bytes.data, im->bytes.len);
    qv_buf_addc(&b, '"');
    i = (size_t)(at - json) + plen;
  }
  qv_buf_add(&b, json + i, n - i);
  if (b.oom) { qv_buf_free(&b); return NULL; }
  *out_len = b.len;
  return b.data;
}

/* plan.request: the body with placeholders turned into short notes. */
static void safe_request(plan_ctx *x, int body, int content) {
  lua_State *L = x->L;
  int i;
  char note[96];
  for (i = 0; i < x->nimg; i++) {
    if (!x->img[i].inline_data) continue;
    lua_rawgeti(L, content, i + 1);
    lua_getfield(L, -1, "image_url");
    snprintf(note, sizeof note, "data:%s;base64,<omitted %lu chars>",
             qv_image_mime(x->img[i].format),
             (unsigned long)(x->img[i].b64 ? x->img[i].b64_len
                             : qv_base64_len(x->img[i].bytes.len)));
    set_str(L, "url", note);
    lua_pop(L, 2);
  }
  lua_pushvalue(L, body);
  lua_setfield(L, x->plan, "request");
}

static void free_images(plan_ctx *x) {
  int i;
  for (i = 0; i < x->nimg; i++) qv_buf_free(&x->img[i].bytes);
  free(x->img);
  x->img = NULL;
  x->nimg = 0;
}

/* The resize fields: resize, max_pixels, max_side, image_format, quality,
** min_pixels. max_pixels is both the client's resize target and sent. */
static int read_resize(plan_ctx *x, const char *detail) {
  lua_State *L = x->L;
  qv_resize_opts *o = &x->ropts;
  const char *s;
  size_t n;
  double v;
  int r;
  memset(o, 0, sizeof *o);
  o->mode = QV_RESIZE_AUTO;
  x->high = strcmp(detail, "high") == 0;
  if ((r = get_str(L, x->req, "resize", &s, &n, 16)) < 0) return -1;
  if (r == 1) {
    if (strcmp(s, "auto") == 0) o->mode = QV_RESIZE_AUTO;
    else if (strcmp(s, "off") == 0) o->mode = QV_RESIZE_OFF;
    else if (strcmp(s, "always") == 0) o->mode = QV_RESIZE_ALWAYS;
    else return bad(L, "resize", "resize must be auto, off or always (got '%s')", s);
  }
  if ((r = get_str(L, x->req, "image_format", &s, &n, 16)) < 0) return -1;
  if (r == 1) {
    if (strcmp(s, "jpeg") == 0 || strcmp(s, "jpg") == 0) o->format = QV_FMT_JPEG;
    else if (strcmp(s, "png") == 0) o->format = QV_FMT_PNG;
    else if (strcmp(s, "webp") == 0) o->format = QV_FMT_WEBP;
    else return bad(L, "image_format", "image_format must be jpeg, png or webp "
                    "(got '%s')", s);
  }
  if ((r = get_num(L, x->req, "quality", &v, 1, 100, 1)) < 0) return -1;
  if (r == 1) o->quality = (int)v;
  if ((r = get_num(L, x->req, "max_side", &v, 1, 1e6, 1)) < 0) return -1;
  if (r == 1) o->max_side = (unsigned)v;
  if ((r = get_num(L, x->req, "max_pixels", &v, 1, 1e10, 1)) < 0) return -1;
  if (r == 1) o->max_pixels = (unsigned long)(x->max_pixels = v);
  if ((r = get_num(L, x->req, "min_pixels", &v, 1, 1e10, 1)) < 0) return -1;
  if (r == 1) x->min_pixels = v;
  /* detail="high" raises the server's budget to 16,384 tokens */
  if (x->high && o->max_pixels == 0) o->max_pixels = 16384ul * 1024;
  if (x->min_pixels > 0 && x->max_pixels > 0 && x->min_pixels > x->max_pixels)
    return bad(L, "min_pixels", "%s", "min_pixels must not exceed max_pixels");
  return 1;
}

/* Read the chat fields and build body + plan. */
static int plan_chat(plan_ctx *x, qv_call_opts *o, char **out, size_t *out_len) {
  lua_State *L = x->L;
  int req = x->req, plan = x->plan, body, messages, content, r;
  const char *prompt = NULL, *model = "qwen3-vl-plus", *detail = "auto",
             *system = NULL, *schema_text = NULL;
  size_t plen = 0, n;
  double max_tokens = 512, temperature = 0.2, budget = 0;
  int json_mode = 0, stream = 0, thinking = 0, has_thinking = 0, has_schema = 0,
      has_budget = 0;
  const char *encoded;
  size_t enc_len;
  luaL_Buffer pb;
  if ((r = get_str(L, req, "prompt", &prompt, &plen, QV_PROMPT_MAX)) <= 0)
    return r < 0 ? -1 : bad(L, "prompt", "%s", "prompt is required");
  if (get_str(L, req, "model", &model, &n, 128) < 0) return -1;
  if (has_ctl(model, strlen(model), 0))
    return bad(L, "model", "%s", "model contains spaces or control characters");
  if (get_str(L, req, "system", &system, &n, QV_PROMPT_MAX) < 0) return -1;
  if (get_str(L, req, "detail", &detail, &n, 8) < 0) return -1;
  if (strcmp(detail, "auto") && strcmp(detail, "low") && strcmp(detail, "high"))
    return bad(L, "detail", "detail must be auto, low or high (got '%s')", detail);
  if (read_resize(x, detail) < 0) return -1;
  if (get_num(L, req, "max_tokens", &max_tokens, 1, 131072, 1) < 0) return -1;
  if (get_num(L, req, "temperature", &temperature, 0, 1.999999, 0) < 0) return -1;
  if (get_bool(L, req, "json_mode", &json_mode) < 0) return -1;
  if (get_bool(L, req, "stream", &stream) < 0) return -1;
  if ((has_thinking = get_bool(L, req, "enable_thinking", &thinking)) < 0) return -1;
  if ((has_budget = get_num(L, req, "thinking_budget", &budget, 1, 1e7, 1)) < 0)
    return -1;
  lua_getfield(L, req, "on_delta");
  if (!lua_isnil(L, -1) && !lua_isfunction(L, -1))
    return bad(L, "on_delta", "%s", "on_delta must be a function");
  lua_pop(L, 1);
  lua_getfield(L, req, "extra");
  if (!lua_isnil(L, -1) && !lua_istable(L, -1))
    return bad(L, "extra", "%s", "extra must be a table");
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, "enable_thinking");
    if (!has_thinking && lua_isboolean(L, -1)) thinking = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  /* schema: a table, or JSON text */
  lua_getfield(L, req, "schema");
  if (lua_type(L, -1) == LUA_TSTRING) {
    if (!qv_json_decode(L, lua_tostring(L, -1), lua_rawlen(L, -1)) || !lua_istable(L, -1))
      return bad(L, "schema", "%s", "schema is not valid JSON (an object)");
    lua_replace(L, -2);
  } else if (!lua_isnil(L, -1) && !lua_istable(L, -1)) {
    return bad(L, "schema", "%s", "schema must be a table or a JSON string");
  }
  if (lua_istable(L, -1)) {
    has_schema = 1;
    lua_pushvalue(L, -1);
    lua_setfield(L, plan, "schema");
    if (!qv_json_encode(L, -1)) return bad(L, "schema", "%s", "schema cannot be encoded as JSON");
    schema_text = lua_tostring(L, -1);
    lua_setfield(L, plan, "schema_json");
  }
  lua_pop(L, 1);
  if ((json_mode || has_schema) && thinking)
    return bad(L, json_mode ? "json_mode" : "schema", "%s", "JSON output cannot be "
               "combined with enable_thinking (DashScope rejects it)");
  lua_pushboolean(L, json_mode || has_schema);
  lua_setfield(L, plan, "json");
  lua_pushstring(L, model);
  lua_setfield(L, plan, "model");
  lua_pushboolean(L, stream);
  lua_setfield(L, plan, "user_stream");
  /* thinking needs a stream: run one under the hood */
  o->stream = stream || thinking;
  /* the body */
  lua_newtable(L);
  body = lua_gettop(L);
  set_str(L, "model", model);
  lua_newtable(L);
  messages = lua_gettop(L);
  if (system) {
    lua_createtable(L, 0, 2);
    set_str(L, "role", "system");
    set_str(L, "content", system);
    lua_rawseti(L, messages, 1);
  }
  lua_newtable(L);
  content = lua_gettop(L);
  luaL_buffinit(L, &pb);
  luaL_addlstring(&pb, prompt, plen);
  if (has_schema) {
    luaL_addstring(&pb, "\n\nRespond with JSON only: one JSON value matching "
                   "this JSON Schema:\n");
    luaL_addstring(&pb, schema_text);
  } else if (json_mode) {
    luaL_addstring(&pb, "\n\nRespond with a single JSON object only.");
  }
  luaL_pushresult(&pb);
  {
    size_t tl;
    const char *text = lua_tolstring(L, -1, &tl);
    if (build_content(x, text, tl, detail, content) < 0) return -1;
  }
  lua_pop(L, 1);                 /* prompt text */
  lua_createtable(L, 0, 2);
  set_str(L, "role", "user");
  lua_pushvalue(L, content);
  lua_setfield(L, -2, "content");
  lua_rawseti(L, messages, system ? 2 : 1);
  lua_pushvalue(L, messages);
  lua_setfield(L, body, "messages");
  lua_pushinteger(L, (lua_Integer)max_tokens);
  lua_setfield(L, body, "max_tokens");
  lua_pushnumber(L, temperature);
  lua_setfield(L, body, "temperature");
  if (json_mode || has_schema) {
    lua_createtable(L, 0, 1);
    set_str(L, "type", "json_object");
    lua_setfield(L, body, "response_format");
  }
  if (strcmp(detail, "high") == 0) {
    lua_pushboolean(L, 1);
    lua_setfield(L, body, "vl_high_resolution_images");
  }
  if (has_thinking) {
    lua_pushboolean(L, thinking);
    lua_setfield(L, body, "enable_thinking");
  }
  if (has_budget == 1) {
    lua_pushinteger(L, (lua_Integer)budget);
    lua_setfield(L, body, "thinking_budget");
  }
  lua_getfield(L, req, "extra");
  if (lua_istable(L, -1)) {
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
      const char *k;
      if (lua_type(L, -2) != LUA_TSTRING)
        return bad(L, "extra", "%s", "extra keys must be strings");
      k = lua_tostring(L, -2);
      if (!strcmp(k, "model") || !strcmp(k, "messages") || !strcmp(k, "stream")
          || !strcmp(k, "stream_options"))
        return bad(L, "extra", "extra.%s is set by qwenvl; use the request field", k);
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_settable(L, body);
    }
  }
  lua_pop(L, 1);
  if (o->stream) {
    lua_pushboolean(L, 1);
    lua_setfield(L, body, "stream");
    lua_createtable(L, 0, 1);
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "include_usage");
    lua_setfield(L, body, "stream_options");
  }
  if (!qv_json_encode(L, body))
    return bad(L, "extra", "%s", "request cannot be encoded as JSON (check extra)");
  encoded = lua_tolstring(L, -1, &enc_len);
  *out = splice(x, encoded, enc_len, out_len);
  lua_pop(L, 1);
  if (*out == NULL) return bad(L, "image", "%s", "out of memory");
  safe_request(x, body, content);
  lua_settop(L, body - 1);
  return 1;
}

static int opt_num(lua_State *L, int req, const char *k, double *dst,
                   double lo, double hi, int integer) {
  double v;
  int r = get_num(L, req, k, &v, lo, hi, integer);
  if (r == 1) *dst = v;
  return r;
}

/* An optional path or URL option: no control characters (they would reach
** libcurl as is). The string stays alive in the request table. */
static int opt_str(lua_State *L, int req, const char *k, const char **out) {
  const char *s = NULL;
  size_t n = 0;
  int r = get_str(L, req, k, &s, &n, 4096);
  *out = NULL;
  if (r <= 0) return r;
  if (has_ctl(s, n, 1)) return bad(L, k, "%s contains control characters", k);
  *out = s;
  return 1;
}

static int read_transport(lua_State *L, int req, qv_call_opts *o, int chat) {
  double retries = 2, max_bytes = 64.0 * 1024 * 1024, unused = 0;
  o->backoff_s = 1.5;
  o->timeout_s = chat ? 120 : 30;
  o->connect_timeout_s = 10;
  o->idle_timeout_s = 60;
  o->retry_after_cap_s = 60;
  if (opt_num(L, req, "max_retries", &retries, 0, 20, 1) < 0 ||
      opt_num(L, req, "retry_backoff_s", &o->backoff_s, 0, 600, 0) < 0 ||
      opt_num(L, req, "timeout_s", &o->timeout_s, 0.001, 86400, 0) < 0 ||
      opt_num(L, req, "connect_timeout_s", &o->connect_timeout_s, 0.001, 3600, 0) < 0 ||
      opt_num(L, req, "idle_timeout_s", &o->idle_timeout_s, 0.001, 86400, 0) < 0 ||
      opt_num(L, req, "max_retry_after_s", &o->retry_after_cap_s, 0, 86400, 0) < 0 ||
      opt_num(L, req, "max_response_bytes", &max_bytes, 1024, 1e12, 1) < 0 ||
      opt_num(L, req, "coalesce_ms", &unused, 0, 60000, 0) < 0 ||
      opt_num(L, req, "coalesce_bytes", &unused, 0, 1e9, 1) < 0)
    return -1;
  o->max_retries = (int)retries;
  o->max_response_bytes = (size_t)max_bytes;
  if (opt_str(L, req, "cainfo", &o->cainfo) < 0 ||
      opt_str(L, req, "capath", &o->capath) < 0 ||
      opt_str(L, req, "proxy", &o->proxy) < 0 ||
      opt_str(L, req, "noproxy", &o->noproxy) < 0)
    return -1;
  return 1;
}

static struct curl_slist *add_header(struct curl_slist *h, const char *line,
                                     int *ok) {
  struct curl_slist *n = curl_slist_append(h, line);
  if (n == NULL) *ok = 0;
  return n ? n : h;
}

int qv_request_plan(lua_State *L, int idx, const char *kind,
                    qv_call_opts *o, char **body, size_t *len) {
  plan_ctx x;
  qv_buf key, line;
  const char *source = NULL;
  int chat = strcmp(kind, "chat") == 0, ok = 1, top;
  idx = qv_absindex(L, idx);
  memset(o, 0, sizeof *o);
  memset(&x, 0, sizeof x);
  *body = NULL;
  *len = 0;
  x.L = L;
  x.req = idx;
  lua_newtable(L);
  x.plan = top = lua_gettop(L);
  lua_pushstring(L, kind);
  lua_setfield(L, x.plan, "kind");
  snprintf(x.nonce, sizeof x.nonce, "%08lx%08lx",
           (unsigned long)((size_t)lua_topointer(L, x.plan) & 0xffffffffu),
           (unsigned long)((unsigned long)(qv_now() * 1e9) & 0xffffffffu));
  qv_buf_init(&key);
  qv_buf_init(&line);
  if (check_known(L, idx, chat ? chat_fields : models_fields) < 0 ||
      read_transport(L, idx, o, chat) < 0 ||
      resolve_target(L, idx, x.plan, &key, &source) < 0 ||
      (chat && plan_chat(&x, o, body, len) < 0))
    goto fail;
  if (key.len == 0) {
    lua_pushnil(L);
    qv_error_push(L, "auth", "no API key: pass api_key, set DASHSCOPE_API_KEY, "
                  "or add dashscope_api_key to ~/.alibabacloud/credentials",
                  0, 0, 0);
    qv_error_set(L, "field", "api_key");
    goto fail;
  }
  lua_getfield(L, x.plan, "base_url");
  lua_pushstring(L, chat ? "/chat/completions" : "/models");
  lua_concat(L, 2);
  o->url = lua_tostring(L, -1);  /* alive in the plan table */
  lua_setfield(L, x.plan, "url");
  o->post = chat;
  qv_buf_adds(&line, "Authorization: Bearer ");
  qv_buf_add(&line, key.data, key.len);
  o->headers = add_header(NULL, line.data, &ok);
  o->headers = add_header(o->headers, o->stream ? "Accept: text/event-stream"
                          : "Accept: application/json", &ok);
  if (chat) o->headers = add_header(o->headers, "Content-Type: application/json", &ok);
  o->headers = add_header(o->headers, "Expect:", &ok);
  o->user_agent = "qwenvl/" QV_VERSION;
  if (line.oom) ok = 0;
  /* wipe the key copies we made */
  if (line.data) memset(line.data, 0, line.len);
  memset(key.data, 0, key.len);
  qv_buf_free(&line);
  qv_buf_free(&key);
  free_images(&x);
  if (!ok) {
    curl_slist_free_all(o->headers);
    free(*body);
    *body = NULL;
    return qv_error_invalid(L, "request", "out of memory");
  }
  lua_settop(L, top);
  return 1;
fail:
  if (key.data) memset(key.data, 0, key.len);
  qv_buf_free(&key);
  qv_buf_free(&line);
  free_images(&x);
  free(*body);
  *body = NULL;
  return 0;                      /* nil, err are on top */
}
