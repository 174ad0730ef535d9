/* qv_target: endpoint and key resolution (see qv_target.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qv_target.h"
#include "qv_image.h"
#include "qv_ini.h"

const char *const qv_regions[][2] = {
  { "cn", "https://dashscope.aliyuncs.com/compatible-mode/v1" },
  { "intl", "https://dashscope-intl.aliyuncs.com/compatible-mode/v1" },
  { "us", "https://dashscope-us.aliyuncs.com/compatible-mode/v1" },
  { "hk", "https://cn-hongkong.dashscope.aliyuncs.com/compatible-mode/v1" },
  { NULL, NULL }
};

static const char *region_url(const char *r) {
  int i;
  for (i = 0; qv_regions[i][0]; i++)
    if (strcmp(qv_regions[i][0], r) == 0) return qv_regions[i][1];
  return NULL;
}

static const char *region_of(const char *base, size_t n) {
  int i;
  for (i = 0; qv_regions[i][0]; i++)
    if (strlen(qv_regions[i][1]) == n && strncmp(qv_regions[i][1], base, n) == 0)
      return qv_regions[i][0];
  return "custom";
}

static const char *env(const char *name) {
  const char *v = getenv(name);
  return v != NULL && *v != '\0' ? v : NULL;
}

/* Key from ~/.alibabacloud/credentials into out; 1 if found. */
static int credentials_key(qv_buf *out) {
  const char *home = env("HOME"), *why = NULL, *profile;
  char path[4096];
  qv_buf text;
  int found = 0;
  if (home == NULL) return 0;
  if ((profile = env("ALIBABA_CLOUD_PROFILE")) == NULL &&
      (profile = env("ALICLOUD_PROFILE")) == NULL)
    profile = "default";
  snprintf(path, sizeof path, "%s/.alibabacloud/credentials", home);
  qv_buf_init(&text);
  if (qv_image_read_file(path, 1u << 20, &text, &why) == 0)
    found = qv_ini_find(text.data, text.len, profile, "dashscope_api_key", out);
  qv_buf_free(&text);
  return found && out->len > 0;
}

static int has_ctl(const char *s, size_t n) {
  size_t i;
  for (i = 0; i < n; i++)
    if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f) return 1;
  return 0;
}

int qv_target_resolve(const char *req_key, size_t key_len,
                      const char *req_region, const char *req_base,
                      qv_buf *key, qv_target *t, const char **field,
                      char *msg, size_t msg_size) {
  const char *region = req_region, *base = req_base, *v;
  size_t n;
  t->key_source = NULL;
  if (req_key != NULL) {
    qv_buf_add(key, req_key, key_len);
    t->key_source = "request";
  } else if ((v = env("DASHSCOPE_API_KEY")) != NULL) {
    qv_buf_adds(key, v);
    t->key_source = "env";
  } else if (credentials_key(key)) {
    t->key_source = "credentials";
  }
  if (key->len && has_ctl(key->data, key->len)) {
    *field = "api_key";
    snprintf(msg, msg_size, "api_key contains spaces or control characters");
    return -1;
  }
  if (base == NULL && region == NULL) {
    if ((v = env("DASHSCOPE_BASE_URL")) != NULL) base = v;
    else region = env("DASHSCOPE_REGION");
  }
  if (region != NULL && region_url(region) == NULL) {
    *field = "region";
    snprintf(msg, msg_size, "region must be one of cn, intl, us, hk (got '%.40s')",
             region);
    return -1;
  }
  if (base == NULL) base = region_url(region ? region : "cn");
  n = strlen(base);
  while (n > 0 && base[n - 1] == '/') n--;
  if (!(strncmp(base, "https://", 8) == 0 || strncmp(base, "http://", 7) == 0)
      || has_ctl(base, n)) {
    *field = "base_url";
    snprintf(msg, msg_size, "base_url must be an http(s) URL without spaces");
    return -1;
  }
  t->base = base;
  t->base_len = n;
  t->region = region ? region : region_of(base, n);
  return 0;
}
