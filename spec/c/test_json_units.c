/*
** Unit tests for qv_json: acceptance as Debian's lua-cjson 2.1.0 decides
** (the expectations below are what cjson.decode did with each text),
** values read by path, strings unescaped, numbers as cjson's doubles.
** Every text is handed over in a heap block of exactly its size, and
** every prefix of it too, so a read past n shows under valgrind (make
** units-valgrind) and ASan. One line per failure, then "N passed, N
** failed".
*/
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qv_buf.h"
#include "qv_json.h"

#include "check.h"


/* A heap copy of s[0..n) with nothing after it. */
static char *exact(const char *s, size_t n) { return check_copy(s, n); }

/* qv_json_parse on an exact copy; every prefix is parsed too (for the
** bounds, the answers do not matter). */
static int parse_n(const char *s, size_t n) {
  qv_json_val root;
  size_t k;
  int r;
  char *p;
  for (k = 0; k < n && n < 4096; k++) {
    p = exact(s, k);
    (void)qv_json_parse(p, k, &root);
    free(p);
  }
  p = exact(s, n);
  r = qv_json_parse(p, n, &root);
  free(p);
  if (r != 0 && (root.type != QV_JSON_NONE || root.p != NULL || root.n != 0))
    return 99;
  return r;
}

static int parse(const char *s) { return parse_n(s, strlen(s)); }

/* ---- acceptance: what cjson.decode accepts ------------------------------ */

static const char *const accepted[] = {
  "{}", "[]", "\"\"", "0", "-0", "1.5", "-1e-3", "1E+10", "true", "false",
  "null", " \t\r\n[ 1 , 2 ] \n", "{\"a\":{\"b\":[1,{\"c\":null}]}}",
  /* numbers as strtod reads them */
  "01", "00", "-01", "+1", "1.", "[1.]", "-.5", "+.5", "1.e5", "0x10",
  "[0x10]", "[0X1]", "[-0x10]", "[+0x1]", "[0x.8]", "[0x1p3]", "[0x1P-2]",
  "[0x1.8p1]", "[0x1.8]", "NaN", "nan", "nAn", "-nan", "[nan(123)]",
  "[nan()]", "[nAn(a_Z9)]", "[-nan(1)]", "Infinity", "-Infinity", "inf",
  "INF", "iNf", "[infinity]", "[-inf]", "[+inf]", "1e400", "-1e400",
  "1e-400", "[00.5]", "[9007199254740993]",
  /* raw control characters and non-UTF-8 bytes inside strings */
  "\"a\tb\"", "\"\x01\x1f\x7f\"", "\"\xff\xfe\xc3\x28\"",
  /* escapes */
  "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\u0000\"", "\"\\ud800\\udc00\"",
  "\"\\uDBFF\\uDFFF\"", "\"\\u00e9\\u20AC\"",
  /* duplicates, escaped keys */
  "{\"a\":1,\"a\":2}", "{\"a\":1,\"\\u0061\":null}",
};

static const char *const refused[] = {
  "", " ", "\t\n", "[", "]", "{", "}", "[1,]", "{\"a\":1,}", "[,]", "{,}",
  "[1,,2]", "[1 2]", "{1:2}", "{\"a\"}", "{\"a\":}", "{\"a\" 1}", "[1]]",
  "[[1]", "[1]x", "truex", "tru", "nul", "nullx", "True", "NULL", "FALSE",
  "\xef\xbb\xbf{}",                     /* a BOM */
  "\f1", "\v1", "/* c */ 1", "[1] // c",
  /* numbers strtod does not read, or only in part */
  "+", ".5", "[.5]", "1e", "[1e]", "[1e+]", "0x", "[0x]", "[0xg]",
  "[0x.p1]", "[-]", "[- 1]", "[--1]", "[+-1]", "[1_000]", "[1.5.5]",
  "[1e5.5]", "[nan(]", "[infin]", "[-null]", "[n]", "[i]", "[e5]",
  /* strings */
  "\"abc", "\"\\\"", "[\"\\x\"]", "[\"\\U0041\"]", "[\"\\u12\"]",
  "[\"\\u12g4\"]", "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800x\"",
  "\"\\ud800\\u0041\"", "\"\\udc00\\ud800\"", "\"\\ud800\\\"",
  "['a']", "{a:1}",
};

