/*
** qv_resize: downscale and re-encode images with libvips (see qv_resize.h).
** libvips is dlopen()ed on the first resize, not linked (see init_vips).
*/
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "qv_resize.h"

size_t qv_resize_data_url_len(qv_format f, size_t n) {
  const char *mime = qv_image_mime(f);
  return strlen("data:;base64,") + (mime ? strlen(mime) : 10) + qv_base64_len(n);
}

static void fill_defaults(const qv_image_info *info, size_t n,
                          qv_resize_info *ri) {
  memset(ri, 0, sizeof *ri);
  ri->in_w = ri->out_w = info->width;
  ri->in_h = ri->out_h = info->height;
  ri->in_bytes = ri->out_bytes = n;
  ri->out_format = info->format;
}

/* Does an image of w x h (either orientation), n bytes, need work? */
static int too_big(unsigned w, unsigned h, qv_format f, size_t n,
                   unsigned long max_pixels, unsigned max_side) {
  if (qv_resize_data_url_len(f, n) > QV_DATA_URL_LIMIT) return 1;
  if (w == 0 || h == 0) return 0;
  if ((double)w * (double)h > (double)max_pixels) return 1;
  if (max_side && (w > max_side || h > max_side)) return 1;
  return 0;
}

#ifndef QV_HAVE_VIPS

int qv_resize_available(void) { return 0; }

int qv_resize(const unsigned char *in, size_t n, const qv_image_info *info,
              const qv_resize_opts *o, qv_buf *out, qv_resize_info *ri,
              const char **why) {
  (void)in; (void)out;
  fill_defaults(info, n, ri);
  if (o->mode == QV_RESIZE_OFF) return 0;
  /* Over the model's default budget only: DashScope downscales it anyway,
  ** so send the original. Fail when the caller's own limits, or the data
  ** URL limit, cannot be met. */
  if (o->mode == QV_RESIZE_ALWAYS ||
      too_big(info->width, info->height, info->format, n,
              o->max_pixels ? o->max_pixels : (unsigned long)-1, o->max_side)) {
    *why = "qwenvl was built without libvips; cannot resize (set resize=\"off\" "
           "or install libvips-dev and rebuild)";
    return -1;
  }
  return 0;
}

#else

#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>
#include <vips/vips.h>

/* libvips is not linked: it pulls in ~100 shared libraries, ~50 ms at
** require() even for callers that never resize. It is dlopen()ed on the
** first resize, and every libvips/GObject/GLib function used below is
** called through this table. The headers still give the types, the
** constants and (through check_prototypes) the prototypes.
**   X(return type, field, symbol, parameters)
** Field names are not the symbols: glib may define some of those as
** function-like macros. */
#define VIPS_API_LIST(X) \
  X(int, init, vips_init, (const char *argv0)) \
  X(void, cache_set_max, vips_cache_set_max, (int max)) \
  X(guint, log_set_handler, g_log_set_handler, \
    (const gchar *domain, GLogLevelFlags levels, GLogFunc fn, gpointer ud)) \
  X(char *, error_buffer_copy, vips_error_buffer_copy, (void)) \
  X(void, error_clear, vips_error_clear, (void)) \
  X(void, gfree, g_free, (gpointer mem)) \
  X(void, object_unref, g_object_unref, (gpointer object)) \
  X(const char *, find_load_buffer, vips_foreign_find_load_buffer, \
    (const void *data, size_t size)) \
  X(VipsImage *, new_from_buffer, vips_image_new_from_buffer, \
    (const void *buf, size_t len, const char *option_string, ...)) \
  X(int, get_width, vips_image_get_width, (const VipsImage *image)) \
  X(int, get_height, vips_image_get_height, (const VipsImage *image)) \
  X(VipsInterpretation, get_interpretation, vips_image_get_interpretation, \
    (const VipsImage *image)) \
  X(GType, get_typeof, vips_image_get_typeof, \
    (const VipsImage *image, const char *name)) \
  X(int, get_orientation, vips_image_get_orientation, (VipsImage *image)) \
  X(gboolean, get_orientation_swap, vips_image_get_orientation_swap, \
    (VipsImage *image)) \
  X(gboolean, hasalpha, vips_image_hasalpha, (VipsImage *image)) \
  X(int, thumbnail_buffer, vips_thumbnail_buffer, \
    (void *buf, size_t len, VipsImage **out, int width, ...)) \
  X(VipsArrayDouble *, array_double_new, vips_array_double_new, \
    (const double *array, int n)) \
  X(void, area_unref, vips_area_unref, (VipsArea *area)) \
  X(int, flatten, vips_flatten, (VipsImage *in, VipsImage **out, ...)) \
  X(int, jpegsave_buffer, vips_jpegsave_buffer, \
    (VipsImage *in, void **buf, size_t *len, ...)) \
  X(int, pngsave_buffer, vips_pngsave_buffer, \
    (VipsImage *in, void **buf, size_t *len, ...)) \
  X(int, webpsave_buffer, vips_webpsave_buffer, \
    (VipsImage *in, void **buf, size_t *len, ...))

