/*
** qv_ini: one key of an INI or .env text (see qv_ini.h). Deliberately
** small: no continuation lines, no variable expansion. In INI a NULL
** section means the keys before the first section header and the first
** match wins.
*/
#include <string.h>

#include "qv_ini.h"
#include "qv_text.h"

static int is_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

#define trim qv_text_trim

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

/* ---- .env ---------------------------------------------------------- */

/* The value after "KEY=" on one line (without the line end). */
static void dotenv_value(qv_buf *out, const char *v, size_t n) {
  size_t i;
  qv_buf_reset(out);
  qv_buf_reserve(out, n);
  while (n > 0 && is_space(v[0])) { v++; n--; }
  if (n > 0 && v[0] == '\'') {
    const char *end = memchr(v + 1, '\'', n - 1);
    qv_buf_add(out, v + 1, end ? (size_t)(end - v - 1) : n - 1);
    return;
  }
  if (n > 0 && v[0] == '"') {
    for (i = 1; i < n && v[i] != '"'; i++) {
      if (v[i] == '\\' && i + 1 < n) {
        char c = v[++i];
        qv_buf_addc(out, c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c);
      } else {
        qv_buf_addc(out, v[i]);
      }
    }
    return;
  }
  for (i = 0; i < n; i++)
    if (v[i] == '#' && (i == 0 || is_space(v[i - 1]))) { n = i; break; }
  v = trim(v, &n);
  qv_buf_add(out, v, n);
}

int qv_dotenv_find(const char *text, size_t n, const char *key, qv_buf *out) {
  size_t pos = 0, klen = strlen(key);
  int found = 0;
  if (n >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) pos = 3;   /* BOM */
  while (pos < n) {
    const char *line = text + pos, *nl, *eq;
    size_t len, kn;
    nl = (const char *)memchr(line, '\n', n - pos);
    len = nl ? (size_t)(nl - line) : n - pos;
    pos += len + (nl != NULL);
    line = trim(line, &len);
    if (len == 0 || line[0] == '#') continue;
    if (len > 7 && memcmp(line, "export", 6) == 0 && is_space(line[6])) {
      line += 7;
      len -= 7;
      line = trim(line, &len);
    }
    eq = (const char *)memchr(line, '=', len);
    if (eq == NULL) continue;
    kn = (size_t)(eq - line);
    {
      const char *k = trim(line, &kn);
      if (kn != klen || memcmp(k, key, klen) != 0) continue;
    }
    dotenv_value(out, eq + 1, len - (size_t)(eq - line) - 1);
    found = 1;
  }
  return found;
}
