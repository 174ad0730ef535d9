/* qv_rate: rpm and tpm limits for batches (see qv_rate.h). */
#include <stdlib.h>
#include <string.h>

#include "qv_rate.h"

#define WINDOW 60.0

void qv_rate_init(qv_rate *r, double rpm, double tpm) {
  memset(r, 0, sizeof *r);
  r->rpm = rpm > 0 ? rpm : 0;
  r->tpm = tpm > 0 ? tpm : 0;
  r->last = -1;
}

void qv_rate_free(qv_rate *r) {
  free(r->starts);
  r->starts = NULL;
  r->n = r->cap = 0;
}

/* Drop starts that left the window. */
static void prune(qv_rate *r, double now) {
  size_t k = 0;
  while (k < r->n && now - r->starts[k].t >= WINDOW) k++;
  if (k > 0) {
    memmove(r->starts, r->starts + k, (r->n - k) * sizeof *r->starts);
    r->n -= k;
  }
}

double qv_rate_wait(const qv_rate *r, double now, double tokens) {
  double wait = 0, used = 0;
  size_t k;
  if (r->rpm > 0 && r->last >= 0) {
    double next = r->last + WINDOW / r->rpm;
    if (next > now) wait = next - now;
  }
  if (r->tpm > 0) {
    for (k = 0; k < r->n; k++)
      if (now - r->starts[k].t < WINDOW) used += r->starts[k].tokens;
    /* wait until enough of the oldest starts leave the window */
    for (k = 0; k < r->n && used > 0 && used + tokens > r->tpm; k++) {
      double leave = r->starts[k].t + WINDOW - now;
      if (now - r->starts[k].t >= WINDOW) continue;
      used -= r->starts[k].tokens;
      if (leave > wait) wait = leave;
    }
  }
  return wait;
}

int qv_rate_note(qv_rate *r, double now, double tokens) {
  r->last = now;
  if (r->tpm <= 0) return 0;
  prune(r, now);
  if (r->n == r->cap) {
    size_t cap = r->cap ? r->cap * 2 : 16;
    qv_rate_start *s = realloc(r->starts, cap * sizeof *s);
    if (s == NULL) return -1;
    r->starts = s;
    r->cap = cap;
  }
  r->starts[r->n].t = now;
  r->starts[r->n].tokens = tokens;
  r->n++;
  return 0;
}