static void test_acceptance(void) {
  size_t i;
  for (i = 0; i < sizeof accepted / sizeof *accepted; i++) {
    int r = parse(accepted[i]);
    if (r != 0) printf("  refused: %s\n", accepted[i]);
    CHECK(r == 0);
  }
  for (i = 0; i < sizeof refused / sizeof *refused; i++) {
    int r = parse(refused[i]);
    if (r != -1) printf("  accepted: %s\n", refused[i]);
    CHECK(r == -1);
  }
}

/* NUL: cjson reads a C string. At the top level after the value it ends
** the text; anywhere else it is refused; s[0] or s[1] NUL is refused. */
static void test_nul(void) {
  CHECK(parse_n("1 \0 junk", 8) == 0);
  CHECK(parse_n(" 1\0", 3) == 0);
  CHECK(parse_n("{}\0{", 4) == 0);
  CHECK(parse_n("12\0", 3) == 0);
  CHECK(parse_n("1\0", 2) == -1);        /* cjson: "UTF-16 or UTF-32" */
  CHECK(parse_n("\0" "1", 2) == -1);
  CHECK(parse_n("\0", 1) == -1);
  CHECK(parse_n("[1,\0]", 5) == -1);
  CHECK(parse_n("[1\0]", 4) == -1);
  CHECK(parse_n("\"a\0b\"", 5) == -1);   /* inside a string */
  CHECK(parse_n("{\"a\":1\0}", 8) == -1);
  {
    qv_json_val root;
    CHECK(qv_json_parse("[1]  \0xyz", 9, &root) == 0);
    CHECK(root.type == QV_JSON_ARRAY && root.n == 3);
    CHECK(qv_json_parse(NULL, 0, &root) == -1 && root.type == QV_JSON_NONE);
  }
}

/* cjson's decode_max_depth, 1000: deeper arrays or objects are refused. */
static void test_depth(void) {
  char *s = malloc(6 * 1002 + 8);
  size_t n = 0;
  int i;
  if (s == NULL) exit(2);
  for (i = 0; i < 1000; i++) s[n++] = '[';
  for (i = 0; i < 1000; i++) s[n++] = ']';
  CHECK(parse_n(s, n) == 0);
  n = 0;
  for (i = 0; i < 1001; i++) s[n++] = '[';
  for (i = 0; i < 1001; i++) s[n++] = ']';
  CHECK(parse_n(s, n) == -1);
  n = 0;
  for (i = 0; i < 1000; i++) { memcpy(s + n, "{\"a\":", 5); n += 5; }
  s[n++] = '1';
  for (i = 0; i < 1000; i++) s[n++] = '}';
  CHECK(parse_n(s, n) == 0);
  n = 0;
  for (i = 0; i < 999; i++) s[n++] = '[';
  memcpy(s + n, "{}", 2); n += 2;        /* an empty one counts too */
  for (i = 0; i < 999; i++) s[n++] = ']';
  CHECK(parse_n(s, n) == 0);
  n = 0;
  for (i = 0; i < 1000; i++) s[n++] = '[';
  memcpy(s + n, "{}", 2); n += 2;
  for (i = 0; i < 1000; i++) s[n++] = ']';
  CHECK(parse_n(s, n) == -1);
  free(s);
}

/* ---- reading ------------------------------------------------------------ */

