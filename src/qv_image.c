/*
** qv_image: format sniffing, header probing, base64 and data URLs.
** Every read from an image header goes through a bounds check first:
** the bytes come from users and from the network.
*/
#include <string.h>

#include "qv_image.h"

#define E_UNKNOWN   "not a supported image (unknown format)"
#define E_TRUNC     "truncated image header"
#define E_ZERO      "image header has zero width or height"
#define E_JPEG      "corrupt JPEG header"
#define E_JPEG_SOF  "JPEG has no frame header before its image data"
#define E_PNG_IHDR  "PNG does not start with an IHDR chunk"
#define E_PNG       "corrupt PNG header"
#define E_WEBP      "unsupported WEBP variant"
#define E_BMP       "unsupported BMP header"
#define E_TIFF_IFD  "corrupt TIFF header"
#define E_TIFF      "TIFF first directory has no width and height"

/* ---- byte helpers (callers have checked bounds) ---- */

static unsigned be16(const unsigned char *p) {
  return (unsigned)p[0] << 8 | p[1];
}
static unsigned le16(const unsigned char *p) {
  return (unsigned)p[1] << 8 | p[0];
}
static unsigned long be32(const unsigned char *p) {
  return (unsigned long)p[0] << 24 | (unsigned long)p[1] << 16 |
         (unsigned long)p[2] << 8 | p[3];
}
static unsigned long le32(const unsigned char *p) {
  return (unsigned long)p[3] << 24 | (unsigned long)p[2] << 16 |
         (unsigned long)p[1] << 8 | p[0];
}
static unsigned long le24(const unsigned char *p) {
  return (unsigned long)p[2] << 16 | (unsigned long)p[1] << 8 | p[0];
}

