/*
** Unit tests for the pure C parts: qv_buf, qv_image, qv_file, qv_sse,
** qv_retry, qv_ini (and .env), qv_text, qv_scrub, qv_rate, qv_target.
** One line per failure, then "N passed, N failed".
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qv_buf.h"
#include "qv_file.h"
#include "qv_image.h"
#include "qv_ini.h"
#include "qv_rate.h"
#include "qv_retry.h"
#include "qv_scrub.h"
#include "qv_sse.h"
#include "qv_target.h"
#include "qv_text.h"

#include "check.h"


/* ---------------------------------------------------------------- buf */

static void test_buf(void) {
  qv_buf b;
  char *mem;
  size_t i;
  qv_buf_init(&b);
  CHECK(b.data == NULL && b.len == 0 && b.cap == 0 && b.oom == 0);
  qv_buf_add(&b, "", 0);
  CHECK(b.len == 0);
  qv_buf_adds(&b, "hello");
  qv_buf_addc(&b, ' ');
  qv_buf_add(&b, "world!!", 5);
  CHECK(b.len == 11);
  CHECK_STR(b.data, "hello world");
  mem = b.data;
  qv_buf_reset(&b);
  CHECK(b.len == 0 && b.data == mem && b.data[0] == '\0');
  /* growth keeps content and the terminator */
  for (i = 0; i < 10000; i++) qv_buf_addc(&b, (char)('a' + i % 26));
  CHECK(b.len == 10000 && b.data[9999] == (char)('a' + 9999 % 26) &&
        b.data[10000] == '\0');
  /* appending from our own storage survives the realloc */
  qv_buf_reset(&b);
  qv_buf_adds(&b, "0123456789");
  for (i = 0; i < 12; i++) qv_buf_add(&b, b.data, b.len);
  CHECK(b.len == 10u << 12);
  CHECK(memcmp(b.data + b.len - 10, "0123456789", 10) == 0);
  /* oom is sticky */
  CHECK(qv_buf_reserve(&b, (size_t)-1) == 0);
  CHECK(b.oom == 1);
  i = b.len;
  qv_buf_adds(&b, "x");
  qv_buf_addc(&b, 'y');
  CHECK(b.len == i && b.oom == 1);
  CHECK(qv_buf_reserve(&b, 1) == 0);
  qv_buf_reset(&b);
  CHECK(b.oom == 1);
  qv_buf_free(&b);
  CHECK(b.data == NULL && b.len == 0 && b.oom == 0);
  qv_buf_free(&b); /* double free of an empty buffer is harmless */
  CHECK(qv_buf_reserve(&b, 100) == 1 && b.cap >= 101 && b.data[0] == '\0');
  qv_buf_free(&b);
}

/* ---------------------------------------------------------------- sse */

/* Events are recorded as "name\x1f" "data\x1e". */
typedef struct rec {
  qv_buf out;
  int count;
  int stop_at;   /* return 7 on this event number (1-based), 0 = never */
} rec;

static int on_event(void *ud, const char *ev, size_t evlen, const char *data,
                    size_t dlen) {
  rec *r = (rec *)ud;
  r->count++;
  if (strlen(ev) != evlen || strlen(data) != dlen) qv_buf_adds(&r->out, "!NUL!");
  qv_buf_add(&r->out, ev, evlen);
  qv_buf_addc(&r->out, '\x1f');
  qv_buf_add(&r->out, data, dlen);
  qv_buf_addc(&r->out, '\x1e');
  return r->count == r->stop_at ? 7 : 0;
}

static void rec_init(rec *r) {
  qv_buf_init(&r->out);
  r->count = 0;
  r->stop_at = 0;
}

/* Feed s in the pieces cut at cuts[0..ncuts) (ascending). */
static int sse_run(const char *s, size_t n, const size_t *cuts, int ncuts,
                   rec *r) {
  qv_sse p;
  size_t at = 0;
  int i, rc = 0;
  qv_sse_init(&p);
  for (i = 0; i <= ncuts && rc == 0; i++) {
    size_t end = i < ncuts ? cuts[i] : n;
    rc = qv_sse_feed(&p, s + at, end - at, on_event, r);
    at = end;
  }
  if (rc == 0) rc = qv_sse_finish(&p, on_event, r);
  qv_sse_free(&p);
  return rc;
}

static int sse_equals(const char *s, size_t n, const char *want, size_t wn) {
  rec r;
  int ok;
  rec_init(&r);
  ok = sse_run(s, n, NULL, 0, &r) == 0 && r.out.len == wn &&
       memcmp(r.out.data ? r.out.data : "", want, wn) == 0;
  if (!ok) printf("  sse got: [%s]\n", r.out.data ? r.out.data : "");
  qv_buf_free(&r.out);
  return ok;
}

#define SSE_EQ(s, want) \
  check(sse_equals((s), sizeof(s) - 1, (want), sizeof(want) - 1), "sse " #s, \
        __FILE__, __LINE__)

static void test_sse_splits(void) {
  static const char stream[] =
    "\xEF\xBB\xBF: keep-alive comment\r\n"
    "event: delta\r\n"
    "id: 1\r\n"
    "data: {\"a\":1}\r\n"
    "\r\n"
    ":another comment\n"
    "data: line1\n"
    "data:line2\r"
    "data\r\n"
    "retry: 100\r\n"
    "\r\n"
    "data: [DONE]\n"
    "\n";
  static const char want[] =
    "delta\x1f{\"a\":1}\x1e"
    "message\x1fline1\nline2\n\x1e"
    "message\x1f[DONE]\x1e";
  size_t n = sizeof(stream) - 1, i, j, cuts[2];
  int bad2 = 0, bad3 = 0, bad1 = 0;
  rec r;
  qv_sse p;
  CHECK(sse_equals(stream, n, want, sizeof(want) - 1));
  /* two pieces, cut at every byte position */
  for (i = 0; i <= n; i++) {
    rec_init(&r);
    cuts[0] = i;
    if (sse_run(stream, n, cuts, 1, &r) != 0 || r.out.len != sizeof(want) - 1 ||
        memcmp(r.out.data, want, r.out.len) != 0)
      bad2++;
    qv_buf_free(&r.out);
  }
  CHECK(bad2 == 0);
  /* three pieces, every pair of cuts */
  for (i = 0; i <= n; i++)
    for (j = i; j <= n; j++) {
      rec_init(&r);
      cuts[0] = i;
      cuts[1] = j;
      if (sse_run(stream, n, cuts, 2, &r) != 0 ||
          r.out.len != sizeof(want) - 1 ||
          memcmp(r.out.data, want, r.out.len) != 0)
        bad3++;
      qv_buf_free(&r.out);
    }
  CHECK(bad3 == 0);
  /* one byte at a time, with empty feeds in between */
  rec_init(&r);
  qv_sse_init(&p);
  for (i = 0; i < n; i++) {
    if (qv_sse_feed(&p, stream + i, 0, on_event, &r) != 0) bad1++;
    if (qv_sse_feed(&p, stream + i, 1, on_event, &r) != 0) bad1++;
  }
  CHECK(qv_sse_finish(&p, on_event, &r) == 0);
  CHECK(bad1 == 0 && r.count == 3);
  CHECK(r.out.len == sizeof(want) - 1 && memcmp(r.out.data, want, r.out.len) == 0);
  qv_sse_free(&p);
  qv_buf_free(&r.out);
}

