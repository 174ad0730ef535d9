/*
** Fuzz base64: re-encoding a decoded input gives the input back, except
** for the ignored pad bits in the digit before the '='; encode then
** decode is the identity; a failed decode appends nothing.
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qv_image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  qv_buf dec, enc, back;
  size_t i, last = (size_t)-1;
  qv_buf_init(&dec);
  qv_buf_init(&enc);
  qv_buf_init(&back);
  if (qv_base64_decode(&dec, (const char *)data, size) == 0) {
    qv_base64_encode(&enc, (const unsigned char *)dec.data, dec.len);
    if (enc.oom || enc.len != size) abort();
    if (size && data[size - 1] == '=') last = size - 2 - (data[size - 2] == '=');
    for (i = 0; i < size; i++)
      if (i != last && enc.data[i] != (char)data[i]) abort();
  } else if (dec.len != 0) {
    abort();
  }
  qv_buf_reset(&enc);
  qv_base64_encode(&enc, data, size);
  if (enc.len != qv_base64_len(size)) abort();
  if (qv_base64_decode(&back, enc.data ? enc.data : "", enc.len) != 0 ||
      back.len != size || (size && memcmp(back.data, data, size) != 0))
    abort();
  qv_buf_free(&dec);
  qv_buf_free(&enc);
  qv_buf_free(&back);
  return 0;
}
