/*
** qv_scrub: keep secrets out of what goes back to the caller.
** A server or proxy may echo what it was sent (the Authorization header,
** credentials in a URL) into a body, a header or an error message; this
** unit finds each secret there, whether written as itself or in the
** escaped forms an encoder produces on the way (JSON "\u0073", "\/",
** URL "%73", mixed freely within one occurrence), and replaces it.
** Pure functions over bytes: no Lua, no allocation.
*/
#ifndef QV_SCRUB_H
#define QV_SCRUB_H

#include <stddef.h>

#pragma GCC visibility push(hidden)

#define QV_SCRUB_MAX 6          /* the key, credentials in two URLs */
#define QV_SCRUB_MIN 4          /* shorter strings are not looked for */
#define QV_SCRUB_MARK "[redacted]"

/* The secrets, copied into storage of their own (malloc'd: the owner
** calls qv_secrets_wipe, which also frees it). */
typedef struct qv_secrets {
  int count;
  size_t off[QV_SCRUB_MAX], n[QV_SCRUB_MAX];
  size_t used, cap;
  char *store;
  unsigned char first[256];     /* bytes an occurrence can start with */
} qv_secrets;

void qv_secrets_init(qv_secrets *sec);
void qv_secrets_wipe(qv_secrets *sec);   /* zeroes and frees the storage */

/* Add a secret (ignored when shorter than QV_SCRUB_MIN). Returns 0, or
** -1 when out of memory or full (the caller must not go on without it). */
int qv_secrets_add(qv_secrets *sec, const char *s, size_t n);

/* Add the user-info part ("user:password", and the password alone) of
** the URL u, if it has one. 0, or -1 as qv_secrets_add. */
int qv_secrets_add_url(qv_secrets *sec, const char *u, size_t n);

/* 1 if any secret occurs in s[0..n) in any form. */
int qv_scrub_found(const qv_secrets *sec, const char *s, size_t n);

/* Write s[0..n) through out() in pieces, each occurrence of a secret
** replaced by QV_SCRUB_MARK. */
typedef void (*qv_scrub_fn)(void *ud, const char *p, size_t n);
void qv_scrub(const qv_secrets *sec, const char *s, size_t n, qv_scrub_fn out,
              void *ud);

/* For text that arrives in pieces: the length of the longest suffix of
** s[0..n) that is a proper prefix of a secret as itself. Hold that much
** back until more text arrives (or the text ends). */
size_t qv_scrub_holdback(const qv_secrets *sec, const char *s, size_t n);

#pragma GCC visibility pop
#endif
