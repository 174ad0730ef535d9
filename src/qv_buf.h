/*
** qv_buf: a growable byte buffer (the strbuf of this project).
** Buffers never hold Lua memory, so they can be filled from libcurl
** callbacks. Allocation failure is sticky: once a buffer fails to
** grow, `oom` is set and every later append is a no-op, so callers
** check once at the end instead of after every append.
*/
#ifndef QV_BUF_H
#define QV_BUF_H

#include <stddef.h>

#pragma GCC visibility push(hidden)

typedef struct qv_buf {
  char *data;     /* always NUL-terminated when non-NULL */
  size_t len;
  size_t cap;
  int oom;
} qv_buf;

void qv_buf_init(qv_buf *b);
void qv_buf_free(qv_buf *b);
void qv_buf_reset(qv_buf *b);                     /* len = 0, keeps memory */
int qv_buf_reserve(qv_buf *b, size_t extra);      /* 0 on failure */
void qv_buf_add(qv_buf *b, const void *p, size_t n);
void qv_buf_adds(qv_buf *b, const char *s);
void qv_buf_addc(qv_buf *b, char c);

#pragma GCC visibility pop
#endif
