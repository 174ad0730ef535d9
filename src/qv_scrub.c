/* qv_scrub: find and replace echoed secrets (see qv_scrub.h). */
#include <stdlib.h>
#include <string.h>

#include "qv_scrub.h"

#define SECRET(sec, k) ((sec)->store + (sec)->off[k])

void qv_secrets_init(qv_secrets *sec) {
  memset(sec, 0, sizeof *sec);
}

void qv_secrets_wipe(qv_secrets *sec) {
  if (sec->store != NULL) {
    memset(sec->store, 0, sec->cap);
    free(sec->store);
  }
  memset(sec, 0, sizeof *sec);
}

int qv_secrets_add(qv_secrets *sec, const char *s, size_t n) {
  int i;
  if (s == NULL || n < QV_SCRUB_MIN) return 0;
  for (i = 0; i < sec->count; i++)
    if (sec->n[i] == n && memcmp(SECRET(sec, i), s, n) == 0) return 0;
  if (sec->count >= QV_SCRUB_MAX) return -1;
  if (sec->cap - sec->used < n) {
    /* grown by copying, so the old storage can be wiped before it goes */
    size_t cap = (sec->used + n) * 2;
    char *p = malloc(cap);
    if (p == NULL) return -1;
    if (sec->store) {
      memcpy(p, sec->store, sec->used);
      memset(sec->store, 0, sec->cap);
      free(sec->store);
    }
    sec->store = p;
    sec->cap = cap;
  }
  memcpy(sec->store + sec->used, s, n);
  sec->off[sec->count] = sec->used;
  sec->n[sec->count++] = n;
  sec->used += n;
  /* an occurrence starts with the first byte itself, or an escape */
  sec->first[(unsigned char)s[0]] = 1;
  sec->first['\\'] = sec->first['%'] = 1;
  return 0;
}

int qv_secrets_add_url(qv_secrets *sec, const char *u, size_t n) {
  const char *p = memchr(u, ':', n), *at, *end, *colon;
  size_t rest;
  if (p == NULL || n - (size_t)(p - u) < 3 || memcmp(p, "://", 3) != 0) return 0;
  p += 3;
  rest = n - (size_t)(p - u);
  end = memchr(p, '/', rest);
  if (end == NULL) end = p + rest;
  /* the last '@' before the path: passwords may contain '@' unescaped */
  at = NULL;
  {
    const char *q;
    for (q = p; q < end; q++) if (*q == '@') at = q;
  }
  if (at == NULL) return 0;
  if (qv_secrets_add(sec, p, (size_t)(at - p)) != 0) return -1;
  colon = memchr(p, ':', (size_t)(at - p));
  if (colon != NULL) return qv_secrets_add(sec, colon + 1, (size_t)(at - colon - 1));
  return 0;
}

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Does s[i..n) start with character c in some form? Returns the length
** of that form, or 0. */
static size_t match_char(const char *s, size_t i, size_t n, unsigned char c) {
  if ((unsigned char)s[i] == c) return 1;
  if (s[i] == '\\' && i + 1 < n) {
    if (s[i + 1] == '/' && c == '/') return 2;
    if (s[i + 1] == 'u' && i + 5 < n && s[i + 2] == '0' && s[i + 3] == '0') {
      int h = hexval((unsigned char)s[i + 4]), l = hexval((unsigned char)s[i + 5]);
      if (h >= 0 && l >= 0 && (h << 4 | l) == c) return 6;
    }
  } else if (s[i] == '%' && i + 2 < n) {
    int h = hexval((unsigned char)s[i + 1]), l = hexval((unsigned char)s[i + 2]);
    if (h >= 0 && l >= 0 && (h << 4 | l) == c) return 3;
  }
  return 0;
}

/* Length of the occurrence of secret k at s[i..n), or 0. */
static size_t match_at(const qv_secrets *sec, int k, const char *s, size_t i,
                       size_t n) {
  size_t j, p = i;
  for (j = 0; j < sec->n[k]; j++) {
    size_t m;
    if (p >= n) return 0;
    m = match_char(s, p, n, (unsigned char)SECRET(sec, k)[j]);
    if (m == 0) return 0;
    p += m;
  }
  return p - i;
}

/* The longest occurrence of any secret at s[i..n), or 0. */
static size_t match_any(const qv_secrets *sec, const char *s, size_t i, size_t n) {
  size_t best = 0;
  int k;
  for (k = 0; k < sec->count; k++) {
    size_t m = match_at(sec, k, s, i, n);
    if (m > best) best = m;
  }
  return best;
}

/* 1 if s[0..n) has the secret k as itself. */
static int literal(const qv_secrets *sec, int k, const char *s, size_t n) {
  const char *p = s, *end = s + n, *w = SECRET(sec, k);
  size_t wn = sec->n[k];
  while ((size_t)(end - p) >= wn &&
         (p = memchr(p, (unsigned char)w[0], (size_t)(end - p) - wn + 1)) != NULL) {
    if (memcmp(p, w, wn) == 0) return 1;
    p++;
  }
  return 0;
}

/* 1 if s[0..n) holds an escape a secret could hide in (\uXXXX, \/, %XX). */
static int has_escapes(const char *s, size_t n) {
  const char *p = s, *end = s + n;
  if (memchr(s, '%', n) != NULL) return 1;
  /* context-free, as match_char is: "\\u0073" counts too (over-redacting
  ** is safe) */
  while ((p = memchr(p, '\\', (size_t)(end - p))) != NULL && p + 1 < end) {
    if (p[1] == 'u' || p[1] == '/') return 1;
    p++;
  }
  return 0;
}

int qv_scrub_found(const qv_secrets *sec, const char *s, size_t n) {
  size_t i;
  int k;
  if (sec == NULL || sec->count == 0) return 0;
  for (k = 0; k < sec->count; k++)
    if (literal(sec, k, s, n)) return 1;
  if (!has_escapes(s, n)) return 0;
  for (i = 0; i < n; i++)
    if (sec->first[(unsigned char)s[i]] && match_any(sec, s, i, n) > 0) return 1;
  return 0;
}

void qv_scrub(const qv_secrets *sec, const char *s, size_t n, qv_scrub_fn out,
              void *ud) {
  size_t i = 0, run = 0;
  if (sec != NULL && sec->count > 0) {
    while (i < n) {
      size_t m = sec->first[(unsigned char)s[i]] ? match_any(sec, s, i, n) : 0;
      if (m == 0) { i++; continue; }
      if (i > run) out(ud, s + run, i - run);
      out(ud, QV_SCRUB_MARK, sizeof QV_SCRUB_MARK - 1);
      i += m;
      run = i;
    }
  }
  if (n > run) out(ud, s + run, n - run);
}

size_t qv_scrub_holdback(const qv_secrets *sec, const char *s, size_t n) {
  size_t best = 0;
  int k;
  if (sec == NULL) return 0;
  for (k = 0; k < sec->count; k++) {
    size_t len = sec->n[k] - 1 < n ? sec->n[k] - 1 : n;
    for (; len > best; len--)
      if (memcmp(s + n - len, SECRET(sec, k), len) == 0) { best = len; break; }
  }
  return best;
}
