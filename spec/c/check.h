/*
** check.h: the harness every C unit test program shares (spec/c/test_*.c):
** counters, CHECK macros that print one line per failure, exact-size heap
** copies for the bounds checks, and the closing line "N passed, N failed".
** Header-only and static: each test program includes it once, before its
** own code. Builds on the C library alone.
**
** CHECK_FAIL_TAG, defined before the include, goes after "FAIL " on every
** failure line (test_watch.c names the backend it was built for).
*/
#ifndef QV_SPEC_CHECK_H
#define QV_SPEC_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef CHECK_FAIL_TAG
#define CHECK_FAIL_TAG ""
#endif

static int passed, failed;

static void check(int ok, const char *what, const char *file, int line) {
  if (ok) {
    passed++;
  } else {
    failed++;
    printf("FAIL %s%s:%d: %s\n", CHECK_FAIL_TAG, file, line, what);
  }
}

#define CHECK(c) check((c) != 0, #c, __FILE__, __LINE__)
#define CHECK_EQ(got, want) do { \
    long g_ = (long)(got), w_ = (long)(want); \
    if (g_ != w_) printf("  got %ld, want %ld\n", g_, w_); \
    check(g_ == w_, #got " == " #want, __FILE__, __LINE__); \
  } while (0)
#define CHECK_STR(got, want) \
  check((got) != NULL && strcmp((got), (want)) == 0, #got " == " #want, \
        __FILE__, __LINE__)
#define CHECK_NEAR(got, want) \
  check(fabs((double)(got) - (double)(want)) < 1e-6, #got " ~= " #want, \
        __FILE__, __LINE__)

/* A heap copy of p[0..n) with nothing after it (a read past n shows under
** valgrind and ASan); the caller frees it. Out of memory ends the run. */
static inline void *check_copy(const void *p, size_t n) {
  void *c = malloc(n ? n : 1);
  if (c == NULL) { printf("out of memory\n"); exit(2); }
  if (n) memcpy(c, p, n);
  return c;
}

/* The closing line, after `label: ` when label is not NULL; the exit
** status of the test program. */
static inline int check_summary(const char *label) {
  if (label) printf("%s: ", label);
  printf("%d passed, %d failed\n", passed, failed);
  return failed != 0;
}

#endif
