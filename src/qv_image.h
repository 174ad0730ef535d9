/*
** qv_image: what an image input is, without decoding it.
** Format sniffing from magic bytes, pixel size from the header,
** data-URL validation and base64 encoding. Pure functions over bytes:
** no Lua, no I/O, fuzzed in fuzz/.
*/
#ifndef QV_IMAGE_H
#define QV_IMAGE_H

#include <stddef.h>
#include "qv_buf.h"

#pragma GCC visibility push(hidden)

/* DashScope refuses a data URL item larger than this (whole string). */
#define QV_DATA_URL_LIMIT 10485760u

typedef enum {
  QV_FMT_UNKNOWN = 0,
  QV_FMT_JPEG, QV_FMT_PNG, QV_FMT_GIF, QV_FMT_WEBP, QV_FMT_BMP,
  QV_FMT_TIFF, QV_FMT_HEIC
} qv_format;

typedef struct qv_image_info {
  qv_format format;
  unsigned width, height;   /* 0 when the header does not say */
} qv_image_info;

/* Format from the first bytes (at least 12 are needed for WEBP/HEIC). */
qv_format qv_image_sniff(const unsigned char *p, size_t n);
const char *qv_image_mime(qv_format f);      /* "image/png"; NULL if unknown */
const char *qv_image_name(qv_format f);      /* "png"; "unknown" */
qv_format qv_image_format_from_mime(const char *mime, size_t n); /* accepts image/jpg too */

/* Sniff and read the pixel size from the header. Returns 0 and fills
** *info on success; -1 with *why set to a static message when the bytes
** are not a supported image or the header is truncated/inconsistent. */
int qv_image_probe(const unsigned char *p, size_t n, qv_image_info *info,
                   const char **why);

/* Base64 (RFC 4648, with padding). */
size_t qv_base64_len(size_t n);                           /* encoded length */
void qv_base64_encode(qv_buf *out, const unsigned char *p, size_t n);
/* Decode strictly (no whitespace). Returns 0 on success, -1 if invalid. */
int qv_base64_decode(qv_buf *out, const char *s, size_t n);

/* Validate a data URL: "data:<image mime>;base64,<payload>". On success
** returns 0 and sets *fmt from the mime type and *payload, *payload_len to
** the base64 part. On failure returns -1 and sets *why (static string). */
int qv_data_url_check(const char *s, size_t n, qv_format *fmt,
                      const char **payload, size_t *payload_len,
                      const char **why);

#pragma GCC visibility pop
#endif
