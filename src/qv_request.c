/* qv_request: request table -> validated plan (see qv_request.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qv_request.h"
#include "qv_body.h"
#include "qv_error.h"
#include "qv_images.h"
#include "qv_messages.h"
#include "qv_state.h"
#include "qv_target.h"
#include "qv_text.h"

#define QV_PROMPT_MAX (1u << 20)    /* the user text, JSON request included */
#define QV_STR_MAX 4096             /* paths, URLs */

static const char *const chat_fields[] = {
  "prompt", "image", "images", "model", "max_tokens", "temperature",
  "detail", "json_mode", "schema", "system", "max_retries",
  "retry_backoff_s", "timeout_s", "connect_timeout_s", "idle_timeout_s",
  "max_retry_after_s", "max_response_bytes", "api_key", "base_url",
  "region", "extra", "stream", "on_delta", "coalesce_ms", "coalesce_bytes",
  "enable_thinking", "thinking_budget", "cainfo", "capath", "proxy",
  "noproxy", "resize", "max_pixels", "max_side", "image_format", "quality",
  "min_pixels", "max_input_pixels", "messages", "video", "video_url", "fps",
  NULL
};

static const char *const models_fields[] = {
  "api_key", "base_url", "region", "max_retries", "retry_backoff_s",
  "timeout_s", "connect_timeout_s", "max_retry_after_s", "cainfo", "capath",
  "proxy", "noproxy", NULL
};

static const char *const http_fields[] = {
  "method", "path", "json", "body", "form", "download", "api_key", "base_url",
  "region", "max_retries", "retry_backoff_s", "timeout_s", "connect_timeout_s",
  "max_retry_after_s", "max_response_bytes", "cainfo", "capath", "proxy",
  "noproxy", NULL
};

/* Where the fields are while a plan is made. */
typedef struct ctx {
  lua_State *L;
  qv_plan *p;
  int flags;                      /* QV_PLAN_BATCH */
  int snap;                       /* plain copy of the request's fields */
  int info;                       /* the plan's info table */
} ctx;

/* ---- the plan userdata ------------------------------------------------- */

static void plan_release(qv_plan *p) {
  qv_images_free(p->images);
  p->images = NULL;
  free(p->form);
  p->form = NULL;
  qv_buf_free(&p->download);
  qv_buf_free(&p->scratch);
  qv_buf_free(&p->body);
  curl_slist_free_all(p->headers);   /* holds the key: wiped below first */
  p->headers = NULL;
  qv_buf_free(&p->url);
  qv_buf_free(&p->cainfo);
  qv_buf_free(&p->capath);
  qv_buf_free(&p->proxy);
  qv_buf_free(&p->noproxy);
  qv_secrets_wipe(&p->secrets);
}

/* Wipe the Authorization line before its memory goes back to malloc. */
static void wipe_headers(struct curl_slist *h) {
  for (; h != NULL; h = h->next)
    if (strncmp(h->data, "Authorization:", 14) == 0)
      memset(h->data, 0, strlen(h->data));
}

static int plan_gc(lua_State *L) {
  qv_plan *p = luaL_checkudata(L, 1, QV_PLAN_MT);
  wipe_headers(p->headers);
  plan_release(p);
  return 0;
}

