/*
** qv_images: the image inputs of a chat request. An http(s) URL is sent
** as it is; a data URL is decoded and checked against its own bytes (the
** MIME type sent is the one the bytes are); a local file is read and
** sniffed. Each image is then downscaled or re-encoded by qv_resize when
** the request asks for it or the image needs it, and described by an
** info table (source, format, size, SHA-256, original size, tokens) that
** results and evidence carry. Builds on qv_image, qv_file, qv_resize and
** qv_error; the memory belongs to the plan (qv_request).
*/
#ifndef QV_IMAGES_H
#define QV_IMAGES_H

#include "qv_compat.h"
#include "qv_buf.h"
#include "qv_image.h"
#include "qv_resize.h"

#pragma GCC visibility push(hidden)

#define QV_MAX_IMAGES 250      /* DashScope's per-request cap for base64 */

typedef struct qv_image_in {
  int inline_data;            /* sent as a data URL we write */
  const char *url;            /* else the caller's URL, sent as it is */
  size_t url_len;
  qv_buf bytes;               /* image bytes (files, decoded data URLs) */
  const char *b64;            /* the caller's base64, unchanged (data URL) */
  size_t b64_len;
  qv_format format;           /* what the bytes are */
} qv_image_in;

typedef struct qv_images {
  int n;
  qv_image_in *item;
} qv_images;

typedef struct qv_images_opts {
  qv_resize_opts resize;
  double min_pixels, max_pixels;  /* per-image fields sent; 0: none */
  int high;                       /* detail = "high" */
} qv_images_opts;

/* Resolve the sources in the list at `list` (strings; field names in the
** list at `fields`) into im (allocated here; qv_images_free frees it,
** also after a failure or a raise) and push the list of info tables.
** Returns 0, or -1 with nil, err pushed instead. The caller keeps the
** source strings anchored until im is freed (data URLs are not copied). */
int qv_images_read(lua_State *L, qv_images **im, int list, int fields,
                   const qv_images_opts *o);
void qv_images_free(qv_images *im);

/* Length of the data URL of an inline image, and the URL itself. */
size_t qv_image_in_url_len(const qv_image_in *im);
void qv_image_in_url(qv_buf *out, const qv_image_in *im);

#pragma GCC visibility pop
#endif
