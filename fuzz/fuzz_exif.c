/*
** Fuzz qv_exif (no out-of-bounds reads; an orientation is 0..8) and
** qv_resize's decisions without libvips (qv_resize_plan, the pixel cap,
** qv_resize_decodes_whole). The input is used as is, and also, so that
** the TIFF parser is reached through each container, wrapped as the
** payload of a JPEG APP1 "Exif\0\0", a PNG eXIf chunk (with its CRC) and
** a WebP EXIF chunk. Every buffer is heap-allocated to its exact size.
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qv_exif.h"
#include "qv_image.h"
#include "qv_resize.h"

#include "../spec/c/crc32.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void sane(int o) {
  if (o < 0 || o > 8) abort();
}

static void be32(unsigned char *p, unsigned long v) {
  p[0] = (unsigned char)(v >> 24); p[1] = (unsigned char)(v >> 16);
  p[2] = (unsigned char)(v >> 8); p[3] = (unsigned char)v;
}
static void le32(unsigned char *p, unsigned long v) {
  p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8);
  p[2] = (unsigned char)(v >> 16); p[3] = (unsigned char)(v >> 24);
}

/* the decisions on a whole file: consistent with the probe and the cap */
static void decide(const unsigned char *p, size_t n) {
  qv_image_info info;
  qv_resize_opts o;
  qv_resize_info ri;
  const char *why = NULL;
  int r;
  if (qv_image_probe(p, n, &info, &why) != 0) return;
  (void)qv_resize_decodes_whole(p, n, info.format);
  memset(&o, 0, sizeof o);
  r = qv_resize_plan(p, n, &info, &o, &ri, &why);
  if (r < -1 || r > 1 || ri.resized) abort();
  sane(ri.orientation);
  if (r == 0 && ri.work != 0) abort();
  if (r == 1 && ri.work == 0) abort();
  if (r == -1 && (why == NULL || *why == '\0')) abort();
  if (r == -1 && (double)info.width * info.height <= 100e6 / 2) abort();
  o.mode = QV_RESIZE_OFF;
  if (qv_resize_plan(p, n, &info, &o, &ri, &why) != 0 || ri.work) abort();
}

static void run(const unsigned char *p, size_t n) {
  unsigned char *c = malloc(n ? n : 1);
  if (c == NULL) return;
  if (n) memcpy(c, p, n);
  sane(qv_exif_orientation(c, n));
  decide(c, n);
  free(c);
}

/* SOF0 8x8 one component, SOS, EOI */
static const char jpeg_tail[] =
  "\xFF\xC0\x00\x0B\x08\x00\x08\x00\x08\x01\x01\x11\x00"
  "\xFF\xDA\x00\x08\x01\x01\x00\x00\x3F\x00\xFF\xD9";
/* signature, IHDR 8x8 RGB (CRC not checked by anyone here) */
static const char png_head[] =
  "\x89PNG\r\n\x1a\n" "\0\0\0\x0d" "IHDR" "\0\0\0\x08" "\0\0\0\x08"
  "\x08\x02\0\0\0" "\0\0\0\0";
static const char png_tail[] = "\0\0\0\0" "IEND" "\xAE\x42\x60\x82";
/* RIFF (size filled in), VP8X flagging EXIF, canvas 8x8 */
static const char webp_head[] =
  "RIFF" "\0\0\0\0" "WEBP" "VP8X" "\x0a\0\0\0" "\x08\0\0\0"
  "\x07\0\0" "\x07\0\0";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  unsigned char *w;
  size_t n;
  {  /* raw: any container, and a bare TIFF structure */
    unsigned char *c = malloc(size ? size : 1);
    if (c == NULL) return 0;
    if (size) memcpy(c, data, size);
    sane(qv_exif_tiff_orientation(c, size));
    free(c);
    run(data, size);
  }
  if (size > 65000) return 0;
  w = malloc(size + 64);
  if (w == NULL) return 0;
  /* JPEG: SOI, APP1 "Exif\0\0" + data, SOF0 8x8, SOS, EOI */
  n = 0;
  memcpy(w, "\xFF\xD8\xFF\xE1", 4); n = 4;
  w[n++] = (unsigned char)((size + 8) >> 8);
  w[n++] = (unsigned char)(size + 8);
  memcpy(w + n, "Exif\0\0", 6); n += 6;
  memcpy(w + n, data, size); n += size;
  memcpy(w + n, jpeg_tail, sizeof jpeg_tail - 1);
  n += sizeof jpeg_tail - 1;
  run(w, n);
  /* PNG: signature, IHDR 8x8, eXIf(data) with its CRC, IEND */
  n = 0;
  memcpy(w, png_head, sizeof png_head - 1);
  n = sizeof png_head - 1;
  be32(w + n, size); n += 4;
  memcpy(w + n, "eXIf", 4); n += 4;
  memcpy(w + n, data, size); n += size;
  be32(w + n, test_crc32(w + n - size - 4, size + 4)); n += 4;
  memcpy(w + n, png_tail, sizeof png_tail - 1);
  n += sizeof png_tail - 1;
  run(w, n);
  /* WebP: VP8X flagging EXIF, EXIF(data) */
  n = 0;
  memcpy(w, webp_head, sizeof webp_head - 1);
  n = sizeof webp_head - 1;
  memcpy(w + n, "EXIF", 4); n += 4;
  le32(w + n, size); n += 4;
  memcpy(w + n, data, size); n += size;
  if (size & 1) w[n++] = 0;
  le32(w + 4, n - 8);
  run(w, n);
  free(w);
  return 0;
}
