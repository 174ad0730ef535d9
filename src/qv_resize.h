/*
** qv_resize: make an image fit what DashScope will look at before it is
** uploaded. Decoding, shrink-on-load, EXIF autorotation, conversion to
** sRGB and re-encoding are done by libvips; the module builds without it
** (QV_HAVE_VIPS undefined) and then refuses only the requests that need a
** resize. libvips is not linked: it is dlopen()ed (libvips.so.42) on the
** first call that needs it, so loading the module stays cheap; when it
** cannot be loaded, only the requests that need a resize fail. No Lua
** here; the only global state is that load plus vips_init, run once.
*/
#ifndef QV_RESIZE_H
#define QV_RESIZE_H

#include <stddef.h>
#include "qv_buf.h"
#include "qv_image.h"

/* Qwen3-VL's default pixel budget: 2,560 tokens of 32x32 pixels. */
#define QV_RESIZE_MAX_PIXELS 2621440ul
#define QV_RESIZE_QUALITY 85

typedef enum { QV_RESIZE_AUTO, QV_RESIZE_OFF, QV_RESIZE_ALWAYS } qv_resize_mode;

typedef struct qv_resize_opts {
  qv_resize_mode mode;
  unsigned long max_pixels;   /* 0: QV_RESIZE_MAX_PIXELS */
  unsigned max_side;          /* 0: no limit */
  qv_format format;           /* output when re-encoding; UNKNOWN: choose */
  int quality;                /* 1..100 for jpeg/webp; 0: QV_RESIZE_QUALITY */
} qv_resize_opts;

typedef struct qv_resize_info {
  unsigned in_w, in_h;        /* as stored (before EXIF rotation) */
  unsigned out_w, out_h;      /* what is sent (== in_* when not resized) */
  size_t in_bytes, out_bytes;
  qv_format out_format;
  int resized;                /* 1 when out holds a new encoding */
  int orientation;            /* EXIF orientation of the input (0: none) */
  char msg[200];              /* storage for *why of a libvips error */
} qv_resize_info;

/* 1 when built with libvips, libvips could be loaded at run time and
** vips_init succeeded. The first call loads it (~100 shared libraries). */
int qv_resize_available(void);

/* Decide from info/n/o whether the image needs work, and if so decode it
** (shrink-on-load, EXIF autorotate, sRGB) and re-encode it into out.
**   auto:   only when width*height > max_pixels, a side > max_side, the
**           EXIF orientation is not upright, or the data URL of the input
**           would exceed QV_DATA_URL_LIMIT (then quality, and after it the
**           size, are reduced until it fits).
**   always: re-encode even when nothing is too large.  off: never.
** Never upscales; keeps the aspect ratio. Built without libvips, auto
** sends an image over only the default budget as it is (the server
** downscales it) and fails for the rest. Returns 0 with *ri filled
** (ri->resized == 0 and out untouched when nothing needed doing), or -1
** with *why set (static, or ri->msg). */
int qv_resize(const unsigned char *in, size_t n, const qv_image_info *info,
              const qv_resize_opts *o, qv_buf *out, qv_resize_info *ri,
              const char **why);

/* Length of "data:<mime>;base64,<payload>" for n bytes of format f. */
size_t qv_resize_data_url_len(qv_format f, size_t n);

#endif
