/*
** qv_resize: downscale, rotate and re-encode images with libvips (see
** qv_resize.h). libvips is dlopen()ed on the first image that needs it,
** and called through a table typed by qv_vips.h (see init_vips).
*/
#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "qv_exif.h"
#include "qv_resize.h"
#include "qv_vips.h"

size_t qv_resize_data_url_len(qv_format f, size_t n) {
  const char *mime = qv_image_mime(f);
  return strlen("data:;base64,") + (mime ? strlen(mime) : 10) + qv_base64_len(n);
}

/* ---- deciding, without libvips -------------------------------------- */

static void fill_defaults(const qv_image_info *info, size_t n,
                          qv_resize_info *ri) {
  memset(ri, 0, sizeof *ri);
  ri->in_w = ri->out_w = info->width;
  ri->in_h = ri->out_h = info->height;
  ri->in_bytes = ri->out_bytes = n;
  ri->out_format = info->format;
}

/* Does an image of w x h (either orientation), n bytes, need shrinking? */
static int too_big(unsigned w, unsigned h, qv_format f, size_t n,
                   unsigned long max_pixels, unsigned max_side) {
  if (qv_resize_data_url_len(f, n) > QV_DATA_URL_LIMIT) return 1;
  if (w == 0 || h == 0) return 0;
  if ((double)w * (double)h > (double)max_pixels) return 1;
  if (max_side && (w > max_side || h > max_side)) return 1;
  return 0;
}

/* A JPEG whose first frame header is progressive (SOF2, 6, 10, 14):
** libjpeg keeps every coefficient of the image until the last scan. */
static int jpeg_progressive(const unsigned char *p, size_t n) {
  size_t i = 2, len;
  for (;;) {
    unsigned m;
    if (i >= n || p[i] != 0xFF) return 0;
    while (i < n && p[i] == 0xFF) i++;
    if (i >= n) return 0;
    m = p[i++];
    if ((m >= 0xD0 && m <= 0xD7) || m == 0x01) continue;
    if (m == 0x00 || m == 0xD8 || m == 0xD9 || m == 0xDA) return 0;
    if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC)
      return m == 0xC2 || m == 0xC6 || m == 0xCA || m == 0xCE;
    if (n - i < 2) return 0;
    len = ((size_t)p[i] << 8) | p[i + 1];
    if (len < 2 || n - i < len) return 0;
    i += len;
  }
}

int qv_resize_decodes_whole(const unsigned char *p, size_t n, qv_format f) {
  switch (f) {
    case QV_FMT_GIF: case QV_FMT_BMP: case QV_FMT_HEIC: return 1;
    /* IHDR's interlace method (Adam7: the last pass completes each row) */
    case QV_FMT_PNG: return n > 28 && p[28] != 0;
    case QV_FMT_JPEG: return n >= 4 && jpeg_progressive(p, n);
    default: return 0;
  }
}

static int upright(int o) { return o < 2 || o > 8; }

/* -1 with *why when w x h is more than the caller allows to decode. */
static int over_cap(const unsigned char *in, size_t n, qv_format f,
                    unsigned w, unsigned h, const qv_resize_opts *o,
                    qv_resize_info *ri, const char **why) {
  unsigned long cap = o->max_input_pixels ? o->max_input_pixels
                                          : QV_RESIZE_MAX_INPUT_PIXELS;
  int whole = qv_resize_decodes_whole(in, n, f);
  double px = (double)w * (double)h;
  if (px * (whole ? 2 : 1) <= (double)cap) return 0;
  snprintf(ri->msg, sizeof ri->msg,
           "the image is %ux%u (%.1f megapixels%s), over the limit of %.1f "
           "megapixels that qwenvl decodes to resize an image (raise "
           "max_input_pixels to allow it)", w, h, px / 1e6,
           whole ? ", counted twice: this format is decoded whole into memory"
                 : "", (double)cap / 1e6);
  *why = ri->msg;
  return -1;
}

int qv_resize_plan(const unsigned char *in, size_t n, const qv_image_info *info,
                   const qv_resize_opts *o, qv_resize_info *ri,
                   const char **why) {
  unsigned long max_pixels = o->max_pixels ? o->max_pixels : QV_RESIZE_MAX_PIXELS;
  fill_defaults(info, n, ri);
  if (o->mode == QV_RESIZE_OFF) return 0;
  ri->orientation = qv_exif_orientation(in, n);
  if (o->mode == QV_RESIZE_ALWAYS ||
      too_big(info->width, info->height, info->format, n, max_pixels, o->max_side))
    ri->work |= QV_RESIZE_WORK_SIZE;
  if (!upright(ri->orientation)) ri->work |= QV_RESIZE_WORK_ROTATE;
  if (info->width == 0 || info->height == 0) ri->work |= QV_RESIZE_WORK_PROBE;
  if (ri->work == 0) return 0;
  if (!(ri->work & QV_RESIZE_WORK_PROBE) &&
      over_cap(in, n, info->format, info->width, info->height, o, ri, why) != 0)
    return -1;
  return 1;
}