void qv_request_register(lua_State *L) {
  if (luaL_newmetatable(L, QV_PLAN_MT)) {
    lua_pushcfunction(L, plan_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
}

qv_plan *qv_request_check(lua_State *L, int idx) {
  return luaL_checkudata(L, idx, QV_PLAN_MT);
}

static qv_plan *plan_new(lua_State *L) {
  qv_plan *p = qv_newudata(L, sizeof *p);
  memset(p, 0, sizeof *p);
  qv_buf_init(&p->body);
  qv_buf_init(&p->url);
  qv_buf_init(&p->cainfo);
  qv_buf_init(&p->capath);
  qv_buf_init(&p->proxy);
  qv_buf_init(&p->noproxy);
  qv_buf_init(&p->download);
  qv_buf_init(&p->scratch);
  qv_secrets_init(&p->secrets);
  luaL_getmetatable(L, QV_PLAN_MT);
  lua_setmetatable(L, -2);
  return p;
}

/* ---- reading fields: 1 present, 0 absent, -1 nil, err pushed ------------ */

/* Push snap[k] (raw). */
static int field(ctx *x, const char *k) {
  lua_pushstring(x->L, k);
  lua_rawget(x->L, x->snap);
  return lua_type(x->L, -1);
}

#define TEXT 1        /* must be UTF-8: it goes into the JSON body */
#define WORD 2        /* no spaces or control characters */
#define LINE 4        /* no control characters */

static int get_str(ctx *x, const char *k, const char **out, size_t *n,
                   size_t max, int rules) {
  lua_State *L = x->L;
  int ty = field(x, k);
  lua_pop(L, 1);
  if (ty == LUA_TNIL) return 0;
  if (ty != LUA_TSTRING) return qv_fail_field(L, k, "%s must be a string", k);
  field(x, k);
  *out = lua_tolstring(L, -1, n);      /* anchored in the snapshot */
  lua_pop(L, 1);
  if (*n == 0) return qv_fail_field(L, k, "%s must not be empty", k);
  if (*n > max) return qv_fail_field(L, k, "%s is too long (%lu bytes, at most %lu)",
                                     k, (unsigned long)*n, (unsigned long)max);
  if (memchr(*out, '\0', *n)) return qv_fail_field(L, k, "%s contains a NUL byte", k);
  if ((rules & WORD) && qv_text_has_ctl(*out, *n, QV_CTL_SPACE))
    return qv_fail_field(L, k, "%s contains spaces or control characters", k);
  if ((rules & LINE) && qv_text_has_ctl(*out, *n, 0))
    return qv_fail_field(L, k, "%s contains control characters", k);
  if ((rules & TEXT) && !qv_text_utf8_valid(*out, *n, NULL))
    return qv_fail_field(L, k, "%s is not valid UTF-8", k);
  return 1;
}

/* A number in [lo, hi] (checked before any conversion: 1e309, NaN and
** 2^63 are refused, not converted); integers must be whole. */
static int get_num(ctx *x, const char *k, double *out, double lo, double hi,
                   int integer) {
  lua_State *L = x->L;
  int ty = field(x, k);
  double v;
  if (ty == LUA_TNIL) { lua_pop(L, 1); return 0; }
  if (ty != LUA_TNUMBER) {
    lua_pop(L, 1);
    return qv_fail_field(L, k, integer ? "%s must be an integer"
                                       : "%s must be a number", k);
  }
  v = (double)lua_tonumber(L, -1);
  lua_pop(L, 1);
  if (!(v >= lo && v <= hi))
    return qv_fail_field(L, k, "%s is out of range: it must be between %.17g and %.17g",
                         k, lo, hi);
  if (integer && v != (double)(long long)v)
    return qv_fail_field(L, k, "%s must be an integer", k);
  *out = v;
  return 1;
}

static int get_bool(ctx *x, const char *k, int *out) {
  int ty = field(x, k);
  if (ty == LUA_TNIL) { lua_pop(x->L, 1); return 0; }
  if (ty != LUA_TBOOLEAN) {
    lua_pop(x->L, 1);
    return qv_fail_field(x->L, k, "%s must be a boolean", k);
  }
  *out = lua_toboolean(x->L, -1);
  lua_pop(x->L, 1);
  return 1;
}

/* An optional string copied into the plan (it outlives the snapshot). */
static int copy_str(ctx *x, const char *k, qv_buf *dst, const char **out) {
  const char *s = NULL;
  size_t n = 0;
  int r = get_str(x, k, &s, &n, QV_STR_MAX, LINE);
  *out = NULL;
  if (r <= 0) return r;
  qv_buf_add(dst, s, n);
  if (dst->oom) return qv_fail_field(x->L, k, "out of memory");
  *out = dst->data;
  return 1;
}

/* ---- the snapshot -------------------------------------------------------- */

/* The fields into a plain table: the request's own keys (each must be a
** known field: a typo is refused by name) copied raw, then, when it has
** a metatable, the known fields it lacks read through __index, once.
** Everything after reads the copy raw: one read per field, every string
** anchored. Pushes the copy and returns 0, or -1 with nil, err pushed. */
static int snapshot(lua_State *L, int req, const char *const *names) {
  int i, snap;
  lua_createtable(L, 0, 8);
  snap = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, req) != 0) {
    const char *k;
    if (lua_type(L, -2) != LUA_TSTRING) {
      lua_pop(L, 2);
      return qv_fail_field(L, "request", "request keys must be strings");
    }
    k = lua_tostring(L, -2);
    for (i = 0; names[i] && strcmp(names[i], k) != 0; i++) {}
    if (names[i] == NULL) {
      char name[64];
      snprintf(name, sizeof name, "%s", k);
      lua_pop(L, 2);
      return qv_fail_field(L, name, "unknown request field '%s' (DashScope "
                           "parameters go in `extra`)", name);
    }
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, snap);
  }
  if (lua_getmetatable(L, req)) {
    lua_pop(L, 1);
    for (i = 0; names[i]; i++) {
      lua_getfield(L, snap, names[i]);
      if (!lua_isnil(L, -1)) { lua_pop(L, 1); continue; }
      lua_pop(L, 1);
      lua_getfield(L, req, names[i]);       /* through __index */
      if (lua_isnil(L, -1)) { lua_pop(L, 1); continue; }
      lua_setfield(L, snap, names[i]);
    }
  }
  return 0;
}

/* The named fields only (options tables may hold others): pushes the
** copy. Cannot fail. */
static void snapshot_known(lua_State *L, int t, const char *const *names) {
  int i, snap;
  lua_createtable(L, 0, 4);
  snap = lua_gettop(L);
  for (i = 0; names[i]; i++) {
    lua_getfield(L, t, names[i]);
    if (lua_isnil(L, -1)) { lua_pop(L, 1); continue; }
    lua_setfield(L, snap, names[i]);
  }
}

/* ---- transport, endpoint, key ------------------------------------------ */