static const char chat[] =
  "{\"id\":\"chatcmpl-4f3e\",\"object\":\"chat.completion\","
  "\"created\":1774322504,\"model\":\"qwen3-vl-plus\","
  "\"choices\":[{\"index\":0,\"finish_reason\":\"stop\",\"logprobs\":null,"
  "\"message\":{\"role\":\"assistant\",\"content\":\"A red \\\"bike\\\".\\n"
  "caf\\u00e9 \\ud83d\\ude00\",\"reasoning_content\":\"look\"}}],"
  "\"usage\":{\"prompt_tokens\":2520,\"completion_tokens\":777,"
  "\"total_tokens\":3297},\"system_fingerprint\":null}";

static int raw_is(const qv_json_val *v, const char *want) {
  return v->n == strlen(want) && memcmp(v->p, want, v->n) == 0;
}

static int string_is(const qv_json_val *v, const char *want, size_t n) {
  qv_buf b;
  int ok;
  qv_buf_init(&b);
  ok = qv_json_string(v, &b) == 0 && !b.oom && b.len == n &&
       (n == 0 || memcmp(b.data, want, n) == 0);
  qv_buf_free(&b);
  return ok;
}

static void test_paths(void) {
  char *text = exact(chat, sizeof chat - 1);
  qv_json_val root, v, outs[4];
  const qv_json_step content[] = { { "choices", 0 }, { NULL, 0 },
                                   { "message", 0 }, { "content", 0 } };
  const qv_json_step past[] = { { "choices", 0 }, { NULL, 1 } };
  const qv_json_step through[] = { { "model", 0 }, { "x", 0 } };
  const qv_json_step index_obj[] = { { "usage", 0 }, { NULL, 0 } };
  const char *const keys[] = { "model", "usage", "nope", "id" };
  double d;
  CHECK(qv_json_parse(text, sizeof chat - 1, &root) == 0);
  CHECK(root.type == QV_JSON_OBJECT && root.p == text && root.n == sizeof chat - 1);
  CHECK(qv_json_get(&root, content, 4, &v) == 0 && v.type == QV_JSON_STRING);
  CHECK(string_is(&v, "A red \"bike\".\ncaf\xc3\xa9 \xf0\x9f\x98\x80", 24));
  CHECK(qv_json_get(&root, content, 0, &v) == 0 && v.p == root.p);
  CHECK(qv_json_get(&root, past, 2, &v) == -1 && v.type == QV_JSON_NONE);
  CHECK(qv_json_get(&root, through, 2, &v) == -1 && v.type == QV_JSON_NONE);
  CHECK(qv_json_get(&root, index_obj, 2, &v) == -1);
  CHECK(qv_json_member(&root, "model", &v) == 0 && raw_is(&v, "\"qwen3-vl-plus\""));
  CHECK(qv_json_eq(&v, "qwen3-vl-plus", 13) && !qv_json_eq(&v, "qwen3-vl-plu", 12));
  CHECK(qv_json_member(&root, "usage", &v) == 0 && v.type == QV_JSON_OBJECT);
  CHECK(raw_is(&v, "{\"prompt_tokens\":2520,\"completion_tokens\":777,"
                   "\"total_tokens\":3297}"));
  CHECK(qv_json_member(&v, "total_tokens", &v) == 0 && qv_json_number(&v, &d) == 0 &&
        d == 3297.0);
  CHECK(qv_json_member(&root, "system_fingerprint", &v) == 0 && v.type == QV_JSON_NULL);
  CHECK(qv_json_member(&root, "missing", &v) == -1 && v.type == QV_JSON_NONE);
  CHECK(qv_json_member(&root, "", &v) == -1);
  CHECK(qv_json_member(&root, "mode", &v) == -1);      /* a prefix is not a key */
  CHECK(qv_json_member(&root, "models", &v) == -1);
  CHECK(qv_json_index(&root, 0, &v) == -1);             /* not an array */
  CHECK(qv_json_pick(&root, keys, 4, outs) == 3);
  CHECK(raw_is(&outs[0], "\"qwen3-vl-plus\"") && outs[1].type == QV_JSON_OBJECT &&
        outs[2].type == QV_JSON_NONE && raw_is(&outs[3], "\"chatcmpl-4f3e\""));
  CHECK(qv_json_member(&root, "choices", &v) == 0 && qv_json_index(&v, 0, &v) == 0 &&
        qv_json_member(&v, "finish_reason", &v) == 0 && qv_json_eq(&v, "stop", 4));
  /* a scalar is neither object nor array */
  CHECK(qv_json_member(&v, "x", outs) == -1 && qv_json_index(&v, 0, outs) == -1 &&
        qv_json_pick(&v, keys, 2, outs) == -1 && outs[0].type == QV_JSON_NONE);
  free(text);
}

