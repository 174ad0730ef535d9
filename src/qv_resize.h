/*
** qv_resize: make an image fit what DashScope will look at before it is
** uploaded. Builds on qv_image (format and pixel size from the header),
** qv_exif (orientation from the bytes) and, only for the images that
** need work, libvips: decoding with shrink-on-load, EXIF autorotation,
** conversion to sRGB and re-encoding.
**
** libvips costs nothing until it is needed. It is neither linked nor
** compiled against: the module declares the few libvips functions it
** calls (qv_vips.h) and dlopen()s libvips.so.42 on the first image that
** needs work, so every build can resize wherever libvips is installed at
** run time, and a small upright image never loads it (loading it costs a
** process ~30 ms and ~26 MiB). The only global state is that load and
** vips_init, run once, and the pid that did it (see qv_resize below).
** No Lua here.
*/
#ifndef QV_RESIZE_H
#define QV_RESIZE_H

#include <stddef.h>
#include "qv_buf.h"
#include "qv_image.h"

#pragma GCC visibility push(hidden)

/* Qwen3-VL's default pixel budget: 2,560 tokens of 32x32 pixels. */
#define QV_RESIZE_MAX_PIXELS 2621440ul
#define QV_RESIZE_QUALITY 85
/* Largest image decoded to resize it, in pixels as declared by its
** header (100 MP: phone photos up to 48 MP, 8K screenshots, 600 dpi A4
** scans and phone panoramas pass). Formats that libvips must decode whole
** into memory count twice: GIF, BMP, HEIC, interlaced PNG and progressive
** JPEG. At the cap a resize blocks its thread for ~1-2.6 s and takes up
** to ~370 MiB (bench/resize-results.md, section 3); a 4 MB PNG may
** declare 65535x65535. */
#define QV_RESIZE_MAX_INPUT_PIXELS 100000000ul
/* A resize that runs longer than this is stopped (between rows: a format
** decoded whole is bounded by the pixel cap instead). A backstop far
** above what an image within the pixel cap takes (~2 s here), also on a
** slow or loaded host, or under valgrind: a tight default would fail
** good images there. Callers with a budget pass their own. */
#define QV_RESIZE_TIMEOUT_S 60.0

typedef enum { QV_RESIZE_AUTO, QV_RESIZE_OFF, QV_RESIZE_ALWAYS } qv_resize_mode;

/* All zero is the default for every field. */
typedef struct qv_resize_opts {
  qv_resize_mode mode;
  unsigned long max_pixels;   /* 0: QV_RESIZE_MAX_PIXELS */
  unsigned max_side;          /* 0: no limit */
  qv_format format;           /* output when re-encoding; UNKNOWN: choose */
  int quality;                /* 1..100 for jpeg/webp; 0: QV_RESIZE_QUALITY */
  unsigned long max_input_pixels; /* 0: QV_RESIZE_MAX_INPUT_PIXELS */
  double timeout_s;           /* > 0; 0: QV_RESIZE_TIMEOUT_S */
} qv_resize_opts;

/* Why an image needs libvips (qv_resize_info.work). */
#define QV_RESIZE_WORK_SIZE 1     /* too large, or mode "always" */
#define QV_RESIZE_WORK_ROTATE 2   /* EXIF orientation 2..8 */
#define QV_RESIZE_WORK_PROBE 4    /* no size in the header (some HEIC) */

typedef struct qv_resize_info {
  unsigned in_w, in_h;        /* as stored (before EXIF rotation) */
  unsigned out_w, out_h;      /* what is sent (== in_* when not resized) */
  size_t in_bytes, out_bytes;
  qv_format out_format;
  int resized;                /* 1 when out holds a new encoding */
  int orientation;            /* EXIF orientation of the input (0: none) */
  unsigned work;              /* QV_RESIZE_WORK_* bits (0: none) */
  char msg[400];              /* storage for *why */
} qv_resize_info;