static int read_transport(ctx *x, int chat) {
  qv_plan *p = x->p;
  qv_call_opts *o = &p->call;
  double retries = 2, max_bytes = 64.0 * 1024 * 1024, ms = 50, bytes = 256;
  o->backoff_s = 1.5;
  o->timeout_s = chat ? 120 : 30;
  o->connect_timeout_s = 10;
  o->idle_timeout_s = 60;
  o->retry_after_cap_s = 60;
  if (get_num(x, "max_retries", &retries, 0, 20, 1) < 0 ||
      get_num(x, "retry_backoff_s", &o->backoff_s, 0, 600, 0) < 0 ||
      get_num(x, "timeout_s", &o->timeout_s, 0.001, 86400, 0) < 0 ||
      get_num(x, "connect_timeout_s", &o->connect_timeout_s, 0.001, 3600, 0) < 0 ||
      get_num(x, "idle_timeout_s", &o->idle_timeout_s, 0.001, 86400, 0) < 0 ||
      get_num(x, "max_retry_after_s", &o->retry_after_cap_s, 0, 86400, 0) < 0 ||
      get_num(x, "max_response_bytes", &max_bytes, 1024, 1e12, 1) < 0)
    return -1;
  if (chat && (get_num(x, "coalesce_ms", &ms, 0, 60000, 0) < 0 ||
               get_num(x, "coalesce_bytes", &bytes, 0, 1e9, 1) < 0))
    return -1;
  o->max_retries = (int)retries;
  o->max_response_bytes = (size_t)max_bytes;
  p->coalesce_s = ms / 1000.0;
  p->coalesce_bytes = (long)bytes;
  if (copy_str(x, "cainfo", &p->cainfo, &o->cainfo) < 0 ||
      copy_str(x, "capath", &p->capath, &o->capath) < 0 ||
      copy_str(x, "proxy", &p->proxy, &o->proxy) < 0 ||
      copy_str(x, "noproxy", &p->noproxy, &o->noproxy) < 0)
    return -1;
  if (o->proxy && qv_secrets_add_url(&p->secrets, o->proxy, p->proxy.len) != 0)
    return qv_fail_field(x->L, "proxy", "proxy credentials are too long");
  return 0;
}

/* The key, region and base URL (qv_target); base_url and region go into
** the info table, the key into the Authorization header. */
static int resolve_target(ctx *x) {
  lua_State *L = x->L;
  qv_plan *p = x->p;
  const char *k = NULL, *region = NULL, *base = NULL, *fieldname = NULL;
  size_t kn = 0, n;
  char msg[160];
  qv_target t;
  qv_buf key, line;
  int r = 0;
  if (get_str(x, "api_key", &k, &kn, 512, WORD) < 0 ||
      get_str(x, "region", &region, &n, 16, WORD) < 0 ||
      get_str(x, "base_url", &base, &n, QV_BASE_URL_MAX, WORD) < 0)
    return -1;
  qv_buf_init(&key);
  qv_buf_init(&line);
  if (qv_target_resolve(k, kn, region, base, &key, &t, &fieldname, msg, sizeof msg) != 0) {
    r = qv_fail_field(L, fieldname, "%s", msg);
  } else if (key.len == 0) {
    lua_pushnil(L);
    qv_error_push(L, "auth", "no API key: pass api_key, set DASHSCOPE_API_KEY "
                  "(in the environment or ./.env), or add dashscope_api_key to "
                  "~/.alibabacloud/credentials");
    qv_error_str(L, "field", "api_key");
    r = -1;
  } else {
    qv_buf_adds(&line, "Authorization: Bearer ");
    qv_buf_add(&line, key.data, key.len);
    p->headers = line.oom ? NULL : curl_slist_append(NULL, line.data);
    if (p->headers == NULL ||
        qv_secrets_add(&p->secrets, key.data, key.len) != 0 ||
        qv_secrets_add_url(&p->secrets, t.base, t.base_len) != 0)
      r = qv_fail_field(L, "api_key", "out of memory");
  }
  if (key.data) memset(key.data, 0, key.len);
  if (line.data) memset(line.data, 0, line.len);
  qv_buf_free(&key);
  qv_buf_free(&line);
  if (r < 0) return r;
  lua_pushlstring(L, t.base, t.base_len);
  lua_setfield(L, x->info, "base_url");
  lua_pushstring(L, t.region);
  lua_setfield(L, x->info, "region");
  lua_pushstring(L, t.key_source);
  lua_setfield(L, x->info, "key_source");
  return 0;
}

void qv_request_regions(lua_State *L) {
  int i;
  lua_newtable(L);
  for (i = 0; qv_regions[i][0]; i++) {
    lua_pushstring(L, qv_regions[i][1]);
    lua_setfield(L, -2, qv_regions[i][0]);
  }
}

/* The endpoint options at idx, resolved: key into key (the caller wipes
** it), target into t. 0, or -1 with nil, err pushed. */
static int resolve_options(lua_State *L, int idx, qv_buf *key, qv_target *t,
                           const char **proxy, size_t *proxy_len) {
  static const char *const names[] = { "api_key", "base_url", "region", "proxy", NULL };
  ctx x;
  const char *k = NULL, *region = NULL, *base = NULL, *fieldname = NULL;
  size_t kn = 0, n;
  char msg[160];
  memset(&x, 0, sizeof x);
  x.L = L;
  *proxy = NULL;
  snapshot_known(L, qv_absindex(L, idx), names);
  x.snap = lua_gettop(L);
  if (get_str(&x, "api_key", &k, &kn, 512, WORD) < 0 ||
      get_str(&x, "region", &region, &n, 16, WORD) < 0 ||
      get_str(&x, "base_url", &base, &n, QV_BASE_URL_MAX, WORD) < 0 ||
      get_str(&x, "proxy", proxy, proxy_len, QV_STR_MAX, LINE) < 0)
    return -1;
  if (qv_target_resolve(k, kn, region, base, key, t, &fieldname, msg, sizeof msg) != 0)
    return qv_fail_field(L, fieldname, "%s", msg);
  return 0;
}

int qv_request_config(lua_State *L, int idx) {
  qv_target t;
  qv_buf key;
  const char *proxy;
  size_t pn, has_key;
  int top = lua_gettop(L), r;
  qv_buf_init(&key);
  r = resolve_options(L, idx, &key, &t, &proxy, &pn);
  if (key.data) memset(key.data, 0, key.len);
  has_key = key.len;
  qv_buf_free(&key);
  if (r < 0) return -1;
  lua_settop(L, top);
  lua_createtable(L, 0, 4);
  lua_pushlstring(L, t.base, t.base_len);
  lua_setfield(L, -2, "base_url");
  lua_pushstring(L, t.region);
  lua_setfield(L, -2, "region");
  lua_pushboolean(L, has_key > 0);
  lua_setfield(L, -2, "has_key");
  if (t.key_source) {
    lua_pushstring(L, t.key_source);
    lua_setfield(L, -2, "key_source");
  }
  return 0;
}

