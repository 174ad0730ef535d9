/*
** Unit tests for qv_exif (EXIF orientation from bytes) and for the parts
** of qv_resize that need no libvips: qv_resize_plan, the pixel cap,
** qv_resize_decodes_whole, and that an image needing no work never loads
** libvips. Every input is handed over in a heap block of exactly its
** size, and every prefix of the well-formed ones too, so an overread
** shows under valgrind (make units-valgrind) and ASan. One line per
** failure, then "N passed, N failed".
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qv_buf.h"
#include "qv_exif.h"
#include "qv_image.h"
#include "qv_resize.h"

#include "check.h"
#include "crc32.h"

/* ---- building inputs ------------------------------------------------ */

typedef struct bytes {
  unsigned char b[8192];
  size_t n;
} bytes;

static void put(bytes *x, const void *p, size_t n) {
  if (x->n + n > sizeof x->b) { printf("test buffer too small\n"); exit(2); }
  memcpy(x->b + x->n, p, n);
  x->n += n;
}
static void put8(bytes *x, unsigned v) { unsigned char c = (unsigned char)v; put(x, &c, 1); }
static void put16(bytes *x, unsigned long v, int le) {
  if (le) { put8(x, v & 255); put8(x, (v >> 8) & 255); }
  else { put8(x, (v >> 8) & 255); put8(x, v & 255); }
}
static void put32(bytes *x, unsigned long v, int le) {
  if (le) { put16(x, v & 0xFFFF, 1); put16(x, (v >> 16) & 0xFFFF, 1); }
  else { put16(x, (v >> 16) & 0xFFFF, 0); put16(x, v & 0xFFFF, 0); }
}
static void puts_(bytes *x, const char *s) { put(x, s, strlen(s)); }

typedef struct entry {
  unsigned tag, type;
  unsigned long count, value;   /* value: inline (left-justified), or offset */
} entry;

/* A TIFF structure: header, IFD0 at ifd_at (8 normally) with the entries,
** then `extra` bytes (0x00..) that offsets may point into. */
static void tiff_ex(bytes *x, int le, unsigned long ifd_at, const entry *e,
                    int ne, size_t extra) {
  int i;
  size_t k;
  puts_(x, le ? "II" : "MM");
  put16(x, 42, le);
  put32(x, ifd_at, le);
  while (x->n < ifd_at && ifd_at < 64) put8(x, 0);
  put16(x, (unsigned long)ne, le);
  for (i = 0; i < ne; i++) {
    put16(x, e[i].tag, le);
    put16(x, e[i].type, le);
    put32(x, e[i].count, le);
    if (e[i].type == 3 && e[i].count <= 2) { put16(x, e[i].value, le); put16(x, 0, le); }
    else put32(x, e[i].value, le);
  }
  put32(x, 0, le);                       /* no next IFD */
  for (k = 0; k < extra; k++) put8(x, (unsigned)(k & 255));
}

/* IFD0 with a few other tags and the orientation o as SHORT */
static void tiff_o(bytes *x, int le, unsigned long o) {
  entry e[3] = { { 0x010F, 2, 4, 0x41424300ul }, { 0x0112, 3, 1, 0 },
                 { 0x011A, 5, 1, 8 } };
  e[1].value = o;
  tiff_ex(x, le, 8, e, 3, 0);
}

static void seg(bytes *x, unsigned marker, const bytes *payload) {
  put8(x, 0xFF);
  put8(x, marker);
  put16(x, payload->n + 2, 0);
  put(x, payload->b, payload->n);
}

static void exif_payload(bytes *p, const bytes *tiff) {
  p->n = 0;
  put(p, "Exif\0\0", 6);
  put(p, tiff->b, tiff->n);
}

/* SOF0 of w x h, 3 components */
static void sof0(bytes *x, unsigned w, unsigned h) {
  bytes p = { { 0 }, 0 };
  int c;
  put8(&p, 8);
  put16(&p, h, 0);
  put16(&p, w, 0);
  put8(&p, 3);
  for (c = 1; c <= 3; c++) { put8(&p, (unsigned)c); put8(&p, 0x11); put8(&p, 0); }
  seg(x, 0xC0, &p);
}

static void sos_eoi(bytes *x) {
  static const unsigned char sos[] = { 0xFF, 0xDA, 0, 8, 1, 1, 0, 0, 63, 0,
                                       0x12, 0x34, 0xFF, 0xD9 };
  put(x, sos, sizeof sos);
}

/* A JPEG: SOI, APP1 Exif with the TIFF t (when given), SOF0, SOS, EOI */
static void jpeg(bytes *x, const bytes *t, unsigned w, unsigned h) {
  bytes p;
  x->n = 0;
  put8(x, 0xFF); put8(x, 0xD8);
  if (t) { exif_payload(&p, t); seg(x, 0xE1, &p); }
  sof0(x, w, h);
  sos_eoi(x);
}

