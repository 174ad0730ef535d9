/*
** qwenvl: ask Qwen VL models (DashScope, OpenAI-compatible mode) about
** images. The module entry point: the engine (one per Lua state, held as
** an upvalue, never a C global), cjson, and the functions Lua sees.
*/
#define _GNU_SOURCE 1  /* dladdr, RTLD_NODELETE */
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>
#include <curl/curl.h>

#include "qv_lua.h"

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_code = CURLE_OK;  /* written once, under curl_once */

/* Once per process: libcurl's global init, and pin this module in memory.
** lua_close() dlcloses C modules, but libcurl's resolver threads and
** libvips (loaded on demand, with a log handler here) may outlive the Lua
** state; unloading the code under them would crash the host. */
static void init_once(void) {
  Dl_info self;
  curl_init_code = curl_global_init(CURL_GLOBAL_DEFAULT);
  if (dladdr((void *)&qv_lua_engine, &self) && self.dli_fname != NULL)
    (void)dlopen(self.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
}

qv_engine *qv_lua_engine(lua_State *L) {
  qv_engine_ud *u = lua_touserdata(L, QV_UPV_ENGINE);
  long pid = (long)getpid();
  if (u->engine == NULL || u->pid != pid) {
    const char *why = "unknown";
    /* after fork the old engine is abandoned, deliberately not released */
    u->engine = qv_engine_new(&why);
    if (u->engine == NULL) luaL_error(L, "qwenvl: %s", why);
    u->pid = pid;
  }
  return u->engine;
}

static int engine_gc(lua_State *L) {
  qv_engine_ud *u = luaL_checkudata(L, 1, QV_ENGINE_MT);
  if (u->engine != NULL && u->pid == (long)getpid())
    qv_engine_release(u->engine);     /* calls still alive keep it */
  u->engine = NULL;
  return 0;
}

/* qwenvl.fd(): readable when transfer work is ready (epoll set). */
static int m_fd(lua_State *L) {
  lua_pushinteger(L, qv_engine_fd(qv_lua_engine(L)));
  return 1;
}

/* qwenvl.timeout_ms(): when to step at the latest; nil if idle. */
static int m_timeout_ms(lua_State *L) {
  long ms = qv_engine_timeout_ms(qv_lua_engine(L));
  if (ms < 0) lua_pushnil(L); else lua_pushinteger(L, ms);
  return 1;
}

/* qwenvl.step(): do ready transfer work for every handle; returns the
** number of requests still in flight. */
static int m_step(lua_State *L) {
  qv_engine *e = qv_lua_engine(L);
  qv_engine_step(e);
  lua_pushinteger(L, qv_engine_busy(e));
  return 1;
}

static int m_config(lua_State *L) {
  if (lua_isnoneornil(L, 1)) { lua_settop(L, 0); lua_newtable(L); }
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  qv_request_config(L, 1);
  return lua_istable(L, -1) ? 1 : 2;
}

static int m_prepare(lua_State *L) {
  qv_call_opts o;
  char *body = NULL;
  size_t len = 0;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  if (!qv_request_plan(L, 1, "chat", &o, &body, &len)) return 2;
  free(body);
  curl_slist_free_all(o.headers);
  lua_getfield(L, -1, "request");
  lua_setfield(L, -2, "body");
  return 1;
}

int luaopen_qwenvl(lua_State *L);

int luaopen_qwenvl(lua_State *L) {
  static const luaL_Reg funcs[] = {
    { "chat", qv_handle_chat }, { "start", qv_handle_start },
    { "chat_many", qv_handle_chat_many }, { "list_models", qv_handle_models },
    { "config", m_config }, { "prepare", m_prepare }, { "fd", m_fd },
    { "timeout_ms", m_timeout_ms }, { "step", m_step }, { NULL, NULL }
  };
  qv_engine_ud *u;
  pthread_once(&curl_once, init_once);
  if (curl_init_code != CURLE_OK)
    return luaL_error(L, "qwenvl: curl_global_init failed: %s",
                      curl_easy_strerror(curl_init_code));
  /* upvalue 1: the engine */
  u = qv_newudata(L, sizeof *u);
  u->engine = NULL;
  u->pid = 0;
  if (luaL_newmetatable(L, QV_ENGINE_MT)) {
    lua_pushcfunction(L, engine_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  /* upvalue 2: cjson */
  lua_getglobal(L, "require");
  lua_pushliteral(L, "cjson");
  lua_call(L, 1, 1);
  qv_error_register(L);
  qv_handle_register(L);
  lua_newtable(L);
  lua_pushvalue(L, -3);
  lua_pushvalue(L, -3);
  luaL_setfuncs(L, funcs, 2);
  lua_pushliteral(L, QV_VERSION);
  lua_setfield(L, -2, "version");
  qv_request_regions(L);
  lua_setfield(L, -2, "regions");
  return 1;
}