static int lower(int c) {
  return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

/* Case-insensitive compare of s[0..n) with the NUL-terminated lit. */
static int ieq(const char *s, size_t n, const char *lit) {
  size_t i;
  for (i = 0; i < n; i++)
    if (lit[i] == '\0' || lower((unsigned char)s[i]) != lit[i]) return 0;
  return lit[n] == '\0';
}

/* ---- sniffing ---- */

static const char *const heic_major[] = {
  "heic", "heix", "hevc", "hevx", "mif1", "msf1", NULL
};

static int brand_in(const unsigned char *p, const char *const *list) {
  int i;
  for (i = 0; list[i]; i++)
    if (memcmp(p, list[i], 4) == 0) return 1;
  return 0;
}

static int is_heic(const unsigned char *p, size_t n) {
  size_t box, i;
  if (n < 12 || memcmp(p + 4, "ftyp", 4) != 0) return 0;
  if (brand_in(p + 8, heic_major)) return 1;
  /* major brand is something else: an HEVC brand among the compatible
  ** ones still makes it HEIC (but "mif1" alone is shared with AVIF) */
  box = be32(p);
  if (box > n) box = n;
  for (i = 16; i + 4 <= box; i += 4)
    if (brand_in(p + i, heic_major) && memcmp(p + i, "mif1", 4) != 0 &&
        memcmp(p + i, "msf1", 4) != 0)
      return 1;
  return 0;
}

qv_format qv_image_sniff(const unsigned char *p, size_t n) {
  if (n >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF)
    return QV_FMT_JPEG;
  if (n >= 8 && memcmp(p, "\x89PNG\r\n\x1a\n", 8) == 0) return QV_FMT_PNG;
  if (n >= 6 && (memcmp(p, "GIF87a", 6) == 0 || memcmp(p, "GIF89a", 6) == 0))
    return QV_FMT_GIF;
  if (n >= 12 && memcmp(p, "RIFF", 4) == 0 && memcmp(p + 8, "WEBP", 4) == 0)
    return QV_FMT_WEBP;
  if (n >= 2 && p[0] == 'B' && p[1] == 'M') return QV_FMT_BMP;
  if (n >= 4 && (memcmp(p, "II*\0", 4) == 0 || memcmp(p, "MM\0*", 4) == 0))
    return QV_FMT_TIFF;
  if (is_heic(p, n)) return QV_FMT_HEIC;
  return QV_FMT_UNKNOWN;
}

static const struct {
  const char *mime, *name;
} formats[] = {
  { NULL, "unknown" },
  { "image/jpeg", "jpeg" }, { "image/png", "png" }, { "image/gif", "gif" },
  { "image/webp", "webp" }, { "image/bmp", "bmp" }, { "image/tiff", "tiff" },
  { "image/heic", "heic" }
};

#define NFORMATS (sizeof(formats) / sizeof(formats[0]))

const char *qv_image_mime(qv_format f) {
  return ((unsigned)f < NFORMATS) ? formats[f].mime : NULL;
}

const char *qv_image_name(qv_format f) {
  return ((unsigned)f < NFORMATS) ? formats[f].name : "unknown";
}

qv_format qv_image_format_from_mime(const char *mime, size_t n) {
  unsigned i;
  if (!mime) return QV_FMT_UNKNOWN;
  if (ieq(mime, n, "image/jpg")) return QV_FMT_JPEG;
  for (i = 1; i < NFORMATS; i++)
    if (ieq(mime, n, formats[i].mime)) return (qv_format)i;
  return QV_FMT_UNKNOWN;
}

/* ---- probing: each returns 0 or sets *why ---- */

static int probe_jpeg(const unsigned char *p, size_t n, qv_image_info *in,
                      const char **why) {
  size_t i = 2, len;
  unsigned m;
  for (;;) {
    if (i >= n) goto trunc;
    if (p[i] != 0xFF) { *why = E_JPEG; return -1; }
    while (i < n && p[i] == 0xFF) i++;       /* fill bytes */
    if (i >= n) goto trunc;
    m = p[i++];
    if ((m >= 0xD0 && m <= 0xD7) || m == 0x01) continue;  /* RSTn, TEM */
    if (m == 0x00 || m == 0xD8) { *why = E_JPEG; return -1; }
    if (m == 0xD9 || m == 0xDA) { *why = E_JPEG_SOF; return -1; }
    if (n - i < 2) goto trunc;
    len = be16(p + i);
    if (len < 2) { *why = E_JPEG; return -1; }
    if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) {
      /* SOFn: length, precision, height, width, components */
      if (len < 8) { *why = E_JPEG; return -1; }
      if (n - i < 7) goto trunc;
      in->height = be16(p + i + 3);
      in->width = be16(p + i + 5);
      return 0;
    }
    if (n - i < len) goto trunc;
    i += len;
  }
trunc:
  *why = E_TRUNC;
  return -1;
}

static int probe_png(const unsigned char *p, size_t n, qv_image_info *in,
                     const char **why) {
  unsigned long w, h;
  if (n < 8 + 8 + 13) { *why = E_TRUNC; return -1; }
  if (be32(p + 8) != 13 || memcmp(p + 12, "IHDR", 4) != 0) {
    *why = E_PNG_IHDR;
    return -1;
  }
  w = be32(p + 16);
  h = be32(p + 20);
  if (w > 0x7FFFFFFFul || h > 0x7FFFFFFFul) { *why = E_PNG; return -1; }
  in->width = (unsigned)w;
  in->height = (unsigned)h;
  return 0;
}

static int probe_gif(const unsigned char *p, size_t n, qv_image_info *in,
                     const char **why) {
  if (n < 10) { *why = E_TRUNC; return -1; }
  in->width = le16(p + 6);
  in->height = le16(p + 8);
  return 0;
}