static void chunk(bytes *x, const char *type, const bytes *d, int bad_crc) {
  size_t at;
  put32(x, d ? d->n : 0, 0);
  at = x->n;
  puts_(x, type);
  if (d) put(x, d->b, d->n);
  put32(x, test_crc32(x->b + at, x->n - at) ^ (bad_crc ? 1u : 0u), 0);
}

/* A PNG header (w x h, RGB, interlace il), then eXIf (when given) before
** or after IDAT */
static void png(bytes *x, const bytes *exif, int after_idat, int bad_crc,
                unsigned w, unsigned h, int il) {
  bytes ihdr = { { 0 }, 0 }, idat = { { 0 }, 0 };
  x->n = 0;
  put(x, "\x89PNG\r\n\x1a\n", 8);
  put32(&ihdr, w, 0); put32(&ihdr, h, 0);
  put8(&ihdr, 8); put8(&ihdr, 2); put8(&ihdr, 0); put8(&ihdr, 0); put8(&ihdr, (unsigned)il);
  chunk(x, "IHDR", &ihdr, 0);
  if (exif && !after_idat) chunk(x, "eXIf", exif, bad_crc);
  puts_(&idat, "not really zlib");
  chunk(x, "IDAT", &idat, 0);
  if (exif && after_idat) chunk(x, "eXIf", exif, bad_crc);
  chunk(x, "IEND", NULL, 0);
}

/* A WebP: VP8X (flags) + VP8L 16x16, then an EXIF chunk of d (when
** given); riff_adjust changes the RIFF size written */
static void webp(bytes *x, unsigned flags, const bytes *d, long riff_adjust) {
  bytes vp8l = { { 0 }, 0 };
  x->n = 0;
  puts_(x, "RIFF");
  put32(x, 0, 1);
  puts_(x, "WEBP");
  puts_(x, "VP8X");
  put32(x, 10, 1);
  put8(x, flags); put8(x, 0); put8(x, 0); put8(x, 0);
  put8(x, 15); put8(x, 0); put8(x, 0);            /* canvas 16 x 16 */
  put8(x, 15); put8(x, 0); put8(x, 0);
  put8(&vp8l, 0x2F);
  put32(&vp8l, 15ul | 15ul << 14, 1);
  put8(&vp8l, 0);                                 /* odd: padded */
  puts_(x, "VP8L");
  put32(x, vp8l.n, 1);
  put(x, vp8l.b, vp8l.n);
  if (vp8l.n & 1) put8(x, 0);
  if (d) {
    puts_(x, "EXIF");
    put32(x, d->n, 1);
    put(x, d->b, d->n);
    if (d->n & 1) put8(x, 0);
  }
  x->b[4] = (unsigned char)((x->n - 8 + riff_adjust) & 255);
  x->b[5] = (unsigned char)(((x->n - 8 + riff_adjust) >> 8) & 255);
  x->b[6] = (unsigned char)(((x->n - 8 + riff_adjust) >> 16) & 255);
  x->b[7] = (unsigned char)(((x->n - 8 + riff_adjust) >> 24) & 255);
}

/* qv_exif_orientation on an exact-size heap copy of p[0..n) */
static int orient_n(const unsigned char *p, size_t n) {
  unsigned char *c = check_copy(p, n);
  int o = qv_exif_orientation(c, n);
  free(c);
  return o;
}
static int orient(const bytes *x) { return orient_n(x->b, x->n); }

static int tiff_orient(const bytes *x) {
  unsigned char *c = check_copy(x->b, x->n);
  int o = qv_exif_tiff_orientation(c, x->n);
  free(c);
  return o;
}

/* Every prefix of x: no overread, and the answer is 0 or the whole
** file's (the orientation never comes from a half-read structure). */
static int prefixes_ok(const bytes *x) {
  size_t k;
  int full = orient(x);
  for (k = 0; k < x->n; k++) {
    int o = orient_n(x->b, k);
    if (o != 0 && o != full) {
      printf("  prefix %lu gave %d (whole: %d)\n", (unsigned long)k, o, full);
      return 0;
    }
  }
  return 1;
}

/* ---- qv_exif: TIFF -------------------------------------------------- */

