/*
** qv_ini: read one key from one section of an INI file, the format of
** ~/.alibabacloud/credentials. "[section]" headers, "key = value" or
** "key=value" lines, ';' and '#' comments, optional quotes around the
** value, surrounding whitespace ignored, CRLF tolerated.
*/
#ifndef QV_INI_H
#define QV_INI_H

#include <stddef.h>
#include "qv_buf.h"

/* Search text for key in section. Returns 1 and sets out to the value,
** 0 when absent. The section match is exact; key match is exact. */
int qv_ini_find(const char *text, size_t n, const char *section,
                const char *key, qv_buf *out);

#endif
