/*
** qv_retry: retry policy and Retry-After parsing. The HTTP-date parser
** is our own (RFC 7231 section 7.1.1.1) so that neither the locale nor
** timegm() availability changes the answer.
*/
#include <math.h>
#include <string.h>

#include "qv_retry.h"

#define QV_RETRY_MAX 1e9   /* clamp for absurd waits, in seconds */

int qv_retry_status(long status) {
  return status == 408 || status == 409 || status == 429 ||
         (status >= 500 && status <= 599);
}

static int is_ws(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int is_digit(char c) {
  return c >= '0' && c <= '9';
}

/* Trim whitespace from both ends of s[0..*n). */
static const char *trim(const char *s, size_t *n) {
  while (*n > 0 && is_ws(s[0])) { s++; (*n)--; }
  while (*n > 0 && is_ws(s[*n - 1])) (*n)--;
  return s;
}

/* Digits with an optional ".digits" part; -1 unless the whole of
** s[0..n) is such a number. Large values saturate at cap. */
static double parse_decimal(const char *s, size_t n, double cap) {
  double v = 0, scale = 1;
  size_t i = 0;
  if (n == 0 || !is_digit(s[0])) return -1;
  for (; i < n && is_digit(s[i]); i++)
    if (v < cap * 10) v = v * 10 + (s[i] - '0');
  if (i < n && s[i] == '.') {
    size_t frac = ++i;
    for (; i < n && is_digit(s[i]); i++) {
      scale /= 10;
      v += (s[i] - '0') * scale;
    }
    if (i == frac) return -1;
  }
  if (i != n) return -1;
  return v > cap ? cap : v;
}

/* ---- HTTP-date ---- */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
** days_from_civil). */
static long days_from_civil(long y, unsigned m, unsigned d) {
  long era;
  unsigned yoe, doy, doe;
  y -= m <= 2;
  era = (y >= 0 ? y : y - 399) / 400;
  yoe = (unsigned)(y - era * 400);
  doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + (long)doe - 719468;
}

/* The year of a day count (the inverse of the above, year only). */
static long year_from_days(long z) {
  long era, y;
  unsigned doe, yoe, doy, mp;
  z += 719468;
  era = (z >= 0 ? z : z - 146096) / 146097;
  doe = (unsigned)(z - era * 146097);
  yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  y = (long)yoe + era * 400;
  doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  mp = (5 * doy + 2) / 153;
  return y + (mp >= 10);
}