static int probe_webp(const unsigned char *p, size_t n, qv_image_info *in,
                      const char **why) {
  if (n < 20) { *why = E_TRUNC; return -1; }
  if (memcmp(p + 12, "VP8 ", 4) == 0) {
    /* frame tag (3), start code 9D 01 2A, 14-bit width and height */
    if (n < 30) { *why = E_TRUNC; return -1; }
    if (p[23] != 0x9D || p[24] != 0x01 || p[25] != 0x2A) {
      *why = E_WEBP;
      return -1;
    }
    in->width = le16(p + 26) & 0x3FFF;
    in->height = le16(p + 28) & 0x3FFF;
    return 0;
  }
  if (memcmp(p + 12, "VP8L", 4) == 0) {
    /* signature 0x2F, then 14 bits width-1 and 14 bits height-1 */
    unsigned long bits;
    if (n < 25) { *why = E_TRUNC; return -1; }
    if (p[20] != 0x2F) { *why = E_WEBP; return -1; }
    bits = le32(p + 21);
    in->width = (unsigned)(bits & 0x3FFF) + 1;
    in->height = (unsigned)((bits >> 14) & 0x3FFF) + 1;
    return 0;
  }
  if (memcmp(p + 12, "VP8X", 4) == 0) {
    /* flags (1), reserved (3), 24-bit canvas width-1 and height-1 */
    if (n < 30) { *why = E_TRUNC; return -1; }
    in->width = (unsigned)le24(p + 24) + 1;
    in->height = (unsigned)le24(p + 27) + 1;
    return 0;
  }
  *why = E_WEBP;
  return -1;
}

static int probe_bmp(const unsigned char *p, size_t n, qv_image_info *in,
                     const char **why) {
  unsigned long dib, w, h;
  if (n < 18) { *why = E_TRUNC; return -1; }
  dib = le32(p + 14);
  if (dib == 12) {                           /* BITMAPCOREHEADER */
    if (n < 22) { *why = E_TRUNC; return -1; }
    in->width = le16(p + 18);
    in->height = le16(p + 20);
    return 0;
  }
  if (dib < 16 || dib > 4096) { *why = E_BMP; return -1; }
  if (n < 26) { *why = E_TRUNC; return -1; }
  w = le32(p + 18);
  h = le32(p + 22);
  if (w & 0x80000000ul) { *why = E_BMP; return -1; }  /* negative width */
  if (h & 0x80000000ul) h = (0xFFFFFFFFul - h + 1) & 0xFFFFFFFFul;  /* top-down */
  in->width = (unsigned)w;
  in->height = (unsigned)h;
  return 0;
}

static int probe_tiff(const unsigned char *p, size_t n, qv_image_info *in,
                      const char **why) {
  int le = p[0] == 'I';
  unsigned long ifd;
  size_t i, count, e;
  int got = 0;
  if (n < 8) { *why = E_TRUNC; return -1; }
  ifd = le ? le32(p + 4) : be32(p + 4);
  if (ifd < 8) { *why = E_TIFF_IFD; return -1; }
  if (ifd >= n || n - ifd < 2) { *why = E_TRUNC; return -1; }
  count = le ? le16(p + ifd) : be16(p + ifd);
  for (i = 0; i < count && got != 3; i++) {
    unsigned tag, type;
    unsigned long cnt, v;
    e = ifd + 2 + 12 * i;
    if (e > n || n - e < 12) { *why = E_TRUNC; return -1; }
    tag = le ? le16(p + e) : be16(p + e);
    if (tag != 256 && tag != 257) continue;
    type = le ? le16(p + e + 2) : be16(p + e + 2);
    cnt = le ? le32(p + e + 4) : be32(p + e + 4);
    if (cnt != 1) continue;
    if (type == 3)                           /* SHORT, left-justified */
      v = le ? le16(p + e + 8) : be16(p + e + 8);
    else if (type == 4)                      /* LONG */
      v = le ? le32(p + e + 8) : be32(p + e + 8);
    else
      continue;
    if (tag == 256) { in->width = (unsigned)v; got |= 1; }
    else { in->height = (unsigned)v; got |= 2; }
  }
  if (got != 3) { *why = E_TIFF; return -1; }
  return 0;
}