int qv_request_secrets(lua_State *L, int idx, qv_secrets *sec) {
  qv_target t;
  qv_buf key;
  const char *proxy;
  size_t pn = 0;
  int top = lua_gettop(L), r;
  qv_buf_init(&key);
  r = resolve_options(L, idx, &key, &t, &proxy, &pn);
  if (r == 0 && (qv_secrets_add(sec, key.data, key.len) != 0 ||
                 qv_secrets_add_url(sec, t.base, t.base_len) != 0 ||
                 (proxy && qv_secrets_add_url(sec, proxy, pn) != 0)))
    r = qv_fail(L, "invalid_request", "the credentials are too long to scrub");
  if (key.data) memset(key.data, 0, key.len);
  qv_buf_free(&key);
  if (r < 0) return -1;
  lua_settop(L, top);
  return 0;
}

/* ---- chat fields ---------------------------------------------------------- */

/* The resize fields; max_pixels and min_pixels are also sent per image. */
static int read_resize(ctx *x, qv_images_opts *o, const char *detail) {
  lua_State *L = x->L;
  qv_resize_opts *r = &o->resize;
  const char *s;
  size_t n;
  double v;
  int got;
  memset(o, 0, sizeof *o);
  r->mode = QV_RESIZE_AUTO;
  o->high = strcmp(detail, "high") == 0;
  if ((got = get_str(x, "resize", &s, &n, 16, WORD)) < 0) return -1;
  if (got) {
    if (strcmp(s, "auto") == 0) r->mode = QV_RESIZE_AUTO;
    else if (strcmp(s, "off") == 0) r->mode = QV_RESIZE_OFF;
    else if (strcmp(s, "always") == 0) r->mode = QV_RESIZE_ALWAYS;
    else return qv_fail_field(L, "resize", "resize must be auto, off or always (got '%s')", s);
  }
  if ((got = get_str(x, "image_format", &s, &n, 16, WORD)) < 0) return -1;
  if (got) {
    if (strcmp(s, "jpeg") == 0 || strcmp(s, "jpg") == 0) r->format = QV_FMT_JPEG;
    else if (strcmp(s, "png") == 0) r->format = QV_FMT_PNG;
    else if (strcmp(s, "webp") == 0) r->format = QV_FMT_WEBP;
    else return qv_fail_field(L, "image_format", "image_format must be jpeg, png "
                              "or webp (got '%s')", s);
  }
  if ((got = get_num(x, "quality", &v, 1, 100, 1)) < 0) return -1;
  if (got) r->quality = (int)v;
  if ((got = get_num(x, "max_side", &v, 1, 1e6, 1)) < 0) return -1;
  if (got) r->max_side = (unsigned)v;
  if ((got = get_num(x, "max_pixels", &v, 1, 1e10, 1)) < 0) return -1;
  if (got) r->max_pixels = (unsigned long)(o->max_pixels = v);
  if ((got = get_num(x, "min_pixels", &v, 1, 1e10, 1)) < 0) return -1;
  if (got) o->min_pixels = v;
  if ((got = get_num(x, "max_input_pixels", &v, 1, 1e11, 1)) < 0) return -1;
  if (got) r->max_input_pixels = (unsigned long)v;
  /* a resize may not outlast the call it is for */
  r->timeout_s = x->p->call.timeout_s;
  /* detail="high" raises the server's budget to 16,384 tokens */
  if (o->high && r->max_pixels == 0) r->max_pixels = 16384ul * 1024;
  if (o->min_pixels > 0 && o->max_pixels > 0 && o->min_pixels > o->max_pixels)
    return qv_fail_field(L, "min_pixels", "min_pixels must not exceed max_pixels");
  return 0;
}

/* schema: a table or JSON text; its JSON goes into the prompt. Pushes the
** schema's JSON text (or nothing when there is no schema). */
static int read_schema(ctx *x, int *has) {
  lua_State *L = x->L;
  int ty = field(x, "schema");
  size_t n;
  const char *s;
  *has = 0;
  if (ty == LUA_TNIL) { lua_pop(L, 1); return 0; }
  if (ty == LUA_TSTRING) {
    s = lua_tolstring(L, -1, &n);
    if (qv_json_decode(L, s, n) != 0) {
      lua_pop(L, 1);
      return qv_fail_field(L, "schema", "schema is not valid JSON (an object)");
    }
    lua_replace(L, -2);
    if (!lua_istable(L, -1)) {
      lua_pop(L, 1);
      return qv_fail_field(L, "schema", "schema is not valid JSON (an object)");
    }
  } else if (ty != LUA_TTABLE) {
    lua_pop(L, 1);
    return qv_fail_field(L, "schema", "schema must be a table or a JSON string");
  }
  lua_pushvalue(L, -1);
  lua_setfield(L, x->info, "schema");
  if (qv_json_encode(L, -1) != 0) {
    lua_pop(L, 1);
    return qv_fail_field(L, "schema", "schema cannot be encoded as JSON");
  }
  lua_remove(L, -2);
  s = lua_tolstring(L, -1, &n);
  if (!qv_text_utf8_valid(s, n, NULL)) {
    lua_pop(L, 1);
    return qv_fail_field(L, "schema", "schema is not valid UTF-8");
  }
  lua_pushvalue(L, -1);
  lua_setfield(L, x->info, "schema_json");
  *has = 1;
  return 0;
}

