/* qv_target: endpoint and key resolution (see qv_target.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qv_target.h"
#include "qv_file.h"
#include "qv_ini.h"
#include "qv_text.h"

#define SMALL_FILE (1u << 20)

const char *const qv_regions[][2] = {
  { "cn", "https://dashscope.aliyuncs.com/compatible-mode/v1" },
  { "intl", "https://dashscope-intl.aliyuncs.com/compatible-mode/v1" },
  { "us", "https://dashscope-us.aliyuncs.com/compatible-mode/v1" },
  { "hk", "https://cn-hongkong.dashscope.aliyuncs.com/compatible-mode/v1" },
  { NULL, NULL }
};

const char *qv_target_region_url(const char *r) {
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

/* The settings outside the request: the environment, then ./.env. */
typedef struct settings {
  qv_buf dotenv;                /* the text of ./.env, if any */
  qv_buf value;                 /* the last value looked up in it */
  int loaded;
} settings;

static const char *setting(settings *s, const char *name, const char **from) {
  const char *v = getenv(name), *why;
  if (v != NULL && *v != '\0') { *from = "env"; return v; }
  if (!s->loaded) {
    s->loaded = 1;
    if (qv_file_read(".env", SMALL_FILE, &s->dotenv, &why) != 0)
      qv_buf_reset(&s->dotenv);
  }
  if (s->dotenv.len > 0 &&
      qv_dotenv_find(s->dotenv.data, s->dotenv.len, name, &s->value) &&
      s->value.len > 0) {
    *from = ".env";
    return s->value.data;
  }
  return NULL;
}

/* Key from ~/.alibabacloud/credentials into out; 1 if found. */
static int credentials_key(settings *s, qv_buf *out) {
  const char *home = getenv("HOME"), *why = NULL, *profile, *from;
  char path[4096], prof[256];
  qv_buf text;
  int found = 0;
  if (home == NULL || *home == '\0') return 0;
  if ((profile = setting(s, "ALIBABA_CLOUD_PROFILE", &from)) == NULL &&
      (profile = setting(s, "ALICLOUD_PROFILE", &from)) == NULL)
    profile = "default";
  snprintf(prof, sizeof prof, "%s", profile);     /* value storage is reused */
  snprintf(path, sizeof path, "%s/.alibabacloud/credentials", home);
  qv_buf_init(&text);
  if (qv_file_read(path, SMALL_FILE, &text, &why) == 0)
    found = qv_ini_find(text.data, text.len, prof, "dashscope_api_key", out);
  if (text.data) memset(text.data, 0, text.len);
  qv_buf_free(&text);
  return found && out->len > 0;
}

static int fail(const char **field, const char *name, char *msg, size_t size,
                const char *text) {
  *field = name;
  snprintf(msg, size, "%s", text);
  return -1;
}

static int resolve(settings *s, const char *req_key, size_t key_len,
                   const char *region, const char *base, qv_buf *key,
                   qv_target *t, const char **field, char *msg, size_t size) {
  const char *v, *from = NULL;
  size_t n;
  t->key_source = NULL;
  if (req_key != NULL) {
    qv_buf_add(key, req_key, key_len);
    t->key_source = "request";
  } else if ((v = setting(s, "DASHSCOPE_API_KEY", &from)) != NULL) {
    qv_buf_adds(key, v);
    t->key_source = from;
  } else if (credentials_key(s, key)) {
    t->key_source = "credentials";
  }
  if (key->len && qv_text_has_ctl(key->data, key->len, QV_CTL_SPACE))
    return fail(field, "api_key", msg, size,
                "api_key contains spaces or control characters");
  if (base == NULL && region == NULL) {
    if ((v = setting(s, "DASHSCOPE_BASE_URL", &from)) != NULL) base = v;
    else if ((v = setting(s, "DASHSCOPE_REGION", &from)) != NULL) region = v;
  }
  if (region != NULL && qv_target_region_url(region) == NULL) {
    *field = "region";
    snprintf(msg, size, "region must be one of cn, intl, us, hk (got '%.40s')",
             region);
    return -1;
  }
  if (base == NULL) base = qv_target_region_url(region ? region : "cn");
  n = strlen(base);
  while (n > 0 && base[n - 1] == '/') n--;
  if (!(qv_text_iprefix(base, n, "https://") || qv_text_iprefix(base, n, "http://"))
      || qv_text_has_ctl(base, n, QV_CTL_SPACE))
    return fail(field, "base_url", msg, size,
                "base_url must be an http(s) URL without spaces");
  if (n > QV_BASE_URL_MAX)
    return fail(field, "base_url", msg, size, "base_url is too long");
  memcpy(t->base, base, n);
  t->base[n] = '\0';
  t->base_len = n;
  /* the name from our table: `region` may point into .env storage */
  t->region = region ? region_of(qv_target_region_url(region),
                                 strlen(qv_target_region_url(region)))
                     : region_of(t->base, n);
  return 0;
}

int qv_target_resolve(const char *req_key, size_t key_len,
                      const char *req_region, const char *req_base,
                      qv_buf *key, qv_target *t, const char **field,
                      char *msg, size_t msg_size) {
  settings s;
  int r;
  memset(&s, 0, sizeof s);
  qv_buf_init(&s.dotenv);
  qv_buf_init(&s.value);
  r = resolve(&s, req_key, key_len, req_region, req_base, key, t, field, msg,
              msg_size);
  /* .env may hold the key: wipe our copies */
  if (s.dotenv.data) memset(s.dotenv.data, 0, s.dotenv.len);
  if (s.value.data) memset(s.value.data, 0, s.value.len);
  qv_buf_free(&s.dotenv);
  qv_buf_free(&s.value);
  return r;
}
