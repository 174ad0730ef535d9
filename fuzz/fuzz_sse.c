/*
** Fuzz qv_sse: the same bytes fed whole and in pieces of varying size
** must give the same events and the same return code.
** Input: byte 0 picks max_line and a stop event, bytes 1-4 seed the
** piece sizes, the rest is the stream.
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qv_sse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct sink {
  qv_buf out;
  int count, stop_at;
} sink;

static int on_event(void *ud, const char *ev, size_t evlen, const char *d,
                    size_t dlen) {
  sink *s = (sink *)ud;
  /* names and data are NUL-terminated, names hold no line ends, data no CR */
  if (evlen == 0 || ev[evlen] != '\0' || d[dlen] != '\0') abort();
  if (memchr(ev, '\n', evlen) || memchr(ev, '\r', evlen)) abort();
  if (memchr(d, '\r', dlen)) abort();
  qv_buf_add(&s->out, &evlen, sizeof(evlen));
  qv_buf_add(&s->out, ev, evlen);
  qv_buf_add(&s->out, &dlen, sizeof(dlen));
  qv_buf_add(&s->out, d, dlen);
  return ++s->count == s->stop_at ? 5 : 0;
}

static uint32_t next(uint32_t *x) {
  *x ^= *x << 13;
  *x ^= *x >> 17;
  *x ^= *x << 5;
  return *x;
}

/* pieces == 0: one feed. Otherwise pieces of 0..maxpiece bytes. */
static int run(const char *s, size_t n, size_t max_line, int stop_at,
               uint32_t seed, size_t maxpiece, sink *out) {
  qv_sse p;
  size_t at = 0;
  int rc = 0;
  if (seed == 0) seed = 1;                  /* xorshift's fixed point */
  qv_sse_init(&p);
  p.max_line = max_line;
  out->count = 0;
  out->stop_at = stop_at;
  if (maxpiece == 0) {
    rc = qv_sse_feed(&p, s, n, on_event, out);
  } else {
    while (rc == 0 && at < n) {
      size_t k = next(&seed) % (maxpiece + 1);
      if (k > n - at) k = n - at;
      rc = qv_sse_feed(&p, s + at, k, on_event, out);
      at += k;
    }
  }
  if (rc == 0) rc = qv_sse_finish(&p, on_event, out);
  qv_sse_free(&p);
  return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const size_t pieces[] = { 1, 2, 3, 7, 64 };
  sink whole, split;
  size_t max_line, i;
  uint32_t seed;
  int stop_at, rc1, rc2;
  if (size < 5) return 0;
  max_line = (data[0] & 1) ? 0 : (size_t)(data[0] >> 1) + 1;
  stop_at = (data[0] & 0x80) ? 1 + (data[0] & 3) : 0;
  seed = (uint32_t)data[1] | (uint32_t)data[2] << 8 |
         (uint32_t)data[3] << 16 | (uint32_t)data[4] << 24;
  data += 5;
  size -= 5;
  qv_buf_init(&whole.out);
  rc1 = run((const char *)data, size, max_line, stop_at, seed, 0, &whole);
  for (i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
    qv_buf_init(&split.out);
    rc2 = run((const char *)data, size, max_line, stop_at, seed + (uint32_t)i,
              pieces[i], &split);
    if (rc1 != rc2 || whole.out.len != split.out.len ||
        whole.out.oom || split.out.oom ||
        (whole.out.len &&
         memcmp(whole.out.data, split.out.data, whole.out.len) != 0))
      abort();
    qv_buf_free(&split.out);
  }
  qv_buf_free(&whole.out);
  return 0;
}
