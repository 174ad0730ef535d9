/*
** qwenvl: ask Qwen VL models (DashScope, OpenAI-compatible mode) about
** images. The front of the module: luaopen_qwenvl and the functions Lua
** sees, each a few lines over the units below it; nothing calls back
** into this file. Where things happen:
**   qv_request  a request is validated and its body built (qv_images,
**               qv_body, qv_target)
**   qv_handle   it is started and waited on; qv_many runs many at once
**   qv_call     it is sent and retried, on the engine (qv_engine)
**   qv_result   its answer becomes a result or an error table
*/
#define _GNU_SOURCE 1  /* dladdr, RTLD_NODELETE */
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>

#include "qv_compat.h"
#include "qv_draw_lua.h"
#include "qv_error.h"
#include "qv_handle.h"
#include "qv_many.h"
#include "qv_request.h"
#include "qv_resize.h"
#include "qv_state.h"
#include "qv_sys.h"
#include "qv_text.h"
#include "qv_watch.h"

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_code = CURLE_OK;  /* written once, under curl_once */

/* Every other symbol is hidden: the Makefile passes -fvisibility=hidden,
** and each header in src/ wraps its declarations in a GCC visibility pragma for
** builds that pass no such flag (luarocks' builtin type takes none from a
** rockspec), so no qv_* name can interpose on another module's or be
** interposed on in a host process. */
#if defined(__GNUC__)
#define QV_EXPORT __attribute__((visibility("default")))
#else
#define QV_EXPORT
#endif

QV_EXPORT int luaopen_qwenvl(lua_State *L);

/* Once per process: libcurl's global init, and pin this module in memory.
** lua_close() dlcloses C modules, but libcurl's resolver threads and
** libvips (loaded on demand, with a log handler here) may outlive the Lua
** state; unloading the code under them would crash the host. */
static void init_once(void) {
  Dl_info self;
  curl_init_code = curl_global_init(CURL_GLOBAL_DEFAULT);
  if (dladdr((void *)&luaopen_qwenvl, &self) && self.dli_fname != NULL)
    (void)dlopen(self.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
}

/* qwenvl.fd(): readable when transfer work is ready; nil where the
** engine has no single descriptor (the poll() build). */
static int m_fd(lua_State *L) {
  int fd = qv_engine_fd(qv_state_engine(L));
  if (fd < 0) lua_pushnil(L); else lua_pushinteger(L, fd);
  return 1;
}

/* qwenvl.timeout_ms(): when to step at the latest; nil when idle. */
static int m_timeout_ms(lua_State *L) {
  long ms = qv_engine_timeout_ms(qv_state_engine(L));
  if (ms < 0) lua_pushnil(L); else lua_pushinteger(L, ms);
  return 1;
}

/* qwenvl.step(): ready transfer work for every handle; returns the
** number of requests still in flight. */
static int m_step(lua_State *L) {
  qv_engine *e = qv_state_engine(L);
  qv_engine_step(e);
  lua_pushinteger(L, qv_engine_busy(e));
  return 1;
}

static int m_config(lua_State *L) {
  if (lua_isnoneornil(L, 1)) { lua_settop(L, 0); lua_newtable(L); }
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  return qv_return(L, qv_request_config(L, 1), 1);
}

/* qwenvl.prepare(request): the plan's info, body as it would be sent
** (inline images as notes); nothing is sent. */
static int m_prepare(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  if (qv_request_plan(L, 1, QV_KIND_CHAT) < 0) return 2;
  qv_getuservalue(L, 2);
  lua_getfield(L, -1, "request");
  lua_setfield(L, -2, "body");
  return 1;
}

/* qwenvl.encode(request [, {batch = true}]): the JSON body exactly as it
** would be sent (inline images as base64), and the plan's info; nothing
** is sent. batch = true makes a Batch API line body (no stream). */
static int m_encode(lua_State *L) {
  int flags = 0;
  qv_plan *p;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 2);
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "batch");
    if (lua_toboolean(L, -1)) flags |= QV_PLAN_BATCH;
    lua_pop(L, 1);
  }
  if (qv_request_plan_for(L, 1, QV_KIND_CHAT, flags) < 0) return 2;
  p = qv_request_check(L, 3);
  lua_pushlstring(L, p->body.data ? p->body.data : "", p->body.len);
  qv_getuservalue(L, 3);
  return 2;
}

/* qwenvl.image(source [, opts]): the image read, resized and encoded
** once: {url = data URL, info}; give url to later requests as the image. */
static int m_image(lua_State *L) {
  lua_settop(L, 2);
  if (lua_isnil(L, 2)) { lua_newtable(L); lua_replace(L, 2); }
  luaL_checktype(L, 2, LUA_TTABLE);
  return qv_return(L, qv_request_image(L, 1, 2), 1);
}

/* qwenvl.session(opts): a conversation (lua/qwenvl/session.lua), loaded
** on first use: this module is loaded by then. */
static int m_session(lua_State *L) {
  lua_settop(L, 1);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "qwenvl.session");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "new");
  lua_pushvalue(L, 1);
  lua_call(L, 1, LUA_MULTRET);
  return lua_gettop(L) - 2;
}

/* qwenvl.extract_json(text): the JSON value in a model's answer, by the
** same rule as result.json: the whole text, a ``` fence, the outermost
** braces. Returns the value or nil, err. */
static int m_extract_json(lua_State *L) {
  size_t n, off[3], len[3];
  const char *t = luaL_checklstring(L, 1, &n);
  int k = qv_text_json_spans(t, n, off, len), i;
  for (i = 0; i < k; i++) {
    if (qv_json_decode(L, t + off[i], len[i]) == 0) {
      if (lua_istable(L, -1)) return 1;
      lua_pop(L, 1);
    }
  }
  return qv_return(L, qv_fail(L, "bad_response", "the answer is not valid JSON"), 0);
}