/* The user text: the prompt, and the JSON request when an answer must be
** JSON (DashScope requires the word "JSON" in the prompt then). Pushes it. */
static int user_text(ctx *x, const char *prompt, size_t plen, int has_schema,
                     int json_mode) {
  lua_State *L = x->L;
  size_t n;
  if (has_schema) {
    lua_pushlstring(L, prompt, plen);
    lua_pushliteral(L, "\n\nRespond with JSON only: one JSON value matching "
                    "this JSON Schema:\n");
    lua_pushvalue(L, -3);              /* the schema text below */
    lua_concat(L, 3);
    lua_remove(L, -2);
  } else if (json_mode) {
    lua_pushlstring(L, prompt, plen);
    lua_pushliteral(L, "\n\nRespond with a single JSON object only.");
    lua_concat(L, 2);
  } else {
    lua_pushlstring(L, prompt, plen);
  }
  lua_tolstring(L, -1, &n);
  if (n > QV_PROMPT_MAX)
    return qv_fail_field(L, has_schema ? "schema" : "prompt", "the prompt%s is too "
                         "long (%lu bytes, at most %lu)", has_schema ? " with its "
                         "schema" : "", (unsigned long)n, (unsigned long)QV_PROMPT_MAX);
  return 0;
}

/* QVQ models answer only streamed requests and always think. */
static int is_qvq(const char *model) {
  return qv_text_iprefix(model, strlen(model), "qvq-");
}

/* The stack index of snap[k], pushed (0 and nothing when absent). */
static int present(ctx *x, const char *k) {
  if (field(x, k) == LUA_TNIL) { lua_pop(x->L, 1); return 0; }
  return lua_gettop(x->L);
}

/* With the caller's own messages, the JSON request goes into the last
** user message (DashScope wants the word "JSON" in the prompt). */
static void json_into_messages(lua_State *L, int msgs, int text) {
  int i, n = (int)lua_rawlen(L, msgs);
  for (i = n; i >= 1; i--) {
    lua_rawgeti(L, msgs, i);
    lua_getfield(L, -1, "role");
    if (strcmp(lua_tostring(L, -1), "user") == 0) {
      lua_getfield(L, -2, "content");
      if (lua_istable(L, -1)) {
        lua_createtable(L, 0, 2);
        lua_pushliteral(L, "text");
        lua_setfield(L, -2, "type");
        lua_pushvalue(L, text);
        lua_setfield(L, -2, "text");
        lua_rawseti(L, -2, (int)lua_rawlen(L, -2) + 1);
        lua_pop(L, 3);
      } else {
        lua_pushliteral(L, "\n\n");
        lua_pushvalue(L, text);
        lua_concat(L, 3);
        lua_setfield(L, -3, "content");
        lua_pop(L, 2);
      }
      return;
    }
    lua_pop(L, 2);
  }
}

/* result.images (the images) and result.videos ({fps, frames}) from the
** info of every source. */
static void sort_infos(lua_State *L, int infos, const qv_messages_out *m, int info) {
  int i, n = (int)lua_rawlen(L, infos), images, nimages = 0;
  lua_newtable(L);
  images = lua_gettop(L);
  for (i = 1; i <= n; i++) {
    int slot;
    lua_rawgeti(L, m->slots, i);
    slot = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    lua_rawgeti(L, infos, i);
    if (slot == 0) {
      lua_rawseti(L, images, ++nimages);
    } else {
      lua_rawgeti(L, m->videos, slot);
      lua_getfield(L, -1, "frames");
      if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, "frames");
      }
      lua_pushvalue(L, -3);
      lua_rawseti(L, -2, (int)lua_rawlen(L, -2) + 1);
      lua_pop(L, 3);
    }
  }
  lua_setfield(L, info, "images");
  if (lua_rawlen(L, m->videos) > 0) {
    lua_pushvalue(L, m->videos);
    lua_setfield(L, info, "videos");
  }
}

