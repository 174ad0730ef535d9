/*
** qv_ini: read one key from the two small configuration formats qwenvl
** looks at. INI, the format of ~/.alibabacloud/credentials: "[section]"
** headers, "key = value" lines, ';' and '#' comments, optional quotes
** around the value. And .env, as python-dotenv (which the Python script
** this project replaces relied on) reads it: "KEY=value" lines, optional
** "export ", single quotes literal, double quotes with \n \" \\ escapes,
** an unquoted value ending at " #". Surrounding whitespace is ignored
** and CRLF tolerated in both. Pure functions over text.
*/
#ifndef QV_INI_H
#define QV_INI_H

#include <stddef.h>
#include "qv_buf.h"

#pragma GCC visibility push(hidden)

/* Search text for key in section. Returns 1 and sets out to the value,
** 0 when absent. The section match is exact; key match is exact. */
int qv_ini_find(const char *text, size_t n, const char *section,
                const char *key, qv_buf *out);

/* Search .env text for key. Returns 1 and sets out to the value of the
** last assignment (later lines win, as in python-dotenv), 0 when absent. */
int qv_dotenv_find(const char *text, size_t n, const char *key, qv_buf *out);

#pragma GCC visibility pop
#endif