/* HEIC: the size is optional. Look for 'ispe' properties in
** meta/iprp/ipco and keep the largest: the primary image of a grid is
** bigger than its tiles and its thumbnail. Malformed boxes just stop
** the search. */
static void heic_boxes(const unsigned char *p, size_t n, int depth,
                       qv_image_info *in) {
  size_t i = 0;
  while (n - i >= 8) {
    unsigned long size = be32(p + i);
    const unsigned char *type = p + i + 4;
    size_t hdr = 8, body;
    if (size == 1) {                         /* 64-bit size */
      if (n - i < 16 || be32(p + i + 8) != 0) return;
      size = be32(p + i + 12);
      hdr = 16;
    } else if (size == 0) {                  /* to the end */
      size = (unsigned long)(n - i);
    }
    if (size < hdr || size > n - i) return;
    body = (size_t)size - hdr;
    if (depth == 0 && memcmp(type, "meta", 4) == 0) {
      if (body >= 4) heic_boxes(p + i + hdr + 4, body - 4, 1, in);
    } else if ((depth == 1 && memcmp(type, "iprp", 4) == 0) ||
               (depth == 2 && memcmp(type, "ipco", 4) == 0)) {
      heic_boxes(p + i + hdr, body, depth + 1, in);
    } else if (depth == 3 && memcmp(type, "ispe", 4) == 0 && body >= 12) {
      unsigned long w = be32(p + i + hdr + 4), h = be32(p + i + hdr + 8);
      if ((double)w * (double)h > (double)in->width * (double)in->height) {
        in->width = (unsigned)w;
        in->height = (unsigned)h;
      }
    }
    i += (size_t)size;
  }
}

int qv_image_probe(const unsigned char *p, size_t n, qv_image_info *info,
                   const char **why) {
  qv_image_info tmp;
  const char *dummy;
  int r;
  if (!info) info = &tmp;
  if (!why) why = &dummy;
  info->format = qv_image_sniff(p, n);
  info->width = info->height = 0;
  switch (info->format) {
    case QV_FMT_JPEG: r = probe_jpeg(p, n, info, why); break;
    case QV_FMT_PNG: r = probe_png(p, n, info, why); break;
    case QV_FMT_GIF: r = probe_gif(p, n, info, why); break;
    case QV_FMT_WEBP: r = probe_webp(p, n, info, why); break;
    case QV_FMT_BMP: r = probe_bmp(p, n, info, why); break;
    case QV_FMT_TIFF: r = probe_tiff(p, n, info, why); break;
    case QV_FMT_HEIC:
      heic_boxes(p, n, 0, info);
      if (info->width == 0 || info->height == 0)
        info->width = info->height = 0;
      return 0;
    default:
      *why = E_UNKNOWN;
      return -1;
  }
  if (r == 0 && (info->width == 0 || info->height == 0)) {
    *why = E_ZERO;
    r = -1;
  }
  if (r != 0) info->width = info->height = 0;
  return r;
}

/* ---- base64 ---- */

