/*
** qv_request: from the caller's request table to a plan, the validated
** and encoded request, ready to be handed to qv_call. Every field is
** checked before anything is sent; a bad one is nil, {code =
** "invalid_request", field = ...}. Builds on qv_target (endpoint and key),
** qv_images (image inputs), qv_body (the JSON body) and qv_error.
**
** The request table is read once, through its metamethods, into a plain
** snapshot (fields only ever read raw afterwards): a __index that runs
** code, or raises, does so before any C memory is held, every string
** stays anchored while its bytes are used, and a field reads the same
** every time. The plan is a userdata: everything C allocates on the way
** (image bytes, the key, the body) belongs to it and is freed (the key
** wiped) by its finalizer, whatever raises in between.
*/
#ifndef QV_REQUEST_H
#define QV_REQUEST_H

#include "qv_compat.h"
#include "qv_buf.h"
#include "qv_call.h"
#include "qv_scrub.h"

#pragma GCC visibility push(hidden)

#define QV_PLAN_MT "qwenvl.plan"

/* chat: /chat/completions; models: GET /models; http: any method and
** path under the base URL (the Files and Batch APIs). */
typedef enum { QV_KIND_CHAT, QV_KIND_MODELS, QV_KIND_HTTP } qv_kind;

typedef struct qv_plan {
  qv_kind kind;
  qv_call_opts call;          /* strings point into owned storage below */
  qv_buf body;                /* the JSON body (chat) */
  struct curl_slist *headers; /* Authorization first */
  qv_buf url, cainfo, capath, proxy, noproxy;
  qv_secrets secrets;         /* the key, credentials in base_url and proxy */
  int json;                   /* decode the answer as JSON */
  int user_stream;            /* the caller asked for a stream */
  double coalesce_s;          /* on_delta batching */
  long coalesce_bytes;
  struct qv_images *images;   /* inputs while planning (qv_images) */
  qv_form_part *form;         /* http: multipart parts (strings in info.form) */
  int nform;
  qv_buf download;            /* http: where a 2xx body goes */
  qv_buf scratch;             /* qv_result: strings unescaped from the answer */
} qv_plan;

/* Validate the request at idx. Pushes the plan userdata and returns 0;
** its user value is the info table (kind, model, url, base_url, region,
** images, request: the body with inline images replaced by a note,
** schema, json, user_stream). Or pushes nil, err and returns -1. The
** error's strings never hold the key. */
int qv_request_plan(lua_State *L, int idx, qv_kind kind);

/* The same for a line of a Batch API file: no stream (the Batch API runs
** requests whole; thinking goes as enable_thinking alone). */
#define QV_PLAN_BATCH 1
int qv_request_plan_for(lua_State *L, int idx, qv_kind kind, int flags);

qv_plan *qv_request_check(lua_State *L, int idx);

/* Hand the body and headers to a new call on e (the plan keeps the
** rest). NULL with *why on failure. */
qv_call *qv_request_start(qv_plan *p, qv_engine *e, const char **why);

/* Push {base_url, region, has_key, key_source} for the options at idx,
** or nil, err; 0 or -1. */
int qv_request_config(lua_State *L, int idx);

/* The secrets a request with the options at idx would carry (key from
** wherever qv_target finds it, credentials in base_url and proxy) into
** sec. 0, or -1 with nil, err pushed. */
int qv_request_secrets(lua_State *L, int idx, qv_secrets *sec);

/* One image source (at src) read, resized and encoded as a request would
** send it (resize fields and detail in the table at opts): pushes {url =
** the data URL (or the https URL as given), info = {...}} and returns 0,
** or pushes nil, err and returns -1. Conversations encode an image once
** and send the result again each turn. */
int qv_request_image(lua_State *L, int src, int opts);

/* Push {name = base URL} for the known regions. */
void qv_request_regions(lua_State *L);

void qv_request_register(lua_State *L);

#pragma GCC visibility pop
#endif
