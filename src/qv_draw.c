/*
** qv_draw: boxes and labels onto a copy of a picture (see qv_draw.h).
** The geometry comes first (no libvips), then the libvips part, called
** through a table filled once from the libvips that qv_resize loaded.
*/
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "qv_buf.h"
#include "qv_draw.h"
#include "qv_exif.h"
#include "qv_file.h"
#include "qv_resize.h"
#include "qv_vips.h"

/* The input is read whole, as a request would read it. */
#define QV_DRAW_FILE_MAX (256u << 20)

/* ---- geometry, without libvips ---------------------------------------- */

static int ieq(const char *a, const char *b) {
  for (; *a && *b; a++, b++) {
    char x = *a, y = *b;
    if (x >= 'A' && x <= 'Z') x = (char)(x - 'A' + 'a');
    if (x != y) return 0;
  }
  return *a == *b;
}

qv_format qv_draw_format_of(const char *path) {
  const char *dot = path ? strrchr(path, '.') : NULL;
  if (dot == NULL || strchr(dot, '/') != NULL) return QV_FMT_UNKNOWN;
  if (ieq(dot, ".png")) return QV_FMT_PNG;
  if (ieq(dot, ".jpg") || ieq(dot, ".jpeg")) return QV_FMT_JPEG;
  if (ieq(dot, ".webp")) return QV_FMT_WEBP;
  return QV_FMT_UNKNOWN;
}

static unsigned shorter(unsigned w, unsigned h) { return w < h ? w : h; }

int qv_draw_stroke(unsigned w, unsigned h) {
  unsigned s = (shorter(w, h) + 125) / 250;
  return s < 2 ? 2 : s > 64 ? 64 : (int)s;
}

int qv_draw_text_px(unsigned w, unsigned h) {
  unsigned s = (shorter(w, h) + 20) / 40;
  return s < 12 ? 12 : s > 400 ? 400 : (int)s;
}

void qv_draw_palette(size_t i, unsigned char rgb[3]) {
  static const unsigned char p[8][3] = {
    { 230, 25, 75 }, { 60, 180, 75 }, { 0, 130, 200 }, { 245, 130, 48 },
    { 145, 30, 180 }, { 70, 240, 240 }, { 240, 50, 230 }, { 210, 245, 60 },
  };
  memcpy(rgb, p[i % 8], 3);
}

/* v rounded to a whole pixel, within [lo, hi]; 0 when v is not finite. */
static int px(double v, long lo, long hi, long *out) {
  double r;
  if (!(v == v) || v > 1e15 || v < -1e15) return 0;
  r = floor(v + 0.5);
  if (r < (double)lo) r = (double)lo;
  if (r > (double)hi) r = (double)hi;
  *out = (long)r;
  return 1;
}

int qv_draw_item_rect(const qv_draw_item *it, unsigned w, unsigned h, int stroke,
                      qv_draw_rect *r) {
  long l, t, rt, b, W = (long)w, H = (long)h;
  if (w == 0 || h == 0) return 0;
  if (it->point) {
    long x, y, rad = 2L * stroke + 2;
    if (!px(it->x1, -1, W + 1, &x) || !px(it->y1, -1, H + 1, &y)) return 0;
    if (x < 0 || y < 0 || x > W || y > H) return 0;
    l = x - rad; t = y - rad; rt = x + rad + 1; b = y + rad + 1;
  } else {
    double x1 = it->x1 < it->x2 ? it->x1 : it->x2, x2 = it->x1 < it->x2 ? it->x2 : it->x1;
    double y1 = it->y1 < it->y2 ? it->y1 : it->y2, y2 = it->y1 < it->y2 ? it->y2 : it->y1;
    if (!px(x1, -1, W + 1, &l) || !px(x2, -1, W + 1, &rt) ||
        !px(y1, -1, H + 1, &t) || !px(y2, -1, H + 1, &b)) return 0;
    if (rt <= 0 || b <= 0 || l >= W || t >= H) return 0;
    if (rt <= l) rt = l + 1;             /* a line is still drawn */
    if (b <= t) b = t + 1;
  }
  if (l < 0) l = 0;
  if (t < 0) t = 0;
  if (rt > W) rt = W;
  if (b > H) b = H;
  if (rt <= l || b <= t) return 0;
  r->x = (int)l; r->y = (int)t; r->w = (int)(rt - l); r->h = (int)(b - t);
  return 1;
}