static void test_tiff(void) {
  bytes t;
  unsigned long o;
  int le;
  for (le = 0; le <= 1; le++)
    for (o = 0; o <= 10; o++) {
      t.n = 0;
      tiff_o(&t, le, o);
      CHECK_EQ(tiff_orient(&t), o >= 1 && o <= 8 ? (long)o : 0);
    }
  t.n = 0; tiff_o(&t, 0, 0xFFFF); CHECK_EQ(tiff_orient(&t), 0);
  /* a TIFF file is its own structure */
  t.n = 0; tiff_o(&t, 1, 6); CHECK_EQ(orient(&t), 6);
  CHECK(prefixes_ok(&t));
  t.n = 0; tiff_o(&t, 0, 3); CHECK_EQ(orient(&t), 3);
  CHECK(prefixes_ok(&t));

  {  /* types: SHORT and LONG count; BYTE, ASCII, SSHORT, RATIONAL do not */
    static const struct { unsigned type; int want; } ty[] = {
      { 3, 5 }, { 4, 5 }, { 1, 0 }, { 2, 0 }, { 5, 0 }, { 8, 0 }, { 0, 0 },
      { 0xFFFF, 0 } };
    size_t i;
    for (i = 0; i < sizeof ty / sizeof *ty; i++) {
      entry e = { 0x0112, 0, 1, 5 };
      e.type = ty[i].type;
      t.n = 0; tiff_ex(&t, 1, 8, &e, 1, 0);
      CHECK_EQ(tiff_orient(&t), ty[i].want);
      t.n = 0; tiff_ex(&t, 0, 8, &e, 1, 0);
      CHECK_EQ(tiff_orient(&t), ty[i].want);
    }
  }
  {  /* counts: 0 is nothing; 2 SHORTs inline; more at an offset */
    entry e = { 0x0112, 3, 0, 6 };
    t.n = 0; tiff_ex(&t, 0, 8, &e, 1, 0); CHECK_EQ(tiff_orient(&t), 0);
    e.count = 2;
    t.n = 0; tiff_ex(&t, 0, 8, &e, 1, 0); CHECK_EQ(tiff_orient(&t), 6);
    /* 3 SHORTs at offset 26 (after one entry: 8 + 2 + 12 + 4), big-endian */
    e.count = 3; e.value = 26;
    t.n = 0; tiff_ex(&t, 0, 8, &e, 1, 0);
    put16(&t, 7, 0); put16(&t, 1, 0); put16(&t, 1, 0);
    CHECK_EQ(tiff_orient(&t), 7);
    CHECK(prefixes_ok(&t));
    /* the offset at the very end, one byte short, or far away */
    t.n -= 5;                       /* one byte of the value left */
    CHECK_EQ(tiff_orient(&t), 0);
    e.value = 0xFFFFFFF0ul;
    t.n = 0; tiff_ex(&t, 1, 8, &e, 1, 8); CHECK_EQ(tiff_orient(&t), 0);
    /* 2 LONGs: at an offset */
    e.type = 4; e.count = 2; e.value = 26;
    t.n = 0; tiff_ex(&t, 1, 8, &e, 1, 0);
    put32(&t, 8, 1); put32(&t, 1, 1);
    CHECK_EQ(tiff_orient(&t), 8);
  }
  {  /* the first 0x0112 decides; tags after a bad one are not looked at */
    entry e[2] = { { 0x0112, 3, 1, 3 }, { 0x0112, 3, 1, 6 } };
    t.n = 0; tiff_ex(&t, 1, 8, e, 2, 0); CHECK_EQ(tiff_orient(&t), 3);
    e[0].value = 0;
    t.n = 0; tiff_ex(&t, 1, 8, e, 2, 0); CHECK_EQ(tiff_orient(&t), 0);
  }
  {  /* the IFD: before the header, at the end, past it, far away */
    entry e = { 0x0112, 3, 1, 6 };
    static const unsigned long bad[] = { 0, 4, 7, 0xFFFFFFFFul, 0x80000000ul };
    size_t i;
    for (i = 0; i < sizeof bad / sizeof *bad; i++) {
      t.n = 0; tiff_ex(&t, 1, 8, &e, 1, 0);
      t.b[4] = (unsigned char)(bad[i] & 255);
      t.b[5] = (unsigned char)((bad[i] >> 8) & 255);
      t.b[6] = (unsigned char)((bad[i] >> 16) & 255);
      t.b[7] = (unsigned char)((bad[i] >> 24) & 255);
      CHECK_EQ(tiff_orient(&t), 0);
    }
    /* IFD0 further on (offset 16, gap of zeros): fine */
    t.n = 0; tiff_ex(&t, 1, 16, &e, 1, 0); CHECK_EQ(tiff_orient(&t), 6);
    /* the IFD's last byte is the file's last byte */
    t.n = 0; tiff_ex(&t, 1, 8, &e, 1, 0);
    t.b[4] = (unsigned char)(t.n - 1);
    CHECK_EQ(tiff_orient(&t), 0);
  }
  {  /* an entry count that claims more than there is */
    entry e[2] = { { 0x0100, 3, 1, 1 }, { 0x0112, 3, 1, 6 } };
    t.n = 0; tiff_ex(&t, 0, 8, e, 2, 0);
    t.b[8] = 0xFF; t.b[9] = 0xFF;          /* 65535 entries */
    CHECK_EQ(tiff_orient(&t), 6);          /* found before the end */
    t.n = 0; tiff_ex(&t, 0, 8, e, 1, 0);
    t.b[8] = 0xFF; t.b[9] = 0xFF;
    CHECK_EQ(tiff_orient(&t), 0);          /* runs off the end: stops */
    t.n = 8 + 2 + 12 + 11;                 /* the entry cut by one byte */
    t.n = 0; tiff_ex(&t, 0, 8, e + 1, 1, 0); t.n = 8 + 2 + 11;
    CHECK_EQ(tiff_orient(&t), 0);
    t.n = 0; tiff_ex(&t, 0, 8, e + 1, 1, 0); t.n = 8 + 2 + 12;
    CHECK_EQ(tiff_orient(&t), 6);          /* no next-IFD pointer: fine */
  }
  {  /* byte order marks */
    static const char *const heads[] = { "II*\1", "MM*\0", "IM\0*", "II\0*",
                                         "MM\0+", "\0\0\0\0" };
    size_t i;
    for (i = 0; i < sizeof heads / sizeof *heads; i++) {
      t.n = 0; tiff_o(&t, 1, 6);
      memcpy(t.b, heads[i], 4);
      CHECK_EQ(tiff_orient(&t), 0);
    }
  }
  CHECK_EQ(qv_exif_tiff_orientation(NULL, 100), 0);
  CHECK_EQ(qv_exif_tiff_orientation((const unsigned char *)"MM\0*\0\0\0\x08", 8), 0);
  CHECK_EQ(qv_exif_tiff_orientation((const unsigned char *)"MM\0*", 4), 0);
}

