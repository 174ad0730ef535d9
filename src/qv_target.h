/*
** qv_target: where a request goes and which key it carries, without Lua.
** Precedence, for each of key, base URL and region: the request's own
** value, then the process environment (DASHSCOPE_API_KEY,
** DASHSCOPE_BASE_URL, DASHSCOPE_REGION), then ./.env (the same names, as
** the Python script read them through python-dotenv), then, for the key,
** ~/.alibabacloud/credentials (profile ALIBABA_CLOUD_PROFILE, else
** ALICLOUD_PROFILE, else "default"; those two may come from .env too).
** The region defaults to cn. Builds on qv_file and qv_ini.
*/
#ifndef QV_TARGET_H
#define QV_TARGET_H

#include <stddef.h>
#include "qv_buf.h"

#pragma GCC visibility push(hidden)

#define QV_BASE_URL_MAX 2048

/* Known regions: names and compatible-mode base URLs, NULL-terminated. */
extern const char *const qv_regions[][2];

typedef struct qv_target {
  char base[QV_BASE_URL_MAX + 1];  /* no trailing '/' */
  size_t base_len;
  const char *region;      /* a known name, or "custom" */
  const char *key_source;  /* "request", "env", ".env", "credentials" or NULL */
} qv_target;

/* req_* are the request's values (NULL when absent). The key goes to key
** (the caller wipes it). Returns 0, or -1 with *field and the message
** (at most msg_size bytes) set. */
int qv_target_resolve(const char *req_key, size_t key_len,
                      const char *req_region, const char *req_base,
                      qv_buf *key, qv_target *t, const char **field,
                      char *msg, size_t msg_size);

/* The compatible-mode base URL of a region name, or NULL. */
const char *qv_target_region_url(const char *region);

#pragma GCC visibility pop
#endif