/* ---- libvips, loaded on demand -------------------------------------- */

typedef struct vips_api {
#define FIELD(ret, field, sym, params) ret (*field) params;
  QV_VIPS_API(FIELD)
#undef FIELD
} vips_api;

static const struct { const char *sym; size_t off; } vips_syms[] = {
#define ENTRY(ret, field, sym, params) { #sym, offsetof(vips_api, field) },
  QV_VIPS_API(ENTRY)
#undef ENTRY
};

/* where to look, in order: the runtime package's soname first */
static const char *const vips_sonames[] = {
#ifdef __APPLE__
  /* Homebrew (Apple silicon, then Intel), MacPorts: the first is not on
  ** dlopen's default search path */
  "libvips.42.dylib", "/opt/homebrew/lib/libvips.42.dylib",
  "/usr/local/lib/libvips.42.dylib", "/opt/local/lib/libvips.42.dylib",
#else
  "libvips.so.42", "libvips.so",
#endif
};

#ifdef __APPLE__
#define VIPS_INSTALL "brew install vips (or: port install vips)"
#else
#define VIPS_INSTALL "apt-get install libvips42 (Debian, Ubuntu), " \
  "dnf install vips (Fedora), apk add vips (Alpine)"
#endif

/* the memcpy in init_vips relies on it (POSIX guarantees it for dlsym) */
typedef char qv_fnptr_is_voidptr[sizeof(int (*)(void)) == sizeof(void *) ? 1 : -1];

/* Written once, by init_vips under vips_once; read-only afterwards. */
static pthread_once_t vips_once = PTHREAD_ONCE_INIT;
static vips_api V;
static void *vips_handle;        /* libvips, open for the life of the process */
static int vips_ok;
static pid_t vips_pid;           /* the process that ran vips_init */
static char vips_why[400];       /* why !vips_ok */

static void quiet(const char *domain, int level, const char *msg, void *ud) {
  (void)domain; (void)level; (void)msg; (void)ud;
}

static void init_vips(void) {
  vips_api api;
  void *h = NULL;
  char err[200] = "";
  size_t i;
  int major, minor;
  for (i = 0; h == NULL && i < sizeof vips_sonames / sizeof *vips_sonames; i++) {
    h = dlopen(vips_sonames[i], RTLD_NOW | RTLD_LOCAL);
    /* report the first (versioned) soname's error, not a fallback's */
    if (h == NULL && i == 0) {
      const char *e = dlerror();
      snprintf(err, sizeof err, "%s", e ? e : vips_sonames[0]);
    }
  }
  if (h == NULL) {
    snprintf(vips_why, sizeof vips_why,
             "libvips could not be loaded (%s); resizing needs it: " VIPS_INSTALL
             "; or set resize=\"off\"", err);
    return;
  }
  /* dlsym on the handle searches libvips and its dependencies (GObject,
  ** GLib); the handle stays open for the life of the process */
  memset(&api, 0, sizeof api);
  for (i = 0; i < sizeof vips_syms / sizeof *vips_syms; i++) {
    void *p;
    (void)dlerror();
    p = dlsym(h, vips_syms[i].sym);
    if (p == NULL) {
      snprintf(vips_why, sizeof vips_why,
               "the libvips installed has no %s (too old?); resizing needs "
               "libvips %d.%d or newer: " VIPS_INSTALL "; or set resize=\"off\"",
               vips_syms[i].sym, QV_VIPS_MIN_MAJOR, QV_VIPS_MIN_MINOR);
      return;
    }
    /* POSIX: a function pointer has the representation of a void * */
    memcpy((char *)&api + vips_syms[i].off, &p, sizeof p);
  }
  V = api;
  vips_handle = h;
  major = V.version(0);
  minor = V.version(1);
  if (major < QV_VIPS_MIN_MAJOR ||
      (major == QV_VIPS_MIN_MAJOR && minor < QV_VIPS_MIN_MINOR)) {
    snprintf(vips_why, sizeof vips_why,
             "the libvips installed is %d.%d; resizing needs %d.%d or newer: "
             VIPS_INSTALL "; or set resize=\"off\"", major, minor,
             QV_VIPS_MIN_MAJOR, QV_VIPS_MIN_MINOR);
    return;
  }
  if (V.init("qwenvl") != 0) {
    snprintf(vips_why, sizeof vips_why,
             "libvips failed to initialise; cannot resize (set resize=\"off\")");
    return;
  }
  vips_pid = getpid();
  vips_ok = 1;
  /* A corrupt tile makes libvips print warnings on stderr: inside an editor
  ** or a web server that is noise; the failure reaches the caller as an
  ** error table. Only the VIPS domain's warnings, as VIPS_WARNING=0 does. */
  V.log_set_handler("VIPS", QV_G_LOG_LEVEL_WARNING, quiet, NULL);
  /* Every call here is new bytes: the operation cache could never hit,
  ** and would keep up to 100 operations alive, holding decoded pixels and
  ** blobs that point into input buffers we have already freed. */
  V.cache_set_max(0);
}