/* ---- qv_exif: JPEG -------------------------------------------------- */

static void test_jpeg(void) {
  bytes t, x, p;
  unsigned long o;
  for (o = 1; o <= 8; o++) {
    t.n = 0; tiff_o(&t, (int)(o & 1), o);
    jpeg(&x, &t, 80, 60);
    CHECK_EQ(orient(&x), o);
  }
  t.n = 0; tiff_o(&t, 0, 6);
  jpeg(&x, &t, 80, 60);
  CHECK(prefixes_ok(&x));
  jpeg(&x, NULL, 80, 60);
  CHECK_EQ(orient(&x), 0);
  CHECK(prefixes_ok(&x));

  /* other APP1s (XMP), APP0, COM, fill bytes, RSTn and TEM come first */
  x.n = 0;
  put8(&x, 0xFF); put8(&x, 0xD8);
  p.n = 0; puts_(&p, "JFIF"); put8(&p, 0); put16(&p, 0x0102, 0);
  seg(&x, 0xE0, &p);
  p.n = 0; puts_(&p, "http://ns.adobe.com/xap/1.0/"); put8(&p, 0); puts_(&p, "<x/>");
  seg(&x, 0xE1, &p);
  p.n = 0; puts_(&p, "Exif"); put8(&p, 0);        /* "Exif\0" then no \0 */
  put(&p, t.b, t.n);
  seg(&x, 0xE1, &p);
  p.n = 0; puts_(&p, "a comment");
  seg(&x, 0xFE, &p);
  put8(&x, 0xFF); put8(&x, 0xFF); put8(&x, 0xFF);  /* fill */
  put8(&x, 0xD0);                                  /* RST0 */
  put8(&x, 0xFF); put8(&x, 0x01);                  /* TEM */
  exif_payload(&p, &t);
  seg(&x, 0xE1, &p);
  sof0(&x, 80, 60);
  sos_eoi(&x);
  CHECK_EQ(orient(&x), 6);
  CHECK(prefixes_ok(&x));

  {  /* two Exif APP1s: the first decides, as in libvips */
    bytes t3 = { { 0 }, 0 };
    tiff_o(&t3, 1, 3);
    x.n = 0; put8(&x, 0xFF); put8(&x, 0xD8);
    exif_payload(&p, &t); seg(&x, 0xE1, &p);
    exif_payload(&p, &t3); seg(&x, 0xE1, &p);
    sof0(&x, 8, 8); sos_eoi(&x);
    CHECK_EQ(orient(&x), 6);
    /* ... even when the first has no orientation */
    x.n = 0; put8(&x, 0xFF); put8(&x, 0xD8);
    t3.n = 0; tiff_o(&t3, 1, 0);
    exif_payload(&p, &t3); seg(&x, 0xE1, &p);
    exif_payload(&p, &t); seg(&x, 0xE1, &p);
    sof0(&x, 8, 8); sos_eoi(&x);
    CHECK_EQ(orient(&x), 0);
  }
  /* after SOS, after EOI: not looked at */
  x.n = 0; put8(&x, 0xFF); put8(&x, 0xD8);
  sof0(&x, 8, 8); sos_eoi(&x);
  exif_payload(&p, &t); seg(&x, 0xE1, &p);
  CHECK_EQ(orient(&x), 0);
  /* an Exif APP1 after the frame header (still before SOS) counts */
  x.n = 0; put8(&x, 0xFF); put8(&x, 0xD8);
  sof0(&x, 8, 8);
  exif_payload(&p, &t); seg(&x, 0xE1, &p);
  sos_eoi(&x);
  CHECK_EQ(orient(&x), 6);

  /* segment lengths: 0, 1, past the end, and one short of the TIFF */
  {
    static const unsigned lens[] = { 0, 1, 0xFFFF };
    size_t i;
    for (i = 0; i < sizeof lens / sizeof *lens; i++) {
      jpeg(&x, &t, 80, 60);
      x.b[4] = (unsigned char)(lens[i] >> 8);
      x.b[5] = (unsigned char)(lens[i] & 255);
      CHECK_EQ(orient(&x), 0);
    }
    /* the APP1 claims 2 + 6 bytes: "Exif\0\0" and an empty TIFF */
    jpeg(&x, &t, 80, 60);
    x.b[4] = 0; x.b[5] = 8;
    CHECK_EQ(orient(&x), 0);
    /* and 2 + 5: not even the whole "Exif\0\0" */
    x.b[5] = 7;
    CHECK_EQ(orient(&x), 0);
  }
  /* garbage between segments, a stray SOI, a 0xFF00 */
  {
    static const unsigned char bad[][2] = { { 0x00, 0x00 }, { 0xFF, 0xD8 },
                                            { 0xFF, 0x00 }, { 0xFF, 0xD9 } };
    size_t i;
    for (i = 0; i < sizeof bad / sizeof *bad; i++) {
      x.n = 0; put8(&x, 0xFF); put8(&x, 0xD8);
      put(&x, bad[i], 2);
      exif_payload(&p, &t); seg(&x, 0xE1, &p);
      sof0(&x, 8, 8); sos_eoi(&x);
      CHECK_EQ(orient(&x), 0);
    }
  }
  /* only the magic; a file of fill bytes */
  CHECK_EQ(orient_n((const unsigned char *)"\xFF\xD8\xFF", 3), 0);
  CHECK_EQ(orient_n((const unsigned char *)"\xFF\xD8\xFF\xFF", 4), 0);
  CHECK_EQ(orient_n((const unsigned char *)"\xFF\xD8\xFF\xE1", 4), 0);
  CHECK_EQ(orient_n((const unsigned char *)"\xFF\xD8\xFF\xE1\x00", 5), 0);
}