static int is_leap(long y) {
  return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned days_in_month(long y, unsigned m) {
  static const unsigned char dim[12] = {
    31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31
  };
  return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

typedef struct cursor {
  const char *s;
  size_t n, i;
} cursor;

static int lit(cursor *c, char ch) {
  if (c->i < c->n && c->s[c->i] == ch) { c->i++; return 1; }
  return 0;
}

/* Exactly `digits` decimal digits. */
static int num(cursor *c, int digits, long *out) {
  long v = 0;
  int k;
  if (c->n - c->i < (size_t)digits) return 0;
  for (k = 0; k < digits; k++) {
    char ch = c->s[c->i + (size_t)k];
    if (!is_digit(ch)) return 0;
    v = v * 10 + (ch - '0');
  }
  c->i += (size_t)digits;
  *out = v;
  return 1;
}

static int lower(int ch) {
  return (ch >= 'A' && ch <= 'Z') ? ch + ('a' - 'A') : ch;
}

/* A run of letters matched (case-insensitively) against names; returns
** the index or -1. `full` also allows the long names. */
static int word(cursor *c, const char *const *names, int count,
                const char *const *full) {
  size_t start = c->i, len;
  int k;
  while (c->i < c->n && lower((unsigned char)c->s[c->i]) >= 'a' &&
         lower((unsigned char)c->s[c->i]) <= 'z')
    c->i++;
  len = c->i - start;
  for (k = 0; k < count; k++) {
    const char *cand[2];
    int j;
    cand[0] = names[k];
    cand[1] = full ? full[k] : NULL;
    for (j = 0; j < 2; j++) {
      size_t q;
      if (!cand[j] || strlen(cand[j]) != len) continue;
      for (q = 0; q < len; q++)
        if (lower((unsigned char)c->s[start + q]) != cand[j][q]) break;
      if (q == len) return k;
    }
  }
  return -1;
}

static const char *const wkday[7] = {
  "mon", "tue", "wed", "thu", "fri", "sat", "sun"
};
static const char *const weekday[7] = {
  "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"
};
static const char *const months[12] = {
  "jan", "feb", "mar", "apr", "may", "jun",
  "jul", "aug", "sep", "oct", "nov", "dec"
};

static int hms(cursor *c, long *h, long *mi, long *sec) {
  return num(c, 2, h) && lit(c, ':') && num(c, 2, mi) && lit(c, ':') &&
         num(c, 2, sec) && *h <= 23 && *mi <= 59 && *sec <= 60;
}

static int gmt(cursor *c) {
  return lit(c, ' ') && c->n - c->i == 3 &&
         lower((unsigned char)c->s[c->i]) == 'g' &&
         lower((unsigned char)c->s[c->i + 1]) == 'm' &&
         lower((unsigned char)c->s[c->i + 2]) == 't';
}

/* Seconds since the epoch of an HTTP-date, or 0 with *ok = 0. */
static double parse_http_date(const char *s, size_t n, double now, int *ok) {
  cursor c;
  long y = 0, d = 0, h = 0, mi = 0, sec = 0;
  int mon;
  c.s = s;
  c.n = n;
  c.i = 0;
  *ok = 0;
  if (word(&c, wkday, 7, weekday) < 0) return 0;
  if (lit(&c, ',')) {
    if (!lit(&c, ' ') || !num(&c, 2, &d)) return 0;
    if (lit(&c, ' ')) {                       /* IMF-fixdate */
      if ((mon = word(&c, months, 12, NULL)) < 0 || !lit(&c, ' ') ||
          !num(&c, 4, &y) || !lit(&c, ' ') || !hms(&c, &h, &mi, &sec) ||
          !gmt(&c))
        return 0;
    } else if (lit(&c, '-')) {                /* RFC 850 */
      long yy, cy;
      if ((mon = word(&c, months, 12, NULL)) < 0 || !lit(&c, '-') ||
          !num(&c, 2, &yy) || !lit(&c, ' ') || !hms(&c, &h, &mi, &sec) ||
          !gmt(&c))
        return 0;
      /* a two-digit year more than 50 years ahead is in the past */
      cy = year_from_days((long)floor(now / 86400));
      y = cy - cy % 100 + yy;
      if (y > cy + 50) y -= 100;
    } else {
      return 0;
    }
  } else if (lit(&c, ' ')) {                  /* asctime */
    if ((mon = word(&c, months, 12, NULL)) < 0 || !lit(&c, ' ')) return 0;
    if (lit(&c, ' ')) {
      if (!num(&c, 1, &d)) return 0;
    } else if (!num(&c, 2, &d)) {
      return 0;
    }
    if (!lit(&c, ' ') || !hms(&c, &h, &mi, &sec) || !lit(&c, ' ') ||
        !num(&c, 4, &y) || c.i != c.n)
      return 0;
  } else {
    return 0;
  }
  if (d < 1 || (unsigned long)d > days_in_month(y, (unsigned)mon + 1))
    return 0;
  *ok = 1;
  return (double)days_from_civil(y, (unsigned)mon + 1, (unsigned)d) * 86400.0 +
         (double)(h * 3600 + mi * 60 + sec);
}

double qv_retry_after_parse(const char *s, size_t n, double now) {
  double t, wait;
  int ok;
  s = trim(s, &n);
  if (n == 0) return -1;
  if (is_digit(s[0])) return parse_decimal(s, n, QV_RETRY_MAX);
  if (now != now) return -1;                 /* NaN: no reference point */
  /* keep now / 86400 within a 32-bit long */
  if (now > 1e13) now = 1e13;
  if (now < -1e13) now = -1e13;
  t = parse_http_date(s, n, now, &ok);
  if (!ok) return -1;
  wait = t - now;
  if (wait < 0) return 0;
  return wait > QV_RETRY_MAX ? QV_RETRY_MAX : wait;
}

double qv_retry_after_ms_parse(const char *s, size_t n) {
  double v;
  s = trim(s, &n);
  v = parse_decimal(s, n, QV_RETRY_MAX * 1000);
  return v < 0 ? -1 : v / 1000;
}

double qv_retry_backoff(double base, int attempt, unsigned *seed) {
  unsigned long x = *seed & 0xFFFFFFFFul;
  double u, wait;
  if (x == 0) x = 0x9E3779B9ul;              /* xorshift's fixed point */
  x ^= (x << 13) & 0xFFFFFFFFul;
  x ^= x >> 17;
  x ^= (x << 5) & 0xFFFFFFFFul;
  *seed = (unsigned)x;
  u = (double)x / 4294967295.0;
  if (!(base > 0)) return 0;                 /* also NaN */
  if (attempt < 1) attempt = 1;
  if (attempt > 64) attempt = 64;
  wait = ldexp(base, attempt - 1) * (0.75 + 0.25 * u);
  return wait > QV_RETRY_MAX ? QV_RETRY_MAX : wait;
}