static const char b64chars[] =
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Value of a base64 digit, or -1. */
static int b64val(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

/* (size_t)-1 when the encoding would not fit in a size_t. */
size_t qv_base64_len(size_t n) {
  size_t groups = n / 3 + (n % 3 != 0);
  if (groups > ((size_t)-1 - 1) / 4) return (size_t)-1;
  return groups * 4;
}

void qv_base64_encode(qv_buf *out, const unsigned char *p, size_t n) {
  size_t len = qv_base64_len(n), i;
  char *d;
  if (len == (size_t)-1) { out->oom = 1; return; }
  if (len == 0 || !qv_buf_reserve(out, len)) return;
  d = out->data + out->len;
  for (i = 0; n - i >= 3; i += 3) {
    unsigned long v = (unsigned long)p[i] << 16 | (unsigned long)p[i + 1] << 8 |
                      p[i + 2];
    *d++ = b64chars[v >> 18];
    *d++ = b64chars[(v >> 12) & 63];
    *d++ = b64chars[(v >> 6) & 63];
    *d++ = b64chars[v & 63];
  }
  if (n - i == 1) {
    unsigned long v = (unsigned long)p[i] << 16;
    *d++ = b64chars[v >> 18];
    *d++ = b64chars[(v >> 12) & 63];
    *d++ = '=';
    *d++ = '=';
  } else if (n - i == 2) {
    unsigned long v = (unsigned long)p[i] << 16 | (unsigned long)p[i + 1] << 8;
    *d++ = b64chars[v >> 18];
    *d++ = b64chars[(v >> 12) & 63];
    *d++ = b64chars[(v >> 6) & 63];
    *d++ = '=';
  }
  out->len += len;
  out->data[out->len] = '\0';
}

/* Length a multiple of 4, only the alphabet, at most two '=' and only at
** the end. Non-zero pad bits are ignored, as most decoders do (RFC 4648
** 3.5 allows either): qv_data_url_check must accept what the server
** will, and what it accepts must decode. */
static int b64_check(const char *s, size_t n, size_t *pad) {
  size_t i, body;
  *pad = 0;
  if (n % 4 != 0) return -1;
  if (n >= 1 && s[n - 1] == '=') (*pad)++;
  if (n >= 2 && s[n - 2] == '=') (*pad)++;
  body = n - *pad;
  for (i = 0; i < body; i++)
    if (b64val((unsigned char)s[i]) < 0) return -1;
  return 0;
}

int qv_base64_decode(qv_buf *out, const char *s, size_t n) {
  size_t pad, i, olen;
  unsigned char *d;
  if (b64_check(s, n, &pad) != 0) return -1;
  if (n == 0) return 0;
  olen = n / 4 * 3 - pad;
  if (!qv_buf_reserve(out, olen)) return -1;
  d = (unsigned char *)out->data + out->len;
  for (i = 0; i < n; i += 4) {
    unsigned long v = (unsigned long)b64val((unsigned char)s[i]) << 18 |
                      (unsigned long)b64val((unsigned char)s[i + 1]) << 12;
    *d++ = (unsigned char)(v >> 16);
    if (s[i + 2] == '=') break;
    v |= (unsigned long)b64val((unsigned char)s[i + 2]) << 6;
    *d++ = (unsigned char)(v >> 8 & 0xFF);
    if (s[i + 3] == '=') break;
    v |= (unsigned long)b64val((unsigned char)s[i + 3]);
    *d++ = (unsigned char)(v & 0xFF);
  }
  out->len += olen;
  out->data[out->len] = '\0';
  return 0;
}

/* ---- data URLs ---- */

int qv_data_url_check(const char *s, size_t n, qv_format *fmt,
                      const char **payload, size_t *payload_len,
                      const char **why) {
  const char *dummy;
  size_t i, m, seg, pad, plen;
  qv_format f;
  if (!why) why = &dummy;
  if (n < 5 || !ieq(s, 5, "data:")) {
    *why = "not a data URL (must start with \"data:\")";
    return -1;
  }
  for (m = 5; m < n && s[m] != ';' && s[m] != ','; m++) {}
  f = qv_image_format_from_mime(s + 5, m - 5);
  if (f == QV_FMT_UNKNOWN) {
    *why = "data URL media type is not a supported image type";
    return -1;
  }
  /* parameters: ";name=value" ... then exactly ";base64," */
  i = m;
  for (;;) {
    if (i >= n || s[i] != ';') goto not_b64;
    for (seg = i + 1; seg < n && s[seg] != ';' && s[seg] != ','; seg++) {}
    if (seg >= n) goto not_b64;
    if (seg - i - 1 == 6 && memcmp(s + i + 1, "base64", 6) == 0 &&
        s[seg] == ',')
      break;
    if (!memchr(s + i + 1, '=', seg - i - 1)) goto not_b64;
    i = seg;
  }
  i = i + 8;                                   /* past ";base64," */
  if (n > QV_DATA_URL_LIMIT) {
    *why = "data URL exceeds DashScope's 10 MiB limit";
    return -1;
  }
  plen = n - i;
  if (plen == 0) {
    *why = "data URL has an empty payload";
    return -1;
  }
  if (b64_check(s + i, plen, &pad) != 0) {
    *why = "data URL payload is not valid base64";
    return -1;
  }
  if (fmt) *fmt = f;
  if (payload) *payload = s + i;
  if (payload_len) *payload_len = plen;
  return 0;
not_b64:
  *why = "data URL is not base64-encoded (needs \";base64,\")";
  return -1;
}