static void test_members(void) {
  static const char t[] =
    "{\"a\":1,\"b\":[10,20,30],\"a\":{\"x\":true},\"\\u0062\":\"second b\","
    "\"n\\u0000ul\":false,\"\":\"empty\",\"esc\\\"q\":[],\"\\/\":null}";
  char *text = exact(t, sizeof t - 1);
  qv_json_val root, v, k;
  qv_json_iter it;
  int count = 0;
  CHECK(qv_json_parse(text, sizeof t - 1, &root) == 0);
  /* the last duplicate wins, also when the names differ only in escapes */
  CHECK(qv_json_member(&root, "a", &v) == 0 && raw_is(&v, "{\"x\":true}"));
  CHECK(qv_json_member(&root, "b", &v) == 0 && raw_is(&v, "\"second b\""));
  CHECK(qv_json_member_n(&root, "n\0ul", 4, &v) == 0 && v.type == QV_JSON_FALSE);
  CHECK(qv_json_member(&root, "n", &v) == -1);
  CHECK(qv_json_member(&root, "", &v) == 0 && raw_is(&v, "\"empty\""));
  CHECK(qv_json_member(&root, "esc\"q", &v) == 0 && v.type == QV_JSON_ARRAY && v.n == 2);
  CHECK(qv_json_member(&root, "/", &v) == 0 && v.type == QV_JSON_NULL);
  CHECK(qv_json_member(&root, "\\/", &v) == -1);
  CHECK(qv_json_member(NULL, "a", &v) == -1 && qv_json_member(&root, NULL, &v) == -1);
  /* the walk sees every member, duplicates included */
  CHECK(qv_json_iter_init(&it, &root) == 0);
  while (qv_json_next(&it, &k, &v)) {
    CHECK(k.type == QV_JSON_STRING);
    count++;
  }
  CHECK(count == 8);
  CHECK(qv_json_next(&it, &k, &v) == 0 && v.type == QV_JSON_NONE);
  /* arrays */
  CHECK(qv_json_parse(text, sizeof t - 1, &root) == 0);
  {
    const qv_json_step first_b[] = { { "a", 0 } };
    CHECK(qv_json_get(&root, first_b, 1, &v) == 0 && v.type == QV_JSON_OBJECT);
  }
  free(text);
  text = exact("[10, \"x\" ,[1,[2]],{}, -1e2 ]", 28);
  CHECK(qv_json_parse(text, 28, &root) == 0);
  CHECK(qv_json_index(&root, 0, &v) == 0 && raw_is(&v, "10"));
  CHECK(qv_json_index(&root, 1, &v) == 0 && raw_is(&v, "\"x\""));
  CHECK(qv_json_index(&root, 2, &v) == 0 && raw_is(&v, "[1,[2]]"));
  CHECK(qv_json_index(&root, 3, &v) == 0 && raw_is(&v, "{}") && v.type == QV_JSON_OBJECT);
  CHECK(qv_json_index(&root, 4, &v) == 0 && raw_is(&v, "-1e2"));
  CHECK(qv_json_index(&root, 5, &v) == -1 && v.type == QV_JSON_NONE);
  CHECK(qv_json_index(&root, -1, &v) == -1);
  CHECK(qv_json_iter_init(&it, &root) == 0);
  count = 0;
  while (qv_json_next(&it, &k, &v)) { CHECK(k.type == QV_JSON_NONE); count++; }
  CHECK(count == 5);
  CHECK(qv_json_index(&root, 4, &v) == 0 && qv_json_iter_init(&it, &v) == -1);
  free(text);
  text = exact("[]", 2);
  CHECK(qv_json_parse(text, 2, &root) == 0 && qv_json_index(&root, 0, &v) == -1);
  CHECK(qv_json_iter_init(&it, &root) == 0 && qv_json_next(&it, NULL, &v) == 0);
  free(text);
  /* scalars at the top, with their raw text */
  text = exact(" \"s\" ", 5);
  CHECK(qv_json_parse(text, 5, &root) == 0 && root.type == QV_JSON_STRING &&
        raw_is(&root, "\"s\""));
  free(text);
  text = exact("nan", 3);
  CHECK(qv_json_parse(text, 3, &root) == 0 && root.type == QV_JSON_NUMBER);
  free(text);
  text = exact("null", 4);
  CHECK(qv_json_parse(text, 4, &root) == 0 && root.type == QV_JSON_NULL);
  free(text);
}

