/*
** qv_vips: the part of libvips' binary interface that qv_resize uses,
** declared here so that the module builds without libvips' headers (and
** glib's): libvips is dlopen()ed at run time (libvips.so.42, the soname
** of every 8.x release; 8.12 or newer, checked at load), never linked.
**
** What is declared, for the stable ABI (C, LP64 and ILP32 alike):
** - the object types as incomplete structs under libvips' and glib's own
**   tags (struct _VipsImage, ...), so pointers are what libvips passes;
** - enum values and flags as plain ints (libvips/glib enums are int-sized
**   and passed as int, also through varargs);
** - each function's signature, in QV_VIPS_API: one entry per symbol that
**   qv_resize.c calls through its table of pointers (and QV_VIPS_DRAW_API
**   for qv_draw.c's table); what both call is declared once, in
**   QV_VIPS_COMMON_API, which both lists start with.
** spec/c/check_vips_abi.c (make check-vips-abi) compiles all of this
** next to <vips/vips.h> and fails on any mismatch: enum values and
** constants by static assertion, every signature by assigning the real
** function to a pointer of the type declared here.
*/
#ifndef QV_VIPS_H
#define QV_VIPS_H

#include <stddef.h>

#pragma GCC visibility push(hidden)

typedef struct _VipsImage qv_VipsImage;
typedef struct _VipsArea qv_VipsArea;
typedef struct _VipsArrayDouble qv_VipsArrayDouble;   /* a VipsArea first */
typedef struct _GClosure qv_GClosure;
typedef struct _VipsProgress qv_VipsProgress;

/* glib's log handler: GLogFunc (GLogLevelFlags is an int-valued enum) */
typedef void (*qv_GLogFunc)(const char *domain, int level, const char *msg,
                            void *ud);
typedef void (*qv_GCallback)(void);
typedef void (*qv_GClosureNotify)(void *data, qv_GClosure *closure);
/* the "eval" signal of a VipsImage */
typedef void (*qv_vips_eval_fn)(qv_VipsImage *image, qv_VipsProgress *progress,
                                void *ud);

#define QV_G_TRUE 1
#define QV_G_LOG_LEVEL_WARNING (1 << 4)          /* GLogLevelFlags */
#define QV_VIPS_MAX_COORD 10000000               /* VIPS_MAX_COORD */
#define QV_VIPS_SIZE_DOWN 2                      /* VipsSize */
#define QV_VIPS_INTERPRETATION_GREY16 26         /* VipsInterpretation */
#define QV_VIPS_INTERPRETATION_RGB16 25
/* oldest libvips whose options qv_resize passes (fail_on: 8.12) */
#define QV_VIPS_MIN_MAJOR 8
#define QV_VIPS_MIN_MINOR 12

/*   X(return type, field, symbol, parameters)
** Field names are not the symbols: glib may define some of those as
** function-like macros. */
/* what qv_resize and qv_draw both call: decode, flatten, save, clean up */
#define QV_VIPS_COMMON_API(X) \
  X(const char *, find_load_buffer, vips_foreign_find_load_buffer, \
    (const void *data, size_t size)) \
  X(qv_VipsImage *, new_from_buffer, vips_image_new_from_buffer, \
    (const void *buf, size_t len, const char *option_string, ...)) \
  X(int, get_width, vips_image_get_width, (const qv_VipsImage *image)) \
  X(int, get_height, vips_image_get_height, (const qv_VipsImage *image)) \
  X(int, hasalpha, vips_image_hasalpha, (qv_VipsImage *image)) \
  X(qv_VipsArrayDouble *, array_double_new, vips_array_double_new, \
    (const double *array, int n)) \
  X(void, area_unref, vips_area_unref, (qv_VipsArea *area)) \
  X(int, flatten, vips_flatten, (qv_VipsImage *in, qv_VipsImage **out, ...)) \
  X(int, jpegsave_buffer, vips_jpegsave_buffer, \
    (qv_VipsImage *in, void **buf, size_t *len, ...)) \
  X(int, pngsave_buffer, vips_pngsave_buffer, \
    (qv_VipsImage *in, void **buf, size_t *len, ...)) \
  X(int, webpsave_buffer, vips_webpsave_buffer, \
    (qv_VipsImage *in, void **buf, size_t *len, ...)) \
  X(void, error_clear, vips_error_clear, (void)) \
  X(void, gfree, g_free, (void *mem)) \
  X(void, object_unref, g_object_unref, (void *object))

/* qv_resize's: start-up, the thumbnail, progress and kill, error text */
#define QV_VIPS_API(X) \
  QV_VIPS_COMMON_API(X) \
  X(int, init, vips_init, (const char *argv0)) \
  X(int, version, vips_version, (int flag)) \
  X(char *, error_buffer_copy, vips_error_buffer_copy, (void)) \
  X(void, cache_set_max, vips_cache_set_max, (int max)) \
  X(unsigned int, log_set_handler, g_log_set_handler, \
    (const char *domain, int levels, qv_GLogFunc fn, void *ud)) \
  X(unsigned long, signal_connect_data, g_signal_connect_data, \
    (void *instance, const char *signal, qv_GCallback handler, void *data, \
     qv_GClosureNotify destroy, unsigned int flags)) \
  X(int, get_interpretation, vips_image_get_interpretation, \
    (const qv_VipsImage *image)) \
  X(void, set_progress, vips_image_set_progress, \
    (qv_VipsImage *image, int progress)) \
  X(void, set_kill, vips_image_set_kill, (qv_VipsImage *image, int kill)) \
  X(int, thumbnail_buffer, vips_thumbnail_buffer, \
    (void *buf, size_t len, qv_VipsImage **out, int width, ...))

/* What qv_draw calls on top (its own table, looked up in the libvips that
** qv_resize loaded): decode, turn upright, sRGB, draw into memory. */
#define QV_VIPS_INTERPRETATION_SRGB 22           /* VipsInterpretation */
#define QV_VIPS_FORMAT_UCHAR 0                   /* VipsBandFormat */

#define QV_VIPS_DRAW_API(X) \
  QV_VIPS_COMMON_API(X) \
  X(int, get_bands, vips_image_get_bands, (const qv_VipsImage *image)) \
  X(int, get_format, vips_image_get_format, (const qv_VipsImage *image)) \
  X(int, autorot, vips_autorot, (qv_VipsImage *in, qv_VipsImage **out, ...)) \
  X(int, colourspace, vips_colourspace, \
    (qv_VipsImage *in, qv_VipsImage **out, int space, ...)) \
  X(int, cast, vips_cast, (qv_VipsImage *in, qv_VipsImage **out, int format, ...)) \
  X(qv_VipsImage *, copy_memory, vips_image_copy_memory, (qv_VipsImage *image)) \
  X(int, draw_rect, vips_draw_rect, \
    (qv_VipsImage *image, double *ink, int n, int left, int top, int width, \
     int height, ...)) \
  X(int, draw_circle, vips_draw_circle, \
    (qv_VipsImage *image, double *ink, int n, int cx, int cy, int radius, ...)) \
  X(int, draw_mask, vips_draw_mask, \
    (qv_VipsImage *image, double *ink, int n, qv_VipsImage *mask, int x, int y, \
     ...)) \
  X(int, text, vips_text, (qv_VipsImage **out, const char *text, ...))

#pragma GCC visibility pop
#endif
