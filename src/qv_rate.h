/*
** qv_rate: when the next request of a batch may start, under a
** requests-per-minute and a tokens-per-minute limit (DashScope enforces
** both per model and account). rpm spaces starts evenly, 60/rpm seconds
** apart; tpm holds a start while the estimated tokens of the starts in
** the last 60 seconds plus its own would pass the limit (a request larger
** than the whole limit still starts, alone). Pure: the caller passes the
** clock. Memory: one entry per start of the last minute.
*/
#ifndef QV_RATE_H
#define QV_RATE_H

#include <stddef.h>

#pragma GCC visibility push(hidden)

typedef struct qv_rate_start { double t, tokens; } qv_rate_start;

typedef struct qv_rate {
  double rpm, tpm;              /* 0: no limit */
  double last;                  /* time of the last start; < 0: none */
  qv_rate_start *starts;        /* the last minute's starts, oldest first */
  size_t n, cap;
} qv_rate;

void qv_rate_init(qv_rate *r, double rpm, double tpm);
void qv_rate_free(qv_rate *r);

/* Seconds until a start of `tokens` fits both limits at time now (0: now). */
double qv_rate_wait(const qv_rate *r, double now, double tokens);

/* Record a start. Returns 0, or -1 when out of memory (nothing recorded). */
int qv_rate_note(qv_rate *r, double now, double tokens);

#pragma GCC visibility pop
#endif
