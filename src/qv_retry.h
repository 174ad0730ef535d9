/*
** qv_retry: the retry policy, as pure functions of what happened.
** Which statuses and transport failures are worth another attempt, how
** long to wait before it, and how to read the server's own hint.
*/
#ifndef QV_RETRY_H
#define QV_RETRY_H

#include <stddef.h>

#pragma GCC visibility push(hidden)

/* 408, 409, 429 and every 5xx. */
int qv_retry_status(long status);

/* Parse a Retry-After value: delta-seconds ("120", "1.5" tolerated) or an
** HTTP-date (IMF-fixdate, RFC 850 and asctime forms), relative to now
** (seconds since the epoch). Returns the wait in seconds (>= 0; a date in
** the past gives 0) or -1 if the value cannot be parsed. */
double qv_retry_after_parse(const char *s, size_t n, double now);

/* Parse retry-after-ms (milliseconds as a decimal number) into seconds,
** or -1. */
double qv_retry_after_ms_parse(const char *s, size_t n);

/* Exponential back-off with jitter for retry number `attempt` (1 for the
** wait before the second attempt): base * 2^(attempt-1), scaled by a
** factor in [0.75, 1.0] drawn from *seed (xorshift, updated). */
double qv_retry_backoff(double base, int attempt, unsigned *seed);

#pragma GCC visibility pop
#endif