typedef struct vips_api {
#define FIELD(ret, field, sym, params) ret (*field) params;
  VIPS_API_LIST(FIELD)
#undef FIELD
} vips_api;

static const struct { const char *sym; size_t off; } vips_syms[] = {
#define ENTRY(ret, field, sym, params) { #sym, offsetof(vips_api, field) },
  VIPS_API_LIST(ENTRY)
#undef ENTRY
};

/* sonames to try, in order: the runtime package's, then the dev symlink */
static const char *const vips_sonames[] = { "libvips.so.42", "libvips.so" };

/* the memcpy in init_vips relies on it (POSIX guarantees it for dlsym) */
typedef char qv_fnptr_is_voidptr[sizeof(int (*)(void)) == sizeof(void *) ? 1 : -1];

/* Written once, by init_vips under vips_once; read-only afterwards. */
static pthread_once_t vips_once = PTHREAD_ONCE_INIT;
static vips_api V;
static int vips_ok;
static char vips_why[320];       /* why !vips_ok */

/* Never called: makes the compiler check each entry's type against the
** header's prototype (sizeof does not evaluate, so nothing is linked). */
static void check_prototypes(void) {
#define CHECK(ret, field, sym, params) (void)sizeof(V.field = sym);
  VIPS_API_LIST(CHECK)
#undef CHECK
}

static void quiet(const gchar *domain, GLogLevelFlags level, const gchar *msg,
                  gpointer ud) {
  (void)domain; (void)level; (void)msg; (void)ud;
}

static void init_vips(void) {
  vips_api api;
  void *h = NULL;
  char err[200] = "";
  size_t i;
  (void)check_prototypes;
  for (i = 0; h == NULL && i < sizeof vips_sonames / sizeof *vips_sonames; i++) {
    h = dlopen(vips_sonames[i], RTLD_NOW | RTLD_LOCAL);
    /* report the first (versioned) soname's error, not the dev symlink's */
    if (h == NULL && i == 0) {
      const char *e = dlerror();
      snprintf(err, sizeof err, "%s", e ? e : vips_sonames[0]);
    }
  }
  if (h == NULL) {
    snprintf(vips_why, sizeof vips_why,
             "libvips could not be loaded (%s); cannot resize (set "
             "resize=\"off\", or install libvips: apt-get install libvips42)", err);
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
               "libvips could not be loaded (it has no %s: too old?); "
               "cannot resize (set resize=\"off\", or install a newer "
               "libvips: apt-get install libvips42)", vips_syms[i].sym);
      return;
    }
    /* POSIX: a function pointer has the representation of a void * */
    memcpy((char *)&api + vips_syms[i].off, &p, sizeof p);
  }
  V = api;
  if (V.init("qwenvl") != 0) {
    snprintf(vips_why, sizeof vips_why,
             "libvips failed to initialise; cannot resize (set resize=\"off\")");
    return;
  }
  vips_ok = 1;
  /* A corrupt tile makes libvips print warnings on stderr: inside an editor
  ** or a web server that is noise; the failure reaches the caller as an
  ** error table. Only the VIPS domain's warnings, as VIPS_WARNING=0 does. */
  V.log_set_handler("VIPS", G_LOG_LEVEL_WARNING, quiet, NULL);
  /* Every call here is new bytes: the operation cache could never hit,
  ** and would keep up to 100 operations alive, holding decoded pixels and
  ** blobs that point into input buffers we have already freed. */
  V.cache_set_max(0);
}

