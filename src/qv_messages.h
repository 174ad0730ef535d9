/*
** qv_messages: the conversation a chat request sends, in the OpenAI
** shape DashScope reads. Either built from prompt, image/images,
** video/video_url and system, or checked from the caller's own
** `messages` (roles system/user/assistant; content a string or a list of
** text, image_url, video and video_url parts). Every image and video
** frame becomes a placeholder in the normalized messages and an entry in
** the list of sources qv_images resolves; qv_body later writes each
** placeholder as the data URL or the URL. A malformed message is refused
** with the path of the bad part in err.field ("messages[2].content[1]").
** Builds on qv_error and qv_text.
*/
#ifndef QV_MESSAGES_H
#define QV_MESSAGES_H

#include "qv_compat.h"

#pragma GCC visibility push(hidden)

#define QV_MAX_VIDEOS 64

/* What the caller gave; stack indexes (0: absent) and checked strings. */
typedef struct qv_messages_in {
  int messages;                 /* the caller's messages list */
  int image, images;            /* image string / images list */
  int video;                    /* list of frames */
  int video_url;                /* string */
  double fps;                   /* 0: not given */
  const char *system;           /* NULL: none */
  const char *text;             /* the user text (prompt + JSON request) */
  size_t text_len;
  const char *detail;
  const char *model;            /* for the frame-count limits */
  double min_pixels, max_pixels;  /* per image part; 0: none */
} qv_messages_in;

/* Where each source goes: an image of result.images, or a frame of the
** video with that number (result.videos). */
typedef struct qv_messages_out {
  int messages;                 /* the normalized messages (stack index) */
  int sources;                  /* list of source strings to resolve */
  int fields;                   /* their field names, for errors */
  int slots;                    /* per source: 0 image, v > 0 frame of video v */
  int videos;                   /* list of {fps=} per video */
  int spots;                    /* where source k's placeholder sits: the
                                ** table at spots[2k-1], its key at [2k] */
} qv_messages_out;

/* Push messages, sources, fields, slots, videos and spots (in that
** order) and fill out with their indexes; 0, or -1 with nil, err pushed.
** nonce makes the placeholders unique. */
int qv_messages_build(lua_State *L, const qv_messages_in *in, const void *nonce,
                      qv_messages_out *out);

/* The placeholder of source k. */
void qv_messages_placeholder(char *buf, size_t size, const void *nonce, int k);

#pragma GCC visibility pop
#endif