static int plan_chat(ctx *x) {
  lua_State *L = x->L;
  qv_plan *p = x->p;
  qv_body_in b;
  qv_messages_in mi;
  qv_messages_out mo;
  qv_images_opts io;
  const char *prompt = NULL;
  size_t plen = 0, n;
  double max_tokens = 512, temperature = 0.2, budget = 0;
  int json_mode = 0, stream = 0, thinking = 0, has_thinking, has_schema, qvq,
      extra_thinking = -1, r, text;
  memset(&b, 0, sizeof b);
  memset(&mi, 0, sizeof mi);
  b.model = "qwen3-vl-plus";
  mi.detail = "auto";
  mi.messages = present(x, "messages");
  if ((r = get_str(x, "prompt", &prompt, &plen, QV_PROMPT_MAX, TEXT)) < 0) return -1;
  if (mi.messages) {
    static const char *const alone[] = { "prompt", "image", "images", "video",
                                         "video_url", "system", NULL };
    int i;
    for (i = 0; alone[i]; i++)
      if (field(x, alone[i]) != LUA_TNIL)
        return qv_fail_field(L, alone[i], "give %s or messages, not both (put it in "
                             "a message)", alone[i]);
      else lua_pop(L, 1);
  } else if (r == 0) {
    return qv_fail_field(L, "prompt", "prompt is required");
  }
  if (get_str(x, "model", &b.model, &n, 128, WORD | TEXT) < 0 ||
      get_str(x, "system", &mi.system, &n, QV_PROMPT_MAX, TEXT) < 0 ||
      get_str(x, "detail", &mi.detail, &n, 8, WORD) < 0)
    return -1;
  if (strcmp(mi.detail, "auto") && strcmp(mi.detail, "low") && strcmp(mi.detail, "high"))
    return qv_fail_field(L, "detail", "detail must be auto, low or high (got '%s')",
                         mi.detail);
  if (read_resize(x, &io, mi.detail) < 0 ||
      get_num(x, "max_tokens", &max_tokens, 1, 131072, 1) < 0 ||
      get_num(x, "temperature", &temperature, 0, 1.999999, 0) < 0 ||
      get_num(x, "fps", &mi.fps, 0.1, 10, 0) < 0 ||
      get_bool(x, "json_mode", &json_mode) < 0 ||
      get_bool(x, "stream", &stream) < 0 ||
      (has_thinking = get_bool(x, "enable_thinking", &thinking)) < 0 ||
      get_num(x, "thinking_budget", &budget, 1, 1e7, 1) < 0)
    return -1;
  if (field(x, "on_delta") != LUA_TNIL && !lua_isfunction(L, -1)) {
    lua_pop(L, 1);
    return qv_fail_field(L, "on_delta", "on_delta must be a function");
  }
  lua_setfield(L, x->info, "on_delta");
  b.extra = 0;
  if (field(x, "extra") != LUA_TNIL) {
    if (!lua_istable(L, -1)) {
      lua_pop(L, 1);
      return qv_fail_field(L, "extra", "extra must be a table");
    }
    b.extra = lua_gettop(L);
    lua_getfield(L, b.extra, "enable_thinking");
    if (lua_isboolean(L, -1)) extra_thinking = lua_toboolean(L, -1);
    lua_pop(L, 1);
  } else {
    lua_pop(L, 1);
  }
  if (!has_thinking && extra_thinking >= 0) thinking = extra_thinking;
  qvq = is_qvq(b.model);
  if (qvq && ((has_thinking && !thinking) || extra_thinking >= 0))
    return qv_fail_field(L, has_thinking ? "enable_thinking" : "extra",
                         "QVQ models always think and refuse enable_thinking: "
                         "leave it out");
  if (read_schema(x, &has_schema) < 0) return -1;
  if ((json_mode || has_schema) && (thinking || qvq))
    return qv_fail_field(L, json_mode ? "json_mode" : "schema", "JSON output cannot "
                         "be combined with thinking (DashScope refuses it)");
  if (user_text(x, prompt ? prompt : "", plen, has_schema, json_mode) < 0) return -1;
  text = lua_gettop(L);
  mi.text = lua_tolstring(L, text, &mi.text_len);
  lua_pushinteger(L, (lua_Integer)mi.text_len);
  lua_setfield(L, x->info, "text_bytes");
  mi.image = present(x, "image");
  mi.images = present(x, "images");
  mi.video = present(x, "video");
  mi.video_url = present(x, "video_url");
  mi.model = b.model;
  mi.min_pixels = io.min_pixels;
  mi.max_pixels = io.max_pixels;
  if (qv_messages_build(L, &mi, (const void *)p, &mo) < 0) return -1;
  if (mi.messages && (json_mode || has_schema))
    json_into_messages(L, mo.messages, text);
  if (qv_images_read(L, &p->images, mo.sources, mo.fields, &io) < 0) return -1;
  sort_infos(L, lua_gettop(L), &mo, x->info);
  p->json = json_mode || has_schema;
  p->user_stream = stream;
  /* Thinking streams under the hood: long reasoning risks the service's
  ** non-streaming timeout, and a stream lets idle_timeout_s catch a stall.
  ** QVQ answers streamed requests only. A batch line never streams. */
  p->call.stream = stream || thinking || qvq;
  if (x->flags & QV_PLAN_BATCH) {
    if (stream || qvq)
      return qv_fail_field(L, stream ? "stream" : "model", "%s", stream
                           ? "a Batch API line cannot stream"
                           : "QVQ models answer streamed requests only: not in a batch");
    p->call.stream = 0;
  }
  b.messages = mo.messages;
  b.spots = mo.spots;
  b.nonce = (const void *)p;
  b.max_tokens = (lua_Integer)max_tokens;
  b.temperature = temperature;
  b.json = p->json;
  b.high = io.high;
  b.thinking = has_thinking && !qvq ? thinking : -1;
  b.thinking_budget = (lua_Integer)budget;
  b.stream = p->call.stream;
  b.images = p->images;
  if (qv_body_build(L, &b, &p->body) < 0) return -1;
  lua_setfield(L, x->info, "request");
  /* the image bytes are in the body now */
  qv_images_free(p->images);
  p->images = NULL;
  lua_pushstring(L, b.model);
  lua_setfield(L, x->info, "model");
  lua_pushboolean(L, p->json);
  lua_setfield(L, x->info, "json");
  lua_pushboolean(L, stream);
  lua_setfield(L, x->info, "user_stream");
  return 0;
}

/* ---- one image, encoded once (sessions reuse it) -------------------------- */