int qv_resize_available(void) {
  pthread_once(&vips_once, init_vips);
  return vips_ok;
}

/* *why = "<what>: <libvips message>" in ri->msg; clears the vips error. */
static int vips_fail(qv_resize_info *ri, const char *what, const char **why) {
  char *e = V.error_buffer_copy();
  size_t k;
  const char *m = e ? e : "";
  while (*m == ' ' || *m == '\n') m++;
  snprintf(ri->msg, sizeof ri->msg, "%s%s%s", what, *m ? ": " : "", m);
  for (k = strlen(ri->msg); k > 0 && (ri->msg[k - 1] == '\n' || ri->msg[k - 1] == ' '); k--)
    ri->msg[k - 1] = '\0';
  for (k = 0; ri->msg[k]; k++) if (ri->msg[k] == '\n') ri->msg[k] = ';';
  V.gfree(e);
  *why = ri->msg;
  return -1;
}

/* Only the loaders for formats qv_image accepts (and not, say, the
** ImageMagick or SVG loaders for bytes that merely look like them). */
static int loader_ok(const char *nick, qv_format f) {  /* class name */
  static const char *const ok[] = { "Jpeg", "Png", "Webp", "Tiff", "Nsgif",
    "Heif", NULL };
  char name[64];
  int i;
  if (nick == NULL) return 0;
  for (i = 0; ok[i]; i++) {
    snprintf(name, sizeof name, "VipsForeignLoad%sBuffer", ok[i]);
    if (strcmp(nick, name) == 0) return 1;
  }
  /* BMP: only ImageMagick reads it in libvips 8.14 */
  return f == QV_FMT_BMP && strncmp(nick, "VipsForeignLoadMagick", 21) == 0;
}

/* Decode at (about) tw x th, autorotated and in sRGB, and encode as fmt. */
static int encode(const unsigned char *in, size_t n, int tw, int th,
                  qv_format fmt, int q, void **buf, size_t *len,
                  int *ow, int *oh) {
  VipsImage *t = NULL, *flat = NULL;
  int r;
  /* the input stays ours: the blob neither copies nor frees it */
  if (V.thumbnail_buffer((void *)(size_t)in, n, &t, tw, "height", th,
                         "size", VIPS_SIZE_DOWN,
                         "option_string", "fail_on=truncated", NULL) != 0)
    return -1;
  *ow = V.get_width(t);
  *oh = V.get_height(t);
  if (fmt == QV_FMT_JPEG && V.hasalpha(t)) {
    VipsArrayDouble *white;
    double bg[1] = { 255.0 };
    if (V.get_interpretation(t) == VIPS_INTERPRETATION_RGB16 ||
        V.get_interpretation(t) == VIPS_INTERPRETATION_GREY16)
      bg[0] = 65535.0;
    white = V.array_double_new(bg, 1);
    r = V.flatten(t, &flat, "background", white, NULL);
    V.area_unref(VIPS_AREA(white));
    V.object_unref(t);
    if (r != 0) return -1;
    t = flat;
  }
  if (fmt == QV_FMT_PNG)
    r = V.pngsave_buffer(t, buf, len, "strip", TRUE, "compression", 6, NULL);
  else if (fmt == QV_FMT_WEBP)
    r = V.webpsave_buffer(t, buf, len, "strip", TRUE, "Q", q, NULL);
  else
    r = V.jpegsave_buffer(t, buf, len, "strip", TRUE, "Q", q,
                          "optimize_coding", TRUE, NULL);
  V.object_unref(t);
  return r;
}

