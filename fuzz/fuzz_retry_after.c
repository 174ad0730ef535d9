/*
** Fuzz the Retry-After parsers and the back-off: results are -1 or a
** finite wait in [0, 1e9].
*/
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qv_retry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void sane(double v) {
  if (v != -1 && !(v >= 0 && v <= 1e9)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const double nows[] = { 0, 784111777, 1.7e9, -1e12, 1e18, 4102444800.0 };
  const char *s = (const char *)data;
  size_t i;
  unsigned seed;
  double base;
  int attempt;
  for (i = 0; i < sizeof(nows) / sizeof(nows[0]); i++)
    sane(qv_retry_after_parse(s, size, nows[i]));
  sane(qv_retry_after_parse(s, size, NAN));
  sane(qv_retry_after_ms_parse(s, size));
  if (size >= 8) {
    memcpy(&seed, data, sizeof(seed));
    attempt = (int)(int8_t)data[4];
    base = (double)(data[5] | data[6] << 8) / 16.0;
    if (data[7] & 1) base = -base;
    {
      double w = qv_retry_backoff(base, attempt, &seed);
      double top = base > 0 && attempt >= 1 && attempt <= 20
                       ? ldexp(base, attempt - 1) : -1;
      if (!(w >= 0 && w <= 1e9)) abort();
      /* within [0.75, 1] of the nominal wait, unless clamped at 1e9 */
      if (top > 0 && w < 1e9 &&
          (w < top * 0.75 * (1 - 1e-12) || w > top * (1 + 1e-12)))
        abort();
      if (top > 0 && w == 1e9 && top < 1e9) abort();
    }
    (void)qv_retry_status((long)(int16_t)(data[0] | data[1] << 8));
  }
  return 0;
}
