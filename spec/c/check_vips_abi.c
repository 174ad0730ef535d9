/*
** check_vips_abi: src/qv_vips.h (the libvips ABI qv_resize declares for
** itself) against the real <vips/vips.h>. Compiling this file is the
** test (make check-vips-abi, with -Werror): a constant that differs
** fails a static assertion, a signature that differs fails the
** assignment of the real function to a pointer of the declared type
** (incompatible pointer types). Nothing is linked or run.
*/
#include <vips/vips.h>

#include "qv_vips.h"

#define QV_ASSERT(name, cond) typedef char qv_assert_##name[(cond) ? 1 : -1]

QV_ASSERT(true, QV_G_TRUE == TRUE);
QV_ASSERT(log_warning, QV_G_LOG_LEVEL_WARNING == G_LOG_LEVEL_WARNING);
QV_ASSERT(max_coord, QV_VIPS_MAX_COORD == VIPS_MAX_COORD);
QV_ASSERT(size_down, QV_VIPS_SIZE_DOWN == VIPS_SIZE_DOWN);
QV_ASSERT(grey16, QV_VIPS_INTERPRETATION_GREY16 == VIPS_INTERPRETATION_GREY16);
QV_ASSERT(rgb16, QV_VIPS_INTERPRETATION_RGB16 == VIPS_INTERPRETATION_RGB16);
QV_ASSERT(srgb, QV_VIPS_INTERPRETATION_SRGB == VIPS_INTERPRETATION_sRGB);
QV_ASSERT(uchar, QV_VIPS_FORMAT_UCHAR == VIPS_FORMAT_UCHAR);
/* the headers compiled against are at least the oldest release supported */
QV_ASSERT(min_version, VIPS_MAJOR_VERSION > QV_VIPS_MIN_MAJOR ||
          (VIPS_MAJOR_VERSION == QV_VIPS_MIN_MAJOR &&
           VIPS_MINOR_VERSION >= QV_VIPS_MIN_MINOR));
/* the incomplete types are libvips' own, and the casts between them hold */
QV_ASSERT(image_tag, sizeof(qv_VipsImage) == sizeof(VipsImage));
QV_ASSERT(area_first, offsetof(VipsArrayDouble, area) == 0);
/* enums passed as int: same size (varargs and registers) */
QV_ASSERT(enum_size, sizeof(VipsSize) == sizeof(int) &&
          sizeof(VipsBandFormat) == sizeof(int) &&
          sizeof(VipsInterpretation) == sizeof(int) &&
          sizeof(GLogLevelFlags) == sizeof(int) &&
          sizeof(GConnectFlags) == sizeof(unsigned int));

/* the callback types qv_resize passes */
static void log_fn(const char *d, int l, const char *m, void *u) {
  (void)d; (void)l; (void)m; (void)u;
}
static void eval_fn(qv_VipsImage *i, qv_VipsProgress *p, void *u) {
  (void)i; (void)p; (void)u;
}
static GLogFunc check_log_fn = log_fn;
static qv_vips_eval_fn check_eval_real = eval_fn;
static void (*check_eval_fn)(VipsImage *, VipsProgress *, void *) = eval_fn;

struct qv_vips_check {
#define FIELD(ret, field, sym, params) ret (*field) params;
  QV_VIPS_API(FIELD)
#undef FIELD
};

/* every entry initialised with the real function: any difference in
** return or parameter types is an incompatible-pointer-types error */
const struct qv_vips_check qv_vips_check = {
#define INIT(ret, field, sym, params) .field = sym,
  QV_VIPS_API(INIT)
#undef INIT
};

/* qv_draw's table, checked the same way (enum parameters and results
** declared as int: GCC and Clang make these enums, which hold -1, int) */
struct qv_vips_draw_check {
#define FIELD(ret, field, sym, params) ret (*field) params;
  QV_VIPS_DRAW_API(FIELD)
#undef FIELD
};

const struct qv_vips_draw_check qv_vips_draw_check = {
#define INIT(ret, field, sym, params) .field = sym,
  QV_VIPS_DRAW_API(INIT)
#undef INIT
};

void *qv_vips_check_callbacks(void);
void *qv_vips_check_callbacks(void) {
  return check_eval_real == NULL || check_log_fn == NULL || check_eval_fn == NULL ? NULL : (void *)&qv_vips_check;
}