int qv_request_image(lua_State *L, int src, int opts) {
  static const char *const names[] = { "resize", "max_pixels", "max_side",
    "image_format", "quality", "min_pixels", "max_input_pixels", "detail", NULL };
  ctx x;
  qv_images_opts io;
  qv_images *im = NULL;
  const char *detail = "auto";
  size_t n;
  int top, sources, fields, r;
  qv_plan *p;
  src = qv_absindex(L, src);
  opts = qv_absindex(L, opts);
  memset(&x, 0, sizeof x);
  x.L = L;
  p = plan_new(L);                   /* owns the image bytes meanwhile */
  top = lua_gettop(L);
  x.p = p;
  p->call.timeout_s = 120;
  if (snapshot(L, opts, names) < 0) {
    qv_error_settle(L, top - 1);
    return -1;
  }
  x.snap = lua_gettop(L);
  if (get_str(&x, "detail", &detail, &n, 8, WORD) < 0 || read_resize(&x, &io, detail) < 0) {
    qv_error_settle(L, top - 1);
    return -1;
  }
  lua_createtable(L, 1, 0);
  sources = lua_gettop(L);
  lua_pushvalue(L, src);
  lua_rawseti(L, sources, 1);
  lua_createtable(L, 1, 0);
  fields = lua_gettop(L);
  lua_pushliteral(L, "image");
  lua_rawseti(L, fields, 1);
  if (lua_type(L, src) != LUA_TSTRING) {
    r = qv_fail_field(L, "image", "image must be a string");
  } else {
    r = qv_images_read(L, &p->images, sources, fields, &io);
  }
  if (r < 0) {
    qv_error_settle(L, top - 1);
    return -1;
  }
  im = p->images;
  lua_createtable(L, 0, 2);
  if (im->item[0].inline_data) {
    qv_buf url;
    qv_buf_init(&url);
    qv_image_in_url(&url, &im->item[0]);
    if (url.oom) {
      qv_buf_free(&url);
      qv_error_settle(L, top - 1);
      return qv_fail_field(L, "image", "out of memory");
    }
    lua_pushlstring(L, url.data, url.len);
    qv_buf_free(&url);
  } else {
    lua_pushlstring(L, im->item[0].url, im->item[0].url_len);
  }
  lua_setfield(L, -2, "url");
  lua_rawgeti(L, -2, 1);                     /* the info */
  lua_setfield(L, -2, "info");
  lua_replace(L, top);
  lua_settop(L, top);
  return 0;
}

/* ---- any method and path (Files and Batch APIs) -------------------------- */

