/*
** Unit tests for the parts of qv_draw that need no libvips: the output
** format by extension, stroke and text sizes, where a box's pixels, its
** outline and its label go, and the label's Pango markup. Labels are
** handed over in heap blocks of exactly their size, so an overread shows
** under valgrind (make units-valgrind) and ASan. One line per failure,
** then "N passed, N failed".
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qv_draw.h"

#include "check.h"

#define CHECK_RECT(r, X, Y, W, H) do { \
    CHECK_EQ((r).x, X); CHECK_EQ((r).y, Y); CHECK_EQ((r).w, W); CHECK_EQ((r).h, H); \
  } while (0)

static qv_draw_item box(double x1, double y1, double x2, double y2) {
  qv_draw_item it;
  memset(&it, 0, sizeof it);
  it.x1 = x1; it.y1 = y1; it.x2 = x2; it.y2 = y2;
  return it;
}

static qv_draw_item point(double x, double y) {
  qv_draw_item it = box(x, y, x, y);
  it.point = 1;
  return it;
}

/* markup of s (len bytes, copied to a block of exactly that size) */
static const char *markup(const char *s, size_t len) {
  static char out[QV_DRAW_MARKUP_CAP];
  char *p = check_copy(s, len);
  qv_draw_markup(p, len, out, sizeof out);
  free(p);
  return out;
}
#define MARKUP(lit) markup(lit, sizeof lit - 1)

static void test_format(void) {
  CHECK_EQ(qv_draw_format_of("a.png"), QV_FMT_PNG);
  CHECK_EQ(qv_draw_format_of("dir/A.PNG"), QV_FMT_PNG);
  CHECK_EQ(qv_draw_format_of("x.jpg"), QV_FMT_JPEG);
  CHECK_EQ(qv_draw_format_of("x.JPEG"), QV_FMT_JPEG);
  CHECK_EQ(qv_draw_format_of("x.webp"), QV_FMT_WEBP);
  CHECK_EQ(qv_draw_format_of("x.gif"), QV_FMT_UNKNOWN);
  CHECK_EQ(qv_draw_format_of("x.png.txt"), QV_FMT_UNKNOWN);
  CHECK_EQ(qv_draw_format_of("png"), QV_FMT_UNKNOWN);
  CHECK_EQ(qv_draw_format_of("a.png/b"), QV_FMT_UNKNOWN);
  CHECK_EQ(qv_draw_format_of(".png"), QV_FMT_PNG);
  CHECK_EQ(qv_draw_format_of(NULL), QV_FMT_UNKNOWN);
}

static void test_sizes(void) {
  unsigned char a[3], b[3];
  CHECK_EQ(qv_draw_stroke(100, 100), 2);
  CHECK_EQ(qv_draw_stroke(800, 600), 2);
  CHECK_EQ(qv_draw_stroke(6000, 4000), 16);
  CHECK_EQ(qv_draw_stroke(4000, 6000), 16);
  CHECK_EQ(qv_draw_stroke(100000, 100000), 64);
  CHECK_EQ(qv_draw_text_px(100, 50), 12);
  CHECK_EQ(qv_draw_text_px(6000, 4000), 100);
  CHECK_EQ(qv_draw_text_px(100000, 100000), 400);
  qv_draw_palette(0, a);
  CHECK(a[0] == 230 && a[1] == 25 && a[2] == 75);
  qv_draw_palette(8, b);
  CHECK(memcmp(a, b, 3) == 0);
  qv_draw_palette(1, b);
  CHECK(memcmp(a, b, 3) != 0);
}