/* Scrub one value: strings directly, tables deeply (a copy). `seen`
** maps each table copied to its copy, so a table met twice, or through a
** cycle, is copied once. Each level takes stack slots of its own: they
** are asked for, the few LUA_MINSTACK guarantees run out at depth ~20. */
static void scrub_value(lua_State *L, int v, const qv_secrets *sec, int seen,
                        int depth) {
  v = qv_absindex(L, v);
  luaL_checkstack(L, 8, "scrub");
  if (lua_type(L, v) == LUA_TSTRING) {
    size_t n;
    const char *s = lua_tolstring(L, v, &n);
    qv_push_scrubbed(L, sec, s, n);
  } else if (lua_istable(L, v) && depth < 64) {
    int t;
    lua_pushvalue(L, v);
    lua_rawget(L, seen);
    if (!lua_isnil(L, -1)) return;        /* copied already */
    lua_pop(L, 1);
    lua_newtable(L);
    t = lua_gettop(L);
    lua_pushvalue(L, v);
    lua_pushvalue(L, t);
    lua_rawset(L, seen);
    lua_pushnil(L);
    while (lua_next(L, v) != 0) {
      scrub_value(L, -2, sec, seen, depth + 1);
      scrub_value(L, -2, sec, seen, depth + 1);
      lua_rawset(L, t);
      lua_pop(L, 1);
    }
    if (lua_getmetatable(L, v)) lua_setmetatable(L, t);
  } else {
    lua_pushvalue(L, v);
  }
}

#define QV_SECRETS_MT "qwenvl.secrets"

static int secrets_gc(lua_State *L) {
  qv_secrets_wipe(luaL_checkudata(L, 1, QV_SECRETS_MT));
  return 0;
}

/* qwenvl.scrub(value [, opts]): value with every secret qwenvl would use
** for opts (the key from the request, the environment, ./.env or the
** credentials file; credentials in base_url and proxy) replaced, also in
** escaped forms. One source of truth for what is a secret: the evidence
** writer uses it. */
static int m_scrub(lua_State *L) {
  qv_secrets *sec;
  lua_settop(L, 2);
  if (lua_isnil(L, 2)) { lua_newtable(L); lua_replace(L, 2); }
  luaL_checktype(L, 2, LUA_TTABLE);
  sec = qv_newudata(L, sizeof *sec);     /* the storage: freed below, or */
  qv_secrets_init(sec);                  /* by the finalizer after a raise */
  luaL_getmetatable(L, QV_SECRETS_MT);
  lua_setmetatable(L, -2);
  if (qv_request_secrets(L, 2, sec) < 0) return 2;
  lua_newtable(L);                       /* 4: seen */
  scrub_value(L, 1, sec, 4, 0);
  qv_secrets_wipe(sec);
  return 1;
}

/* qwenvl.info([{resize = true}]): how this build works, for `qwenvl
** validate` and :checkhealth; never the key. resize = true also tries
** to load libvips (slow the first time). */
static int m_info(lua_State *L) {
  curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
  int check_vips = 0;
  if (lua_istable(L, 1)) {
    lua_getfield(L, 1, "resize");
    check_vips = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  lua_createtable(L, 0, 8);
  lua_pushliteral(L, QV_VERSION);
  lua_setfield(L, -2, "version");
  lua_pushstring(L, v->version);
  lua_setfield(L, -2, "curl");
  lua_pushstring(L, v->ssl_version ? v->ssl_version : "none");
  lua_setfield(L, -2, "tls");
  lua_pushboolean(L, (v->features & CURL_VERSION_HTTP2) != 0);
  lua_setfield(L, -2, "http2");
  lua_pushstring(L, qv_watch_backend());
  lua_setfield(L, -2, "engine");
  lua_pushstring(L, LUA_VERSION);
  lua_setfield(L, -2, "lua_abi");
  if (check_vips) {
    lua_pushboolean(L, qv_resize_available());
    lua_setfield(L, -2, "resize");
  }
  return 1;
}

QV_EXPORT int luaopen_qwenvl(lua_State *L) {
  static const luaL_Reg funcs[] = {
    { "chat", qv_handle_chat }, { "start", qv_handle_start },
    { "chat_many", qv_many_chat }, { "list_models", qv_handle_models },
    { "http", qv_handle_http },
    { "config", m_config }, { "prepare", m_prepare }, { "fd", m_fd },
    { "timeout_ms", m_timeout_ms }, { "step", m_step },
    { "extract_json", m_extract_json }, { "encode", m_encode },
    { "image", m_image }, { "session", m_session }, { "scrub", m_scrub }, { "info", m_info },
    { NULL, NULL }
  };
  pthread_once(&curl_once, init_once);
  if (curl_init_code != CURLE_OK)
    return luaL_error(L, "qwenvl: curl_global_init failed: %s",
                      curl_easy_strerror(curl_init_code));
  qv_error_register(L);
  qv_request_register(L);
  if (luaL_newmetatable(L, QV_SECRETS_MT)) {
    lua_pushcfunction(L, secrets_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  qv_many_register(L);
  qv_state_push_upvalues(L);
  qv_handle_register(L);
  lua_newtable(L);
  lua_insert(L, -1 - QV_NUPVALUES);
  luaL_setfuncs(L, funcs, QV_NUPVALUES);
  lua_pushcfunction(L, qv_error_new);
  lua_setfield(L, -2, "error");
  qv_sys_register(L, -1);
  qv_draw_register(L, -1);
  lua_pushliteral(L, QV_VERSION);
  lua_setfield(L, -2, "version");
  qv_request_regions(L);
  lua_setfield(L, -2, "regions");
  return 1;
}
