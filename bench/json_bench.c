/*
** json_bench: what reading a chat completion body costs, qv_json against
** cjson.decode (Debian's lua-cjson in Lua 5.4, as qwenvl.chat decodes
** today). The body is a realistic ~1.3 KB answer (DashScope's shape:
** raw UTF-8, a few escapes, usage with details). Each mode runs its
** per-body function N times:
**
**   parse     qv_json_parse alone (the validating pass)
**   qv        qv_json_parse, then choices[0].message.content and model
**             unescaped into a qv_buf, usage's span found
**   qv_all    what qwenvl.chat needs: as qv plus reasoning_content,
**             finish_reason, id, and usage decoded by cjson from its span
**   qv_lua    as qv_all, but usage built into Lua tables by walking it
**             with qv_json (push_value below: what a binding could do
**             for the small parts instead of calling cjson)
**   cjson     lua_pushlstring + cjson.decode of the body, then the same
**             three fields read from the tables
**
**   json_bench MODE N
**
** Instructions are counted by bench/json_bench.sh under callgrind, with
** --toggle-collect on the mode's function (one_parse, one_qv, one_qv_all,
** one_qv_lua, one_cjson); without valgrind the program prints nanoseconds per body.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lualib.h>

#include "qv_buf.h"
#include "qv_json.h"

static const char body[] =
  "{\"id\":\"chatcmpl-7f1c2b3a-4d5e-6f70-8192-a3b4c5d6e7f8\","
  "\"object\":\"chat.completion\",\"created\":1774322504,"
  "\"model\":\"qwen3-vl-plus\",\"choices\":[{\"index\":0,"
  "\"finish_reason\":\"stop\",\"logprobs\":null,\"message\":{\"role\":"
  "\"assistant\",\"content\":\"The photo shows a red city bicycle leaning "
  "against a weathered brick wall on a narrow cobblestone street. A wicker "
  "basket is mounted on the handlebars and holds a bunch of sunflowers and "
  "a folded newspaper.\\n\\nDetails:\\n- The frame is a step-through design "
  "with a rear rack and a chain guard.\\n- A small sign above the bike "
  "reads \\\"Caf\xc3\xa9 du Coin\\\" in white letters.\\n- Warm afternoon "
  "light comes from the left, casting long shadows across the stones.\\n- "
  "Behind the bicycle there is a green wooden door with peeling paint and "
  "a brass handle.\\n\\nThe overall mood is calm and nostalgic, typical of "
  "a small European town in late summer. No people are visible in the "
  "frame.\",\"reasoning_content\":\"The user asks what is in the picture. "
  "I see a bicycle, a wall, flowers in a basket, a sign with text, a door. "
  "I should describe the main subject first, then the details, then the "
  "mood.\"}}],\"usage\":{\"prompt_tokens\":2520,\"completion_tokens\":277,"
  "\"total_tokens\":2797,\"prompt_tokens_details\":{\"image_tokens\":2503,"
  "\"text_tokens\":17,\"cached_tokens\":0},\"completion_tokens_details\":"
  "{\"reasoning_tokens\":139,\"text_tokens\":138}},"
  "\"system_fingerprint\":null}";

typedef struct ctx {
  lua_State *L;
  qv_buf content, model, reasoning, tmp;
  size_t sink;
} ctx;

static void fail(const char *what) {
  fprintf(stderr, "json_bench: %s\n", what);
  exit(1);
}

/* noinline keeps each a function of its own for --toggle-collect */
__attribute__((noinline)) static void one_parse(ctx *c) {
  qv_json_val root;
  if (qv_json_parse(body, sizeof body - 1, &root) != 0) fail("qv refused");
  c->sink += root.n;
}

__attribute__((noinline)) static void one_qv(ctx *c) {
  static const char *const top_keys[] = { "choices", "model", "usage" };
  static const qv_json_step msg_path[] = { { NULL, 0 }, { "message", 0 },
                                           { "content", 0 } };
  qv_json_val root, top[3], content;
  if (qv_json_parse(body, sizeof body - 1, &root) != 0) fail("qv refused");
  qv_json_pick(&root, top_keys, 3, top);
  if (qv_json_get(&top[0], msg_path, 3, &content) != 0) fail("no content");
  qv_buf_reset(&c->content);
  qv_buf_reset(&c->model);
  qv_json_string(&content, &c->content);
  qv_json_string(&top[1], &c->model);
  c->sink += c->content.len + c->model.len + top[2].n;
}

/* What qv_all and qv_lua both do before usage: validate, pick the
** fields, unescape content, reasoning and model, check finish_reason,
** take id's span. Returns usage's value. (Inside each mode's function for
** --toggle-collect: callgrind counts what it calls.) */
static qv_json_val read_answer(ctx *c) {
  static const char *const top_keys[] = { "choices", "model", "usage", "id",
                                          "error", "request_id" };
  static const char *const choice_keys[] = { "message", "finish_reason" };
  static const char *const msg_keys[] = { "content", "reasoning_content" };
  qv_json_val root, top[6], choice, ch[2], msg[2];
  if (qv_json_parse(body, sizeof body - 1, &root) != 0) fail("qv refused");
  qv_json_pick(&root, top_keys, 6, top);
  if (qv_json_index(&top[0], 0, &choice) != 0) fail("no choice");
  qv_json_pick(&choice, choice_keys, 2, ch);
  qv_json_pick(&ch[0], msg_keys, 2, msg);
  qv_buf_reset(&c->content);
  qv_buf_reset(&c->reasoning);
  qv_buf_reset(&c->model);
  qv_json_string(&msg[0], &c->content);
  qv_json_string(&msg[1], &c->reasoning);
  qv_json_string(&top[1], &c->model);
  if (!qv_json_eq(&ch[1], "stop", 4)) fail("finish_reason");
  c->sink += top[3].n;
  return top[2];
}

