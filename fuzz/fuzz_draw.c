/*
** Fuzz qv_draw's geometry and label markup (no libvips): the first bytes
** choose a picture size, a stroke and an item (box or point, with
** coordinates that may be huge, negative or not numbers); the rest is the
** label. Checks: every rectangle lies within the picture (the outline
** within the box), a label's rectangle within the picture whenever it
** fits, and the markup is NUL-terminated, within its buffer, valid
** UTF-8, and holds no bare < > " ' and no & that does not start one of
** the five entities. The label is heap-allocated to its exact size.
*/
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qv_draw.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static double coord(const uint8_t *p) {
  int32_t v = (int32_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]);
  switch (p[0] & 7) {
    case 0: return (double)v / 1000.0;
    case 1: return (double)v * 1e300;
    case 2: return NAN;
    case 3: return -INFINITY;
    default: return (double)(v % 70000) + (p[3] & 1 ? 0.5 : 0.25);
  }
}

static int within(const qv_draw_rect *r, long w, long h) {
  return r->w > 0 && r->h > 0 && r->x >= 0 && r->y >= 0 && r->x + (long)r->w <= w &&
         r->y + (long)r->h <= h;
}

static int valid_utf8(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned c = s[i];
    size_t k = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    size_t j;
    if (k == 0 || i + k > n) return 0;
    for (j = 1; j < k; j++) if ((s[i + j] & 0xC0) != 0x80) return 0;
    i += k;
  }
  return 1;
}

static void check_markup(const uint8_t *label, size_t n) {
  static const char *const ent[] = { "&amp;", "&lt;", "&gt;", "&apos;", "&quot;" };
  char out[QV_DRAW_MARKUP_CAP];
  size_t len = qv_draw_markup((const char *)label, n, out, sizeof out), i;
  if (len >= sizeof out || out[len] != '\0' || strlen(out) != len) abort();
  if (!valid_utf8((const unsigned char *)out, len)) abort();
  for (i = 0; i < len; i++) {
    if (out[i] == '<' || out[i] == '>' || out[i] == '"' || out[i] == '\'') abort();
    if ((unsigned char)out[i] < 0x20) abort();
    if (out[i] == '&') {
      size_t k;
      int ok = 0;
      for (k = 0; k < 5 && !ok; k++) ok = strncmp(out + i, ent[k], strlen(ent[k])) == 0;
      if (!ok) abort();
    }
  }
  /* a smaller buffer is never overrun */
  if (n > 0) {
    char small[8];
    len = qv_draw_markup((const char *)label, n, small, sizeof small);
    if (len >= sizeof small || small[len] != '\0') abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  qv_draw_item it;
  qv_draw_rect a, e[4], l;
  unsigned w, h;
  int stroke, n, i;
  uint8_t *label;
  if (size < 22) return 0;
  w = (unsigned)(data[0] << 8 | data[1]) % 70000;
  h = (unsigned)(data[2] << 8 | data[3]) % 70000;
  stroke = qv_draw_stroke(w, h);
  if (data[4] & 1) stroke = 1 + data[4] % 80;
  memset(&it, 0, sizeof it);
  it.point = data[5] & 1;
  it.x1 = coord(data + 6);
  it.y1 = coord(data + 10);
  it.x2 = coord(data + 14);
  it.y2 = coord(data + 18);
  if (qv_draw_item_rect(&it, w, h, stroke, &a)) {
    if (!within(&a, w, h)) abort();
    n = qv_draw_outline(&a, stroke, e);
    if (n < 1 || n > 4) abort();
    for (i = 0; i < n; i++)
      if (!within(&e[i], a.x + (long)a.w, a.y + (long)a.h) || e[i].x < a.x || e[i].y < a.y) abort();
    {
      int lw = 1 + data[4] * 7, lh = 1 + data[5] * 3;
      l = qv_draw_label_rect(&a, w, h, lw, lh);
      if (l.w != lw || l.h != lh) abort();
      if ((unsigned)lw <= w && (unsigned)lh <= h && !within(&l, w, h)) abort();
    }
  }
  label = malloc(size - 22 ? size - 22 : 1);
  if (label == NULL) return 0;
  memcpy(label, data + 22, size - 22);
  check_markup(label, size - 22);
  free(label);
  return 0;
}