/* 1 when libvips could be loaded at run time (8.12 or newer), vips_init
** succeeded, and this is the process that initialised it. The first call
** loads it (~100 shared libraries); later calls are cheap. */
int qv_resize_available(void);

/* The address of the function `name` in the libvips loaded here (or in
** GLib, GObject under it), or NULL: no such symbol, or libvips is not
** usable in this process (qv_resize_available). qv_draw fills its own
** table with it, from the very copy of libvips that qv_resize loaded. */
void *qv_resize_vips_symbol(const char *name);

/* Also for qv_draw, which decodes with the same libvips (both only once
** qv_resize_available() said 1):
** - whether libvips' loader `loader` (the class name that
**   vips_foreign_find_load_buffer gave) may read bytes qv_image found to be
**   format f: only the loaders of the formats qv_image accepts, never one
**   (SVG, PDF, ImageMagick but for BMP) for bytes that merely look alike;
** - "<what>: <libvips' error>" in buf, on one line (newlines become ';',
**   the ends trimmed), or `what` alone when libvips said nothing; clears
**   libvips' error. */
int qv_resize_loader_ok(const char *loader, qv_format f);
void qv_resize_vips_error(char *buf, size_t size, const char *what);

/* Decide, without libvips, whether the image needs work. Cheap (header
** and EXIF only): callers can run it on their own thread and leave
** qv_resize (up to ~2-3 s at the pixel cap here) to a worker.
**   auto:   work when width*height > max_pixels, a side > max_side, the
**           EXIF orientation (qv_exif) is not upright, or the data URL of
**           the input would exceed QV_DATA_URL_LIMIT.
**   always: work even when nothing is too large.  off: never.
** Returns 0 (nothing to do: ri filled, resized == 0), 1 (libvips work:
** ri->work says why), or -1 with *why set (ri->msg) when the image is
** over max_input_pixels. */
int qv_resize_plan(const unsigned char *in, size_t n, const qv_image_info *info,
                   const qv_resize_opts *o, qv_resize_info *ri,
                   const char **why);

/* qv_resize_plan, then, when there is work, decode the image (shrink-on-
** load, EXIF autorotate, sRGB) and re-encode it into out (JPEG, or PNG
** for alpha and flat graphics, or o->format); when the data URL is still
** too large, quality and then size are reduced until it fits. Never
** upscales; keeps the aspect ratio. Returns 0 with *ri filled
** (ri->resized == 0 and out untouched when nothing needed doing), or -1
** with *why set (static, or ri->msg).
**
** When libvips cannot be used (not installed, older than 8.12, or this
** is a child forked after the parent initialised libvips, whose threads
** do not survive fork()), an image that is only rotated, or whose size
** the header did not give, is left as it is (0, resized == 0); one that
** must be made smaller fails at once with a message that says what to
** install (or, after fork, what to do instead).
**
** Cost: refused before anything is decoded beyond o->max_input_pixels;
** stopped after o->timeout_s (checked as rows are produced). Threads:
** calls may run on any thread, concurrently (libvips' error text is
** process-wide: two failing at the same moment may swap messages).
**
** Memory: in is only read, and only until qv_resize returns (libvips
** keeps no reference: its operation cache is off), so the caller frees
** the original right after; the peak is during decoding, where libvips
** streams the image (sequential access, shrink-on-load) next to in. The
** new encoding is copied into out once. */
int qv_resize(const unsigned char *in, size_t n, const qv_image_info *info,
              const qv_resize_opts *o, qv_buf *out, qv_resize_info *ri,
              const char **why);

/* 1 when libvips decodes this image whole into memory before it can
** shrink it (GIF, BMP, HEIC, interlaced PNG, progressive JPEG): such
** images count twice against max_input_pixels. */
int qv_resize_decodes_whole(const unsigned char *p, size_t n, qv_format f);

/* Length of "data:<mime>;base64,<payload>" for n bytes of format f. */
size_t qv_resize_data_url_len(qv_format f, size_t n);

#pragma GCC visibility pop
#endif
