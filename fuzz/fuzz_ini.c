/*
** Fuzz qv_ini_find and qv_dotenv_find. Input "section\0key\0text";
** without two NULs the whole input is the text and the credentials' (and
** .env's) names are looked up.
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qv_ini.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void look(const char *text, size_t n, const char *section,
                 const char *key) {
  qv_buf out;
  int r;
  qv_buf_init(&out);
  r = qv_ini_find(text, n, section, key, &out);
  if (r != 0 && r != 1) abort();
  if (r == 1) {
    /* a value is part of one line of the text */
    if (out.oom || out.len > n ||
        (out.len && memchr(out.data, '\n', out.len)) ||
        (out.data && out.data[out.len] != '\0'))
      abort();
  }
  qv_buf_free(&out);
  qv_buf_init(&out);
  r = qv_dotenv_find(text, n, key, &out);
  if (r != 0 && r != 1) abort();
  /* escapes only shrink a value; it never spans lines unless escaped */
  if (r == 1 && (out.oom || out.len > n || (out.data && out.data[out.len] != '\0')))
    abort();
  qv_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *s = (const char *)data;
  const char *z1 = (const char *)memchr(s, '\0', size), *z2 = NULL;
  char *copy;
  if (z1) z2 = (const char *)memchr(z1 + 1, '\0', size - (size_t)(z1 + 1 - s));
  if (!z2) {
    look(s, size, "default", "access_key_id");
    look(s, size, NULL, "access_key_secret");
    return 0;
  }
  /* section and key need their own NUL-terminated storage */
  copy = (char *)malloc((size_t)(z2 - s) + 1);
  if (!copy) return 0;
  memcpy(copy, s, (size_t)(z2 - s) + 1);
  look(z2 + 1, size - (size_t)(z2 + 1 - s), copy, copy + (z1 - s) + 1);
  free(copy);
  return 0;
}
