/*
** Fuzz qv_data_url_check: an accepted URL's payload lies inside the
** input, decodes as base64, and its format maps back to its mime type.
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qv_image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *s = (const char *)data, *payload = NULL, *why = NULL;
  size_t plen = 0;
  qv_format fmt = QV_FMT_UNKNOWN;
  qv_buf b;
  if (qv_data_url_check(s, size, &fmt, &payload, &plen, &why) != 0) {
    if (!why || !*why) abort();
    return 0;
  }
  if (fmt == QV_FMT_UNKNOWN || !qv_image_mime(fmt)) abort();
  if (qv_image_format_from_mime(qv_image_mime(fmt),
                                strlen(qv_image_mime(fmt))) != fmt)
    abort();
  if (payload < s || payload + plen != s + size || plen == 0 || plen % 4)
    abort();
  /* what the check accepts must decode (the caller decodes it next) */
  qv_buf_init(&b);
  if (qv_base64_decode(&b, payload, plen) != 0 ||
      b.len != plen / 4 * 3 - (payload[plen - 1] == '=') -
                   (payload[plen - 2] == '='))
    abort();
  qv_buf_free(&b);
  return 0;
}