/* 1 when libvips can be used by this process. After fork() the child
** has a copy of libvips' state but none of its worker threads: its first
** pipeline would wait for them forever. */
static int vips_here(void) {
  pthread_once(&vips_once, init_vips);
  return vips_ok && getpid() == vips_pid;
}

/* Why !vips_here(), in buf when it is the fork. */
static const char *vips_not_here(char *buf, size_t size) {
  if (!vips_ok) return vips_why;
  snprintf(buf, size,
           "libvips cannot resize in this process (pid %ld): it was started "
           "in process %ld, which then forked this one, and its threads do "
           "not survive fork(); resize before forking, or in a process that "
           "has not inherited libvips (exec), or set resize=\"off\"",
           (long)getpid(), (long)vips_pid);
  return buf;
}

int qv_resize_available(void) { return vips_here(); }

void *qv_resize_vips_symbol(const char *name) {
  return vips_here() ? dlsym(vips_handle, name) : NULL;
}

/* vips_error_buffer_copy takes the text and clears libvips' error. */
void qv_resize_vips_error(char *buf, size_t size, const char *what) {
  char *e = V.error_buffer_copy();
  size_t k;
  const char *m = e ? e : "";
  while (*m == ' ' || *m == '\n') m++;
  snprintf(buf, size, "%s%s%s", what, *m ? ": " : "", m);
  for (k = strlen(buf); k > 0 && (buf[k - 1] == '\n' || buf[k - 1] == ' '); k--)
    buf[k - 1] = '\0';
  for (k = 0; buf[k]; k++) if (buf[k] == '\n') buf[k] = ';';
  V.gfree(e);
}

/* *why = "<what>: <libvips message>" in ri->msg; clears the vips error. */
static int vips_fail(qv_resize_info *ri, const char *what, const char **why) {
  qv_resize_vips_error(ri->msg, sizeof ri->msg, what);
  *why = ri->msg;
  return -1;
}

