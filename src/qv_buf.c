/*
** qv_buf: growable byte buffer with a sticky out-of-memory flag.
*/
#include <stdlib.h>
#include <string.h>

#include "qv_buf.h"

#define QV_BUF_MIN 64

void qv_buf_init(qv_buf *b) {
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
  b->oom = 0;
}

void qv_buf_free(qv_buf *b) {
  free(b->data);
  qv_buf_init(b);
}

/* Keeps oom: a failure earlier in a fill must still be seen at the end. */
void qv_buf_reset(qv_buf *b) {
  b->len = 0;
  if (b->data) b->data[0] = '\0';
}

/* Room for `extra` more bytes plus the terminating NUL. */
int qv_buf_reserve(qv_buf *b, size_t extra) {
  size_t need, cap;
  char *d;
  if (b->oom) return 0;
  if (extra > (size_t)-1 - 1 - b->len) goto fail;
  need = b->len + extra + 1;
  if (need <= b->cap) return 1;
  cap = b->cap < QV_BUF_MIN ? QV_BUF_MIN : b->cap;
  while (cap < need) {
    if (cap > (size_t)-1 / 2) { cap = need; break; }
    cap *= 2;
  }
  d = (char *)realloc(b->data, cap);
  if (!d) goto fail;
  if (!b->data) d[0] = '\0';
  b->data = d;
  b->cap = cap;
  return 1;
fail:
  b->oom = 1;
  return 0;
}

void qv_buf_add(qv_buf *b, const void *p, size_t n) {
  const char *src = (const char *)p;
  size_t off = 0;
  int inside;
  if (n == 0 || b->oom) return;
  /* p may point into our own data, which realloc would move */
  inside = b->data && src >= b->data && src < b->data + b->cap;
  if (inside) off = (size_t)(src - b->data);
  if (!qv_buf_reserve(b, n)) return;
  if (inside) src = b->data + off;
  memmove(b->data + b->len, src, n);
  b->len += n;
  b->data[b->len] = '\0';
}

void qv_buf_adds(qv_buf *b, const char *s) {
  qv_buf_add(b, s, strlen(s));
}

void qv_buf_addc(qv_buf *b, char c) {
  if (b->oom) return;
  if (b->len + 1 >= b->cap && !qv_buf_reserve(b, 1)) return;
  b->data[b->len++] = c;
  b->data[b->len] = '\0';
}
