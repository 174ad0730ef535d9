/*
** qv_body: the JSON body of a chat request, from fields qv_request has
** checked and the messages qv_messages normalized. The body is a Lua
** table encoded by lua-cjson, except the images and video frames: cjson
** would escape every '/' of their base64 and copy it twice, so the
** messages carry a placeholder per source and the data URL (or the URL)
** is written straight into the final buffer (base64 is JSON-safe as it
** is; URLs were checked to hold no quote or backslash). The same table,
** with each placeholder replaced by a short note or the URL, is what
** results and evidence show as the request: safe to log.
*/
#ifndef QV_BODY_H
#define QV_BODY_H

#include "qv_compat.h"
#include "qv_buf.h"
#include "qv_images.h"

#pragma GCC visibility push(hidden)

typedef struct qv_body_in {
  const char *model;
  int messages;                 /* stack index: the normalized messages */
  int spots;                    /* stack index: where the placeholders sit */
  const void *nonce;            /* of the placeholders (qv_messages) */
  lua_Integer max_tokens;
  double temperature;
  int json;                     /* response_format json_object */
  int high;                     /* vl_high_resolution_images */
  int thinking;                 /* -1: not sent, else enable_thinking */
  lua_Integer thinking_budget;  /* 0: not sent */
  int stream;                   /* stream + stream_options.include_usage */
  int extra;                    /* stack index of `extra`, or 0 */
  const qv_images *images;      /* source k is item k-1 */
} qv_body_in;

/* Encode the body into out and push the safe copy of it. Returns 0, or
** -1 with nil, err pushed (a field of `extra` that cannot be encoded). */
int qv_body_build(lua_State *L, const qv_body_in *in, qv_buf *out);

#pragma GCC visibility pop
#endif