/* qv_json_get steps into an element without looking for its end first:
** what it finds inside must still stop at that element's end. */
static void test_get_through_arrays(void) {
  static const char t[] =
    "[{\"a\":1},{\"a\":2,\"b\":[[3,4],[5]]},{\"a\":3,\"c\":{\"a\":9}},[],[7]]";
  const qv_json_step a1[] = { { NULL, 1 }, { "a", 0 } };
  const qv_json_step c0[] = { { NULL, 0 }, { "c", 0 } };
  const qv_json_step b10[] = { { NULL, 1 }, { "b", 0 }, { NULL, 1 }, { NULL, 0 } };
  const qv_json_step b11[] = { { NULL, 1 }, { "b", 0 }, { NULL, 1 }, { NULL, 1 } };
  const qv_json_step b0[] = { { NULL, 1 }, { "b", 0 }, { NULL, 0 } };
  const qv_json_step e0[] = { { NULL, 3 }, { NULL, 0 } };
  const qv_json_step f0[] = { { NULL, 4 }, { NULL, 0 } };
  const qv_json_step f1[] = { { NULL, 4 }, { NULL, 1 } };
  const qv_json_step ca[] = { { NULL, 2 }, { "c", 0 }, { "a", 0 } };
  const qv_json_step b[] = { { NULL, 1 } };
  char *text = exact(t, sizeof t - 1);
  qv_json_val root, v;
  CHECK(qv_json_parse(text, sizeof t - 1, &root) == 0);
  CHECK(qv_json_get(&root, a1, 2, &v) == 0 && raw_is(&v, "2"));
  CHECK(qv_json_get(&root, c0, 2, &v) == -1);        /* "c" is in a later element */
  CHECK(qv_json_get(&root, b10, 4, &v) == 0 && raw_is(&v, "5"));
  CHECK(qv_json_get(&root, b11, 4, &v) == -1);
  CHECK(qv_json_get(&root, b0, 3, &v) == 0 && raw_is(&v, "[3,4]"));
  CHECK(qv_json_get(&root, e0, 2, &v) == -1);
  CHECK(qv_json_get(&root, f0, 2, &v) == 0 && raw_is(&v, "7"));
  CHECK(qv_json_get(&root, f1, 2, &v) == -1);
  CHECK(qv_json_get(&root, ca, 3, &v) == 0 && raw_is(&v, "9"));
  CHECK(qv_json_get(&root, b, 1, &v) == 0 && raw_is(&v, "{\"a\":2,\"b\":[[3,4],[5]]}"));
  free(text);
}