/* form = { {name=, value=} or {name=, file=, filename=, type=}, ... } */
static int read_form(ctx *x) {
  lua_State *L = x->L;
  qv_plan *p = x->p;
  int list, i, n;
  if (field(x, "form") == LUA_TNIL) { lua_pop(L, 1); return 0; }
  if (!lua_istable(L, -1)) return qv_fail_field(L, "form", "form must be a list of parts");
  list = lua_gettop(L);
  lua_pushvalue(L, list);
  lua_setfield(L, x->info, "form");         /* keeps the strings alive */
  n = (int)lua_rawlen(L, list);
  if (n == 0 || n > 16) return qv_fail_field(L, "form", "form must have 1 to 16 parts");
  p->form = calloc((size_t)n, sizeof *p->form);
  if (p->form == NULL) return qv_fail_field(L, "form", "out of memory");
  p->nform = n;
  for (i = 0; i < n; i++) {
    static const char *const keys[] = { "name", "value", "file", "filename", "type", NULL };
    const char **slot[5];
    int k;
    slot[0] = &p->form[i].name; slot[1] = &p->form[i].value;
    slot[2] = &p->form[i].file; slot[3] = &p->form[i].filename;
    slot[4] = &p->form[i].type;
    lua_rawgeti(L, list, i + 1);
    if (!lua_istable(L, -1)) return qv_fail_field(L, "form", "form[%d] must be a table", i + 1);
    for (k = 0; keys[k]; k++) {
      size_t len;
      lua_getfield(L, -1, keys[k]);
      if (lua_type(L, -1) == LUA_TSTRING) {
        *slot[k] = lua_tolstring(L, -1, &len);   /* anchored in info.form */
        if (memchr(*slot[k], '\0', len) || (k != 1 && qv_text_has_ctl(*slot[k], len, 0)))
          return qv_fail_field(L, "form", "form[%d].%s contains control characters",
                               i + 1, keys[k]);
      } else if (!lua_isnil(L, -1)) {
        return qv_fail_field(L, "form", "form[%d].%s must be a string", i + 1, keys[k]);
      }
      lua_pop(L, 1);
    }
    if (p->form[i].name == NULL || (p->form[i].value == NULL) == (p->form[i].file == NULL))
      return qv_fail_field(L, "form", "form[%d] needs a name and a value or a file", i + 1);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return 0;
}

static int plan_http(ctx *x) {
  lua_State *L = x->L;
  qv_plan *p = x->p;
  const char *method = "GET", *path = NULL, *s;
  size_t n;
  int r, has_body;
  if (get_str(x, "method", &method, &n, 8, WORD) < 0) return -1;
  if (strcmp(method, "GET") && strcmp(method, "POST") && strcmp(method, "DELETE"))
    return qv_fail_field(L, "method", "method must be GET, POST or DELETE");
  if ((r = get_str(x, "path", &path, &n, 2048, WORD | TEXT)) < 0) return -1;
  if (r == 0 || path[0] != '/')
    return qv_fail_field(L, "path", "path must start with '/' (it goes after the base URL)");
  qv_buf_adds(&p->url, path);
  if (read_form(x) < 0) return -1;
  has_body = field(x, "json") != LUA_TNIL;
  if (has_body) {
    if (qv_json_encode(L, -1) != 0) {
      lua_pop(L, 1);
      return qv_fail_field(L, "json", "json cannot be encoded as JSON");
    }
    s = lua_tolstring(L, -1, &n);
    qv_buf_add(&p->body, s, n);
    lua_pop(L, 2);
  } else {
    lua_pop(L, 1);
    if ((r = get_str(x, "body", &s, &n, (size_t)1 << 30, 0)) < 0) return -1;
    if (r) { qv_buf_add(&p->body, s, n); has_body = 1; }
  }
  if (has_body && p->form)
    return qv_fail_field(L, "form", "give form or a body (json, body), not both");
  if ((has_body || p->form) && strcmp(method, "POST") != 0)
    return qv_fail_field(L, "method", "only POST sends a body");
  if ((r = get_str(x, "download", &s, &n, QV_STR_MAX, LINE)) < 0) return -1;
  if (r) { qv_buf_add(&p->download, s, n); p->call.download = p->download.data; }
  /* POST is not idempotent here (it creates a batch): never retried
  ** unless the caller said how many times */
  if (strcmp(method, "POST") == 0) {
    if (field(x, "max_retries") == LUA_TNIL) p->call.max_retries = 0;
    lua_pop(L, 1);
    /* a POST that may not be retried is not re-sent by libcurl either */
    if (p->call.max_retries == 0) p->call.fresh_connect = 1;
  }
  /* a literal: `method` lives only as long as the snapshot */
  if (strcmp(method, "GET") == 0) p->call.method = "GET";
  else if (strcmp(method, "POST") == 0) p->call.method = "POST";
  else p->call.method = "DELETE";
  p->call.form = p->form;
  p->call.nform = p->nform;
  if (p->body.oom || p->url.oom || p->download.oom)
    return qv_fail_field(L, "body", "out of memory");
  lua_pushboolean(L, field(x, "json") != LUA_TNIL);
  lua_setfield(L, x->info, "json_body");
  lua_pop(L, 1);
  return 0;
}

/* ---- the plan ------------------------------------------------------------ */

static int finish_plan(ctx *x) {
  static const char *const kinds[] = { "chat", "models", "http" };
  lua_State *L = x->L;
  qv_plan *p = x->p;
  int chat = p->kind == QV_KIND_CHAT, json_body = chat;
  struct curl_slist *h;
  qv_buf path;
  /* the URL: the base, then the path (http has put its own in p->url) */
  qv_buf_init(&path);
  qv_buf_add(&path, p->url.data ? p->url.data : "", p->url.len);
  qv_buf_reset(&p->url);
  lua_getfield(L, x->info, "base_url");
  qv_buf_add(&p->url, lua_tostring(L, -1), lua_rawlen(L, -1));
  lua_pop(L, 1);
  if (p->kind == QV_KIND_HTTP) {
    qv_buf_add(&p->url, path.data, path.len);
    lua_getfield(L, x->info, "json_body");
    json_body = lua_toboolean(L, -1);
    lua_pop(L, 1);
  } else {
    qv_buf_adds(&p->url, chat ? "/chat/completions" : "/models");
    p->call.method = chat ? "POST" : "GET";
  }
  qv_buf_free(&path);
  h = curl_slist_append(p->headers, p->call.stream ? "Accept: text/event-stream"
                        : p->call.download ? "Accept: application/octet-stream"
                        : "Accept: application/json");
  if (h != NULL && json_body) h = curl_slist_append(h, "Content-Type: application/json");
  if (h != NULL) h = curl_slist_append(h, "Expect:");
  if (h == NULL || p->url.oom) return qv_fail_field(L, "request", "out of memory");
  p->call.url = p->url.data;
  p->call.user_agent = "qwenvl/" QV_VERSION;
  lua_pushlstring(L, p->url.data, p->url.len);
  lua_setfield(L, x->info, "url");
  lua_pushstring(L, kinds[p->kind]);
  lua_setfield(L, x->info, "kind");
  return 0;
}

static int plan(lua_State *L, int req, qv_kind kind, int flags) {
  const char *const *names = kind == QV_KIND_CHAT ? chat_fields
                           : kind == QV_KIND_MODELS ? models_fields : http_fields;
  ctx x;
  int top;
  memset(&x, 0, sizeof x);
  x.L = L;
  x.flags = flags;
  x.p = plan_new(L);
  top = lua_gettop(L);
  x.p->kind = kind;
  lua_createtable(L, 0, 16);
  x.info = lua_gettop(L);
  lua_pushvalue(L, x.info);
  qv_setuservalue(L, top);
  if (snapshot(L, req, names) < 0) {
    qv_error_settle(L, top - 1);
    return -1;
  }
  x.snap = lua_gettop(L);
  if (read_transport(&x, kind == QV_KIND_CHAT) < 0 || resolve_target(&x) < 0 ||
      (kind == QV_KIND_CHAT && plan_chat(&x) < 0) ||
      (kind == QV_KIND_HTTP && plan_http(&x) < 0) || finish_plan(&x) < 0) {
    /* the error may quote the caller's text (a path, a URL): scrub it */
    qv_scrub_fields(L, -1, &x.p->secrets);
    qv_error_settle(L, top - 1);
    return -1;
  }
  lua_settop(L, top);
  return 0;
}

int qv_request_plan(lua_State *L, int idx, qv_kind kind) {
  return plan(L, qv_absindex(L, idx), kind, 0);
}

int qv_request_plan_for(lua_State *L, int idx, qv_kind kind, int flags) {
  return plan(L, qv_absindex(L, idx), kind, flags);
}

qv_call *qv_request_start(qv_plan *p, qv_engine *e, const char **why) {
  qv_call *c;
  char *body = p->body.data;
  size_t len = p->body.len;
  p->call.headers = p->headers;
  p->headers = NULL;
  qv_buf_init(&p->body);           /* ownership goes to the call */
  c = qv_call_new(e, &p->call, body, len, why);
  p->call.headers = NULL;
  return c;
}
