/*
** bare_curl: the floor for bench/bench.lua. A minimal libcurl loop that
** POSTs the same JSON body (read from a file) N times through ONE easy
** handle (keep-alive), reads each response into a buffer, and reports
** per-request wall time (CLOCK_MONOTONIC) and CPU time (getrusage
** RUSAGE_SELF, user+sys) -- mean, p50, p95.
**
** It sends the same headers qwenvl sends (Authorization, Accept,
** Content-Type, an empty Expect, User-Agent, Accept-Encoding) so the two
** put identical requests on the wire.
**
**   bare_curl URL KEY BODY_FILE N [WARMUP [USER_AGENT]]
**
** USER_AGENT defaults to "qwenvl"; bench/bench.lua passes qwenvl's own
** ("qwenvl/<version>") so the headers match byte for byte.
**
** Output: a human-readable summary on stderr and one machine-readable line
** on stdout (before it, with BARE_SAMPLES set in the environment, one line
** "S <wall us> <cpu us>" per measured request, in order):
**   BARE n=.. bytes=.. resp=.. wall_mean_us=.. wall_p50_us=.. wall_p95_us=..
**        cpu_mean_us=.. cpu_p50_us=.. cpu_p95_us=..
** Exit status 1 if any request fails or answers other than HTTP 200.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <curl/curl.h>

typedef struct { char *p; size_t len, cap; } buf;

static size_t on_write(char *p, size_t size, size_t nmemb, void *ud) {
  buf *b = ud;
  size_t n = size * nmemb;
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    char *q;
    while (cap < b->len + n) cap *= 2;
    q = realloc(b->p, cap);
    if (q == NULL) return 0;
    b->p = q;
    b->cap = cap;
  }
  memcpy(b->p + b->len, p, n);
  b->len += n;
  return n;
}

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static double cpu_us(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
         (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of a sorted array. */
static double pct(const double *v, int n, double p) {
  int k = (int)(p / 100.0 * n + 0.999999) - 1;
  if (k < 0) k = 0;
  if (k >= n) k = n - 1;
  return v[k];
}

static double mean(const double *v, int n) {
  double s = 0;
  int i;
  for (i = 0; i < n; i++) s += v[i];
  return n ? s / n : 0;
}

static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  char *p;
  long n;
  if (f == NULL) return NULL;
  if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
    fclose(f);
    return NULL;
  }
  p = malloc((size_t)n + 1);
  if (p == NULL || fread(p, 1, (size_t)n, f) != (size_t)n) {
    free(p);
    fclose(f);
    return NULL;
  }
  fclose(f);
  *len = (size_t)n;
  return p;
}

int main(int argc, char **argv) {
  const char *url, *key, *path, *ua;
  char *body, auth[512];
  size_t body_len = 0;
  int n, warm, i, total, samples = getenv("BARE_SAMPLES") != NULL;
  double *wall, *cpu;
  struct curl_slist *hdr = NULL;
  CURL *h;
  buf resp = { NULL, 0, 0 };
  size_t resp_bytes = 0;
  if (argc < 5) {
    fprintf(stderr, "usage: %s URL KEY BODY_FILE N [WARMUP [USER_AGENT]]\n", argv[0]);
    return 2;
  }
  url = argv[1];
  key = argv[2];
  path = argv[3];
  n = atoi(argv[4]);
  warm = argc > 5 ? atoi(argv[5]) : 5;
  ua = argc > 6 ? argv[6] : "qwenvl";
  if (n <= 0 || warm < 0) { fprintf(stderr, "bad N/WARMUP\n"); return 2; }
  body = read_file(path, &body_len);
  if (body == NULL) { perror(path); return 2; }
  wall = calloc((size_t)n, sizeof *wall);
  cpu = calloc((size_t)n, sizeof *cpu);
  if (wall == NULL || cpu == NULL) return 2;

  curl_global_init(CURL_GLOBAL_DEFAULT);
  h = curl_easy_init();
  snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
  hdr = curl_slist_append(hdr, auth);
  hdr = curl_slist_append(hdr, "Accept: application/json");
  hdr = curl_slist_append(hdr, "Content-Type: application/json");
  hdr = curl_slist_append(hdr, "Expect:");
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
  curl_easy_setopt(h, CURLOPT_USERAGENT, ua);
  curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
  curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &resp);

  total = warm + n;
  for (i = 0; i < total; i++) {
    double w0 = now_us(), c0 = cpu_us();
    long status = 0;
    CURLcode rc;
    resp.len = 0;
    rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (i >= warm) {
      wall[i - warm] = now_us() - w0;
      cpu[i - warm] = cpu_us() - c0;
    }
    if (rc != CURLE_OK || status != 200) {
      fprintf(stderr, "bare_curl: request %d: %s, HTTP %ld: %.*s\n", i,
              curl_easy_strerror(rc), status, (int)(resp.len > 300 ? 300 : resp.len),
              resp.p ? resp.p : "");
      return 1;
    }
    resp_bytes = resp.len;
  }
  {
    long conns = -1;
    curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &conns);  /* of the last one */
    double wm = mean(wall, n), cm = mean(cpu, n);
    if (samples)
      for (i = 0; i < n; i++) printf("S %.1f %.1f\n", wall[i], cpu[i]);
    qsort(wall, (size_t)n, sizeof *wall, cmp_d);
    qsort(cpu, (size_t)n, sizeof *cpu, cmp_d);
    fprintf(stderr, "bare_curl: %d requests (+%d warm-up), body %lu B, response %lu B, "
            "new connections on the last request: %ld\n", n, warm,
            (unsigned long)body_len, (unsigned long)resp_bytes, conns);
    fprintf(stderr, "  wall us: mean %.1f p50 %.1f p95 %.1f\n", wm,
            pct(wall, n, 50), pct(wall, n, 95));
    fprintf(stderr, "  cpu  us: mean %.1f p50 %.1f p95 %.1f\n", cm,
            pct(cpu, n, 50), pct(cpu, n, 95));
    printf("BARE n=%d bytes=%lu resp=%lu wall_mean_us=%.1f wall_p50_us=%.1f "
           "wall_p95_us=%.1f cpu_mean_us=%.1f cpu_p50_us=%.1f cpu_p95_us=%.1f\n",
           n, (unsigned long)body_len, (unsigned long)resp_bytes, wm,
           pct(wall, n, 50), pct(wall, n, 95), cm, pct(cpu, n, 50), pct(cpu, n, 95));
  }
  curl_slist_free_all(hdr);
  curl_easy_cleanup(h);
  curl_global_cleanup();
  free(body);
  free(resp.p);
  free(wall);
  free(cpu);
  return 0;
}