/* ---- qv_exif: PNG, WebP, others ------------------------------------- */

static void test_png(void) {
  bytes t, x, d;
  t.n = 0; tiff_o(&t, 0, 8);
  png(&x, &t, 0, 0, 64, 48, 0);
  CHECK_EQ(orient(&x), 8);
  CHECK(prefixes_ok(&x));
  png(&x, &t, 1, 0, 64, 48, 0);            /* after IDAT: not read */
  CHECK_EQ(orient(&x), 0);
  png(&x, &t, 0, 1, 64, 48, 0);            /* bad CRC: libpng skips it */
  CHECK_EQ(orient(&x), 0);
  exif_payload(&d, &t);                    /* "Exif\0\0" first: libpng refuses */
  png(&x, &d, 0, 0, 64, 48, 0);
  CHECK_EQ(orient(&x), 0);
  png(&x, NULL, 0, 0, 64, 48, 0);
  CHECK_EQ(orient(&x), 0);
  CHECK(prefixes_ok(&x));
  {  /* two eXIf: the first */
    bytes t2 = { { 0 }, 0 }, ihdr = { { 0 }, 0 };
    tiff_o(&t2, 1, 2);
    x.n = 0;
    put(&x, "\x89PNG\r\n\x1a\n", 8);
    put32(&ihdr, 4, 0); put32(&ihdr, 4, 0);
    put8(&ihdr, 8); put8(&ihdr, 2); put8(&ihdr, 0); put8(&ihdr, 0); put8(&ihdr, 0);
    chunk(&x, "IHDR", &ihdr, 0);
    chunk(&x, "eXIf", &t2, 0);
    chunk(&x, "eXIf", &t, 0);
    CHECK_EQ(orient(&x), 2);
    CHECK(prefixes_ok(&x));
  }
  /* chunk lengths: over 2^31, past the end */
  png(&x, &t, 0, 0, 64, 48, 0);
  x.b[33] = 0x80;                          /* eXIf length's high byte */
  CHECK_EQ(orient(&x), 0);
  png(&x, &t, 0, 0, 64, 48, 0);
  x.b[35] = 0xFF;
  CHECK_EQ(orient(&x), 0);
  png(&x, &t, 0, 0, 64, 48, 0);            /* IHDR cut: stops there */
  x.b[8 + 3] = 0xFF;
  CHECK_EQ(orient(&x), 0);
}