static void test_sse_cases(void) {
  rec r;
  qv_sse p;
  size_t i;
  int rc;
  char *big;
  SSE_EQ("", "");
  SSE_EQ("data: x\n", "");                      /* no blank line: dropped */
  SSE_EQ("data: x", "");
  SSE_EQ("data: x\n\n", "message\x1fx\x1e");
  SSE_EQ("data\n\n", "message\x1f\x1e");        /* no colon: empty value */
  SSE_EQ("data:\n\n", "message\x1f\x1e");
  SSE_EQ("data:  two\n\n", "message\x1f two\x1e");  /* one space removed */
  SSE_EQ("data:a:b\n\n", "message\x1f" "a:b\x1e");
  SSE_EQ("data: a\ndata: b\n\n", "message\x1f" "a\nb\x1e");
  SSE_EQ("data: a\r\rdata: b\r\r", "message\x1f" "a\x1emessage\x1f" "b\x1e");
  SSE_EQ("event: a\ndata: 1\n\ndata: 2\n\n",
         "a\x1f" "1\x1emessage\x1f" "2\x1e");
  SSE_EQ("event: a\n\ndata: 2\n\n", "message\x1f" "2\x1e");  /* name reset */
  SSE_EQ("event:\ndata: 2\n\n", "message\x1f" "2\x1e");
  SSE_EQ("event: a\nevent: b\ndata: 2\n\n", "b\x1f" "2\x1e");
  SSE_EQ("\n\n\n", "");                          /* blank lines, no data */
  SSE_EQ(": only a comment\n\n", "");
  SSE_EQ("Data: x\n\n", "");                     /* field names are exact */
  SSE_EQ("data : x\n\n", "");
  SSE_EQ("id: 1\nretry: 5\nfoo: bar\n\n", "");
  SSE_EQ("\xEF\xBB\xBF" "data: x\n\n", "message\x1fx\x1e");
  SSE_EQ("\xEF\xBB\xBF\xEF\xBB\xBF" "data: x\n\n", "");  /* only one BOM */
  SSE_EQ("\xEF\xBB" "data: x\n\n", "");          /* partial BOM is text */
  SSE_EQ("\xEF\n" "data: x\n\n", "message\x1fx\x1e");
  SSE_EQ("data: x\n\n\xEF\xBB\xBF" "data: y\n\n", "message\x1fx\x1e");
  SSE_EQ("data: a\0b\n\n", "!NUL!message\x1f" "a\0b\x1e");

  /* CR at the end of one feed, LF at the start of the next: one line end */
  {
    static const char *const parts[] = { "data: a\r", "\ndata: b\n", "\n" };
    rec_init(&r);
    qv_sse_init(&p);
    for (i = 0; i < 3; i++)
      CHECK(qv_sse_feed(&p, parts[i], strlen(parts[i]), on_event, &r) == 0);
    CHECK(r.count == 1 && strcmp(r.out.data, "message\x1f" "a\nb\x1e") == 0);
    qv_sse_free(&p);
    qv_buf_free(&r.out);
  }
  /* ...but CR then CR is two line ends */
  {
    rec_init(&r);
    qv_sse_init(&p);
    CHECK(qv_sse_feed(&p, "data: a\r", 8, on_event, &r) == 0);
    CHECK(qv_sse_feed(&p, "", 0, on_event, &r) == 0);   /* keeps last_cr */
    CHECK(qv_sse_feed(&p, "\r", 1, on_event, &r) == 0);
    CHECK(r.count == 1);
    qv_sse_free(&p);
    qv_buf_free(&r.out);
  }
  /* split BOM */
  {
    rec_init(&r);
    qv_sse_init(&p);
    CHECK(qv_sse_feed(&p, "\xEF", 1, on_event, &r) == 0);
    CHECK(qv_sse_feed(&p, "\xBB", 1, on_event, &r) == 0);
    CHECK(qv_sse_feed(&p, "\xBF" "da", 3, on_event, &r) == 0);
    CHECK(qv_sse_feed(&p, "ta: z\n\n", 7, on_event, &r) == 0);
    CHECK(r.count == 1 && strcmp(r.out.data, "message\x1fz\x1e") == 0);
    qv_sse_free(&p);
    qv_buf_free(&r.out);
  }
  /* the callback's nonzero return stops parsing */
  {
    static const char s[] = "data: 1\n\ndata: 2\n\ndata: 3\n\n";
    rec_init(&r);
    r.stop_at = 2;
    qv_sse_init(&p);
    CHECK(qv_sse_feed(&p, s, sizeof(s) - 1, on_event, &r) == 7);
    CHECK(r.count == 2);
    qv_sse_free(&p);
    qv_buf_free(&r.out);
  }
  /* line limit, whole and byte by byte; a line of exactly max is fine */
  {
    rec_init(&r);
    qv_sse_init(&p);
    p.max_line = 8;
    CHECK(qv_sse_feed(&p, "data: 12\n\n", 10, on_event, &r) == 0);
    CHECK(r.count == 1);
    CHECK(qv_sse_feed(&p, "data: 123\n\n", 11, on_event, &r) == -1);
    qv_sse_free(&p);
    qv_sse_init(&p);
    p.max_line = 8;
    for (i = 0, rc = 0; i < 20 && rc == 0; i++)
      rc = qv_sse_feed(&p, "x", 1, on_event, &r);
    CHECK(rc == -1 && i == 9);
    qv_sse_free(&p);
    qv_buf_free(&r.out);
  }
  /* a BOM arriving byte by byte does not count against max_line
  ** (found by fuzz_sse: whole and split feeds disagreed) */
  {
    static const char s[] = "\xEF\xBB\xBF\rp\n";
    rec_init(&r);
    qv_sse_init(&p);
    p.max_line = 1;
    for (i = 0, rc = 0; i < sizeof(s) - 1 && rc == 0; i++)
      rc = qv_sse_feed(&p, s + i, 1, on_event, &r);
    CHECK(rc == 0);
    qv_sse_free(&p);
    qv_sse_init(&p);
    p.max_line = 1;
    for (i = 0, rc = 0; i < 4 && rc == 0; i++)       /* a BOM prefix, text */
      rc = qv_sse_feed(&p, &"\xEF\xBBxy"[i], 1, on_event, &r);
    CHECK(rc == -1 && i == 3);
    qv_sse_free(&p);
    qv_buf_free(&r.out);
  }
  /* finish resets: the parser can take another stream */
  {
    rec_init(&r);
    qv_sse_init(&p);
    CHECK(qv_sse_feed(&p, "event: e\ndata: half", 19, on_event, &r) == 0);
    CHECK(qv_sse_finish(&p, on_event, &r) == 0 && r.count == 0);
    CHECK(qv_sse_feed(&p, "\xEF\xBB\xBF" "data: y\n\n", 12, on_event, &r) == 0);
    CHECK(r.count == 1 && strcmp(r.out.data, "message\x1fy\x1e") == 0);
    qv_sse_free(&p);
    qv_buf_free(&r.out);
  }
  /* linear time: a 1 MiB data line fed one byte at a time */
  {
    size_t n = 1u << 20;
    big = (char *)malloc(n + 8);
    CHECK(big != NULL);
    if (big) {
      memcpy(big, "data: ", 6);
      memset(big + 6, 'q', n - 6);
      memcpy(big + n, "\n\n", 2);
      rec_init(&r);
      qv_sse_init(&p);
      for (i = 0, rc = 0; i < n + 2 && rc == 0; i++)
        rc = qv_sse_feed(&p, big + i, 1, on_event, &r);
      CHECK(rc == 0 && r.count == 1 && r.out.len == 7 + 1 + (n - 6) + 1);
      qv_sse_free(&p);
      qv_buf_free(&r.out);
      free(big);
    }
  }
}

/* -------------------------------------------------------------- retry */

#define T94 784111777.0   /* Sun, 06 Nov 1994 08:49:37 GMT */

static double ra(const char *s, double now) {
  return qv_retry_after_parse(s, strlen(s), now);
}