__attribute__((noinline)) static void one_qv_all(ctx *c) {
  lua_State *L = c->L;
  qv_json_val usage = read_answer(c);
  /* usage becomes a table, as the result carries it */
  lua_getfield(L, LUA_REGISTRYINDEX, "bench.decode");
  lua_pushlstring(L, usage.p, usage.n);
  if (lua_pcall(L, 1, 1, 0) != 0) fail("cjson refused usage");
  lua_settop(L, 0);
  c->sink += c->content.len + c->reasoning.len + c->model.len;
}

/* A qv_json value as cjson would push it (tables sized up front; null as
** a light userdata NULL, cjson.null). Validated text: no failure but
** memory, which raises as any Lua allocation does. */
static void push_value(lua_State *L, const qv_json_val *v, qv_buf *tmp) {
  qv_json_iter it;
  qv_json_val key, val;
  double d;
  int n = 0;
  switch (v->type) {
  case QV_JSON_OBJECT:
  case QV_JSON_ARRAY:
    qv_json_iter_init(&it, v);
    while (qv_json_next(&it, NULL, &val)) n++;
    if (v->type == QV_JSON_OBJECT) lua_createtable(L, 0, n);
    else lua_createtable(L, n, 0);
    qv_json_iter_init(&it, v);
    n = 0;
    while (qv_json_next(&it, &key, &val)) {
      if (v->type == QV_JSON_OBJECT) {
        qv_buf_reset(tmp);
        qv_json_string(&key, tmp);
        lua_pushlstring(L, tmp->data, tmp->len);
        push_value(L, &val, tmp);
        lua_rawset(L, -3);
      } else {
        push_value(L, &val, tmp);
        lua_rawseti(L, -2, ++n);
      }
    }
    break;
  case QV_JSON_STRING:
    qv_buf_reset(tmp);
    qv_json_string(v, tmp);
    lua_pushlstring(L, tmp->data, tmp->len);
    break;
  case QV_JSON_NUMBER:
    qv_json_number(v, &d);
    lua_pushnumber(L, d);
    break;
  case QV_JSON_TRUE: lua_pushboolean(L, 1); break;
  case QV_JSON_FALSE: lua_pushboolean(L, 0); break;
  default: lua_pushlightuserdata(L, NULL); break;
  }
}

__attribute__((noinline)) static void one_qv_lua(ctx *c) {
  lua_State *L = c->L;
  qv_json_val usage = read_answer(c);
  push_value(L, &usage, &c->tmp);
  lua_settop(L, 0);
  c->sink += c->content.len + c->reasoning.len + c->model.len;
}

__attribute__((noinline)) static void one_cjson(ctx *c) {
  lua_State *L = c->L;
  size_t n;
  lua_getfield(L, LUA_REGISTRYINDEX, "bench.decode");
  lua_pushlstring(L, body, sizeof body - 1);
  if (lua_pcall(L, 1, 1, 0) != 0) fail("cjson refused");
  lua_getfield(L, 1, "choices");
  lua_rawgeti(L, -1, 1);
  lua_getfield(L, -1, "message");
  lua_getfield(L, -1, "content");
  (void)lua_tolstring(L, -1, &n);
  c->sink += n;
  lua_getfield(L, 1, "model");
  (void)lua_tolstring(L, -1, &n);
  c->sink += n;
  lua_getfield(L, 1, "usage");
  if (!lua_istable(L, -1)) fail("no usage");
  lua_settop(L, 0);
}

int main(int argc, char **argv) {
  ctx c;
  long i, n;
  void (*fn)(ctx *);
  struct timespec t0, t1;
  if (argc != 3) {
    fprintf(stderr, "usage: json_bench parse|qv|qv_all|qv_lua|cjson N\n");
    return 2;
  }
  if (strcmp(argv[1], "parse") == 0) fn = one_parse;
  else if (strcmp(argv[1], "qv") == 0) fn = one_qv;
  else if (strcmp(argv[1], "qv_all") == 0) fn = one_qv_all;
  else if (strcmp(argv[1], "qv_lua") == 0) fn = one_qv_lua;
  else if (strcmp(argv[1], "cjson") == 0) fn = one_cjson;
  else fail("unknown mode");
  n = atol(argv[2]);
  memset(&c, 0, sizeof c);
  qv_buf_init(&c.content);
  qv_buf_init(&c.model);
  qv_buf_init(&c.reasoning);
  qv_buf_init(&c.tmp);
  c.L = luaL_newstate();
  luaL_openlibs(c.L);
  if (luaL_dostring(c.L, "package.cpath = '/usr/lib/x86_64-linux-gnu/lua/5.4/?.so;'"
                         " .. package.cpath; return require('cjson').decode") != 0)
    fail(lua_tostring(c.L, -1));
  lua_setfield(c.L, LUA_REGISTRYINDEX, "bench.decode");
  fn(&c);   /* warm: buffers grown, strings interned */
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (i = 0; i < n; i++) fn(&c);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  printf("%s: body %zu B, %ld runs, %.0f ns per body (sink %zu)\n", argv[1],
         sizeof body - 1, n,
         ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) /
           (double)(n > 0 ? n : 1), c.sink);
  qv_buf_free(&c.content);
  qv_buf_free(&c.model);
  qv_buf_free(&c.reasoning);
  qv_buf_free(&c.tmp);
  lua_close(c.L);
  return 0;
}
