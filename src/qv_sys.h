/*
** qv_sys: the few operating-system services the Lua layer needs and
** plain Lua lacks, for jobs that survive crashes (qwenvl.job) and for
** naming things by content: SHA-256 of a string or a file (qwenvl.sha256,
** qwenvl.sha256_file), fsync of a written file, and an advisory lock that
** the kernel drops when its process ends however it ends (qwenvl.fs).
** Builds on OpenSSL's libcrypto and POSIX.
*/
#ifndef QV_SYS_H
#define QV_SYS_H

#include "qv_compat.h"

#pragma GCC visibility push(hidden)

/* SHA-256 of p[0..n) as 64 lower-case hex digits and a NUL. */
void qv_sys_sha256_hex(const void *p, size_t n, char out[65]);

/* Push the qwenvl.fs table and register the sha256 functions into the
** table at idx (the module). */
void qv_sys_register(lua_State *L, int idx);

#pragma GCC visibility pop
#endif
