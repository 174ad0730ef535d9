/* qv_json: fields out of JSON text, cjson's dialect (see qv_json.h). */
#include <float.h>
#include <locale.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qv_json.h"

typedef const unsigned char *bytes;

static int is_ws(unsigned c) {
  return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

static bytes skip_ws(bytes p, bytes e) {
  while (p < e && is_ws(*p)) p++;
  return p;
}

static int is_digit(unsigned c) { return c - '0' < 10; }

static int hex_val(unsigned c) {
  if (c - '0' < 10) return (int)(c - '0');
  c |= 0x20;
  if (c - 'a' < 6) return (int)(c - 'a' + 10);
  return -1;
}

static int lower(unsigned c) { return (c - 'A' < 26) ? (int)(c | 0x20) : (int)c; }

/* p[0..k) equals the lowercase lit[0..k), ASCII case ignored. */
static int ieq(bytes p, bytes e, const char *lit, size_t k) {
  size_t i;
  if ((size_t)(e - p) < k) return 0;
  for (i = 0; i < k; i++)
    if (lower(p[i]) != lit[i]) return 0;
  return 1;
}

/* ---- strings ----------------------------------------------------------- */

/* The first byte of p[0..e) that ends a run of plain string bytes: '"',
** '\\', and for find_special_nul NUL too; or e. Strings are most of a body
** (an answer's text), so sixteen bytes a step with SSE2 (baseline on
** x86-64), eight with plain 64-bit arithmetic elsewhere (or with
** QV_JSON_NO_SIMD, which the unit tests also build); the last bytes one
** by one: nothing at or past e is loaded. */
#if defined(__SSE2__) && !defined(QV_JSON_NO_SIMD)
#include <emmintrin.h>

#define FIND_SPECIAL(name, nul)                                               \
  static bytes name(bytes p, bytes e) {                                      \
    const __m128i quote = _mm_set1_epi8('"'), slash = _mm_set1_epi8('\\');  \
    const __m128i zero = _mm_setzero_si128();                                \
    (void)zero;                                                              \
    while (e - p >= 16) {                                                    \
      __m128i w = _mm_loadu_si128((const __m128i *)(const void *)p);         \
      __m128i hit = _mm_or_si128(_mm_cmpeq_epi8(w, quote),                   \
                                 _mm_cmpeq_epi8(w, slash));                  \
      int m;                                                                 \
      if (nul) hit = _mm_or_si128(hit, _mm_cmpeq_epi8(w, zero));             \
      m = _mm_movemask_epi8(hit);                                            \
      if (m != 0) return p + __builtin_ctz((unsigned)m);                     \
      p += 16;                                                               \
    }                                                                        \
    while (p < e && *p != '"' && *p != '\\' && (!(nul) || *p != 0)) p++;    \
    return p;                                                                \
  }
#else
#define ONES UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)
#define HAS_ZERO(w) (((w) - ONES) & ~(w) & HIGHS)

#define FIND_SPECIAL(name, nul)                                               \
  static bytes name(bytes p, bytes e) {                                      \
    while (e - p >= 8) {                                                     \
      uint64_t w, hit;                                                       \
      memcpy(&w, p, 8);                                                      \
      hit = HAS_ZERO(w ^ (ONES * '"')) | HAS_ZERO(w ^ (ONES * '\\'));       \
      if (nul) hit |= HAS_ZERO(w);                                           \
      if (hit) break;                                                        \
      p += 8;                                                                \
    }                                                                        \
    while (p < e && *p != '"' && *p != '\\' && (!(nul) || *p != 0)) p++;    \
    return p;                                                                \
  }
#endif

FIND_SPECIAL(find_special, 0)
FIND_SPECIAL(find_special_nul, 1)

static long hex4(bytes p, bytes e) {
  long v = 0;
  int i;
  if (e - p < 4) return -1;
  for (i = 0; i < 4; i++) {
    int d = hex_val(p[i]);
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

/* Decode the escape at p ('\\') into out[0..*len); the byte after it, or
** NULL when cjson would refuse it: an unknown letter, a short or non-hex
** \u, a low surrogate first, a high one not followed by a \u low one. */
static bytes unescape(bytes p, bytes e, unsigned char out[4], int *len) {
  long cp, lo;
  if (e - p < 2) return NULL;
  *len = 1;
  switch (p[1]) {
  case '"': case '\\': case '/': out[0] = p[1]; return p + 2;
  case 'b': out[0] = '\b'; return p + 2;
  case 'f': out[0] = '\f'; return p + 2;
  case 'n': out[0] = '\n'; return p + 2;
  case 'r': out[0] = '\r'; return p + 2;
  case 't': out[0] = '\t'; return p + 2;
  case 'u': break;
  default: return NULL;
  }
  if ((cp = hex4(p + 2, e)) < 0) return NULL;
  p += 6;
  if ((cp & 0xF800) == 0xD800) {
    if (cp & 0x400) return NULL;
    if (e - p < 2 || p[0] != '\\' || p[1] != 'u') return NULL;
    lo = hex4(p + 2, e);
    if (lo < 0 || (lo & 0xFC00) != 0xDC00) return NULL;
    cp = (((cp & 0x3FF) << 10) | (lo & 0x3FF)) + 0x10000;
    p += 6;
  }
  if (cp < 0x80) {
    out[0] = (unsigned char)cp;
  } else if (cp < 0x800) {
    out[0] = (unsigned char)(0xC0 | (cp >> 6));
    out[1] = (unsigned char)(0x80 | (cp & 0x3F));
    *len = 2;
  } else if (cp < 0x10000) {
    out[0] = (unsigned char)(0xE0 | (cp >> 12));
    out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (unsigned char)(0x80 | (cp & 0x3F));
    *len = 3;
  } else {
    out[0] = (unsigned char)(0xF0 | (cp >> 18));
    out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (unsigned char)(0x80 | (cp & 0x3F));
    *len = 4;
  }
  return p;
}

/* Validate the string whose opening quote is at p; past its closing
** quote, or NULL. Raw bytes pass (control characters too), but not NUL:
** cjson reads a C string and takes it for the end. */
static bytes scan_string(bytes p, bytes e) {
  unsigned char tmp[4];
  int len;
  p++;
  for (;;) {
    p = find_special_nul(p, e);
    if (p >= e || *p == 0) return NULL;
    if (*p == '"') return p + 1;
    if ((p = unescape(p, e, tmp, &len)) == NULL) return NULL;
  }
}

/* Past the closing quote of the validated string opening at p (or e). */
static bytes skip_string(bytes p, bytes e) {
  p++;
  for (;;) {
    p = find_special(p, e);
    if (p >= e) return e;
    if (*p == '"') return p + 1;
    p += (e - p >= 2) ? 2 : 1;   /* an escape: its letter is never '"' */
  }
}

/* 1 if the string content c[0..ce) unescapes to exactly k[0..kn). */
static int content_eq(bytes c, bytes ce, const unsigned char *k, size_t kn) {
  size_t i = 0;
  while (c < ce) {
    unsigned char tmp[4];
    int len;
    if (*c != '\\') {
      if (i >= kn || *c != k[i]) return 0;
      c++;
      i++;
      continue;
    }
    if ((c = unescape(c, ce, tmp, &len)) == NULL) return 0;
    if (kn - i < (size_t)len || memcmp(k + i, tmp, (size_t)len) != 0) return 0;
    i += (size_t)len;
  }
  return i == kn;
}

/* ---- numbers ----------------------------------------------------------- */

/* After the mantissa at p: past an exponent (`letter`, then an optional
** sign and at least one decimal digit), or p when there is none: strtod
** leaves an "e" without digits unread. */
static bytes skip_exponent(bytes p, bytes e, unsigned char letter) {
  bytes q;
  if (p < e && (*p | 0x20) == letter) {
    q = p + 1;
    if (q < e && (*q == '+' || *q == '-')) q++;
    if (q < e && is_digit(*q)) {
      while (q < e && is_digit(*q)) q++;
      p = q;
    }
  }
  return p;
}

/* End of the number starting at p, where cjson dispatches to strtod: a
** sign, a digit, or "inf"/"nan" in any case. Exactly the span glibc's
** strtod reads (C locale); NULL when it reads nothing. */
static bytes scan_number(bytes p, bytes e) {
  bytes q;
  size_t nd = 0;
  if (*p == '-' || *p == '+') p++;
  if (p >= e) return NULL;
  if (ieq(p, e, "inf", 3)) {
    p += 3;
    return ieq(p, e, "inity", 5) ? p + 5 : p;
  }
  if (ieq(p, e, "nan", 3)) {
    p += 3;
    if (p < e && *p == '(') {
      for (q = p + 1; q < e && (is_digit(*q) ||
                                (unsigned)(lower(*q) - 'a') < 26 ||
                                *q == '_'); q++) {}
      if (q < e && *q == ')') p = q + 1;
    }
    return p;
  }
  if (*p == '0' && e - p >= 2 && (p[1] | 0x20) == 'x') {
    /* hexadecimal: without a hex digit strtod reads the "0" alone */
    for (q = p + 2; q < e && hex_val(*q) >= 0; q++) nd++;
    if (q < e && *q == '.')
      for (q++; q < e && hex_val(*q) >= 0; q++) nd++;
    if (nd == 0) return p + 1;
    return skip_exponent(q, e, 'p');
  }
  for (q = p; q < e && is_digit(*q); q++) nd++;
  if (q < e && *q == '.')
    for (q++; q < e && is_digit(*q); q++) nd++;
  if (nd == 0) return NULL;
  return skip_exponent(q, e, 'e');
}

/* The common case exactly, without strtod: at most 19 digits, a value
** below 2^53 and a power of ten below 1e23 are each exact, so one IEEE
** multiply or divide rounds as strtod does (Clinger's fast path). Only
** where doubles are computed as doubles (not x87's wider registers). */
static int number_fast(bytes p, bytes e, double *out) {
#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD == 0
  static const double pow10[] = {
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12,
    1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22 };
  uint64_t m = 0;
  int neg = 0, nd = 0, k = 0, x = 0, xneg = 0, xd = 0;
  double d;
  if (e - p > 40) return 0;   /* keeps k small; longer texts gain nothing */
  if (*p == '-' || *p == '+') neg = *p++ == '-';
  for (; p < e && is_digit(*p); p++) {
    if (m == 0 && *p == '0') continue;
    if (++nd > 19) return 0;
    m = m * 10 + (*p - '0');
  }
  if (p < e && *p == '.') {
    for (p++; p < e && is_digit(*p); p++) {
      if (m == 0 && *p == '0') { k--; continue; }
      if (++nd > 19) return 0;
      m = m * 10 + (*p - '0');
      k--;
    }
  }
  if (p < e && (*p | 0x20) == 'e') {
    p++;
    if (p < e && (*p == '+' || *p == '-')) xneg = *p++ == '-';
    for (; p < e && is_digit(*p); p++) {
      if (++xd > 4) return 0;
      x = x * 10 + (*p - '0');
    }
    k += xneg ? -x : x;
  }
  if (p != e || m > (UINT64_C(1) << 53)) return 0;
  if (m == 0) k = 0;
  if (k < -22 || k > 22) return 0;
  d = (double)m;
  d = k < 0 ? d / pow10[-k] : d * pow10[k];
  *out = neg ? -d : d;
  return 1;
#else
  (void)p; (void)e; (void)out;
  return 0;
#endif
}

/* Append the decimal of v (v >= 0) to b at *at. */
static void put_long(char *b, size_t *at, long long v) {
  char tmp[24];
  int i = 0;
  do { tmp[i++] = (char)('0' + v % 10); v /= 10; } while (v > 0);
  while (i > 0) b[(*at)++] = tmp[--i];
}

/* A number text too long to copy, rewritten to one strtod reads as the
** same double: the first significant digits (more than any rounding
** decision needs: a halfway point between two doubles has at most 768
** significant decimal digits, 15 hex ones), then a '1' if anything
** non-zero was dropped (the shortened value then lies strictly between
** the same two halfway points as the real one), and the exponent
** adjusted, clamped far beyond where strtod saturates anyway. A NaN's
** payload is dropped (its sign is kept). Returns the length. */
#define KEEP_DEC 780
#define KEEP_HEX 30
#define REDUCED_MAX (KEEP_DEC + 48)

static size_t number_reduce(bytes p, bytes e, char *b) {
  size_t at = 0, kept = 0, keep;
  long long x = 0, scale = 0;   /* |scale| <= e - p: the text is in memory */
  int sticky = 0, seen = 0, hex, xneg = 0;
  if (*p == '-' || *p == '+') { if (*p == '-') b[at++] = '-'; p++; }
  if (lower(*p) == 'i' || lower(*p) == 'n') {
    memcpy(b + at, lower(*p) == 'i' ? "inf" : "nan", 3);
    return at + 3;
  }
  hex = *p == '0' && e - p >= 2 && (p[1] | 0x20) == 'x';
  if (hex) { memcpy(b + at, "0x", 2); at += 2; p += 2; }
  b[at++] = '0';
  b[at++] = '.';
  keep = hex ? KEEP_HEX : KEEP_DEC;
  /* value = 0.<kept digits> * base^scale */
  for (; p < e && (hex ? hex_val(*p) >= 0 : is_digit(*p)); p++) {
    if (!seen && *p == '0') continue;
    seen = 1;
    scale++;
    if (kept < keep) { b[at++] = (char)*p; kept++; }
    else if (*p != '0') sticky = 1;
  }
  if (p < e && *p == '.') {
    for (p++; p < e && (hex ? hex_val(*p) >= 0 : is_digit(*p)); p++) {
      if (!seen && *p == '0') { scale--; continue; }
      seen = 1;
      if (kept < keep) { b[at++] = (char)*p; kept++; }
      else if (*p != '0') sticky = 1;
    }
  }
  if (!seen) { b[at++] = '0'; return at; }
  if (sticky) b[at++] = '1';
  if (p < e && (*p | 0x20) == (hex ? 'p' : 'e')) {
    p++;
    if (p < e && (*p == '+' || *p == '-')) xneg = *p++ == '-';
    for (; p < e && is_digit(*p); p++)
      if (x < 1000000000000000LL) x = x * 10 + (*p - '0');
  }
  if (xneg) x = -x;
  x += hex ? 4 * scale : scale;
  if (x > 1000000) x = 1000000;
  if (x < -1000000) x = -1000000;
  b[at++] = hex ? 'p' : 'e';
  if (x < 0) { b[at++] = '-'; x = -x; }
  put_long(b, &at, x);
  return at;
}

int qv_json_number(const qv_json_val *v, double *out) {
  char b[REDUCED_MAX + 1];
  char *end;
  size_t n, i;
  char point;
  bytes p, e;
  if (v == NULL || v->type != QV_JSON_NUMBER || v->n == 0) return -1;
  p = (bytes)v->p;
  e = p + v->n;
  if (number_fast(p, e, out)) return 0;
  if (v->n < 128) {
    memcpy(b, v->p, v->n);
    n = v->n;
  } else {
    n = number_reduce(p, e, b);
  }
  b[n] = '\0';
  /* strtod reads the locale's decimal point; cjson's fpconv rewrites '.'
  ** to it the same way */
  point = localeconv()->decimal_point[0];
  if (point != '.' && point != '\0')
    for (i = 0; i < n; i++)
      if (b[i] == '.') b[i] = point;
  *out = strtod(b, &end);
  return 0;
}

/* ---- validation -------------------------------------------------------- */

static qv_json_type type_at(bytes p, bytes e) {
  switch (*p) {
  case '{': return QV_JSON_OBJECT;
  case '[': return QV_JSON_ARRAY;
  case '"': return QV_JSON_STRING;
  case 't': return QV_JSON_TRUE;
  case 'f': return QV_JSON_FALSE;
  case 'n': return (e - p >= 2 && p[1] == 'u') ? QV_JSON_NULL : QV_JSON_NUMBER;
  default: return QV_JSON_NUMBER;
  }
}

static void none(qv_json_val *v) {
  v->type = QV_JSON_NONE;
  v->p = NULL;
  v->n = 0;
}

/* One pass with an explicit stack of container kinds (a bit each), as
** cjson's grammar: a value, then at each level ',' or the closing bracket;
** an object member is a string, ':' and a value. */
int qv_json_parse(const char *s, size_t n, qv_json_val *root) {
  unsigned char object[QV_JSON_MAX_DEPTH / 8 + 1];
  bytes p = (bytes)s, e = p + n, start, q;
  int depth = 0;
  none(root);
  if (s == NULL) return -1;
  if (n >= 2 && (p[0] == 0 || p[1] == 0)) return -1;
  memset(object, 0, sizeof object);
  p = skip_ws(p, e);
  start = p;
value:
  if (p >= e) return -1;
  switch (*p) {
  case '{':
  case '[':
    if (depth == QV_JSON_MAX_DEPTH) return -1;
    if (*p == '{') object[depth >> 3] |= (unsigned char)(1u << (depth & 7));
    else object[depth >> 3] &= (unsigned char)~(1u << (depth & 7));
    depth++;
    q = p;
    p = skip_ws(p + 1, e);
    if (p < e && *p == (*q == '{' ? '}' : ']')) { p++; depth--; goto after; }
    if (*q == '[') goto value;
    goto key;
  case '"':
    if ((p = scan_string(p, e)) == NULL) return -1;
    goto after;
  case 't':
    if (e - p < 4 || memcmp(p, "true", 4) != 0) return -1;
    p += 4;
    goto after;
  case 'f':
    if (e - p < 5 || memcmp(p, "false", 5) != 0) return -1;
    p += 5;
    goto after;
  case 'n':
    if (e - p >= 4 && memcmp(p, "null", 4) == 0) { p += 4; goto after; }
    /* else "nan", a number */
    /* fall through */
  case 'N': case 'i': case 'I': case '-': case '+':
  case '0': case '1': case '2': case '3': case '4':
  case '5': case '6': case '7': case '8': case '9':
    if ((p = scan_number(p, e)) == NULL) return -1;
    goto after;
  default:
    return -1;
  }
key:
  if (p >= e || *p != '"' || (p = scan_string(p, e)) == NULL) return -1;
  p = skip_ws(p, e);
  if (p >= e || *p != ':') return -1;
  p = skip_ws(p + 1, e);
  goto value;
after:
  if (depth == 0) {
    q = skip_ws(p, e);
    if (q < e && *q != 0) return -1;
    root->type = type_at(start, e);
    root->p = (const char *)start;
    root->n = (size_t)(p - start);
    return 0;
  }
  p = skip_ws(p, e);
  if (p >= e) return -1;
  if (object[(depth - 1) >> 3] & (1u << ((depth - 1) & 7))) {
    if (*p == ',') { p = skip_ws(p + 1, e); goto key; }
    if (*p != '}') return -1;
  } else {
    if (*p == ',') { p = skip_ws(p + 1, e); goto value; }
    if (*p != ']') return -1;
  }
  p++;
  depth--;
  goto after;
}

/* ---- walking validated text -------------------------------------------- */

/* Past the value starting at p (or e): validated text, so a container
** ends where its depth returns to zero, a scalar at the first delimiter.
** Bounded by e whatever the bytes. */
static bytes skip_value(bytes p, bytes e) {
  int depth = 0;
  if (p >= e) return e;
  if (*p == '"') return skip_string(p, e);
  if (*p != '{' && *p != '[') {
    while (p < e && *p != ',' && *p != ']' && *p != '}' && *p != ':' &&
           *p != 0 && !is_ws(*p)) p++;
    return p;
  }
  while (p < e) {
    switch (*p) {
    case '"': p = skip_string(p, e); continue;
    case '{': case '[': depth++; break;
    case '}': case ']': if (--depth == 0) return p + 1; break;
    default: break;
    }
    p++;
  }
  return e;
}

int qv_json_iter_init(qv_json_iter *it, const qv_json_val *v) {
  it->p = it->end = NULL;
  it->object = 0;
  if (v == NULL || (v->type != QV_JSON_OBJECT && v->type != QV_JSON_ARRAY) ||
      v->n < 2)
    return -1;
  it->p = v->p + 1;
  it->end = v->p + v->n - 1;
  it->object = v->type == QV_JSON_OBJECT;
  return 0;
}

int qv_json_next(qv_json_iter *it, qv_json_val *key, qv_json_val *val) {
  bytes p = (bytes)it->p, e = (bytes)it->end, k = NULL, ke = NULL, v;
  if (key) none(key);
  none(val);
  if (p == NULL) return 0;
  p = skip_ws(p, e);
  if (p >= e) return 0;
  if (it->object) {
    if (*p != '"') return 0;
    k = p;
    ke = p = skip_string(p, e);
    p = skip_ws(p, e);
    if (p >= e || *p != ':') return 0;
    p = skip_ws(p + 1, e);
    if (p >= e) return 0;
  }
  v = p;
  p = skip_value(p, e);
  if (p == v) return 0;   /* not text qv_json_parse accepted */
  val->type = type_at(v, e);
  val->p = (const char *)v;
  val->n = (size_t)(p - v);
  if (key && k) {
    key->type = QV_JSON_STRING;
    key->p = (const char *)k;
    key->n = (size_t)(ke - k);
  }
  p = skip_ws(p, e);
  if (p < e && *p == ',') p++;
  it->p = (const char *)p;
  return 1;
}

/* 1 if key (a string value) names k[0..kn). */
static int key_is(const qv_json_val *key, const char *k, size_t kn) {
  bytes c = (bytes)key->p;
  if (key->n < 2) return 0;
  /* most keys differ in their first byte; an escape may not */
  if (kn > 0 && c[1] != (unsigned char)k[0] && c[1] != '\\') return 0;
  return content_eq(c + 1, c + key->n - 1, (const unsigned char *)k, kn);
}

/* The lookups take out == obj (the iterator copies what it needs first). */
int qv_json_member_n(const qv_json_val *obj, const char *key, size_t key_n,
                     qv_json_val *out) {
  qv_json_iter it;
  qv_json_val k, v;
  if (key == NULL || qv_json_iter_init(&it, obj) != 0 || !it.object) {
    none(out);
    return -1;
  }
  none(out);
  while (qv_json_next(&it, &k, &v))
    if (key_is(&k, key, key_n)) *out = v;
  return out->type == QV_JSON_NONE ? -1 : 0;
}

int qv_json_member(const qv_json_val *obj, const char *key, qv_json_val *out) {
  if (key == NULL) { none(out); return -1; }
  return qv_json_member_n(obj, key, strlen(key), out);
}

int qv_json_pick(const qv_json_val *obj, const char *const *keys, int nkeys,
                 qv_json_val *outs) {
  qv_json_iter it;
  qv_json_val k, v;
  size_t lens[16];
  int i, found = 0, ok = qv_json_iter_init(&it, obj) == 0 && it.object;
  for (i = 0; i < nkeys; i++) {
    none(&outs[i]);
    if (i < 16) lens[i] = keys[i] != NULL ? strlen(keys[i]) : 0;
  }
  if (!ok) return -1;
  while (qv_json_next(&it, &k, &v))
    for (i = 0; i < nkeys; i++)
      if (keys[i] != NULL &&
          key_is(&k, keys[i], i < 16 ? lens[i] : strlen(keys[i])))
        outs[i] = v;
  for (i = 0; i < nkeys; i++) found += outs[i].type != QV_JSON_NONE;
  return found;
}

/* Element i of arr. With whole 0 only out->type and out->p are right
** (out->n runs to the end of arr): enough to step into it, and its own
** end is not looked for. */
static int index_at(const qv_json_val *arr, int i, qv_json_val *out, int whole) {
  qv_json_iter it;
  bytes p, e;
  if (i < 0 || qv_json_iter_init(&it, arr) != 0 || it.object) {
    none(out);
    return -1;
  }
  while (i > 0 && qv_json_next(&it, NULL, out)) i--;
  if (i == 0) {
    p = skip_ws((bytes)it.p, (bytes)it.end);
    e = (bytes)it.end;
    if (p < e && (whole || (*p != '{' && *p != '['))) return qv_json_next(&it, NULL, out) ? 0 : -1;
    if (p < e) {
      out->type = type_at(p, e);
      out->p = (const char *)p;
      out->n = (size_t)(e - p);
      return 0;
    }
  }
  none(out);
  return -1;
}

int qv_json_index(const qv_json_val *arr, int i, qv_json_val *out) {
  return index_at(arr, i, out, 1);
}

int qv_json_get(const qv_json_val *v, const qv_json_step *path, int steps,
                qv_json_val *out) {
  qv_json_val at;
  int i;
  none(out);
  if (v == NULL || v->type == QV_JSON_NONE) return -1;
  at = *v;
  for (i = 0; i < steps; i++) {
    int r = path[i].key != NULL
              ? qv_json_member(&at, path[i].key, &at)
              : index_at(&at, path[i].index, &at, i == steps - 1);
    if (r != 0) return -1;
  }
  *out = at;
  return 0;
}

/* ---- strings out ------------------------------------------------------- */

int qv_json_string(const qv_json_val *v, qv_buf *out) {
  bytes p, e;
  unsigned char *d;
  if (v == NULL || v->type != QV_JSON_STRING || v->n < 2) return -1;
  p = (bytes)v->p + 1;
  e = (bytes)v->p + v->n - 1;
  /* unescaping never lengthens: \uXXXX is 6 bytes for at most 3, a pair
  ** 12 for 4; so one reservation, then plain writes */
  if (!qv_buf_reserve(out, (size_t)(e - p))) return 0;
  d = (unsigned char *)out->data + out->len;
  while (p < e) {
    bytes q = find_special(p, e);
    int len;
    memcpy(d, p, (size_t)(q - p));
    d += q - p;
    if (q >= e) break;
    if (*q == '"' || (p = unescape(q, e, d, &len)) == NULL) {
      out->data[out->len] = '\0';   /* not text qv_json_parse accepted */
      return -1;
    }
    d += len;
  }
  out->len = (size_t)((char *)d - out->data);
  out->data[out->len] = '\0';
  return 0;
}

int qv_json_eq(const qv_json_val *v, const char *s, size_t n) {
  if (v == NULL || v->type != QV_JSON_STRING || v->n < 2 || s == NULL)
    return 0;
  return content_eq((bytes)v->p + 1, (bytes)v->p + v->n - 1,
                    (const unsigned char *)s, n);
}
