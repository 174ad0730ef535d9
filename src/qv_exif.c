/*
** qv_exif: EXIF orientation from JPEG, PNG, WebP and TIFF bytes (see
** qv_exif.h). Every walk keeps an index i <= n and checks n - i before it
** reads, so no length from the file can move a read past the end.
*/
#include <string.h>

#include "qv_exif.h"

static unsigned long get16(const unsigned char *p, int le) {
  return le ? (unsigned long)p[0] | (unsigned long)p[1] << 8
            : (unsigned long)p[0] << 8 | (unsigned long)p[1];
}

static unsigned long get32(const unsigned char *p, int le) {
  return le ? get16(p, 1) | get16(p + 2, 1) << 16
            : get16(p, 0) << 16 | get16(p + 2, 0);
}

int qv_exif_swaps(int o) { return o >= 5 && o <= 8; }

int qv_exif_tiff_orientation(const unsigned char *p, size_t n) {
  int le;
  unsigned long ifd, count, i;
  if (p == NULL || n < 8) return 0;
  if (memcmp(p, "II*\0", 4) == 0) le = 1;
  else if (memcmp(p, "MM\0*", 4) == 0) le = 0;
  else return 0;
  ifd = get32(p + 4, le);
  if (ifd < 8 || ifd >= n || n - ifd < 2) return 0;
  count = get16(p + ifd, le);
  for (i = 0; i < count; i++) {
    const unsigned char *e, *v;
    unsigned long type, cnt, size, o;
    if ((n - ifd - 2) / 12 <= i) return 0;  /* entry i not inside p */
    e = p + ifd + 2 + 12 * i;
    if (get16(e, le) != 0x0112) continue;
    /* the first entry decides, as in libexif; of several values (a
    ** malformed tag) the first, as libexif reads it */
    type = get16(e + 2, le);
    cnt = get32(e + 4, le);
    if (type == 3) size = 2;                 /* SHORT */
    else if (type == 4) size = 4;            /* LONG */
    else return 0;
    if (cnt < 1) return 0;
    v = e + 8;                               /* values that fit: inline */
    if (cnt > 4 / size) {                    /* else at an offset */
      unsigned long off = get32(e + 8, le);
      if (off >= n || n - off < size) return 0;
      v = p + off;
    }
    o = size == 2 ? get16(v, le) : get32(v, le);
    return o >= 1 && o <= 8 ? (int)o : 0;
  }
  return 0;
}

static int jpeg_orientation(const unsigned char *p, size_t n) {
  size_t i = 2, len;
  for (;;) {
    unsigned m;
    if (i >= n || p[i] != 0xFF) return 0;
    while (i < n && p[i] == 0xFF) i++;      /* fill bytes */
    if (i >= n) return 0;
    m = p[i++];
    if ((m >= 0xD0 && m <= 0xD7) || m == 0x01) continue;  /* no length */
    if (m == 0x00 || m == 0xD8 || m == 0xD9 || m == 0xDA) return 0;
    if (n - i < 2) return 0;
    len = (size_t)get16(p + i, 0);
    if (len < 2 || n - i < len) return 0;    /* a cut segment: stop */
    /* the first one decides, as in libvips (later ones are ignored) */
    if (m == 0xE1 && len - 2 >= 6 && memcmp(p + i + 2, "Exif\0\0", 6) == 0)
      return qv_exif_tiff_orientation(p + i + 8, len - 8);
    i += len;
  }
}

/* CRC-32 of a PNG chunk (ISO 3309, as zlib's crc32), bit by bit: only
** the eXIf chunk is checked, and it is small. */
static unsigned long png_crc(const unsigned char *p, size_t n) {
  unsigned long c = 0xFFFFFFFFul;
  size_t i;
  int k;
  for (i = 0; i < n; i++) {
    c ^= p[i];
    for (k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320ul ^ (c >> 1) : c >> 1;
  }
  return c ^ 0xFFFFFFFFul;
}

static int png_orientation(const unsigned char *p, size_t n) {
  size_t i = 8;
  while (n - i >= 8) {
    unsigned long len = get32(p + i, 0);
    const unsigned char *type = p + i + 4;
    if (len > 0x7FFFFFFFul) return 0;
    if (memcmp(type, "IDAT", 4) == 0 || memcmp(type, "IEND", 4) == 0) return 0;
    if (n - i < 12 || n - i - 12 < len) return 0;  /* data and CRC */
    /* libpng skips an eXIf chunk with a bad CRC, and keeps the first */
    if (memcmp(type, "eXIf", 4) == 0)
      return png_crc(type, 4 + (size_t)len) == get32(type + 4 + len, 0)
        ? qv_exif_tiff_orientation(p + i + 8, (size_t)len) : 0;
    i += 8 + (size_t)len + 4;
  }
  return 0;
}

static int webp_orientation(const unsigned char *p, size_t n) {
  size_t i = 12, end;
  unsigned long riff = get32(p + 4, 1);
  /* the RIFF size bounds the chunks; bytes after it are not the file's */
  end = riff <= n - 8 ? (size_t)riff + 8 : n;
  if (end < 30 || memcmp(p + 12, "VP8X", 4) != 0) return 0;
  if (get32(p + 16, 1) < 10 || (p[20] & 0x08) == 0) return 0;
  while (end - i >= 8) {
    unsigned long len = get32(p + i + 4, 1);
    if (end - i - 8 < len) return 0;
    if (memcmp(p + i, "EXIF", 4) == 0) {
      const unsigned char *d = p + i + 8;
      size_t dn = (size_t)len;
      if (dn >= 6 && memcmp(d, "Exif\0\0", 6) == 0) { d += 6; dn -= 6; }
      return qv_exif_tiff_orientation(d, dn);
    }
    i += 8 + (size_t)len;
    if (len & 1) {                           /* padded to even */
      if (i >= end) return 0;
      i++;
    }
  }
  return 0;
}

int qv_exif_orientation(const unsigned char *p, size_t n) {
  if (p == NULL) return 0;
  if (n >= 4 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF)
    return jpeg_orientation(p, n);
  if (n >= 8 && memcmp(p, "\x89PNG\r\n\x1a\n", 8) == 0)
    return png_orientation(p, n);
  if (n >= 12 && memcmp(p, "RIFF", 4) == 0 && memcmp(p + 8, "WEBP", 4) == 0)
    return webp_orientation(p, n);
  if (n >= 8 && (memcmp(p, "II*\0", 4) == 0 || memcmp(p, "MM\0*", 4) == 0))
    return qv_exif_tiff_orientation(p, n);
  return 0;
}