/* Values qv_json_parse never made (cut short, or not JSON): the readers
** find nothing or something, but stay inside the bytes and end. */
static void test_not_validated(void) {
  static const char *const texts[] = { "{\"a\":", "{\"a\"", "[1,", "[\"\\", "\"\\u12",
                                       "\"\\ud800\\u", "{}}", "[}", "{\"a\":}", "x" };
  size_t i;
  for (i = 0; i < sizeof texts / sizeof *texts; i++) {
    size_t n = strlen(texts[i]);
    char *text = exact(texts[i], n);
    qv_json_val g, v, k;
    qv_json_iter it;
    qv_buf b;
    double d;
    int steps = 0;
    qv_buf_init(&b);
    g.p = text;
    g.n = n;
    g.type = QV_JSON_OBJECT;
    (void)qv_json_member(&g, "a", &v);
    if (qv_json_iter_init(&it, &g) == 0)
      while (qv_json_next(&it, &k, &v) && steps < 100) steps++;
    g.type = QV_JSON_ARRAY;
    (void)qv_json_index(&g, 2, &v);
    if (qv_json_iter_init(&it, &g) == 0)
      while (qv_json_next(&it, &k, &v) && steps < 200) steps++;
    CHECK(steps < 20);
    g.type = QV_JSON_STRING;
    (void)qv_json_string(&g, &b);
    (void)qv_json_eq(&g, "a", 1);
    g.type = QV_JSON_NUMBER;
    (void)qv_json_number(&g, &d);
    qv_buf_free(&b);
    free(text);
  }
}

static int unescapes_to(const char *json, const char *want, size_t n) {
  size_t jn = strlen(json);
  char *text = exact(json, jn);
  qv_json_val root;
  int ok = qv_json_parse(text, jn, &root) == 0 && string_is(&root, want, n) &&
           qv_json_eq(&root, want, n) &&
           (n == 0 || !qv_json_eq(&root, want, n - 1));
  free(text);
  return ok;
}

static void test_strings(void) {
  qv_buf b;
  qv_json_val v;
  CHECK(unescapes_to("\"\"", "", 0));
  CHECK(unescapes_to("\"plain\"", "plain", 5));
  CHECK(unescapes_to("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\/\b\f\n\r\t", 8));
  CHECK(unescapes_to("\"a\\u0000b\"", "a\0b", 3));
  CHECK(unescapes_to("\"\\u007f\\u0080\\u07FF\\u0800\\uFFFF\"",
                     "\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf", 11));
  CHECK(unescapes_to("\"\\ud800\\udc00\\udbff\\udfff\"",
                     "\xf0\x90\x80\x80\xf4\x8f\xbf\xbf", 8));
  /* raw bytes pass through as they are: control characters, bad UTF-8 */
  CHECK(unescapes_to("\"a\tb\x01\xff\xc3(\"", "a\tb\x01\xff\xc3(", 7));
  /* long runs, escapes at the ends */
  CHECK(unescapes_to("\"\\nabcdefghijklmnopqrstuvwxyz0123456789\\n\"",
                     "\nabcdefghijklmnopqrstuvwxyz0123456789\n", 38));
  /* appends, and refuses what is not a string */
  qv_buf_init(&b);
  qv_buf_adds(&b, "x");
  CHECK(qv_json_parse("\"y\"", 3, &v) == 0 && qv_json_string(&v, &b) == 0 &&
        b.len == 2 && strcmp(b.data, "xy") == 0);
  CHECK(qv_json_parse("12", 2, &v) == 0 && qv_json_string(&v, &b) == -1 &&
        b.len == 2 && !qv_json_eq(&v, "12", 2));
  qv_buf_free(&b);
}

/* ---- numbers: cjson's doubles ------------------------------------------- */

static int same_double(double a, double b) {
  return isnan(b) ? isnan(a) && !signbit(a) == !signbit(b)
                  : memcmp(&a, &b, sizeof a) == 0;
}

