/*
** Fuzz qv_image_probe (and qv_image_sniff): no out-of-bounds reads, and
** the answer is consistent.
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qv_image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  qv_image_info info;
  const char *why = NULL;
  qv_format f = qv_image_sniff(data, size);
  int r = qv_image_probe(data, size, &info, &why);
  if (info.format != f) abort();
  if (!qv_image_name(f)) abort();
  if (r == 0) {
    if (f == QV_FMT_UNKNOWN || !qv_image_mime(f)) abort();
    if (f != QV_FMT_HEIC && (info.width == 0 || info.height == 0)) abort();
    if ((info.width == 0) != (info.height == 0)) abort();
  } else {
    if (r != -1 || !why || !*why || info.width || info.height) abort();
  }
  return 0;
}