int qv_resize_loader_ok(const char *loader, qv_format f) {
  static const char *const ok[] = { "Jpeg", "Png", "Webp", "Tiff", "Nsgif",
    "Heif", NULL };
  char name[64];
  int i;
  if (loader == NULL) return 0;
  for (i = 0; ok[i]; i++) {
    snprintf(name, sizeof name, "VipsForeignLoad%sBuffer", ok[i]);
    if (strcmp(loader, name) == 0) return 1;
  }
  /* BMP: only ImageMagick reads it in libvips 8.14 */
  return f == QV_FMT_BMP && strncmp(loader, "VipsForeignLoadMagick", 21) == 0;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The time cap: libvips emits "eval" on the image being saved as rows
** are produced; killing it makes the save fail at the next check. */
typedef struct deadline {
  double at;
  int killed;
} deadline;

static void on_eval(qv_VipsImage *image, qv_VipsProgress *progress, void *ud) {
  deadline *d = (deadline *)ud;
  (void)progress;
  if (!d->killed && now_s() > d->at) {
    d->killed = 1;
    V.set_kill(image, QV_G_TRUE);
  }
}

/* Decode at (about) tw x th into *t: shrink-on-load, sequential, and
** turned upright unless the orientation says it already is. Lazy: no
** pixels are decoded until *t is saved. */
static int thumbnail(const unsigned char *in, size_t n, int tw, int th,
                     int rotate, qv_VipsImage **t) {
  /* the input stays ours: the blob neither copies nor frees it */
  return V.thumbnail_buffer((void *)(size_t)in, n, t, tw, "height", th,
                            "size", QV_VIPS_SIZE_DOWN,
                            "no_rotate", rotate ? 0 : QV_G_TRUE,
                            "option_string", "fail_on=truncated", NULL);
}

/* Encode t (consumed) as fmt. */
static int encode(qv_VipsImage *t, qv_format fmt, int q, deadline *d,
                  void **buf, size_t *len) {
  qv_VipsImage *flat = NULL;
  int r;
  if (fmt == QV_FMT_JPEG && V.hasalpha(t)) {
    qv_VipsArrayDouble *white;
    double bg[1] = { 255.0 };
    if (V.get_interpretation(t) == QV_VIPS_INTERPRETATION_RGB16 ||
        V.get_interpretation(t) == QV_VIPS_INTERPRETATION_GREY16)
      bg[0] = 65535.0;
    white = V.array_double_new(bg, 1);
    r = V.flatten(t, &flat, "background", white, NULL);
    V.area_unref((qv_VipsArea *)white);
    V.object_unref(t);
    if (r != 0) return -1;
    t = flat;
  }
  V.set_progress(t, QV_G_TRUE);
  V.signal_connect_data(t, "eval", (qv_GCallback)on_eval, d, NULL, 0);
  if (fmt == QV_FMT_PNG)
    r = V.pngsave_buffer(t, buf, len, "strip", QV_G_TRUE, "compression", 6, NULL);
  else if (fmt == QV_FMT_WEBP)
    r = V.webpsave_buffer(t, buf, len, "strip", QV_G_TRUE, "Q", q, NULL);
  else
    r = V.jpegsave_buffer(t, buf, len, "strip", QV_G_TRUE, "Q", q,
                          "optimize_coding", QV_G_TRUE, NULL);
  V.object_unref(t);
  return r;
}

static int timed_out(qv_resize_info *ri, double limit, const char **why) {
  V.error_clear();                /* libvips' "killed for image ..." */
  snprintf(ri->msg, sizeof ri->msg,
           "resizing the image was stopped after %g s, the time it is "
           "allowed", limit);
  *why = ri->msg;
  return -1;
}

int qv_resize(const unsigned char *in, size_t n, const qv_image_info *info,
              const qv_resize_opts *o, qv_buf *out, qv_resize_info *ri,
              const char **why) {
  unsigned long max_pixels = o->max_pixels ? o->max_pixels : QV_RESIZE_MAX_PIXELS;
  int q = o->quality > 0 && o->quality <= 100 ? o->quality : QV_RESIZE_QUALITY;
  double limit = o->timeout_s > 0 ? o->timeout_s : QV_RESIZE_TIMEOUT_S;
  int alpha, rotate, tries, nudges = 0, swapped = 0, r;
  unsigned w, h;                 /* upright size */
  double scale = 1.0, s;
  deadline dl;
  qv_format fmt;
  const char *nick;
  qv_VipsImage *hdr;
  if ((r = qv_resize_plan(in, n, info, o, ri, why)) <= 0) return r;
  dl.at = now_s() + limit;
  dl.killed = 0;
  if (!vips_here()) {
    /* as stored: the server gets the EXIF tag, or sizes it itself */
    if (!(ri->work & QV_RESIZE_WORK_SIZE)) return 0;
    *why = vips_not_here(ri->msg, sizeof ri->msg);
    return -1;
  }
  nick = V.find_load_buffer(in, n);
  if (!qv_resize_loader_ok(nick, info->format)) {
    V.error_clear();
    if (ri->work == QV_RESIZE_WORK_PROBE) return 0;
    *why = "cannot decode the image: libvips has no safe loader for it";
    return -1;
  }
  /* the header (no pixels): the size libvips will work with, and alpha */
  hdr = V.new_from_buffer(in, n, "", NULL);
  if (hdr == NULL) {
    if (ri->work == QV_RESIZE_WORK_PROBE) { V.error_clear(); return 0; }
    return vips_fail(ri, "cannot decode the image", why);
  }
  ri->in_w = ri->out_w = (unsigned)V.get_width(hdr);
  ri->in_h = ri->out_h = (unsigned)V.get_height(hdr);
  alpha = V.hasalpha(hdr);
  V.object_unref(hdr);
  if (too_big(ri->in_w, ri->in_h, info->format, n, max_pixels, o->max_side))
    ri->work |= QV_RESIZE_WORK_SIZE;
  if (ri->work == QV_RESIZE_WORK_PROBE) return 0;
  if (over_cap(in, n, info->format, ri->in_w, ri->in_h, o, ri, why) != 0)
    return -1;
  rotate = !upright(ri->orientation);
  w = qv_exif_swaps(ri->orientation) ? ri->in_h : ri->in_w;
  h = qv_exif_swaps(ri->orientation) ? ri->in_w : ri->in_h;
  if (w == 0 || h == 0) { *why = "cannot decode the image: no size"; return -1; }
  /* the output format */
  fmt = o->format;
  if (fmt != QV_FMT_JPEG && fmt != QV_FMT_PNG && fmt != QV_FMT_WEBP) {
    if (alpha || info->format == QV_FMT_GIF) fmt = QV_FMT_PNG;
    /* a PNG that compresses under one byte per pixel is flat graphics or
    ** text (screenshots, scans, charts): JPEG would blur it and save little */
    else if (info->format == QV_FMT_PNG && (double)n < (double)w * h) fmt = QV_FMT_PNG;
    else fmt = QV_FMT_JPEG;
  }
  s = sqrt((double)max_pixels / ((double)w * h));
  if (s < scale) scale = s;
  if (o->max_side) {
    s = (double)o->max_side / (w > h ? w : h);
    if (s < scale) scale = s;
  }
  /* PNG to PNG keeps about the bytes per pixel: when only the data URL
  ** limit is crossed, start at the size that should fit */
  if (fmt == QV_FMT_PNG && info->format == QV_FMT_PNG &&
      qv_resize_data_url_len(info->format, n) > QV_DATA_URL_LIMIT) {
    s = sqrt(0.9 * QV_DATA_URL_LIMIT / (double)qv_resize_data_url_len(info->format, n));
    if (s < scale) scale = s;
  }
  for (tries = 0; tries < 16; tries++) {
    void *buf = NULL;
    size_t len = 0, url;
    int ow, oh;
    int tw = (int)floor(w * scale + 1e-6), th = (int)floor(h * scale + 1e-6);
    qv_VipsImage *t = NULL;
    if (now_s() > dl.at) return timed_out(ri, limit, why);
    if (tw < 1) tw = 1;
    if (th < 1) th = 1;
    /* fit by the longer side only: a box on both sides lets the rounded
    ** shorter side decide and lose a pixel on the longer one */
    if (w >= h) th = QV_VIPS_MAX_COORD;
    else tw = QV_VIPS_MAX_COORD;
    if (thumbnail(in, n, tw, th, rotate, &t) != 0)
      return vips_fail(ri, "cannot decode the image", why);
    ow = V.get_width(t);
    oh = V.get_height(t);
    /* libvips turned it otherwise than its EXIF said to us: fit again */
    if (w != h && (ow > oh) != (w > h) && ow != oh && !swapped) {
      unsigned x = w;
      V.object_unref(t);
      w = h;
      h = x;
      swapped = 1;
      tries--;
      continue;
    }
    /* libvips rounds: nudge down when that crossed a limit (nothing is
    ** decoded yet: t is lazy) */
    if (((double)ow * oh > (double)max_pixels ||
         (o->max_side && ((unsigned)ow > o->max_side || (unsigned)oh > o->max_side)))
        && nudges++ < 8) {
      V.object_unref(t);
      scale *= 0.997;
      tries--;
      continue;
    }
    if (encode(t, fmt, q, &dl, &buf, &len) != 0) {
      if (dl.killed) return timed_out(ri, limit, why);
      return vips_fail(ri, "cannot decode the image", why);
    }
    url = qv_resize_data_url_len(fmt, len);
    if (url <= QV_DATA_URL_LIMIT) {
      qv_buf_reset(out);
      qv_buf_add(out, buf, len);
      V.gfree(buf);
      if (out->oom) { *why = "out of memory"; return -1; }
      ri->out_w = (unsigned)ow;
      ri->out_h = (unsigned)oh;
      ri->out_bytes = len;
      ri->out_format = fmt;
      ri->resized = 1;
      return 0;
    }
    V.gfree(buf);
    /* too large as a data URL: lower the quality, then the size */
    if (fmt != QV_FMT_PNG && q > 50) q = q - 15 < 50 ? 50 : q - 15;
    else if (fmt == QV_FMT_PNG && !alpha && o->format != QV_FMT_PNG) fmt = QV_FMT_JPEG;
    else {
      s = sqrt(0.9 * QV_DATA_URL_LIMIT / (double)url);
      scale *= s < 0.85 ? s : 0.85;
    }
  }
  *why = "cannot make the image small enough for a data URL";
  return -1;
}