static void test_webp(void) {
  bytes t, x, d;
  t.n = 0; tiff_o(&t, 1, 5);
  webp(&x, 0x08, &t, 0);
  CHECK_EQ(orient(&x), 5);
  CHECK(prefixes_ok(&x));
  webp(&x, 0x00, &t, 0);                   /* EXIF not flagged */
  CHECK_EQ(orient(&x), 0);
  webp(&x, 0x08 | 0x10 | 0x02, &t, 0);     /* other flags too */
  CHECK_EQ(orient(&x), 5);
  exif_payload(&d, &t);                    /* "Exif\0\0" first: skipped */
  webp(&x, 0x08, &d, 0);
  CHECK_EQ(orient(&x), 5);
  CHECK(prefixes_ok(&x));
  d.n = 0; put(&d, t.b, t.n); put8(&d, 0); /* odd size: padded */
  webp(&x, 0x08, &d, 0);
  CHECK_EQ(orient(&x), 5);
  webp(&x, 0x08, &t, -(long)(t.n + 8));    /* the RIFF ends before EXIF */
  CHECK_EQ(orient(&x), 0);
  webp(&x, 0x08, &t, 1000);                /* RIFF size past the file */
  CHECK_EQ(orient(&x), 5);
  webp(&x, 0x08, &t, 0);                   /* RIFF size under the header */
  x.b[4] = 4; x.b[5] = 0; x.b[6] = 0; x.b[7] = 0;
  CHECK_EQ(orient(&x), 0);
  x.b[4] = 0xFF; x.b[5] = 0xFF; x.b[6] = 0xFF; x.b[7] = 0xFF;  /* 4 GiB */
  CHECK_EQ(orient(&x), 5);
  webp(&x, 0x08, NULL, 0);
  CHECK_EQ(orient(&x), 0);
  webp(&x, 0x08, &t, 0);                   /* a chunk length past the end */
  x.b[x.n - t.n - 1] = 0x7F;
  CHECK_EQ(orient(&x), 0);
  webp(&x, 0x08, &t, 0);                   /* VP8X that is too short */
  x.b[16] = 4;
  CHECK_EQ(orient(&x), 0);
  webp(&x, 0x08, &t, 0);                   /* simple format: first chunk VP8L */
  memcpy(x.b + 12, "VP8L", 4);
  CHECK_EQ(orient(&x), 0);
}

static void test_other_formats(void) {
  static const unsigned char gif[] = "GIF89a\x10\0\x10\0\0\0\0;";
  static const unsigned char bmp[] = "BM\0\0\0\0\0\0\0\0\0\0\0\0";
  static const unsigned char heic[] = "\0\0\0\x18" "ftypheic\0\0\0\0mif1heic";
  CHECK_EQ(orient_n(gif, sizeof gif - 1), 0);
  CHECK_EQ(orient_n(bmp, sizeof bmp - 1), 0);
  CHECK_EQ(orient_n(heic, sizeof heic - 1), 0);
  CHECK_EQ(orient_n((const unsigned char *)"", 0), 0);
  CHECK_EQ(qv_exif_orientation(NULL, 0), 0);
  CHECK_EQ(qv_exif_orientation(NULL, 10), 0);
  CHECK_EQ(orient_n((const unsigned char *)"RIFF\0\0\0\0WEBP", 12), 0);
  CHECK_EQ(orient_n((const unsigned char *)"\x89PNG\r\n\x1a\n", 8), 0);
  CHECK(!qv_exif_swaps(0) && !qv_exif_swaps(1) && !qv_exif_swaps(4) &&
        qv_exif_swaps(5) && qv_exif_swaps(6) && qv_exif_swaps(7) &&
        qv_exif_swaps(8) && !qv_exif_swaps(9));
}

/* ---- qv_resize without libvips -------------------------------------- */

static int maps_libvips(void) {
  FILE *f = fopen("/proc/self/maps", "r");
  char line[512];
  int found = 0;
  if (!f) return -1;
  while (fgets(line, sizeof line, f))
    if (strstr(line, "libvips")) found = 1;
  fclose(f);
  return found;
}