int qv_draw_outline(const qv_draw_rect *b, int stroke, qv_draw_rect out[4]) {
  int n = 0, sx, sy;
  if (b->w <= 0 || b->h <= 0 || stroke <= 0) return 0;
  sx = stroke < b->w ? stroke : b->w;
  sy = stroke < b->h ? stroke : b->h;
  out[n].x = b->x; out[n].y = b->y; out[n].w = b->w; out[n].h = sy; n++;          /* top */
  if (b->h > sy) {
    out[n].x = b->x; out[n].y = b->y + b->h - sy; out[n].w = b->w; out[n].h = sy; n++;
  }
  out[n].x = b->x; out[n].y = b->y; out[n].w = sx; out[n].h = b->h; n++;          /* left */
  if (b->w > sx) {
    out[n].x = b->x + b->w - sx; out[n].y = b->y; out[n].w = sx; out[n].h = b->h; n++;
  }
  return n;
}

qv_draw_rect qv_draw_label_rect(const qv_draw_rect *a, unsigned w, unsigned h,
                                int lw, int lh) {
  qv_draw_rect r;
  long x = a->x, y = (long)a->y - lh;
  if (y < 0) y = a->y;                   /* no room above: inside, at the top */
  if (x + lw > (long)w) x = (long)w - lw;
  if (y + lh > (long)h) y = (long)h - lh;
  if (x < 0) x = 0;
  if (y < 0) y = 0;
  r.x = (int)x; r.y = (int)y; r.w = lw; r.h = lh;
  return r;
}

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  size_t k, i;
  unsigned long cp;
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) { k = 2; cp = c & 0x1F; }
  else if (c >= 0xE0 && c <= 0xEF) { k = 3; cp = c & 0x0F; }
  else if (c >= 0xF0 && c <= 0xF4) { k = 4; cp = c & 0x07; }
  else return 0;
  if (n < k) return 0;
  for (i = 1; i < k; i++) {
    if ((s[i] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (s[i] & 0x3F);
  }
  if ((k == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
      (k == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
    return 0;
  return k;
}

static void put(char *out, size_t cap, size_t *o, const char *s, size_t n) {
  if (*o + n < cap) { memcpy(out + *o, s, n); *o += n; }
}

size_t qv_draw_markup(const char *label, size_t len, char *out, size_t cap) {
  const unsigned char *s = (const unsigned char *)label;
  size_t i = 0, o = 0, end;
  if (cap == 0) return 0;
  out[0] = '\0';
  if (label == NULL) return 0;
  if (len > QV_DRAW_LABEL_MAX) {
    len = QV_DRAW_LABEL_MAX;              /* back to a character boundary */
    while (len > 0 && (s[len] & 0xC0) == 0x80) len--;
  }
  while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
  end = len;
  while (end > i && (s[end - 1] == ' ' || s[end - 1] == '\t' || s[end - 1] == '\n' ||
                     s[end - 1] == '\r')) end--;
  while (i < end) {
    size_t k = utf8_seq(s + i, end - i);
    unsigned c = s[i];
    if (k == 0) { put(out, cap, &o, "\xEF\xBF\xBD", 3); i++; continue; }
    if (k == 1) {
      if (c < 0x20 || c == 0x7F) put(out, cap, &o, " ", 1);
      else if (c == '&') put(out, cap, &o, "&amp;", 5);
      else if (c == '<') put(out, cap, &o, "&lt;", 4);
      else if (c == '>') put(out, cap, &o, "&gt;", 4);
      else if (c == '\'') put(out, cap, &o, "&apos;", 6);
      else if (c == '"') put(out, cap, &o, "&quot;", 6);
      else put(out, cap, &o, (const char *)s + i, 1);
    } else if (k == 2 && c == 0xC2 && s[i + 1] < 0xA0) {
      put(out, cap, &o, " ", 1);          /* C1 controls */
    } else {
      put(out, cap, &o, (const char *)s + i, k);
    }
    i += k;
  }
  while (o > 0 && out[o - 1] == ' ') o--;  /* controls made spaces at the ends */
  for (i = 0; i < o && out[i] == ' '; i++) {}
  memmove(out, out + i, o - i);
  o -= i;
  out[o] = '\0';
  return o;
}

/* ---- libvips ---------------------------------------------------------- */

typedef struct draw_api {
#define FIELD(ret, field, sym, params) ret (*field) params;
  QV_VIPS_DRAW_API(FIELD)
#undef FIELD
} draw_api;

static const struct { const char *sym; size_t off; } draw_syms[] = {
#define ENTRY(ret, field, sym, params) { #sym, offsetof(draw_api, field) },
  QV_VIPS_DRAW_API(ENTRY)
#undef ENTRY
};

/* Written once, by load_api under api_once; read-only afterwards. */
static pthread_once_t api_once = PTHREAD_ONCE_INIT;
static draw_api D;
static int api_ok;

/* The table, from the libvips that qv_resize loaded (never a second
** copy). */
static void load_api(void) {
  draw_api api;
  size_t i;
  memset(&api, 0, sizeof api);
  for (i = 0; i < sizeof draw_syms / sizeof *draw_syms; i++) {
    void *p = qv_resize_vips_symbol(draw_syms[i].sym);
    if (p == NULL) return;
    memcpy((char *)&api + draw_syms[i].off, &p, sizeof p);
  }
  D = api;
  api_ok = 1;
}

static int api_here(void) {
  if (!qv_resize_available()) return 0;   /* loads and initialises libvips */
  pthread_once(&api_once, load_api);
  return api_ok;
}

static int fail(const char **code, const char **why, const char *c, const char *w) {
  *code = c;
  *why = w;
  return -1;
}

/* *why = "<what>: <libvips message>" in info->msg. */
static int vips_fail(qv_draw_info *info, const char *code, const char *what,
                     const char **codep, const char **why) {
  qv_resize_vips_error(info->msg, sizeof info->msg, what);
  return fail(codep, why, code, info->msg);
}

/* Replace *img by what op made of it (or keep it and fail). */
#define STEP(call, what) do { \
    qv_VipsImage *next_ = NULL; \
    int r_ = (call); \
    if (r_ != 0 || next_ == NULL) { \
      D.object_unref(img); \
      return vips_fail(info, "invalid_request", what, code, why); \
    } \
    D.object_unref(img); \
    img = next_; \
  } while (0)

static void ink_of(const unsigned char rgb[3], int bands, double ink[8]) {
  int i;
  for (i = 0; i < bands && i < 8; i++) ink[i] = i < 3 ? rgb[i] : 255.0;
}

static int same_label(const qv_draw_item *a, const qv_draw_item *b) {
  if (a->label == NULL || a->label_len == 0) return b->label == NULL || b->label_len == 0;
  return b->label != NULL && a->label_len == b->label_len &&
         memcmp(a->label, b->label, a->label_len) == 0;
}

/* Palette slots: one per distinct label, in the order labels first
** appear (NULL when out of memory: then one per item). */
static size_t *label_slots(const qv_draw_item *items, size_t n) {
  size_t *slot = malloc((n ? n : 1) * sizeof *slot), i, j, next = 0;
  if (slot == NULL) return NULL;
  for (i = 0; i < n; i++) {
    slot[i] = (size_t)-1;
    for (j = 0; j < i && slot[i] == (size_t)-1; j++)
      if (same_label(&items[j], &items[i])) slot[i] = slot[j];
    if (slot[i] == (size_t)-1) slot[i] = next++;
  }
  return slot;
}

/* The label of item `it` on the picture `img` over anchor a. Returns 1
** when drawn, 0 when libvips could not render it (the error is cleared),
** -1 when there is nothing to draw (white space only). */
static int draw_label(qv_VipsImage *img, const qv_draw_item *it, const qv_draw_rect *a,
                      const unsigned char rgb[3], int bands, unsigned w, unsigned h) {
  char markup[QV_DRAW_MARKUP_CAP], font[32];
  qv_VipsImage *mask = NULL;
  double ink[8], text_ink[8];
  unsigned char white[3] = { 255, 255, 255 }, black[3] = { 0, 0, 0 };
  int tpx = qv_draw_text_px(w, h), pad = tpx / 5 > 2 ? tpx / 5 : 2, tw, th;
  qv_draw_rect r;
  if (qv_draw_markup(it->label, it->label_len, markup, sizeof markup) == 0) return -1;
  snprintf(font, sizeof font, "sans %d", tpx);
  if (D.text(&mask, markup, "font", font, "dpi", 72, NULL) != 0 || mask == NULL) {
    D.error_clear();
    return 0;
  }
  tw = D.get_width(mask);
  th = D.get_height(mask);
  r = qv_draw_label_rect(a, w, h, tw + 2 * pad, th + 2 * pad);
  ink_of(rgb, bands, ink);
  /* light colours get dark text */
  ink_of(0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] > 150 ? black : white, bands, text_ink);
  if (D.draw_rect(img, ink, bands, r.x, r.y, r.w, r.h, "fill", QV_G_TRUE, NULL) != 0 ||
      D.draw_mask(img, text_ink, bands, mask, r.x + pad, r.y + pad, NULL) != 0) {
    D.object_unref(mask);
    D.error_clear();
    return 0;
  }
  D.object_unref(mask);
  return 1;
}

static int draw_items(qv_VipsImage *img, const qv_draw_item *items, size_t n,
                      qv_draw_info *info, const char **code, const char **why) {
  unsigned w = info->width, h = info->height;
  int stroke = qv_draw_stroke(w, h), bands = D.get_bands(img);
  size_t i, *slot = label_slots(items, n);
  if (bands > 8) bands = 8;
  for (i = 0; i < n; i++) {
    const qv_draw_item *it = &items[i];
    unsigned char rgb[3], white[3] = { 255, 255, 255 };
    double ink[8], ring[8];
    qv_draw_rect a, edges[4];
    int k, ne, r = 0;
    if (!qv_draw_item_rect(it, w, h, stroke, &a)) continue;
    if (it->has_rgb) memcpy(rgb, it->rgb, 3);
    else qv_draw_palette(slot ? slot[i] : i, rgb);
    ink_of(rgb, bands, ink);
    if (it->point) {
      int rad = 2 * stroke + 2;
      ink_of(white, bands, ring);
      r |= D.draw_circle(img, ring, bands, (int)floor(it->x1 + 0.5), (int)floor(it->y1 + 0.5),
                         rad + (stroke + 1) / 2, "fill", QV_G_TRUE, NULL);
      r |= D.draw_circle(img, ink, bands, (int)floor(it->x1 + 0.5), (int)floor(it->y1 + 0.5),
                         rad, "fill", QV_G_TRUE, NULL);
    } else {
      ne = qv_draw_outline(&a, stroke, edges);
      for (k = 0; k < ne; k++)
        r |= D.draw_rect(img, ink, bands, edges[k].x, edges[k].y, edges[k].w, edges[k].h,
                         "fill", QV_G_TRUE, NULL);
    }
    if (r != 0) {
      free(slot);
      return vips_fail(info, "invalid_request", "cannot draw", code, why);
    }
    if (it->label && it->label_len) {
      int drawn = draw_label(img, it, &a, rgb, bands, w, h);
      if (drawn > 0) info->labels++;
      else if (drawn == 0) info->labels_failed++;
    }
  }
  free(slot);
  return 0;
}

/* A new file beside path, opened for writing with the permissions any new
** file gets (0666 less the umask; mkstemp would make it 0600): its name
** in tmp (room for path + 40). */
static int open_beside(const char *path, char *tmp, size_t cap) {
  struct timespec ts;
  int i, fd = -1;
  clock_gettime(CLOCK_REALTIME, &ts);
  for (i = 0; i < 100 && fd < 0; i++) {
    snprintf(tmp, cap, "%s.tmp-%ld-%ld-%d", path, (long)getpid(), (long)ts.tv_nsec, i);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno != EEXIST) break;
  }
  return fd;
}

/* Write len bytes to path atomically: a new file in the same folder,
** flushed to disk, then renamed over path. */
static int write_atomic(const char *path, const void *buf, size_t len,
                        qv_draw_info *info, const char **code, const char **why) {
  size_t n = strlen(path) + 40, off = 0;
  char *tmp = malloc(n);
  int fd, e;
  if (tmp == NULL) return fail(code, why, "io", "out of memory");
  fd = open_beside(path, tmp, n);
  if (fd < 0) {
    snprintf(info->msg, sizeof info->msg, "cannot write %.300s: %s", path, strerror(errno));
    free(tmp);
    return fail(code, why, "io", info->msg);
  }
  errno = 0;
  while (off < len) {
    ssize_t w = write(fd, (const char *)buf + off, len - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;
    off += (size_t)w;
  }
  e = off == len ? 0 : errno ? errno : EIO;
  if (e == 0 && fsync(fd) != 0) e = errno;
  if (close(fd) != 0 && e == 0) e = errno;
  if (e == 0 && rename(tmp, path) != 0) e = errno;
  if (e != 0) {
    unlink(tmp);
    snprintf(info->msg, sizeof info->msg, "cannot write %.300s: %s", path, strerror(e));
    free(tmp);
    return fail(code, why, "io", info->msg);
  }
  free(tmp);
  return 0;
}

static int save(qv_VipsImage *img, qv_format fmt, const char *out_path,
                qv_draw_info *info, const char **code, const char **why) {
  void *buf = NULL;
  size_t len = 0;
  int r;
  qv_VipsImage *flat = NULL;
  if (fmt == QV_FMT_JPEG && D.hasalpha(img)) {
    qv_VipsArrayDouble *white;
    double bg[1] = { 255.0 };
    white = D.array_double_new(bg, 1);
    r = D.flatten(img, &flat, "background", white, NULL);
    D.area_unref((qv_VipsArea *)white);
    if (r != 0) return vips_fail(info, "invalid_request", "cannot flatten the picture", code, why);
    img = flat;
  }
  if (fmt == QV_FMT_PNG)
    /* level 1: a 24-megapixel photo in ~0.7 s instead of ~5 s at 6, for
    ** ~25% more bytes (a picture to look at, not to archive) */
    r = D.pngsave_buffer(img, &buf, &len, "strip", QV_G_TRUE, "compression", 1, NULL);
  else if (fmt == QV_FMT_WEBP)
    r = D.webpsave_buffer(img, &buf, &len, "strip", QV_G_TRUE, "Q", 90, NULL);
  else
    r = D.jpegsave_buffer(img, &buf, &len, "strip", QV_G_TRUE, "Q", 90,
                          "optimize_coding", QV_G_TRUE, NULL);
  if (flat) D.object_unref(flat);
  if (r != 0) return vips_fail(info, "io", "cannot encode the picture", code, why);
  r = write_atomic(out_path, buf, len, info, code, why);
  D.gfree(buf);
  return r;
}

/* Is out_path the file in_path (same device and inode)? */
static int same_file(const char *in_path, const char *out_path) {
  struct stat a, b;
  return stat(in_path, &a) == 0 && stat(out_path, &b) == 0 &&
         a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

static int draw_file(const qv_buf *in, const qv_image_info *ii, const char *out_path,
                     qv_format fmt, const qv_draw_item *items, size_t n,
                     qv_draw_info *info, const char **code, const char **why) {
  qv_VipsImage *img, *mem;
  const char *nick = D.find_load_buffer(in->data, in->len);
  double px;
  int r;
  if (!qv_resize_loader_ok(nick, ii->format)) {
    D.error_clear();
    return fail(code, why, "invalid_request", "libvips has no safe loader for this picture");
  }
  img = D.new_from_buffer(in->data, in->len, "", NULL);
  if (img == NULL) return vips_fail(info, "invalid_request", "cannot decode the picture", code, why);
  info->in_width = (unsigned)D.get_width(img);
  info->in_height = (unsigned)D.get_height(img);
  px = (double)info->in_width * info->in_height *
       (qv_resize_decodes_whole((const unsigned char *)in->data, in->len, ii->format) ? 2 : 1);
  if (px > (double)QV_RESIZE_MAX_INPUT_PIXELS) {
    D.object_unref(img);
    snprintf(info->msg, sizeof info->msg, "the picture is %ux%u, over the %.0f megapixels "
             "qwenvl decodes", info->in_width, info->in_height,
             (double)QV_RESIZE_MAX_INPUT_PIXELS / 1e6);
    return fail(code, why, "invalid_request", info->msg);
  }
  STEP(D.autorot(img, &next_, NULL), "cannot turn the picture upright");
  STEP(D.colourspace(img, &next_, QV_VIPS_INTERPRETATION_SRGB, NULL),
       "cannot convert the picture to sRGB");
  if (D.get_format(img) != QV_VIPS_FORMAT_UCHAR)
    STEP(D.cast(img, &next_, QV_VIPS_FORMAT_UCHAR, NULL), "cannot convert the picture to 8 bits");
  mem = D.copy_memory(img);
  D.object_unref(img);
  if (mem == NULL) return vips_fail(info, "invalid_request", "cannot decode the picture", code, why);
  info->width = (unsigned)D.get_width(mem);
  info->height = (unsigned)D.get_height(mem);
  r = draw_items(mem, items, n, info, code, why);
  if (r == 0) r = save(mem, fmt, out_path, info, code, why);
  D.object_unref(mem);
  return r;
}

/* The checks both entry points make: the output's name, not the input
** itself, the input read (into *in, which the caller frees) and probed,
** libvips usable. */
static int prepare(const char *in_path, const char *out_path, qv_buf *in, qv_image_info *ii,
                   qv_format *fmt, qv_draw_info *info, const char **code, const char **why) {
  const char *w = NULL;
  memset(info, 0, sizeof *info);
  info->orientation = 1;
  qv_buf_init(in);
  *fmt = qv_draw_format_of(out_path);
  if (*fmt == QV_FMT_UNKNOWN)
    return fail(code, why, "invalid_request", "the output must end in .png, .jpg, .jpeg or .webp");
  if (same_file(in_path, out_path))
    return fail(code, why, "invalid_request", "the output is the picture itself: it would be overwritten");
  if (qv_file_read(in_path, QV_DRAW_FILE_MAX, in, &w) != 0) {
    snprintf(info->msg, sizeof info->msg, "cannot read %.300s: %s", in_path, w);
    return fail(code, why, "invalid_request", info->msg);
  }
  if (qv_image_probe((const unsigned char *)in->data, in->len, ii, &w) != 0) {
    snprintf(info->msg, sizeof info->msg, "%.300s is not a supported picture: %s", in_path, w);
    return fail(code, why, "invalid_request", info->msg);
  }
  info->orientation = qv_exif_orientation((const unsigned char *)in->data, in->len);
  if (info->orientation < 1 || info->orientation > 8) info->orientation = 1;
  if (!api_here())
    return fail(code, why, "unavailable", "drawing needs libvips 8.12 or newer, usable in this "
                "process (not installed, too old, or inherited over fork())");
  return 0;
}

int qv_draw_check(const char *in_path, const char *out_path, qv_draw_info *info,
                  const char **code, const char **why) {
  qv_buf in;
  qv_image_info ii;
  qv_format fmt;
  int r = prepare(in_path, out_path, &in, &ii, &fmt, info, code, why);
  qv_buf_free(&in);
  if (r == 0) {
    info->in_width = ii.width;
    info->in_height = ii.height;
  }
  return r;
}

int qv_draw_boxes(const char *in_path, const char *out_path,
                  const qv_draw_item *items, size_t n, qv_draw_info *info,
                  const char **code, const char **why) {
  qv_buf in;
  qv_image_info ii;
  qv_format fmt;
  int r;
  if (n > QV_DRAW_MAX_ITEMS) {
    memset(info, 0, sizeof *info);
    return fail(code, why, "invalid_request", "too many boxes to draw");
  }
  r = prepare(in_path, out_path, &in, &ii, &fmt, info, code, why);
  if (r == 0) r = draw_file(&in, &ii, out_path, fmt, items, n, info, code, why);
  qv_buf_free(&in);
  return r;
}