int qv_resize(const unsigned char *in, size_t n, const qv_image_info *info,
              const qv_resize_opts *o, qv_buf *out, qv_resize_info *ri,
              const char **why) {
  unsigned long max_pixels = o->max_pixels ? o->max_pixels : QV_RESIZE_MAX_PIXELS;
  int q = o->quality > 0 && o->quality <= 100 ? o->quality : QV_RESIZE_QUALITY;
  int need, alpha, swap, tries, nudges = 0;
  unsigned w, h;                 /* upright size */
  double scale = 1.0, s;
  qv_format fmt;
  const char *nick;
  VipsImage *hdr;
  fill_defaults(info, n, ri);
  if (o->mode == QV_RESIZE_OFF) return 0;
  need = o->mode == QV_RESIZE_ALWAYS ||
    too_big(info->width, info->height, info->format, n, max_pixels, o->max_side);
  /* without a size from the header, or for a JPEG that may carry an EXIF
  ** orientation, libvips reads the header (cheap: no pixels decoded) */
  if (!need && info->width && info->format != QV_FMT_JPEG) return 0;
  if (!qv_resize_available()) {
    if (!need) return 0;
    *why = vips_why;
    return -1;
  }
  nick = V.find_load_buffer(in, n);
  if (!loader_ok(nick, info->format)) {
    V.error_clear();
    if (!need) return 0;
    *why = "cannot decode the image: libvips has no safe loader for it";
    return -1;
  }
  hdr = V.new_from_buffer(in, n, "", NULL);
  if (hdr == NULL) {
    if (!need) { V.error_clear(); return 0; }
    return vips_fail(ri, "cannot decode the image", why);
  }
  ri->in_w = ri->out_w = (unsigned)V.get_width(hdr);
  ri->in_h = ri->out_h = (unsigned)V.get_height(hdr);
  ri->orientation = V.get_typeof(hdr, VIPS_META_ORIENTATION)
    ? V.get_orientation(hdr) : 0;
  swap = V.get_orientation_swap(hdr);
  alpha = V.hasalpha(hdr);
  V.object_unref(hdr);
  if (ri->orientation > 1 && ri->orientation <= 8) need = 1;
  if (too_big(ri->in_w, ri->in_h, info->format, n, max_pixels, o->max_side)) need = 1;
  if (!need) return 0;
  w = swap ? ri->in_h : ri->in_w;
  h = swap ? ri->in_w : ri->in_h;
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
    int ow = 0, oh = 0;
    int tw = (int)floor(w * scale + 1e-6), th = (int)floor(h * scale + 1e-6);
    if (tw < 1) tw = 1;
    if (th < 1) th = 1;
    /* fit by the longer side only: a box on both sides lets the rounded
    ** shorter side decide and lose a pixel on the longer one */
    if (w >= h) th = VIPS_MAX_COORD;
    else tw = VIPS_MAX_COORD;
    if (encode(in, n, tw, th, fmt, q, &buf, &len, &ow, &oh) != 0)
      return vips_fail(ri, "cannot decode the image", why);
    /* libvips rounds: nudge down when that crossed a limit */
    if (((double)ow * oh > (double)max_pixels ||
         (o->max_side && ((unsigned)ow > o->max_side || (unsigned)oh > o->max_side)))
        && nudges++ < 8) {
      V.gfree(buf);
      scale *= 0.997;
      tries--;
      continue;
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

#endif
