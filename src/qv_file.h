/*
** qv_file: read a whole local file (an image, the credentials file, a
** .env file) into memory, safely: only regular files (a FIFO or device
** never blocks or streams forever), a size limit checked before reading,
** and a file that changes while it is read is refused rather than read
** half old, half new. No Lua.
*/
#ifndef QV_FILE_H
#define QV_FILE_H

#include <stddef.h>
#include "qv_buf.h"

#pragma GCC visibility push(hidden)

/* Append the file at path to out (at most max bytes). Returns 0, or -1
** with a static *why ("not a regular file ...", "file is empty", "file is
** larger than the limit", "file changed while being read", strerror
** text). */
int qv_file_read(const char *path, size_t max, qv_buf *out, const char **why);

#pragma GCC visibility pop
#endif
