/*
** crc32.h: the CRC-32 of PNG chunks (ISO 3309, as zlib's crc32), for the
** tests and fuzz targets that build PNG files (spec/c/test_image_units.c,
** fuzz/fuzz_exif.c). Written apart from src/qv_exif.c's on purpose: inputs
** made with the code under test would agree with it even where it is
** wrong. Header-only and static; builds on the C library alone.
*/
#ifndef QV_SPEC_CRC32_H
#define QV_SPEC_CRC32_H

#include <stddef.h>

static inline unsigned long test_crc32(const unsigned char *p, size_t n) {
  unsigned long c = 0xFFFFFFFFul;
  size_t i;
  int k;
  for (i = 0; i < n; i++) {
    c ^= p[i];
    for (k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320ul ^ (c >> 1) : c >> 1;
  }
  return c ^ 0xFFFFFFFFul;
}

#endif