/* json parses to a number that is want, and glibc's strtod of the whole
** text (what cjson calls) too. */
static int number_is(const char *json, double want) {
  size_t jn = strlen(json);
  char *text = exact(json, jn), *end;
  qv_json_val root;
  double d = 0, ref = strtod(json, &end);
  int ok = qv_json_parse(text, jn, &root) == 0 && root.type == QV_JSON_NUMBER &&
           qv_json_number(&root, &d) == 0 && same_double(d, want) &&
           same_double(ref, want) && end == json + jn;
  if (!ok) printf("  %.60s: got %.17g, strtod %.17g\n", json, d, ref);
  free(text);
  return ok;
}

/* As number_is, without strtod's opinion (under another locale). */
static int number_is_loose(const char *json, double want) {
  size_t jn = strlen(json);
  char *text = exact(json, jn);
  qv_json_val root;
  double d = 0;
  int ok = qv_json_parse(text, jn, &root) == 0 && qv_json_number(&root, &d) == 0 &&
           same_double(d, want);
  if (!ok) printf("  %.60s: got %.17g\n", json, d);
  free(text);
  return ok;
}

/* "<digits>" followed by zeros up to about len characters, then tail. */
static const char *padded(char *buf, const char *head, size_t zeros, const char *tail) {
  size_t n = strlen(head);
  memcpy(buf, head, n);
  memset(buf + n, '0', zeros);
  strcpy(buf + n + zeros, tail);
  return buf;
}

static const char half_min_denormal[] =  /* 2^-1075, exactly */
  "2.47032822920623272088284396434110686182529901307162382212792841"
  "2503377536351043759326499181808179961898982823477228588654633283"
  "5517796989819938739800539093906315035659515570226392290858392449"
  "1051844359318028499365361525003193704576782492193656236698636584"
  "8075700158576926990370631192827955855133292783433840935197801553"
  "1246597263579574622766465272827220056374006485499977096599470454"
  "0208281662262378573934507363390079677619305775067401763246736009"
  "6895134053553745851666113422376667860416215968046191446729184030"
  "0530057530849048765391711386591646239524912623653881879636239373"
  "2804238910186723484976682350898633885879256283027559956575244555"
  "0725518931369083625477918694866799496832404970582102851318545139"
  "6213837722826145437693412532098591327667236328125";

