/*
** qv_ini: one key of one section of an INI text. Deliberately small:
** no escapes, no continuation lines. A NULL section means the keys
** before the first section header. The first match wins.
*/
#include <string.h>

#include "qv_ini.h"

static int is_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

/* Trim s[0..*n) on both sides. */
static const char *trim(const char *s, size_t *n) {
  while (*n > 0 && is_space(s[0])) { s++; (*n)--; }
  while (*n > 0 && is_space(s[*n - 1])) (*n)--;
  return s;
}

static int same(const char *s, size_t n, const char *z) {
  return strlen(z) == n && memcmp(s, z, n) == 0;
}

/* The value part of "key = value": quotes are removed; an unquoted
** value ends at a ';' or '#' that follows whitespace (inline comment). */
static void set_value(qv_buf *out, const char *v, size_t n) {
  size_t i;
  v = trim(v, &n);
  if (n >= 2 && (v[0] == '"' || v[0] == '\'') && v[n - 1] == v[0]) {
    v++;
    n -= 2;
  } else {
    for (i = 1; i < n; i++)
      if ((v[i] == ';' || v[i] == '#') && is_space(v[i - 1])) {
        n = i;
        v = trim(v, &n);
        break;
      }
  }
  qv_buf_reset(out);
  qv_buf_reserve(out, n);   /* so even an empty value has data != NULL */
  qv_buf_add(out, v, n);
}

int qv_ini_find(const char *text, size_t n, const char *section,
                const char *key, qv_buf *out) {
  size_t pos = 0;
  int in = section == NULL;   /* inside the wanted section */
  if (n >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) pos = 3;  /* BOM */
  while (pos < n) {
    const char *line = text + pos, *nl, *eq;
    size_t len;
    nl = (const char *)memchr(line, '\n', n - pos);
    len = nl ? (size_t)(nl - line) : n - pos;
    pos += len + (nl != NULL);
    line = trim(line, &len);
    if (len == 0 || line[0] == ';' || line[0] == '#') continue;
    if (line[0] == '[') {
      const char *end = (const char *)memchr(line, ']', len);
      const char *name = line + 1;
      size_t nlen;
      /* a broken header ends the wanted section too */
      in = 0;
      if (end && section) {
        nlen = (size_t)(end - name);
        name = trim(name, &nlen);
        in = same(name, nlen, section);
      }
      continue;
    }
    if (!in) continue;
    eq = (const char *)memchr(line, '=', len);
    if (!eq) continue;
    {
      size_t klen = (size_t)(eq - line);
      const char *k = trim(line, &klen);
      if (same(k, klen, key)) {
        set_value(out, eq + 1, len - (size_t)(eq - line) - 1);
        return 1;
      }
    }
  }
  return 0;
}
