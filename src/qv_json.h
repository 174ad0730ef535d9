/*
** qv_json: read fields out of JSON text without building anything. One
** pass validates the text; lookups then walk it by skipping values, and
** only what the caller asks for is decoded: a string's unescaped bytes go
** into the caller's qv_buf, a number through strtod. Builds on qv_buf
** alone: no Lua, no allocation of its own, no globals. The text need not
** be NUL-terminated, and no byte at or past s + n is ever read.
**
** What it accepts and what it yields is what Debian's lua-cjson 2.1.0
** (cjson.decode with its default settings) does with the same bytes, so
** a body read here reads as it would through cjson. Beyond RFC 8259:
**  - numbers are what glibc strtod reads, starting with '-', '+', a digit,
**    or (unsigned) "inf"/"nan" in any case: "+1", "01", "1.", "-.5",
**    "0x1F", "0x1.8p3", "Infinity", "-nan", "nan(abc)", "1e999" (HUGE_VAL);
**    ".5", "1e", "0x" and "- 1" are refused as cjson refuses them;
**  - control characters (TAB, LF, ...) stand raw inside strings, and bytes
**    that are not UTF-8 pass through unchanged;
**  - cjson reads a C string, so a NUL byte ends the text: after the value
**    and its trailing white space that is the end ("{}\0anything" is {}),
**    anywhere else (a string included) the text is refused, and so it is
**    when s[0] or s[1] is NUL (cjson's "does not support UTF-16 or UTF-32"
**    check, n >= 2).
** As RFC 8259 and cjson: no trailing commas, no comments, no BOM, white
** space is only space, TAB, LF and CR, true/false/null are lowercase, and
** a lone or reversed \u surrogate is refused (a pair becomes one 4-byte
** UTF-8 sequence; \u0000 becomes a NUL byte). Arrays and objects nest at
** most QV_JSON_MAX_DEPTH deep (cjson's decode_max_depth default): deeper
** text is refused. A duplicate key: the last one counts.
*/
#ifndef QV_JSON_H
#define QV_JSON_H

#include <stddef.h>
#include "qv_buf.h"

#pragma GCC visibility push(hidden)

#define QV_JSON_MAX_DEPTH 1000

typedef enum {
  QV_JSON_NONE,       /* not found */
  QV_JSON_OBJECT, QV_JSON_ARRAY, QV_JSON_STRING, QV_JSON_NUMBER,
  QV_JSON_TRUE, QV_JSON_FALSE, QV_JSON_NULL
} qv_json_type;

/* A value inside validated text: its type and its raw text p[0..n), from
** its first byte to its last (quotes and brackets included), so that it
** can be handed to cjson.decode as it is. Values come only from
** qv_json_parse and the lookups below; they point into the caller's text,
** which must outlive them. */
typedef struct qv_json_val {
  qv_json_type type;
  const char *p;
  size_t n;
} qv_json_val;

/* One step of a path: key != NULL names an object member (NUL-terminated,
** compared with the member's unescaped name), key == NULL an array
** element by index, counted from 0. */
typedef struct qv_json_step {
  const char *key;
  int index;
} qv_json_step;

/* 0 when s[0..n) is exactly one JSON value as described above (white
** space around it allowed), with *root set to it; -1 otherwise, with
** root->type QV_JSON_NONE. The only pass that looks at every byte. */
int qv_json_parse(const char *s, size_t n, qv_json_val *root);

/* Follow path[0..steps) from v. 0 and *out set when every step finds its
** member or element; -1 (out->type QV_JSON_NONE) when one is missing or
** the value on the way is not an object (key) or array (index). steps 0
** gives v itself. */
int qv_json_get(const qv_json_val *v, const qv_json_step *path, int steps,
                qv_json_val *out);

/* Shorthands for one step. qv_json_member_n names the member by
** key[0..key_n), so a name holding NUL can be looked up too. A member
** scans the whole object (the last duplicate wins). */
int qv_json_member(const qv_json_val *obj, const char *key, qv_json_val *out);
int qv_json_member_n(const qv_json_val *obj, const char *key, size_t key_n,
                     qv_json_val *out);
int qv_json_index(const qv_json_val *arr, int i, qv_json_val *out);

/* Several members of obj in one pass: outs[i] is keys[i]'s value, or has
** type QV_JSON_NONE. Returns how many keys were found, -1 if obj is not an
** object (all outs NONE). Cheaper than nkeys qv_json_member calls. */
int qv_json_pick(const qv_json_val *obj, const char *const *keys, int nkeys,
                 qv_json_val *outs);

/* Walk the members of an object or the elements of an array in text
** order (duplicate keys each come up). qv_json_iter_init returns -1 if v
** is neither. qv_json_next returns 1 with *val (and for an object *key,
** a QV_JSON_STRING; for an array key->type is QV_JSON_NONE; key may be
** NULL) set, 0 at the end. */
typedef struct qv_json_iter {
  const char *p;      /* next member or element (or white space before) */
  const char *end;    /* the closing bracket */
  int object;
} qv_json_iter;

int qv_json_iter_init(qv_json_iter *it, const qv_json_val *v);
int qv_json_next(qv_json_iter *it, qv_json_val *key, qv_json_val *val);

/* Append the unescaped bytes of string value v to out (qv_buf's sticky
** oom: check out->oom once at the end). -1 if v is not a string. */
int qv_json_string(const qv_json_val *v, qv_buf *out);

/* 1 if v is a string whose unescaped bytes are exactly s[0..n), else 0.
** No allocation. */
int qv_json_eq(const qv_json_val *v, const char *s, size_t n);

/* The double cjson.decode yields for number value v: what glibc strtod
** reads from its text, with '.' as the decimal point whatever the locale
** (short decimals are converted exactly without strtod; a text of 128
** bytes or more is shortened first, to the same double). -1 if v is not
** a number. */
int qv_json_number(const qv_json_val *v, double *out);

#pragma GCC visibility pop
#endif