static int plan(const bytes *x, const qv_resize_opts *o, qv_resize_info *ri,
                const char **why) {
  qv_image_info info;
  const char *pw = NULL;
  if (qv_image_probe(x->b, x->n, &info, &pw) != 0) {
    printf("  probe: %s\n", pw);
    return -2;
  }
  return qv_resize_plan(x->b, x->n, &info, o, ri, why);
}

static void test_plan(void) {
  bytes t, x;
  qv_resize_opts o;
  qv_resize_info ri;
  const char *why = NULL;
  memset(&o, 0, sizeof o);

  /* small and upright: nothing to do */
  jpeg(&x, NULL, 80, 60);
  CHECK_EQ(plan(&x, &o, &ri, &why), 0);
  CHECK(ri.work == 0 && ri.resized == 0 && ri.orientation == 0);
  CHECK(ri.in_w == 80 && ri.in_h == 60 && ri.out_w == 80 && ri.in_bytes == x.n);
  t.n = 0; tiff_o(&t, 0, 1);
  jpeg(&x, &t, 80, 60);
  CHECK_EQ(plan(&x, &o, &ri, &why), 0);
  CHECK_EQ(ri.orientation, 1);
  /* rotated: work, even when small */
  t.n = 0; tiff_o(&t, 0, 6);
  jpeg(&x, &t, 80, 60);
  CHECK_EQ(plan(&x, &o, &ri, &why), 1);
  CHECK(ri.work == QV_RESIZE_WORK_ROTATE && ri.orientation == 6);
  /* off: nothing is even read */
  o.mode = QV_RESIZE_OFF;
  CHECK_EQ(plan(&x, &o, &ri, &why), 0);
  CHECK(ri.work == 0 && ri.orientation == 0);
  o.mode = QV_RESIZE_ALWAYS;
  jpeg(&x, NULL, 80, 60);
  CHECK_EQ(plan(&x, &o, &ri, &why), 1);
  CHECK_EQ(ri.work, QV_RESIZE_WORK_SIZE);
  o.mode = QV_RESIZE_AUTO;

  /* size: the default budget, max_pixels, max_side */
  jpeg(&x, NULL, 2048, 1280);              /* 2,621,440: exactly the budget */
  CHECK_EQ(plan(&x, &o, &ri, &why), 0);
  jpeg(&x, NULL, 2048, 1281);
  CHECK_EQ(plan(&x, &o, &ri, &why), 1);
  CHECK_EQ(ri.work, QV_RESIZE_WORK_SIZE);
  o.max_pixels = 4800;
  jpeg(&x, NULL, 80, 60);
  CHECK_EQ(plan(&x, &o, &ri, &why), 0);
  o.max_pixels = 4799;
  CHECK_EQ(plan(&x, &o, &ri, &why), 1);
  o.max_pixels = 0;
  o.max_side = 79;
  CHECK_EQ(plan(&x, &o, &ri, &why), 1);
  o.max_side = 80;
  CHECK_EQ(plan(&x, &o, &ri, &why), 0);
  o.max_side = 0;
  png(&x, NULL, 0, 0, 1600, 1200, 0);
  CHECK_EQ(plan(&x, &o, &ri, &why), 0);
  t.n = 0; tiff_o(&t, 1, 3);
  png(&x, &t, 0, 0, 1600, 1200, 0);
  CHECK_EQ(plan(&x, &o, &ri, &why), 1);
  CHECK_EQ(ri.work, QV_RESIZE_WORK_ROTATE);

  /* the decode cap: 100 MP, formats decoded whole count twice */
  why = NULL;
  jpeg(&x, NULL, 10000, 10000);            /* exactly the cap */
  CHECK_EQ(plan(&x, &o, &ri, &why), 1);
  jpeg(&x, NULL, 10000, 10001);
  CHECK_EQ(plan(&x, &o, &ri, &why), -1);
  CHECK(why && strstr(why, "10000x10001") && strstr(why, "100.0 megapixels")
        && strstr(why, "max_input_pixels"));
  png(&x, NULL, 0, 0, 65535, 65535, 0);    /* the 4 MB PNG bomb */
  why = NULL;
  CHECK_EQ(plan(&x, &o, &ri, &why), -1);
  CHECK(why && strstr(why, "65535x65535") && strstr(why, "4294.8 megapixels"));
  png(&x, NULL, 0, 0, 8000, 6000, 0);      /* 48 MP, streamed */
  CHECK_EQ(plan(&x, &o, &ri, &why), 1);
  png(&x, NULL, 0, 0, 8000, 6000, 1);      /* 48 MP interlaced: 96 */
  CHECK_EQ(plan(&x, &o, &ri, &why), 1);
  png(&x, NULL, 0, 0, 8000, 7000, 1);      /* 56 MP interlaced: 112 */
  why = NULL;
  CHECK_EQ(plan(&x, &o, &ri, &why), -1);
  CHECK(why && strstr(why, "counted twice"));
  o.max_input_pixels = 120000000ul;
  CHECK_EQ(plan(&x, &o, &ri, &why), 1);
  o.max_input_pixels = 0;
  /* the cap applies only to images that are decoded */
  o.mode = QV_RESIZE_OFF;
  png(&x, NULL, 0, 0, 65535, 65535, 0);
  CHECK_EQ(plan(&x, &o, &ri, &why), 0);
  o.mode = QV_RESIZE_AUTO;
  o.max_pixels = 100000000000ul;
  CHECK_EQ(plan(&x, &o, &ri, &why), 0);    /* within the caller's budget */
  o.max_pixels = 0;

  /* every field of ri is set, whatever was there before */
  memset(&ri, 0x5A, sizeof ri);
  jpeg(&x, NULL, 80, 60);
  CHECK_EQ(plan(&x, &o, &ri, &why), 0);
  CHECK(ri.resized == 0 && ri.work == 0 && ri.out_format == QV_FMT_JPEG &&
        ri.out_bytes == x.n && ri.orientation == 0);
}

