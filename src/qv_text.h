/*
** qv_text: checks on byte strings that come from callers and servers,
** shared by every unit that takes text: control characters, UTF-8
** validity and repair, trimming, ASCII case. Pure functions over bytes:
** no Lua, no allocation except into a caller's qv_buf.
*/
#ifndef QV_TEXT_H
#define QV_TEXT_H

#include <stddef.h>
#include "qv_buf.h"

#pragma GCC visibility push(hidden)

/* What counts as a forbidden character for qv_text_has_ctl. */
#define QV_CTL_SPACE 1    /* ' ' too (URLs, keys, model names) */

/* 1 if s[0..n) holds a C0 control character, DEL, or (with QV_CTL_SPACE)
** a space. NUL counts as a control character. */
int qv_text_has_ctl(const char *s, size_t n, int flags);

/* 1 if s[0..n) is well-formed UTF-8 (RFC 3629: no overlong forms, no
** surrogates, nothing above U+10FFFF). *bad (may be NULL) is set to the
** offset of the first bad byte. */
int qv_text_utf8_valid(const char *s, size_t n, size_t *bad);

/* Append s[0..n) to out with each ill-formed sequence replaced by U+FFFD
** (one per maximal ill-formed subpart, as the Unicode standard advises). */
void qv_text_utf8_repair(qv_buf *out, const char *s, size_t n);

/* Number of code points in well-formed UTF-8 s[0..n). */
size_t qv_text_utf8_len(const char *s, size_t n);

/* s[0..*n) without leading and trailing ASCII white space; *n updated. */
const char *qv_text_trim(const char *s, size_t *n);

/* 1 if s[0..n) equals the NUL-terminated lit, ASCII case ignored. */
int qv_text_ieq(const char *s, size_t n, const char *lit);

/* 1 if s[0..n) starts with the NUL-terminated lit, ASCII case ignored. */
int qv_text_iprefix(const char *s, size_t n, const char *lit);

/* Where a JSON value may sit in a model's answer, most likely first: the
** whole text (trimmed), the body of its first ``` fence, the span from
** the first '{' or '[' to the last matching '}' or ']'. Fills at most 3
** (offset, length) pairs and returns how many; the caller decodes each
** in turn and takes the first that parses. */
int qv_text_json_spans(const char *t, size_t n, size_t off[3], size_t len[3]);

#pragma GCC visibility pop
#endif