static void test_item_rect(void) {
  qv_draw_rect r;
  qv_draw_item it = box(10.4, 20.6, 50.5, 60);
  CHECK_EQ(qv_draw_item_rect(&it, 100, 100, 2, &r), 1);
  CHECK_RECT(r, 10, 21, 41, 39);
  /* corners in any order */
  it = box(50.5, 60, 10.4, 20.6);
  CHECK_EQ(qv_draw_item_rect(&it, 100, 100, 2, &r), 1);
  CHECK_RECT(r, 10, 21, 41, 39);
  /* the whole picture: edges are pixel boundaries */
  it = box(0, 0, 100, 80);
  CHECK_EQ(qv_draw_item_rect(&it, 100, 80, 2, &r), 1);
  CHECK_RECT(r, 0, 0, 100, 80);
  /* clipped */
  it = box(-50, -5, 150, 40);
  CHECK_EQ(qv_draw_item_rect(&it, 100, 80, 2, &r), 1);
  CHECK_RECT(r, 0, 0, 100, 40);
  /* thinner than a pixel: one pixel */
  it = box(30, 30, 30, 30.2);
  CHECK_EQ(qv_draw_item_rect(&it, 100, 80, 2, &r), 1);
  CHECK_RECT(r, 30, 30, 1, 1);
  /* outside, or not numbers */
  it = box(100, 10, 120, 20);
  CHECK_EQ(qv_draw_item_rect(&it, 100, 80, 2, &r), 0);
  it = box(-20, 10, 0, 20);
  CHECK_EQ(qv_draw_item_rect(&it, 100, 80, 2, &r), 0);
  it = box(0.0 / 0.0, 10, 20, 20);
  CHECK_EQ(qv_draw_item_rect(&it, 100, 80, 2, &r), 0);
  it = box(1e300, 10, 20, 20);                            /* not a usable number */
  CHECK_EQ(qv_draw_item_rect(&it, 100, 80, 2, &r), 0);
  it = box(1e6, 10, 20, 20);                              /* to the right edge */
  CHECK_EQ(qv_draw_item_rect(&it, 100, 80, 2, &r), 1);
  CHECK_RECT(r, 20, 10, 80, 10);
  it = box(1, 1, 2, 2);
  CHECK_EQ(qv_draw_item_rect(&it, 0, 80, 2, &r), 0);
  /* a point: a square of side 2(2s+2)+1 around it, clipped */
  it = point(50, 40);
  CHECK_EQ(qv_draw_item_rect(&it, 100, 80, 2, &r), 1);
  CHECK_RECT(r, 44, 34, 13, 13);
  it = point(1, 79);
  CHECK_EQ(qv_draw_item_rect(&it, 100, 80, 2, &r), 1);
  CHECK_RECT(r, 0, 73, 8, 7);
  it = point(100, 80);                                    /* on the far edge */
  CHECK_EQ(qv_draw_item_rect(&it, 100, 80, 2, &r), 1);
  it = point(101, 10);
  CHECK_EQ(qv_draw_item_rect(&it, 100, 80, 2, &r), 0);
}

static int inside(const qv_draw_rect *a, const qv_draw_rect *b) {
  return a->x >= b->x && a->y >= b->y && a->x + a->w <= b->x + b->w &&
         a->y + a->h <= b->y + b->h && a->w > 0 && a->h > 0;
}

static void test_outline(void) {
  qv_draw_rect b = { 10, 20, 40, 30 }, e[4];
  int n = qv_draw_outline(&b, 3, e), i;
  CHECK_EQ(n, 4);
  CHECK_RECT(e[0], 10, 20, 40, 3);     /* top */
  CHECK_RECT(e[1], 10, 47, 40, 3);     /* bottom */
  CHECK_RECT(e[2], 10, 20, 3, 30);     /* left */
  CHECK_RECT(e[3], 47, 20, 3, 30);     /* right */
  for (i = 0; i < n; i++) CHECK(inside(&e[i], &b));
  /* thinner than two strokes: filled, still within */
  b.w = 4; b.h = 2;
  n = qv_draw_outline(&b, 3, e);
  CHECK(n >= 2 && n <= 4);
  for (i = 0; i < n; i++) CHECK(inside(&e[i], &b));
  b.w = 1; b.h = 1;
  n = qv_draw_outline(&b, 3, e);
  CHECK_EQ(n, 2);
  for (i = 0; i < n; i++) CHECK(inside(&e[i], &b));
  b.w = 0;
  CHECK_EQ(qv_draw_outline(&b, 3, e), 0);
}

