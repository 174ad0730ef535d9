/*
** qv_target: where a request goes and which key it carries, without Lua.
** Precedence: the request's own values, then the environment
** (DASHSCOPE_API_KEY, DASHSCOPE_BASE_URL, DASHSCOPE_REGION), then, for the
** key, ~/.alibabacloud/credentials (profile ALIBABA_CLOUD_PROFILE, else
** ALICLOUD_PROFILE, else "default"); the region defaults to cn.
*/
#ifndef QV_TARGET_H
#define QV_TARGET_H

#include <stddef.h>
#include "qv_buf.h"

/* Known regions: names and compatible-mode base URLs, NULL-terminated. */
extern const char *const qv_regions[][2];

typedef struct qv_target {
  const char *base;        /* not NUL-terminated at base_len: trailing '/' cut */
  size_t base_len;
  const char *region;      /* a known name, or "custom" */
  const char *key_source;  /* "request", "env", "credentials" or NULL */
} qv_target;

/* req_* are the request's values (NULL when absent). The key goes to key.
** Returns 0, or -1 with *field and *why set (static or fmt into msg). */
int qv_target_resolve(const char *req_key, size_t key_len,
                      const char *req_region, const char *req_base,
                      qv_buf *key, qv_target *t, const char **field,
                      char *msg, size_t msg_size);

#endif