static void test_numbers(void) {
  char big[4096];
  qv_json_val v;
  double d;
  CHECK(number_is("0", 0.0));
  CHECK(number_is("-0", -0.0));
  CHECK(number_is("-0.0e7", -0.0));
  CHECK(number_is("1774322504", 1774322504.0));
  CHECK(number_is("0.1", 0.1));
  CHECK(number_is("-1e-3", -1e-3));
  CHECK(number_is("1.5E+10", 1.5e10));
  CHECK(number_is("123456789012345678", 123456789012345678.0));
  CHECK(number_is("9007199254740993", 9007199254740992.0));   /* ties to even */
  CHECK(number_is("9007199254740995", 9007199254740996.0));
  CHECK(number_is("1e22", 1e22));
  CHECK(number_is("1e23", 1e23));
  CHECK(number_is("2.2250738585072011e-308", 2.2250738585072011e-308));
  CHECK(number_is("4.9e-324", 4.9e-324));
  CHECK(number_is("2e-324", 0.0));
  CHECK(number_is("1.7976931348623157e308", 1.7976931348623157e308));
  CHECK(number_is("1e400", HUGE_VAL));
  CHECK(number_is("-1e400", -HUGE_VAL));
  CHECK(number_is("1e-400", 0.0));
  CHECK(number_is("01", 1.0));
  CHECK(number_is("+1", 1.0));
  CHECK(number_is("1.", 1.0));
  CHECK(number_is("-.5", -0.5));
  CHECK(number_is("0x1F", 31.0));
  CHECK(number_is("-0X10", -16.0));
  CHECK(number_is("0x1.8p1", 3.0));
  CHECK(number_is("0x.8", 0.5));
  CHECK(number_is("Infinity", HUGE_VAL));
  CHECK(number_is("-inf", -HUGE_VAL));
  CHECK(number_is("NaN", NAN));
  CHECK(number_is("-nan", -NAN));
  CHECK(number_is("nan(123)", NAN));
  /* past 127 bytes the text is shortened before strtod: rounding must
  ** not change. 2^53 + 1 is a tie (to even, 2^53); anything after it,
  ** however far, breaks the tie upwards. */
  CHECK(number_is(padded(big, "9007199254740993", 250, ""), 9007199254740993e250));
  CHECK(number_is(padded(big, "9007199254740993.", 300, ""), 9007199254740992.0));
  CHECK(number_is(padded(big, "9007199254740993.", 3000, "1"), 9007199254740994.0));
  CHECK(number_is(padded(big, "0.", 3000, "1e3001"), 1.0));
  CHECK(number_is(padded(big, "-0.", 200, "0"), -0.0));
  CHECK(number_is(padded(big, "1", 400, "e-400"), 1.0));
  CHECK(number_is(padded(big, "1", 400, "e99999999999999999999"), HUGE_VAL));
  CHECK(number_is(padded(big, "0.", 400, "1e-99999999999999999999"), 0.0));
  CHECK(number_is(padded(big, "0x1", 200, "p-800"), ldexp(1.0, 0)));
  CHECK(number_is(padded(big, "0x1.", 200, "1"), 1.0));
  CHECK(number_is(padded(big, "0x1.00000000000008", 200, "1"), 1.0 + ldexp(1.0, -52)));
  CHECK(number_is(padded(big, "0x1.00000000000008", 200, ""), 1.0));
  CHECK(number_is(padded(big, "-nan(", 200, ")"), -NAN));
  /* 2^-1075, halfway between 0 and the least denormal, has 752
  ** significant digits: the tie goes to 0 (even); a 1 after the 780
  ** digits kept breaks it upwards, a 9 at digit 752 as well */
  CHECK(number_is(padded(big, half_min_denormal, 0, "e-324"), 0.0));
  CHECK(number_is(padded(big, half_min_denormal, 100, "1e-324"), 4.9406564584124654e-324));
  strcpy(big, half_min_denormal);
  big[strlen(big) - 1] = '4';
  CHECK(number_is(padded(big + 1000, big, 100, "9e-324"), 0.0));
  CHECK(qv_json_parse("\"1\"", 3, &v) == 0 && qv_json_number(&v, &d) == -1);
  CHECK(qv_json_number(NULL, &d) == -1);
}

/* strtod reads the locale's decimal point; qv_json_number must not care.
** Needs a locale with a decimal comma (skipped when none is installed;
** LOCPATH may point at one made with localedef). */
static void test_locale(void) {
  static const char *const names[] = { "de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8",
                                       "ru_RU.UTF-8", NULL };
  int i;
  for (i = 0; names[i] != NULL; i++)
    if (setlocale(LC_NUMERIC, names[i]) != NULL &&
        localeconv()->decimal_point[0] == ',')
      break;
  if (names[i] == NULL) {
    printf("note: no locale with a decimal comma, test_locale skipped\n");
    setlocale(LC_NUMERIC, "C");
    return;
  }
  CHECK(number_is_loose("1.5e-30", 1.5e-30));        /* strtod's path */
  CHECK(number_is_loose("0.1", 0.1));                /* the fast path */
  CHECK(number_is_loose("0x1.8p1", 3.0));
  {
    char big[512];
    CHECK(number_is_loose(padded(big, "2.5", 300, "e-1"), 0.25));
  }
  setlocale(LC_NUMERIC, "C");
}

int main(void) {
  test_acceptance();
  test_nul();
  test_depth();
  test_paths();
  test_members();
  test_get_through_arrays();
  test_not_validated();
  test_strings();
  test_numbers();
  test_locale();
  return check_summary(NULL);
}