static void test_retry(void) {
  unsigned seed;
  int i, differ = 0, inrange = 1;
  double first = -1;
  CHECK(qv_retry_status(408) && qv_retry_status(409) && qv_retry_status(429));
  CHECK(qv_retry_status(500) && qv_retry_status(503) && qv_retry_status(599));
  CHECK(!qv_retry_status(200) && !qv_retry_status(400) &&
        !qv_retry_status(401) && !qv_retry_status(404) &&
        !qv_retry_status(600) && !qv_retry_status(0) && !qv_retry_status(-500));

  /* delta-seconds */
  CHECK_NEAR(ra("120", 0), 120);
  CHECK_NEAR(ra("0", 0), 0);
  CHECK_NEAR(ra("  7\t", 0), 7);
  CHECK_NEAR(ra("1.5", 0), 1.5);
  CHECK_NEAR(ra("007", 0), 7);
  CHECK_NEAR(ra("99999999999999999999999", 0), 1e9);
  CHECK_NEAR(ra("1000000001", 0), 1e9);
  CHECK(ra("", 0) == -1);
  CHECK(ra("   ", 0) == -1);
  CHECK(ra("-1", 0) == -1);
  CHECK(ra("+1", 0) == -1);
  CHECK(ra("1.", 0) == -1);
  CHECK(ra(".5", 0) == -1);
  CHECK(ra("1e3", 0) == -1);
  CHECK(ra("12abc", 0) == -1);
  CHECK(ra("1 2", 0) == -1);
  CHECK(ra("abc", 0) == -1);
  CHECK(ra("inf", 0) == -1);
  CHECK(ra("nan", 0) == -1);
  CHECK(qv_retry_after_parse("12", 1, 0) == 1);    /* honours n */
  /* n shorter than the string: the fraction stops at n too (a header
  ** value is not NUL-terminated where n ends) */
  CHECK_NEAR(qv_retry_after_parse("1.55", 3, 0), 1.5);
  CHECK_NEAR(qv_retry_after_parse("2.5x", 3, 0), 2.5);
  CHECK_NEAR(qv_retry_after_parse("1.5", 1, 0), 1);       /* the '.' is past n */

  /* the three HTTP-date forms */
  CHECK_NEAR(ra("Sun, 06 Nov 1994 08:49:37 GMT", T94 - 10), 10);
  CHECK_NEAR(ra("Sunday, 06-Nov-94 08:49:37 GMT", T94 - 5), 5);
  CHECK_NEAR(ra("Sun Nov  6 08:49:37 1994", T94 - 3), 3);
  CHECK_NEAR(ra("Sun Nov 16 08:49:37 1994", T94), 10 * 86400);
  CHECK_NEAR(ra(" sun, 06 nov 1994 08:49:37 gmt ", T94 - 1), 1);
  /* past dates wait 0 */
  CHECK(ra("Sun, 06 Nov 1994 08:49:37 GMT", T94 + 100) == 0);
  CHECK(ra("Sun Nov  6 08:49:37 1994", 1.7e9) == 0);
  /* epoch arithmetic */
  CHECK_NEAR(ra("Thu, 01 Jan 1970 00:00:00 GMT", -100), 100);
  CHECK_NEAR(ra("Sat, 01 Jan 2000 00:00:00 GMT", 0), 946684800.0);
  CHECK_NEAR(ra("Tue, 19 Jan 2038 03:14:08 GMT", 2147483647.0), 1);
  CHECK_NEAR(ra("Thu, 29 Feb 2024 00:00:00 GMT", 1709164800.0 - 2), 2);
  CHECK_NEAR(ra("Wed, 01 Mar 2000 00:00:00 GMT", 951868800.0 - 4), 4);
  CHECK_NEAR(ra("Fri, 31 Dec 9999 23:59:59 GMT", 0), 1e9);
  /* RFC 850 two-digit years: more than 50 years ahead means the past */
  CHECK_NEAR(ra("Tuesday, 01-Jan-30 00:00:00 GMT", 1735689600.0),
             1893456000.0 - 1735689600.0);
  CHECK(ra("Friday, 01-Jan-99 00:00:00 GMT", 1735689600.0) == 0);
  /* malformed dates */
  CHECK(ra("Thu, 29 Feb 2023 00:00:00 GMT", 0) == -1);
  CHECK(ra("Sun, 31 Nov 1994 08:49:37 GMT", 0) == -1);
  CHECK(ra("Sun, 00 Nov 1994 08:49:37 GMT", 0) == -1);
  CHECK(ra("Sun, 06 Nov 1994 24:00:00 GMT", 0) == -1);
  CHECK(ra("Sun, 06 Nov 1994 08:60:00 GMT", 0) == -1);
  CHECK(ra("Sun, 06 Nov 1994 08:49:37 UTC", 0) == -1);
  CHECK(ra("Sun, 06 Nov 1994 08:49:37 GMTx", 0) == -1);
  CHECK(ra("Sun, 6 Nov 1994 08:49:37 GMT", 0) == -1);
  CHECK(ra("Sun, 06 Foo 1994 08:49:37 GMT", 0) == -1);
  CHECK(ra("Xyz, 06 Nov 1994 08:49:37 GMT", 0) == -1);
  CHECK(ra("Sun, 06 Nov 94 08:49:37 GMT", 0) == -1);
  CHECK(ra("Sun Nov  6 08:49:37 1994 GMT", 0) == -1);
  CHECK(ra("Sun Nov 6 08:49:37 1994", 0) == -1);
  CHECK(ra("Sun, 06 Nov 1994 08:49", 0) == -1);
  CHECK(ra("Sun,", 0) == -1);
  CHECK(ra("Sun", 0) == -1);
  CHECK(ra("Sun, 06 Nov 1994 08:49:37 GMT", NAN) == -1);

  /* retry-after-ms */
  CHECK_NEAR(qv_retry_after_ms_parse("1500", 4), 1.5);
  CHECK_NEAR(qv_retry_after_ms_parse(" 250 ", 5), 0.25);
  CHECK_NEAR(qv_retry_after_ms_parse("0.5", 3), 0.0005);
  CHECK_NEAR(qv_retry_after_ms_parse("99999999999999999999", 20), 1e9);
  CHECK(qv_retry_after_ms_parse("0", 1) == 0);            /* "now" is a hint too */
  CHECK(qv_retry_after_ms_parse("-5", 2) == -1);
  CHECK(qv_retry_after_ms_parse("", 0) == -1);
  CHECK(qv_retry_after_ms_parse("5ms", 3) == -1);
  CHECK_NEAR(qv_retry_after_ms_parse("12.75", 4), 0.0127);   /* honours n */

  /* back-off: base * 2^(attempt-1) * [0.75, 1.0], seed 0 still works */
  seed = 0;
  first = qv_retry_backoff(1.0, 1, &seed);
  CHECK(seed != 0 && first >= 0.75 && first <= 1.0);
  for (i = 0; i < 1000; i++) {
    double w = qv_retry_backoff(0.5, 4, &seed);
    if (w < 0.5 * 8 * 0.75 || w > 0.5 * 8) inrange = 0;
    if (fabs(w - 0.5 * 8 * 0.875) > 0.4) differ++;
  }
  CHECK(inrange);
  CHECK(differ > 100);   /* jitter does spread */
  seed = 1;
  CHECK(qv_retry_backoff(2, 0, &seed) <= 2 && qv_retry_backoff(2, -5, &seed) >= 1.5);
  CHECK(qv_retry_backoff(1, 1000, &seed) <= 1e9);
  CHECK(qv_retry_backoff(0, 3, &seed) == 0);
  CHECK(qv_retry_backoff(-1, 3, &seed) == 0);
  CHECK(qv_retry_backoff(NAN, 3, &seed) == 0);
  { /* deterministic for a given seed */
    unsigned a = 42, b = 42;
    CHECK(qv_retry_backoff(1, 2, &a) == qv_retry_backoff(1, 2, &b) && a == b);
  }
}

/* ------------------------------------------------------------ base64 */

static int dec_is(const char *s, const char *want, size_t wlen) {
  qv_buf b;
  int ok;
  qv_buf_init(&b);
  ok = qv_base64_decode(&b, s, strlen(s)) == 0 && b.len == wlen &&
       (wlen == 0 || memcmp(b.data, want, wlen) == 0);
  qv_buf_free(&b);
  return ok;
}

static int dec_fails(const char *s) {
  qv_buf b;
  int ok;
  qv_buf_init(&b);
  qv_buf_adds(&b, "keep");
  ok = qv_base64_decode(&b, s, strlen(s)) == -1 && b.len == 4 &&
       strcmp(b.data, "keep") == 0;
  qv_buf_free(&b);
  return ok;
}

