/* qv_text: byte-string checks (see qv_text.h). */
#include <string.h>

#include "qv_text.h"

int qv_text_has_ctl(const char *s, size_t n, int flags) {
  size_t i;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c == 0x7f || (c == ' ' && (flags & QV_CTL_SPACE)))
      return 1;
  }
  return 0;
}

/* Length of the well-formed sequence at s[i..n), or 0 if ill-formed;
** *sub is set to the length of the maximal ill-formed subpart. */
static size_t seq_len(const unsigned char *s, size_t i, size_t n, size_t *sub) {
  unsigned char c = s[i];
  unsigned char lo = 0x80, hi = 0xbf;
  size_t need, k;
  *sub = 1;
  if (c < 0x80) return 1;
  if (c < 0xc2 || c > 0xf4) return 0;
  if (c < 0xe0) need = 1;
  else if (c < 0xf0) {
    need = 2;
    if (c == 0xe0) lo = 0xa0;           /* overlong */
    if (c == 0xed) hi = 0x9f;           /* surrogates */
  } else {
    need = 3;
    if (c == 0xf0) lo = 0x90;           /* overlong */
    if (c == 0xf4) hi = 0x8f;           /* above U+10FFFF */
  }
  for (k = 1; k <= need; k++) {
    unsigned char b;
    if (i + k >= n) return 0;
    b = s[i + k];
    if (b < lo || b > hi) return 0;
    lo = 0x80; hi = 0xbf;
    *sub = k + 1;
  }
  return need + 1;
}

int qv_text_utf8_valid(const char *s, size_t n, size_t *bad) {
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0, sub;
  while (i < n) {
    size_t k;
    if (p[i] < 0x80) { i++; continue; }
    k = seq_len(p, i, n, &sub);
    if (k == 0) {
      if (bad) *bad = i;
      return 0;
    }
    i += k;
  }
  if (bad) *bad = n;
  return 1;
}

void qv_text_utf8_repair(qv_buf *out, const char *s, size_t n) {
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0, run = 0, sub;
  while (i < n) {
    size_t k = p[i] < 0x80 ? 1 : seq_len(p, i, n, &sub);
    if (k > 0) { i += k; continue; }
    qv_buf_add(out, s + run, i - run);
    qv_buf_add(out, "\xEF\xBF\xBD", 3);
    i += sub;
    run = i;
  }
  qv_buf_add(out, s + run, n - run);
}

size_t qv_text_utf8_len(const char *s, size_t n) {
  size_t i, count = 0;
  for (i = 0; i < n; i++)
    if (((unsigned char)s[i] & 0xc0) != 0x80) count++;
  return count;
}

static int is_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' ||
         c == '\v';
}

const char *qv_text_trim(const char *s, size_t *n) {
  while (*n > 0 && is_space(s[0])) { s++; (*n)--; }
  while (*n > 0 && is_space(s[*n - 1])) (*n)--;
  return s;
}

static int lower(int c) {
  return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

int qv_text_iprefix(const char *s, size_t n, const char *lit) {
  size_t i;
  for (i = 0; lit[i] != '\0'; i++)
    if (i >= n || lower((unsigned char)s[i]) != lower((unsigned char)lit[i]))
      return 0;
  return 1;
}

int qv_text_ieq(const char *s, size_t n, const char *lit) {
  return strlen(lit) == n && qv_text_iprefix(s, n, lit);
}

/* The first "```" in t[from..n), or n. */
static size_t find_fence(const char *t, size_t n, size_t from) {
  size_t i;
  for (i = from; i + 3 <= n; i++)
    if (t[i] == '`' && t[i + 1] == '`' && t[i + 2] == '`') return i;
  return n;
}

int qv_text_json_spans(const char *t, size_t n, size_t off[3], size_t len[3]) {
  size_t a, b, f, tn = n;
  const char *tt = qv_text_trim(t, &tn);
  int k = 0;
  char close;
  if (tn > 0) { off[k] = (size_t)(tt - t); len[k++] = tn; }
  /* a fence: ```lang\n ... ``` */
  if ((f = find_fence(t, n, 0)) < n) {
    const char *nl = memchr(t + f + 3, '\n', n - f - 3);
    if (nl != NULL) {
      size_t body = (size_t)(nl - t) + 1, end = find_fence(t, n, body);
      if (end < n) {
        size_t bn = end - body;
        const char *bt = qv_text_trim(t + body, &bn);
        if (bn > 0) { off[k] = (size_t)(bt - t); len[k++] = bn; }
      }
    }
  }
  /* the outermost braces (or brackets) */
  for (a = 0; a < n && t[a] != '{' && t[a] != '['; a++) {}
  if (a < n) {
    close = t[a] == '{' ? '}' : ']';
    for (b = n; b > a && t[b - 1] != close; b--) {}
    if (b > a + 1 && !(k > 0 && off[0] == a && len[0] == b - a)) {
      off[k] = a;
      len[k++] = b - a;
    }
  }
  return k;
}