static void test_label_rect(void) {
  qv_draw_rect a = { 30, 40, 50, 20 }, r;
  r = qv_draw_label_rect(&a, 200, 100, 60, 16);
  CHECK_RECT(r, 30, 24, 60, 16);        /* above */
  a.y = 10;
  r = qv_draw_label_rect(&a, 200, 100, 60, 16);
  CHECK_RECT(r, 30, 10, 60, 16);        /* no room above: inside at the top */
  a.x = 180;
  r = qv_draw_label_rect(&a, 200, 100, 60, 16);
  CHECK_RECT(r, 140, 10, 60, 16);       /* moved left to fit */
  a.y = 95;
  r = qv_draw_label_rect(&a, 200, 100, 60, 16);
  CHECK_RECT(r, 140, 79, 60, 16);
  r = qv_draw_label_rect(&a, 50, 10, 60, 16);
  CHECK_RECT(r, 0, 0, 60, 16);          /* larger than the picture */
}

static void test_markup(void) {
  char big[400], out[QV_DRAW_MARKUP_CAP];
  size_t n, i;
  CHECK(strcmp(MARKUP("cat"), "cat") == 0);
  CHECK(strcmp(MARKUP("  cat \n"), "cat") == 0);
  CHECK(strcmp(MARKUP("a<b>&'\""), "a&lt;b&gt;&amp;&apos;&quot;") == 0);
  CHECK(strcmp(MARKUP("<span foreground='red'>x</span>"),
               "&lt;span foreground=&apos;red&apos;&gt;x&lt;/span&gt;") == 0);
  CHECK(strcmp(MARKUP("a\tb\x01" "c\x7f"), "a b c") == 0);
  CHECK(strcmp(MARKUP("caf\xc3\xa9 \xe7\x8c\xab"), "caf\xc3\xa9 \xe7\x8c\xab") == 0);
  CHECK(strcmp(MARKUP("x\xc2\x85y"), "x y") == 0);                 /* C1 control */
  CHECK(strcmp(MARKUP("a\xff" "b"), "a\xef\xbf\xbd" "b") == 0);     /* invalid byte */
  CHECK(strcmp(MARKUP("a\xe7\x8c"), "a\xef\xbf\xbd\xef\xbf\xbd") == 0); /* cut sequence */
  CHECK(strcmp(MARKUP("\xed\xa0\x80"), "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd") == 0); /* surrogate */
  CHECK(strcmp(MARKUP("\xc0\xaf"), "\xef\xbf\xbd\xef\xbf\xbd") == 0);  /* overlong */
  CHECK(strcmp(MARKUP(""), "") == 0);
  CHECK(strcmp(MARKUP("   "), "") == 0);
  CHECK_EQ(qv_draw_markup(NULL, 5, out, sizeof out), 0);
  /* a label of NUL bytes: spaces, trimmed to nothing but inner ones */
  CHECK(strcmp(markup("a\0b", 3), "a b") == 0);
  /* long labels: at most QV_DRAW_LABEL_MAX bytes, on a character boundary */
  for (i = 0; i + 3 <= sizeof big; i += 3) memcpy(big + i, "\xe7\x8c\xab", 3);
  n = qv_draw_markup(big, sizeof big - sizeof big % 3, out, sizeof out);
  CHECK_EQ(n, QV_DRAW_LABEL_MAX);
  memset(big, '&', sizeof big);
  n = qv_draw_markup(big, sizeof big, out, sizeof out);
  CHECK_EQ(n, 5 * QV_DRAW_LABEL_MAX);
  CHECK(n < sizeof out);
  memset(big, '\xff', sizeof big);
  n = qv_draw_markup(big, sizeof big, out, sizeof out);
  CHECK_EQ(n, 3 * QV_DRAW_LABEL_MAX);
  /* a small buffer is never overrun */
  n = qv_draw_markup("abcdef", 6, out, 4);
  CHECK(n < 4 && out[n] == '\0');
}

int main(void) {
  test_format();
  test_sizes();
  test_item_rect();
  test_outline();
  test_label_rect();
  test_markup();
  return check_summary("test_draw_units");
}