static void test_base64(void) {
  static const char *const vec[][2] = {
    { "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
    { "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" }
  };
  unsigned char raw[300];
  qv_buf e, d;
  size_t i, n;
  int bad = 0;
  unsigned seed = 12345;
  for (i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
    qv_buf_init(&e);
    qv_base64_encode(&e, (const unsigned char *)vec[i][0], strlen(vec[i][0]));
    CHECK(e.len == strlen(vec[i][1]) &&
          (e.len == 0 || strcmp(e.data, vec[i][1]) == 0));
    CHECK(qv_base64_len(strlen(vec[i][0])) == strlen(vec[i][1]));
    CHECK(dec_is(vec[i][1], vec[i][0], strlen(vec[i][0])));
    qv_buf_free(&e);
  }
  CHECK(qv_base64_len((size_t)-1) == (size_t)-1);
  CHECK(dec_is("AA==", "\0", 1));
  CHECK(dec_is("+/+/", "\xfb\xff\xbf", 3));
  CHECK(dec_fails("A"));
  CHECK(dec_fails("AB"));
  CHECK(dec_fails("ABC"));
  CHECK(dec_fails("A==="));
  CHECK(dec_fails("===="));
  CHECK(dec_fails("AB=C"));
  CHECK(dec_fails("AB==AAAA"));
  CHECK(dec_is("AB==", "\0", 1));    /* non-zero pad bits are ignored */
  CHECK(dec_is("QUJ=", "AB", 2));
  CHECK(dec_fails("Zm9v\n"));
  CHECK(dec_fails("Zm 9"));
  CHECK(dec_fails("Zm-_"));    /* base64url is not accepted */
  CHECK(dec_fails("Zm9\x80"));
  /* round trips of every length, appended after existing content */
  for (n = 0; n < sizeof(raw); n++) {
    for (i = 0; i < n; i++) {
      seed = seed * 1103515245u + 12345u;
      raw[i] = (unsigned char)(seed >> 16);
    }
    qv_buf_init(&e);
    qv_buf_init(&d);
    qv_buf_adds(&d, "pre");
    qv_base64_encode(&e, raw, n);
    if (e.len != qv_base64_len(n) || e.oom) bad++;
    if (qv_base64_decode(&d, e.data ? e.data : "", e.len) != 0 ||
        d.len != n + 3 || memcmp(d.data, "pre", 3) != 0 ||
        (n && memcmp(d.data + 3, raw, n) != 0))
      bad++;
    qv_buf_free(&e);
    qv_buf_free(&d);
  }
  CHECK(bad == 0);
}

/* ---------------------------------------------------------- data URL */

static int url_ok(const char *s, qv_format want) {
  qv_format f = QV_FMT_UNKNOWN;
  const char *pl = NULL, *why = NULL;
  size_t pn = 0;
  const char *comma = strrchr(s, ',');
  return qv_data_url_check(s, strlen(s), &f, &pl, &pn, &why) == 0 &&
         f == want && why == NULL && pl == comma + 1 && pn == strlen(comma + 1);
}

static const char *url_err(const char *s) {
  const char *why = NULL;
  qv_format f = QV_FMT_PNG;
  if (qv_data_url_check(s, strlen(s), &f, NULL, NULL, &why) != -1) return "";
  return why ? why : "";
}

static void test_data_url(void) {
  const char *why;
  char *big;
  size_t n;
  CHECK(url_ok("data:image/png;base64,iVBORw0KGgo=", QV_FMT_PNG));
  CHECK(url_ok("DATA:IMAGE/PNG;base64,AAAA", QV_FMT_PNG));
  CHECK(url_ok("data:image/jpeg;base64,/9j/4A==", QV_FMT_JPEG));
  CHECK(url_ok("data:image/jpg;base64,/9j/", QV_FMT_JPEG));
  CHECK(url_ok("data:image/gif;base64,R0lGODlh", QV_FMT_GIF));
  CHECK(url_ok("data:image/webp;base64,UklGRg==", QV_FMT_WEBP));
  CHECK(url_ok("data:image/bmp;base64,Qk0=", QV_FMT_BMP));
  CHECK(url_ok("data:image/tiff;base64,SUkqAA==", QV_FMT_TIFF));
  CHECK(url_ok("data:image/heic;base64,AAAA", QV_FMT_HEIC));
  CHECK(url_ok("data:image/png;charset=binary;base64,AAAA", QV_FMT_PNG));
  CHECK(url_ok("data:image/png;a=b;c=d;base64,AAAA", QV_FMT_PNG));

  CHECK_STR(url_err("http://example.com/a.png"),
            "not a data URL (must start with \"data:\")");
  CHECK_STR(url_err(""), "not a data URL (must start with \"data:\")");
  CHECK_STR(url_err("data"), "not a data URL (must start with \"data:\")");
  CHECK_STR(url_err(" data:image/png;base64,AAAA"),
            "not a data URL (must start with \"data:\")");
  CHECK_STR(url_err("data:text/plain;base64,AAAA"),
            "data URL media type is not a supported image type");
  CHECK_STR(url_err("data:image/svg+xml;base64,AAAA"),
            "data URL media type is not a supported image type");
  CHECK_STR(url_err("data:;base64,AAAA"),
            "data URL media type is not a supported image type");
  CHECK_STR(url_err("data:image/png"),
            "data URL is not base64-encoded (needs \";base64,\")");
  CHECK_STR(url_err("data:image/png,AAAA"),
            "data URL is not base64-encoded (needs \";base64,\")");
  CHECK_STR(url_err("data:image/png;BASE64,AAAA"),
            "data URL is not base64-encoded (needs \";base64,\")");
  CHECK_STR(url_err("data:image/png;base64"),
            "data URL is not base64-encoded (needs \";base64,\")");
  CHECK_STR(url_err("data:image/png;base64;x=y,AAAA"),
            "data URL is not base64-encoded (needs \";base64,\")");
  CHECK_STR(url_err("data:image/png;;base64,AAAA"),
            "data URL is not base64-encoded (needs \";base64,\")");
  CHECK_STR(url_err("data:image/png;base64,"), "data URL has an empty payload");
  why = "data URL payload is not valid base64";
  CHECK_STR(url_err("data:image/png;base64,AAA"), why);
  CHECK_STR(url_err("data:image/png;base64,AA=A"), why);
  CHECK_STR(url_err("data:image/png;base64,AA A"), why);
  CHECK_STR(url_err("data:image/png;base64,AAAA\n"), why);
  CHECK_STR(url_err("data:image/png;base64,===="), why);
  CHECK_STR(url_err("data:image/png;base64,AAAA,AAA"), why);
  CHECK_STR(url_err("data:image/png;base64,AA%3D"), why);
  CHECK(url_ok("data:image/png;base64,AB==", QV_FMT_PNG));  /* pad bits */
  /* embedded NUL: n is what counts */
  CHECK(qv_data_url_check("data:image/png;base64,AA\0A", 26, NULL, NULL, NULL,
                          NULL) == -1);
  CHECK(qv_data_url_check("data:image/png;base64,AAAAxyz", 26, NULL, NULL,
                          NULL, NULL) == 0);

  /* size limit: exactly at the limit passes, one more byte does not */
  n = QV_DATA_URL_LIMIT + 4;
  big = (char *)malloc(n + 1);
  CHECK(big != NULL);
  if (big) {
    static const char pre[] = "data:image/png;abc=d;base64,"; /* 28 bytes */
    memcpy(big, pre, sizeof(pre) - 1);
    memset(big + sizeof(pre) - 1, 'A', n - (sizeof(pre) - 1));
    big[n] = '\0';
    CHECK(qv_data_url_check(big, QV_DATA_URL_LIMIT, NULL, NULL, NULL, &why) == 0);
    CHECK(qv_data_url_check(big, QV_DATA_URL_LIMIT + 4, NULL, NULL, NULL,
                            &why) == -1);
    CHECK_STR(why, "data URL exceeds DashScope's 10 MiB limit");
    free(big);
  }
}

/* ------------------------------------------------------------- image */

static const unsigned char jpeg[] = {
  0xFF, 0xD8,                                        /* SOI */
  0xFF, 0xE0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0,
  0xFF, 0xD0,                                        /* stray RST0 */
  0xFF, 0xC4, 0x00, 0x04, 0x00, 0x00,                /* DHT: not a SOF */
  0xFF, 0xFF, 0xFF,                                  /* fill bytes */
  0xC2, 0x00, 0x11, 0x08, 0x00, 0x20, 0x00, 0x40, 0x03,
  1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1
};

static unsigned char png[] = {
  0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n',
  0, 0, 0, 13, 'I', 'H', 'D', 'R',
  0, 0, 0x03, 0x20, 0, 0, 0x02, 0x58, 8, 6, 0, 0, 0,
  0x12, 0x34, 0x56, 0x78
};

static const unsigned char gif[] = {
  'G', 'I', 'F', '8', '9', 'a', 0x2C, 0x01, 0xC8, 0x00, 0xF7, 0, 0
};

static const unsigned char webp_vp8[] = {
  'R', 'I', 'F', 'F', 0x24, 0, 0, 0, 'W', 'E', 'B', 'P',
  'V', 'P', '8', ' ', 0x18, 0, 0, 0,
  0x30, 0x01, 0x00, 0x9D, 0x01, 0x2A, 0x80, 0x02, 0xE0, 0x41
};  /* 640 x 480 with scale bits set on the height */

static const unsigned char webp_vp8l[] = {
  'R', 'I', 'F', 'F', 0x1A, 0, 0, 0, 'W', 'E', 'B', 'P',
  'V', 'P', '8', 'L', 0x0D, 0, 0, 0,
  0x2F, 0x63, 0x40, 0x0C, 0x00
};  /* 100 x 50: bits = 99 | 49 << 14 */

static const unsigned char webp_vp8x[] = {
  'R', 'I', 'F', 'F', 0x16, 0, 0, 0, 'W', 'E', 'B', 'P',
  'V', 'P', '8', 'X', 0x0A, 0, 0, 0,
  0x10, 0, 0, 0, 0xFF, 0x0F, 0x00, 0x37, 0x04, 0x00
};  /* 4096 x 1080 */

static const unsigned char bmp[] = {
  'B', 'M', 0x46, 0, 0, 0, 0, 0, 0, 0, 0x36, 0, 0, 0,
  40, 0, 0, 0, 0x10, 0, 0, 0, 0xF8, 0xFF, 0xFF, 0xFF, 1, 0, 24, 0
};  /* 16 x -8 (top-down) */

static const unsigned char bmp_core[] = {
  'B', 'M', 0x46, 0, 0, 0, 0, 0, 0, 0, 0x1A, 0, 0, 0,
  12, 0, 0, 0, 0x03, 0x00, 0x05, 0x00, 1, 0, 24, 0
};

static const unsigned char tiff_le[] = {
  'I', 'I', 42, 0, 8, 0, 0, 0,
  3, 0,
  0x03, 0x01, 3, 0, 1, 0, 0, 0, 8, 0, 0, 0,          /* 259 compression */
  0x00, 0x01, 3, 0, 1, 0, 0, 0, 0x80, 0x02, 0, 0,    /* 256 SHORT 640 */
  0x01, 0x01, 4, 0, 1, 0, 0, 0, 0xE0, 0x01, 0, 0,    /* 257 LONG 480 */
  0, 0, 0, 0
};

static const unsigned char tiff_be[] = {
  'M', 'M', 0, 42, 0, 0, 0, 8,
  0, 2,
  0x01, 0x00, 0, 4, 0, 0, 0, 1, 0, 1, 0x00, 0x00,    /* 256 LONG 65536 */
  0x01, 0x01, 0, 3, 0, 0, 0, 1, 0x00, 0x07, 0, 0,    /* 257 SHORT 7 */
  0, 0, 0, 0
};

static const unsigned char heic[] = {
  0, 0, 0, 24, 'f', 't', 'y', 'p', 'h', 'e', 'i', 'c', 0, 0, 0, 0,
  'm', 'i', 'f', '1', 'h', 'e', 'i', 'c',
  0, 0, 0, 80, 'm', 'e', 't', 'a', 0, 0, 0, 0,
  0, 0, 0, 68, 'i', 'p', 'r', 'p',
  0, 0, 0, 60, 'i', 'p', 'c', 'o',
  0, 0, 0, 20, 'i', 's', 'p', 'e', 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 2, 0,
  0, 0, 0, 20, 'i', 's', 'p', 'e', 0, 0, 0, 0, 0, 0, 0x0F, 0xC0, 0, 0, 0x0B, 0xD0,
  0, 0, 0, 12, 'p', 'i', 'x', 'i', 0, 0, 0, 0
};  /* a 512x512 tile and the 4032x3024 grid */

static int probe_is(const unsigned char *p, size_t n, qv_format f, unsigned w,
                    unsigned h) {
  qv_image_info in;
  const char *why = NULL;
  int r = qv_image_probe(p, n, &in, &why);
  if (r != 0)
    printf("  probe failed: %s\n", why ? why : "(null)");
  return r == 0 && in.format == f && in.width == w && in.height == h &&
         qv_image_sniff(p, n) == f;
}

static const char *probe_err(const unsigned char *p, size_t n) {
  qv_image_info in;
  const char *why = NULL;
  if (qv_image_probe(p, n, &in, &why) != -1) return "";
  if (in.width != 0 || in.height != 0) return "dims set on failure";
  return why ? why : "";
}

/* Every prefix of a valid header either fails with a reason or gives
** the full header's answer (HEIC: any answer, its size is optional). */
static int prefixes_sane(const unsigned char *p, size_t n) {
  qv_image_info full, in;
  const char *why;
  size_t k;
  if (qv_image_probe(p, n, &full, &why) != 0) return 0;
  for (k = 0; k < n; k++) {
    unsigned char *copy = check_copy(p, k);
    int r;
    why = NULL;
    r = qv_image_probe(copy, k, &in, &why);
    free(copy);
    if (r == 0 && full.format != QV_FMT_HEIC &&
        (in.width != full.width || in.height != full.height))
      return 0;
    if (r != 0 && (why == NULL || in.width || in.height)) return 0;
  }
  return 1;
}

static void test_image_probe(void) {
  unsigned char t[64];
  const char *trunc = "truncated image header";
  const char *zero = "image header has zero width or height";
  const char *unk = "not a supported image (unknown format)";

  CHECK(probe_is(jpeg, sizeof(jpeg), QV_FMT_JPEG, 64, 32));
  CHECK(probe_is(png, sizeof(png), QV_FMT_PNG, 800, 600));
  CHECK(probe_is(png, 29, QV_FMT_PNG, 800, 600));  /* CRC not needed */
  CHECK(probe_is(gif, sizeof(gif), QV_FMT_GIF, 300, 200));
  CHECK(probe_is(webp_vp8, sizeof(webp_vp8), QV_FMT_WEBP, 640, 480));
  CHECK(probe_is(webp_vp8l, sizeof(webp_vp8l), QV_FMT_WEBP, 100, 50));
  CHECK(probe_is(webp_vp8x, sizeof(webp_vp8x), QV_FMT_WEBP, 4096, 1080));
  CHECK(probe_is(bmp, sizeof(bmp), QV_FMT_BMP, 16, 8));
  CHECK(probe_is(bmp_core, sizeof(bmp_core), QV_FMT_BMP, 3, 5));
  CHECK(probe_is(tiff_le, sizeof(tiff_le), QV_FMT_TIFF, 640, 480));
  CHECK(probe_is(tiff_be, sizeof(tiff_be), QV_FMT_TIFF, 65536, 7));
  CHECK(probe_is(heic, sizeof(heic), QV_FMT_HEIC, 4032, 3024));
  CHECK(probe_is(heic, 24, QV_FMT_HEIC, 0, 0));    /* ftyp only */
  CHECK(probe_is(heic, 12, QV_FMT_HEIC, 0, 0));

  CHECK(prefixes_sane(jpeg, sizeof(jpeg)));
  CHECK(prefixes_sane(png, sizeof(png)));
  CHECK(prefixes_sane(gif, sizeof(gif)));
  CHECK(prefixes_sane(webp_vp8, sizeof(webp_vp8)));
  CHECK(prefixes_sane(webp_vp8l, sizeof(webp_vp8l)));
  CHECK(prefixes_sane(webp_vp8x, sizeof(webp_vp8x)));
  CHECK(prefixes_sane(bmp, sizeof(bmp)));
  CHECK(prefixes_sane(bmp_core, sizeof(bmp_core)));
  CHECK(prefixes_sane(tiff_le, sizeof(tiff_le)));
  CHECK(prefixes_sane(tiff_be, sizeof(tiff_be)));
  CHECK(prefixes_sane(heic, sizeof(heic)));

  /* truncations */
  CHECK_STR(probe_err(jpeg, 3), trunc);
  CHECK_STR(probe_err(jpeg, 10), trunc);
  CHECK_STR(probe_err(jpeg, 36), trunc);             /* inside the SOF */
  CHECK_STR(probe_err(png, 28), trunc);
  CHECK_STR(probe_err(png, 8), trunc);
  CHECK_STR(probe_err(gif, 9), trunc);
  CHECK_STR(probe_err(webp_vp8, 29), trunc);
  CHECK_STR(probe_err(webp_vp8l, 24), trunc);
  CHECK_STR(probe_err(webp_vp8x, 29), trunc);
  CHECK_STR(probe_err(webp_vp8x, 12), trunc);
  CHECK(probe_is(bmp, 26, QV_FMT_BMP, 16, 8));   /* the size fields end at 26 */
  CHECK_STR(probe_err(bmp, 25), trunc);
  CHECK_STR(probe_err(bmp, 2), trunc);
  CHECK_STR(probe_err(tiff_le, 7), trunc);
  CHECK_STR(probe_err(tiff_le, 30), trunc);

  /* zero sizes */
  memcpy(t, png, 29);
  memset(t + 16, 0, 4);
  CHECK_STR(probe_err(t, 29), zero);
  memcpy(t, gif, sizeof(gif));
  t[8] = t[9] = 0;
  CHECK_STR(probe_err(t, sizeof(gif)), zero);
  memcpy(t, jpeg, sizeof(jpeg));
  t[35] = t[36] = 0;                                /* SOF height */
  CHECK_STR(probe_err(t, sizeof(jpeg)), zero);
  memcpy(t, webp_vp8, sizeof(webp_vp8));
  t[26] = 0;
  t[27] = 0xC0;                                     /* only scale bits */
  CHECK_STR(probe_err(t, sizeof(webp_vp8)), zero);
  memcpy(t, bmp, sizeof(bmp));
  memset(t + 22, 0, 4);
  CHECK_STR(probe_err(t, sizeof(bmp)), zero);

  /* corrupt or unsupported */
  CHECK_STR(probe_err(NULL, 0), unk);
  CHECK_STR(probe_err((const unsigned char *)"hello, world", 12), unk);
  CHECK_STR(probe_err((const unsigned char *)"\0\0\0\x18" "ftypavif", 12), unk);
  CHECK_STR(probe_err((const unsigned char *)"GIF88a\1\0\1\0", 10), unk);
  memcpy(t, png, 29);
  memcpy(t + 12, "IDAT", 4);
  CHECK_STR(probe_err(t, 29), "PNG does not start with an IHDR chunk");
  t[12] = 'I';
  memcpy(t + 12, "IHDR", 4);
  t[16] = 0x80;
  CHECK(strcmp(probe_err(t, 29), "") != 0);         /* > 2^31-1 */
  {
    static const unsigned char sos_first[] = {
      0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02, 0xFF, 0xC0
    };
    static const unsigned char bad_len[] = {
      0xFF, 0xD8, 0xFF, 0xE1, 0x00, 0x01, 0xFF, 0xC0
    };
    static const unsigned char not_marker[] = {
      0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x02, 0x12, 0x34
    };
    static const unsigned char eoi[] = { 0xFF, 0xD8, 0xFF, 0xD9 };
    static const unsigned char short_sof[] = {
      0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x07, 8, 0, 1, 0, 1, 1, 0, 0
    };
    CHECK_STR(probe_err(sos_first, sizeof(sos_first)),
              "JPEG has no frame header before its image data");
    CHECK_STR(probe_err(eoi, sizeof(eoi)),
              "JPEG has no frame header before its image data");
    CHECK_STR(probe_err(bad_len, sizeof(bad_len)), "corrupt JPEG header");
    CHECK_STR(probe_err(not_marker, sizeof(not_marker)), "corrupt JPEG header");
    CHECK_STR(probe_err(short_sof, sizeof(short_sof)), "corrupt JPEG header");
  }
  memcpy(t, webp_vp8, sizeof(webp_vp8));
  memcpy(t + 12, "ALPH", 4);
  CHECK_STR(probe_err(t, sizeof(webp_vp8)), "unsupported WEBP variant");
  memcpy(t, webp_vp8l, sizeof(webp_vp8l));
  t[20] = 0x2E;
  CHECK_STR(probe_err(t, sizeof(webp_vp8l)), "unsupported WEBP variant");
  memcpy(t, bmp, sizeof(bmp));
  t[21] = 0x80;                                     /* negative width */
  CHECK_STR(probe_err(t, sizeof(bmp)), "unsupported BMP header");
  memcpy(t, bmp, sizeof(bmp));
  t[14] = 7;                                        /* DIB size */
  CHECK_STR(probe_err(t, sizeof(bmp)), "unsupported BMP header");
  memcpy(t, bmp, sizeof(bmp));
  memcpy(t + 22, "\0\0\0\x80", 4);                  /* INT32_MIN height */
  CHECK(probe_is(t, sizeof(bmp), QV_FMT_BMP, 16, 0x80000000u));
  memcpy(t, tiff_le, sizeof(tiff_le));
  t[34] = 0x02;                                     /* 257 -> 258 */
  CHECK_STR(probe_err(t, sizeof(tiff_le)),
            "TIFF first directory has no width and height");
  memcpy(t, tiff_le, sizeof(tiff_le));
  t[4] = 0xF0;                                      /* IFD beyond the end */
  CHECK_STR(probe_err(t, sizeof(tiff_le)), trunc);
  memcpy(t, tiff_le, sizeof(tiff_le));
  t[4] = 4;                                         /* IFD inside header */
  CHECK_STR(probe_err(t, sizeof(tiff_le)), "corrupt TIFF header");
  memcpy(t, tiff_le, sizeof(tiff_le));
  memset(t + 4, 0xFF, 4);
  CHECK_STR(probe_err(t, sizeof(tiff_le)), trunc);
  memcpy(t, tiff_le, sizeof(tiff_le));
  t[8] = 0xFF;
  t[9] = 0xFF;                                      /* 65535 entries */
  CHECK(probe_is(t, sizeof(tiff_le), QV_FMT_TIFF, 640, 480));  /* stops early */
  t[34] = 0x02;
  CHECK_STR(probe_err(t, sizeof(tiff_le)), trunc);
  { /* HEIC with a broken meta box is still HEIC, without a size */
    unsigned char h2[sizeof(heic)];
    memcpy(h2, heic, sizeof(heic));
    h2[27] = 0xFF;
    CHECK(probe_is(h2, sizeof(h2), QV_FMT_HEIC, 0, 0));
    memcpy(h2 + 8, "mif1", 4);
    CHECK(qv_image_sniff(h2, sizeof(h2)) == QV_FMT_HEIC);
    memcpy(h2 + 8, "avif", 4);
    memcpy(h2 + 20, "avif", 4);
    CHECK(qv_image_sniff(h2, sizeof(h2)) == QV_FMT_UNKNOWN);
    memcpy(h2 + 20, "heix", 4);                     /* compatible brand */
    CHECK(qv_image_sniff(h2, sizeof(h2)) == QV_FMT_HEIC);
  }
  /* NULL out-pointers are tolerated */
  CHECK(qv_image_probe(png, sizeof(png), NULL, NULL) == 0);
  CHECK(qv_image_probe(png, 3, NULL, NULL) == -1);
}

static void test_image_names(void) {
  CHECK_STR(qv_image_mime(QV_FMT_PNG), "image/png");
  CHECK_STR(qv_image_mime(QV_FMT_JPEG), "image/jpeg");
  CHECK_STR(qv_image_mime(QV_FMT_HEIC), "image/heic");
  CHECK(qv_image_mime(QV_FMT_UNKNOWN) == NULL);
  CHECK(qv_image_mime((qv_format)99) == NULL);
  CHECK_STR(qv_image_name(QV_FMT_WEBP), "webp");
  CHECK_STR(qv_image_name(QV_FMT_TIFF), "tiff");
  CHECK_STR(qv_image_name(QV_FMT_UNKNOWN), "unknown");
  CHECK_STR(qv_image_name((qv_format)-1), "unknown");
  CHECK(qv_image_format_from_mime("image/jpeg", 10) == QV_FMT_JPEG);
  CHECK(qv_image_format_from_mime("image/jpg", 9) == QV_FMT_JPEG);
  CHECK(qv_image_format_from_mime("IMAGE/JPG", 9) == QV_FMT_JPEG);
  CHECK(qv_image_format_from_mime("Image/Png", 9) == QV_FMT_PNG);
  CHECK(qv_image_format_from_mime("image/gif", 9) == QV_FMT_GIF);
  CHECK(qv_image_format_from_mime("image/webp", 10) == QV_FMT_WEBP);
  CHECK(qv_image_format_from_mime("image/bmp", 9) == QV_FMT_BMP);
  CHECK(qv_image_format_from_mime("image/tiff", 10) == QV_FMT_TIFF);
  CHECK(qv_image_format_from_mime("image/heic", 10) == QV_FMT_HEIC);
  CHECK(qv_image_format_from_mime("image/pngx", 9) == QV_FMT_PNG);  /* n */
  CHECK(qv_image_format_from_mime("image/pngx", 10) == QV_FMT_UNKNOWN);
  CHECK(qv_image_format_from_mime("image/jpe", 9) == QV_FMT_UNKNOWN);
  CHECK(qv_image_format_from_mime("image/svg+xml", 13) == QV_FMT_UNKNOWN);
  CHECK(qv_image_format_from_mime("", 0) == QV_FMT_UNKNOWN);
  CHECK(qv_image_format_from_mime(NULL, 0) == QV_FMT_UNKNOWN);
  CHECK(qv_image_format_from_mime("image/png\0", 10) == QV_FMT_UNKNOWN);
  CHECK(qv_image_sniff(png, 7) == QV_FMT_UNKNOWN);
  CHECK(qv_image_sniff(jpeg, 2) == QV_FMT_UNKNOWN);
  CHECK(qv_image_sniff(webp_vp8, 11) == QV_FMT_UNKNOWN);
}

static int write_file(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  int ok;
  if (!f) return 0;
  ok = fwrite(p, 1, n, f) == n;
  return fclose(f) == 0 && ok;
}

static void test_read_file(void) {
  char dir[] = "/tmp/qv_test_XXXXXX", path[128];
  const char *why;
  qv_buf b;
  if (!mkdtemp(dir)) {
    CHECK(!"mkdtemp");
    return;
  }
  qv_buf_init(&b);
  snprintf(path, sizeof(path), "%s/a.png", dir);
  CHECK(write_file(path, png, sizeof(png)));
  why = NULL;
  CHECK(qv_file_read(path, 1000, &b, &why) == 0);
  CHECK(b.len == sizeof(png) && memcmp(b.data, png, sizeof(png)) == 0 &&
        b.data[b.len] == '\0');
  qv_buf_reset(&b);
  CHECK(qv_file_read(path, sizeof(png), &b, &why) == 0);  /* == max */
  qv_buf_reset(&b);
  CHECK(qv_file_read(path, sizeof(png) - 1, &b, &why) == -1);
  CHECK_STR(why, "file is larger than the limit");
  CHECK(b.len == 0);
  unlink(path);

  snprintf(path, sizeof(path), "%s/empty", dir);
  CHECK(write_file(path, "", 0));
  CHECK(qv_file_read(path, 1000, &b, &why) == -1);
  CHECK_STR(why, "file is empty");
  unlink(path);

  CHECK(qv_file_read(dir, 1000, &b, &why) == -1);
  CHECK_STR(why, "not a regular file (directory, FIFO or device)");

  snprintf(path, sizeof(path), "%s/fifo", dir);
  CHECK(mkfifo(path, 0600) == 0);
  CHECK(qv_file_read(path, 1000, &b, &why) == -1);  /* must not block */
  CHECK_STR(why, "not a regular file (directory, FIFO or device)");
  unlink(path);

  CHECK(qv_file_read("/dev/null", 1000, &b, &why) == -1);
  CHECK_STR(why, "not a regular file (directory, FIFO or device)");

  snprintf(path, sizeof(path), "%s/missing", dir);
  why = NULL;
  CHECK(qv_file_read(path, 1000, &b, &why) == -1 && why != NULL &&
        why[0] != '\0');
  CHECK(b.len == 0);
  rmdir(dir);
  qv_buf_free(&b);
}

/* --------------------------------------------------------------- ini */

static const char ini[] =
  "\xEF\xBB\xBF; credentials\n"
  "# another comment\n"
  "global = g\n"
  "[default]\r\n"
  "enable = true\r\n"
  "access_key_id = AKID\r\n"
  "access_key_secret=\"se cret\"\r\n"
  "\r\n"
  "  [ other ]  ; trailing comment\n"
  "key = 'single'\n"
  "spaced   =   value with spaces   \n"
  "inline = abc ; comment\n"
  "hash=a#b\n"
  "eq = a=b\n"
  "empty =\n"
  "quoted_empty = \"\"\n"
  "half = \"abc\n"
  "first = 1\n"
  "first = 2\n"
  "novalue\n"
  "[default2]\n"
  "access_key_id = WRONG\n"
  "[broken\n"
  "k = v\n"
  "[last]\n"
  "tail = end";

static int ini_is(const char *sec, const char *key, const char *want) {
  qv_buf b;
  int ok;
  qv_buf_init(&b);
  qv_buf_adds(&b, "stale");
  ok = qv_ini_find(ini, sizeof(ini) - 1, sec, key, &b) == 1 &&
       b.len == strlen(want) && strcmp(b.data, want) == 0;
  if (!ok) printf("  ini [%s] %s got [%s]\n", sec ? sec : "(null)", key, b.data);
  qv_buf_free(&b);
  return ok;
}

static int ini_absent(const char *sec, const char *key) {
  qv_buf b;
  int ok;
  qv_buf_init(&b);
  ok = qv_ini_find(ini, sizeof(ini) - 1, sec, key, &b) == 0;
  qv_buf_free(&b);
  return ok;
}

static void test_ini(void) {
  qv_buf b;
  CHECK(ini_is("default", "access_key_id", "AKID"));
  CHECK(ini_is("default", "access_key_secret", "se cret"));
  CHECK(ini_is("default", "enable", "true"));
  CHECK(ini_is("other", "key", "single"));
  CHECK(ini_is("other", "spaced", "value with spaces"));
  CHECK(ini_is("other", "inline", "abc"));
  CHECK(ini_is("other", "hash", "a#b"));
  CHECK(ini_is("other", "eq", "a=b"));
  CHECK(ini_is("other", "empty", ""));
  CHECK(ini_is("other", "quoted_empty", ""));
  CHECK(ini_is("other", "half", "\"abc"));
  CHECK(ini_is("other", "first", "1"));
  CHECK(ini_is("default2", "access_key_id", "WRONG"));
  CHECK(ini_is("last", "tail", "end"));
  CHECK(ini_is(NULL, "global", "g"));
  CHECK(ini_absent("default", "missing"));
  CHECK(ini_absent("default", "global"));
  CHECK(ini_absent("nosuch", "access_key_id"));
  CHECK(ini_absent("defaul", "access_key_id"));
  CHECK(ini_absent("Default", "access_key_id"));
  CHECK(ini_absent("default", "ACCESS_KEY_ID"));
  CHECK(ini_absent("default", "access_key"));
  CHECK(ini_absent("other", "novalue"));
  CHECK(ini_absent("broken", "k"));
  CHECK(ini_absent("default2", "k"));      /* broken header ends default2 */
  CHECK(ini_absent(NULL, "access_key_id"));
  CHECK(ini_absent("", "k"));
  qv_buf_init(&b);
  CHECK(qv_ini_find("", 0, "default", "k", &b) == 0);
  CHECK(qv_ini_find("[s]\nk=v", 7, "s", "k", &b) == 1 && strcmp(b.data, "v") == 0);
  CHECK(qv_ini_find("[s]\nk=v", 6, "s", "k", &b) == 1 && b.len == 0);
  qv_buf_free(&b);
  CHECK(qv_ini_find("[s]\nk=", 6, "s", "k", &b) == 1 && b.data && !b.data[0]);
  CHECK(qv_ini_find("[s]\n\0k=v\nk=w", 12, "s", "k", &b) == 1 &&
        strcmp(b.data, "w") == 0);
  CHECK(qv_ini_find("[s]\rk=v\r", 8, "s", "k", &b) == 0);  /* CR alone: one line */
  CHECK(qv_ini_find("[]\nk=v\n", 7, "", "k", &b) == 1);
  CHECK(qv_ini_find("[s]\n\tk\t=\tv\t\n", 12, "s", "k", &b) == 1 &&
        strcmp(b.data, "v") == 0);
  qv_buf_free(&b);
}

/* ---------------------------------------------------------------- .env */

static int dotenv_is(const char *text, const char *key, const char *want) {
  qv_buf b;
  int ok;
  qv_buf_init(&b);
  ok = qv_dotenv_find(text, strlen(text), key, &b) == 1 && b.data != NULL &&
       strcmp(b.data, want) == 0;
  qv_buf_free(&b);
  return ok;
}

static void test_dotenv(void) {
  qv_buf b;
  const char *t =
    "\xEF\xBB\xBF# comment\n"
    "A=plain\n"
    "export B = spaced out  \n"
    "C='single # kept'\n"
    "D=\"double \\\"q\\\" \\n end\"\n"
    "E=value # inline comment\n"
    "F=value#not-a-comment\n"
    "G=first\r\n"
    "G=last\r\n"
    "  H  =  \n"
    "no equals sign\n"
    "I='unterminated\n";
  CHECK(dotenv_is(t, "A", "plain"));
  CHECK(dotenv_is(t, "B", "spaced out"));
  CHECK(dotenv_is(t, "C", "single # kept"));
  CHECK(dotenv_is(t, "D", "double \"q\" \n end"));
  CHECK(dotenv_is(t, "E", "value"));
  CHECK(dotenv_is(t, "F", "value#not-a-comment"));
  CHECK(dotenv_is(t, "G", "last"));           /* later lines win */
  CHECK(dotenv_is(t, "H", ""));
  CHECK(dotenv_is(t, "I", "unterminated"));
  qv_buf_init(&b);
  CHECK(qv_dotenv_find(t, strlen(t), "MISSING", &b) == 0);
  CHECK(qv_dotenv_find(t, strlen(t), "no", &b) == 0);
  CHECK(qv_dotenv_find("A=x", 1, "A", &b) == 0);        /* cut short */
  CHECK(qv_dotenv_find("", 0, "A", &b) == 0);
  qv_buf_free(&b);
}

/* ---------------------------------------------------------------- text */

static void test_text(void) {
  qv_buf b;
  size_t bad = 99, n, off[3], len[3];
  const char *s;
  int k;
  CHECK(!qv_text_has_ctl("abc def", 7, 0));
  CHECK(qv_text_has_ctl("abc def", 7, QV_CTL_SPACE));
  CHECK(qv_text_has_ctl("a\nb", 3, 0));
  CHECK(qv_text_has_ctl("a\0b", 3, 0));
  CHECK(qv_text_has_ctl("a\x7f", 2, 0));
  CHECK(!qv_text_has_ctl("\xc3\xa9", 2, QV_CTL_SPACE));
  CHECK(qv_text_utf8_valid("", 0, &bad) && bad == 0);
  CHECK(qv_text_utf8_valid("h\xc3\xa9 \xe5\x8f\x91 \xf0\x9f\x98\x80", 12, NULL));
  CHECK(!qv_text_utf8_valid("ab\xff", 3, &bad) && bad == 2);
  CHECK(!qv_text_utf8_valid("\xc0\xaf", 2, NULL));        /* overlong */
  CHECK(!qv_text_utf8_valid("\xe0\x80\xaf", 3, NULL));    /* overlong */
  CHECK(!qv_text_utf8_valid("\xed\xa0\x80", 3, NULL));    /* surrogate */
  CHECK(!qv_text_utf8_valid("\xf4\x90\x80\x80", 4, NULL)); /* > U+10FFFF */
  CHECK(!qv_text_utf8_valid("\xe2\x82", 2, &bad) && bad == 0);  /* cut */
  qv_buf_init(&b);
  qv_text_utf8_repair(&b, "a\xff" "b\xe2\x82" "c\xe2\x82", 8);
  CHECK(b.len == 3 + 3 * 3 && memcmp(b.data, "a\xEF\xBF\xBD" "b\xEF\xBF\xBD" "c\xEF\xBF\xBD", 12) == 0);
  qv_buf_free(&b);
  CHECK(qv_text_utf8_len("h\xc3\xa9\xe5\x8f\x91", 6) == 3);
  n = 8;
  s = qv_text_trim(" \t x y \n", &n);
  CHECK(n == 3 && memcmp(s, "x y", 3) == 0);
  CHECK(qv_text_ieq("HTTPS", 5, "https") && !qv_text_ieq("http", 4, "https"));
  CHECK(qv_text_iprefix("Data:image", 10, "data:") && !qv_text_iprefix("dat", 3, "data:"));
  /* where JSON may sit in an answer */
  k = qv_text_json_spans(" {\"a\":1} ", 9, off, len);
  CHECK(k >= 1 && off[0] == 1 && len[0] == 7);
  s = "Here:\n```json\n{\"a\": 1}\n```\nthanks";
  k = qv_text_json_spans(s, strlen(s), off, len);
  CHECK(k == 3 && len[1] == 8 && memcmp(s + off[1], "{\"a\": 1}", 8) == 0);
  CHECK(memcmp(s + off[2], "{\"a\": 1}", 8) == 0);
  s = "the list [1, 2] is it";
  k = qv_text_json_spans(s, strlen(s), off, len);
  CHECK(k == 2 && memcmp(s + off[1], "[1, 2]", 6) == 0);
  CHECK(qv_text_json_spans("", 0, off, len) == 0);
  CHECK(qv_text_json_spans("```", 3, off, len) == 1);
}

/* ---------------------------------------------------------------- scrub */

static void add_out(void *ud, const char *p, size_t n) { qv_buf_add(ud, p, n); }

static int scrubbed_is(const qv_secrets *sec, const char *in, const char *want) {
  qv_buf b;
  int ok;
  qv_buf_init(&b);
  qv_scrub(sec, in, strlen(in), add_out, &b);
  ok = (b.data ? strcmp(b.data, want) : strcmp("", want)) == 0;
  if (!ok) printf("  scrub(%s) -> %s\n", in, b.data ? b.data : "");
  qv_buf_free(&b);
  return ok;
}

static void test_scrub(void) {
  qv_secrets sec;
  qv_secrets_init(&sec);
  CHECK(qv_secrets_add(&sec, "sk-abc123", 9) == 0);
  CHECK(qv_secrets_add(&sec, "abc", 3) == 0 && sec.count == 1);   /* too short */
  CHECK(qv_secrets_add(&sec, "sk-abc123", 9) == 0 && sec.count == 1); /* again */
  CHECK(!qv_scrub_found(&sec, "nothing here", 12));
  CHECK(qv_scrub_found(&sec, "key sk-abc123!", 14));
  CHECK(scrubbed_is(&sec, "key sk-abc123!", "key [redacted]!"));
  CHECK(scrubbed_is(&sec, "sk-abc123sk-abc123", "[redacted][redacted]"));
  /* JSON and URL escapes, mixed within one occurrence */
  CHECK(scrubbed_is(&sec, "x\\u0073\\u006B-abc123y", "x[redacted]y"));
  CHECK(scrubbed_is(&sec, "%73k%2Dabc123", "[redacted]"));
  CHECK(scrubbed_is(&sec, "s\\u006b-abc%31%323", "[redacted]"));
  CHECK(scrubbed_is(&sec, "sk-abc12", "sk-abc12"));          /* a prefix only */
  CHECK(scrubbed_is(&sec, "\\u00", "\\u00"));                /* cut escapes */
  CHECK(scrubbed_is(&sec, "%7", "%7"));
  CHECK(qv_scrub_holdback(&sec, "text sk-ab", 10) == 5);
  CHECK(qv_scrub_holdback(&sec, "text s", 6) == 1);
  CHECK(qv_scrub_holdback(&sec, "text", 4) == 0);
  CHECK(qv_scrub_holdback(&sec, "sk-abc123", 9) == 0);      /* whole: not held */
  /* URL credentials */
  CHECK(qv_secrets_add_url(&sec, "http://user:p@ss:w0rd@host:8/v1", 31) == 0);
  CHECK(scrubbed_is(&sec, "to user:p@ss:w0rd@host", "to [redacted]@host"));
  CHECK(scrubbed_is(&sec, "pw p@ss:w0rd.", "pw [redacted]."));
  CHECK(qv_secrets_add_url(&sec, "https://host/no/creds", 21) == 0);
  CHECK(qv_secrets_add_url(&sec, "not a url", 9) == 0);
  qv_secrets_wipe(&sec);
  CHECK(sec.count == 0 && sec.store == NULL);
  CHECK(!qv_scrub_found(&sec, "sk-abc123", 9));
}

/* ---------------------------------------------------------------- rate */

static void test_rate(void) {
  qv_rate r;
  qv_rate_init(&r, 0, 0);
  CHECK(qv_rate_wait(&r, 0, 1e9) == 0);                 /* no limits */
  CHECK(qv_rate_note(&r, 0, 5) == 0);
  qv_rate_free(&r);
  qv_rate_init(&r, 60, 0);                               /* one a second */
  CHECK(qv_rate_wait(&r, 100, 1) == 0);
  qv_rate_note(&r, 100, 1);
  CHECK_NEAR(qv_rate_wait(&r, 100.25, 1), 0.75);
  CHECK(qv_rate_wait(&r, 101, 1) == 0);
  qv_rate_free(&r);
  qv_rate_init(&r, 0, 1000);                             /* tpm */
  CHECK(qv_rate_wait(&r, 0, 5000) == 0);                 /* alone: goes */
  qv_rate_note(&r, 0, 600);
  qv_rate_note(&r, 10, 300);
  CHECK(qv_rate_wait(&r, 20, 100) == 0);                 /* 1000: fits */
  CHECK_NEAR(qv_rate_wait(&r, 20, 101), 40);             /* until t=60 */
  CHECK_NEAR(qv_rate_wait(&r, 20, 500), 40);             /* the first must go */
  CHECK_NEAR(qv_rate_wait(&r, 20, 900), 50);             /* both must go */
  CHECK(qv_rate_wait(&r, 70.5, 900) == 0);               /* window empty */
  qv_rate_note(&r, 70.5, 10);                            /* prunes old starts */
  CHECK(r.n == 1);
  qv_rate_free(&r);
}

/* ---------------------------------------------------------------- target */

static void test_target(void) {
  char dir[] = "/tmp/qv-target-XXXXXX", cwd[4096], msg[200], path[4200];
  const char *field = NULL;
  qv_target t;
  qv_buf key;
  FILE *f;
  CHECK(mkdtemp(dir) != NULL && getcwd(cwd, sizeof cwd) != NULL && chdir(dir) == 0);
  unsetenv("DASHSCOPE_API_KEY");
  unsetenv("DASHSCOPE_BASE_URL");
  unsetenv("DASHSCOPE_REGION");
  setenv("HOME", dir, 1);
  qv_buf_init(&key);
  CHECK(qv_target_resolve(NULL, 0, NULL, NULL, &key, &t, &field, msg, sizeof msg) == 0);
  CHECK(key.len == 0 && t.key_source == NULL && strcmp(t.region, "cn") == 0);
  /* ./.env: after the environment, before the credentials file */
  f = fopen(".env", "w");
  fputs("DASHSCOPE_API_KEY=sk-from-dotenv\nDASHSCOPE_REGION=intl\n", f);
  fclose(f);
  CHECK(qv_target_resolve(NULL, 0, NULL, NULL, &key, &t, &field, msg, sizeof msg) == 0);
  CHECK(key.data && strcmp(key.data, "sk-from-dotenv") == 0 && strcmp(t.key_source, ".env") == 0);
  CHECK(strcmp(t.region, "intl") == 0 && strstr(t.base, "dashscope-intl") != NULL);
  qv_buf_reset(&key);
  setenv("DASHSCOPE_API_KEY", "sk-from-env", 1);
  CHECK(qv_target_resolve(NULL, 0, NULL, NULL, &key, &t, &field, msg, sizeof msg) == 0);
  CHECK(strcmp(key.data, "sk-from-env") == 0 && strcmp(t.key_source, "env") == 0);
  qv_buf_reset(&key);
  CHECK(qv_target_resolve("sk-req", 6, "us", NULL, &key, &t, &field, msg, sizeof msg) == 0);
  CHECK(strcmp(key.data, "sk-req") == 0 && strcmp(t.region, "us") == 0);
  qv_buf_reset(&key);
  unsetenv("DASHSCOPE_API_KEY");
  remove(".env");
  snprintf(path, sizeof path, "%s/.alibabacloud", dir);
  mkdir(path, 0700);
  snprintf(path, sizeof path, "%s/.alibabacloud/credentials", dir);
  f = fopen(path, "w");
  fputs("[default]\ndashscope_api_key = sk-from-file ; work account\n", f);
  fclose(f);
  CHECK(qv_target_resolve(NULL, 0, NULL, "https://x.example/v1/", &key, &t, &field, msg, sizeof msg) == 0);
  CHECK(strcmp(key.data, "sk-from-file") == 0 && strcmp(t.key_source, "credentials") == 0);
  CHECK(strcmp(t.base, "https://x.example/v1") == 0 && strcmp(t.region, "custom") == 0);
  qv_buf_reset(&key);
  CHECK(qv_target_resolve(NULL, 0, "mars", NULL, &key, &t, &field, msg, sizeof msg) == -1);
  CHECK(strcmp(field, "region") == 0 && strstr(msg, "mars") != NULL);
  qv_buf_reset(&key);
  CHECK(qv_target_resolve(NULL, 0, NULL, "ftp://x", &key, &t, &field, msg, sizeof msg) == -1);
  CHECK(strcmp(field, "base_url") == 0);
  qv_buf_reset(&key);
  CHECK(qv_target_resolve("sk x", 4, NULL, NULL, &key, &t, &field, msg, sizeof msg) == -1);
  CHECK(strcmp(field, "api_key") == 0);
  qv_buf_free(&key);
  remove(path);
  snprintf(path, sizeof path, "%s/.alibabacloud", dir);
  rmdir(path);
  CHECK(chdir(cwd) == 0 && rmdir(dir) == 0);
}

int main(void) {
  test_buf();
  test_sse_splits();
  test_sse_cases();
  test_retry();
  test_base64();
  test_data_url();
  test_image_names();
  test_image_probe();
  test_read_file();
  test_ini();
  test_dotenv();
  test_text();
  test_scrub();
  test_rate();
  test_target();
  return check_summary(NULL);
}