static void test_decodes_whole(void) {
  bytes x;
  static const unsigned char sof2[] = { 0xFF, 0xD8, 0xFF, 0xC2, 0, 11, 8, 0, 8,
                                        0, 8, 1, 1, 0x11, 0 };
  jpeg(&x, NULL, 8, 8);
  CHECK(!qv_resize_decodes_whole(x.b, x.n, QV_FMT_JPEG));
  CHECK(qv_resize_decodes_whole(sof2, sizeof sof2, QV_FMT_JPEG));
  CHECK(qv_resize_decodes_whole(sof2, 4, QV_FMT_JPEG));    /* the marker says */
  CHECK(!qv_resize_decodes_whole(sof2, 3, QV_FMT_JPEG));
  png(&x, NULL, 0, 0, 8, 8, 0);
  CHECK(!qv_resize_decodes_whole(x.b, x.n, QV_FMT_PNG));
  png(&x, NULL, 0, 0, 8, 8, 1);
  CHECK(qv_resize_decodes_whole(x.b, x.n, QV_FMT_PNG));
  CHECK(!qv_resize_decodes_whole(x.b, 28, QV_FMT_PNG));
  CHECK(qv_resize_decodes_whole(x.b, 0, QV_FMT_GIF));
  CHECK(qv_resize_decodes_whole(x.b, 0, QV_FMT_BMP));
  CHECK(qv_resize_decodes_whole(x.b, 0, QV_FMT_HEIC));
  CHECK(!qv_resize_decodes_whole(x.b, 0, QV_FMT_WEBP));
  CHECK(!qv_resize_decodes_whole(x.b, 0, QV_FMT_TIFF));
}

/* The point of qv_resize_plan: what needs no work never loads libvips.
** Runs first, before anything could have loaded it. */
static void test_no_libvips_for_small(void) {
  bytes x, t;
  qv_resize_opts o;
  qv_resize_info ri;
  qv_buf out;
  qv_image_info info;
  const char *why = NULL;
  int before = maps_libvips();
  if (before != 0) {
    printf("  (no /proc/self/maps, or libvips already mapped: skipped)\n");
    return;
  }
  memset(&o, 0, sizeof o);
  qv_buf_init(&out);
  t.n = 0; tiff_o(&t, 0, 1);
  jpeg(&x, &t, 80, 60);
  CHECK(qv_image_probe(x.b, x.n, &info, &why) == 0);
  CHECK_EQ(qv_resize(x.b, x.n, &info, &o, &out, &ri, &why), 0);
  CHECK(ri.resized == 0 && out.len == 0);
  png(&x, NULL, 0, 0, 1920, 1080, 0);
  CHECK(qv_image_probe(x.b, x.n, &info, &why) == 0);
  CHECK_EQ(qv_resize(x.b, x.n, &info, &o, &out, &ri, &why), 0);
  /* refused by the cap: libvips not needed to say so */
  png(&x, NULL, 0, 0, 65535, 65535, 0);
  CHECK(qv_image_probe(x.b, x.n, &info, &why) == 0);
  CHECK_EQ(qv_resize(x.b, x.n, &info, &o, &out, &ri, &why), -1);
  CHECK_EQ(maps_libvips(), 0);
  qv_buf_free(&out);
}

int main(void) {
  test_no_libvips_for_small();
  test_tiff();
  test_jpeg();
  test_png();
  test_webp();
  test_other_formats();
  test_plan();
  test_decodes_whole();
  return check_summary(NULL);
}
