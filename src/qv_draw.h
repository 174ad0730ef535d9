/*
** qv_draw: boxes, points and their labels drawn onto a copy of a picture
** as its viewer shows it. The file is decoded with libvips, turned upright
** by its EXIF orientation, made 8-bit sRGB, drawn on in memory at its own
** size, and written as PNG, JPEG or WebP (by the output's extension),
** atomically: a temporary file beside the output, then a rename, so a
** failure leaves no partial file.
**
** Builds on qv_file (reading the input: regular files, a size cap),
** qv_image (formats), qv_resize (which loads and initialises libvips, and
** knows when this process may not use it) and libvips itself, called
** through a table of its own (QV_VIPS_DRAW_API in qv_vips.h, looked up
** in the libvips qv_resize loaded). The geometry (where strokes and labels
** go, the label's Pango markup) needs no libvips: it is unit-tested
** (spec/c/test_draw_units.c) and fuzzed (fuzz/fuzz_draw.c) alone.
** The only global state is that table, filled once. No Lua.
*/
#ifndef QV_DRAW_H
#define QV_DRAW_H

#include <stddef.h>
#include "qv_image.h"

#pragma GCC visibility push(hidden)

#define QV_DRAW_MAX_ITEMS 1000
/* Bytes of a label that are drawn (cut on a character boundary). */
#define QV_DRAW_LABEL_MAX 120
/* Room qv_draw_markup needs: every byte may become "&amp;" or U+FFFD. */
#define QV_DRAW_MARKUP_CAP (6 * QV_DRAW_LABEL_MAX + 1)

typedef struct qv_draw_item {
  int point;                  /* 1: a point at (x1, y1); x2, y2 unused */
  double x1, y1, x2, y2;      /* pixels of the upright picture; box edges
                              ** are pixel boundaries (0..width) */
  const char *label;          /* UTF-8 (checked here), or NULL */
  size_t label_len;
  int has_rgb;                /* 0: a palette colour, one per label */
  unsigned char rgb[3];
} qv_draw_item;

typedef struct qv_draw_rect {
  int x, y, w, h;
} qv_draw_rect;

typedef struct qv_draw_info {
  unsigned width, height;     /* the picture written (upright) */
  unsigned in_width, in_height; /* as stored in the file */
  int orientation;            /* the EXIF orientation applied (1: none) */
  int labels;                 /* labels drawn */
  int labels_failed;          /* labels libvips could not render (no fonts) */
  char msg[400];              /* storage for *why and the warning */
} qv_draw_info;

/* Output format by the path's extension (case-insensitive): .png, .jpg /
** .jpeg, .webp; QV_FMT_UNKNOWN for anything else. */
qv_format qv_draw_format_of(const char *path);

/* Stroke width and label text height (pixels) for a w x h picture: thick
** enough to see on a 24-megapixel photo, at least 2 and 12. */
int qv_draw_stroke(unsigned w, unsigned h);
int qv_draw_text_px(unsigned w, unsigned h);

/* Palette colour i (cycles through 8 distinct colours; 0 is red). */
void qv_draw_palette(size_t i, unsigned char rgb[3]);

/* The pixel rectangle of a box (rounded edges, clipped to w x h; a box
** thinner than a pixel gets one), or of a point's marker (a square of
** side 2r+1 around it, r = 2*stroke + 2). Returns 0 when nothing of it
** is inside the picture, or its numbers are not finite. */
int qv_draw_item_rect(const qv_draw_item *it, unsigned w, unsigned h, int stroke,
                      qv_draw_rect *r);

/* The filled rectangles that outline box rectangle b, `stroke` thick,
** inside its edges (so the outermost pixels are the box's own). Returns
** how many (0..4); each lies within b. */
int qv_draw_outline(const qv_draw_rect *b, int stroke, qv_draw_rect out[4]);

/* Where a label of lw x lh (its background) goes for anchor rectangle a:
** above it when there is room, else just inside its top edge; moved
** left or up to stay within w x h when it fits there. */
qv_draw_rect qv_draw_label_rect(const qv_draw_rect *a, unsigned w, unsigned h,
                                int lw, int lh);

/* The label as Pango markup in out (NUL-terminated; cap >=
** QV_DRAW_MARKUP_CAP): & < > ' " escaped, control characters as
** spaces, invalid UTF-8 as U+FFFD, at most QV_DRAW_LABEL_MAX bytes of
** the label (cut on a character boundary), surrounding white space
** trimmed. Returns the length (0: nothing to draw). */
size_t qv_draw_markup(const char *label, size_t len, char *out, size_t cap);

/* Draw n items onto the picture in in_path and write it to out_path.
** Returns 0 with *info filled (a label that could not be rendered is
** counted in labels_failed, not a failure), or -1 with *why (static or
** info->msg) and *code: "invalid_request" (the input is not a picture
** qwenvl reads, too large, or the output path is not .png/.jpg/.webp or
** is the input itself), "unavailable" (no usable libvips), "io" (the
** output could not be written). */
int qv_draw_boxes(const char *in_path, const char *out_path,
                  const qv_draw_item *items, size_t n, qv_draw_info *info,
                  const char **code, const char **why);

/* The same checks without decoding or writing anything (to refuse before
** a question is paid for): the output's name, not the input itself, the
** input a picture qwenvl reads (in_width/in_height from its header),
** libvips usable. Returns 0, or -1 as qv_draw_boxes does. */
int qv_draw_check(const char *in_path, const char *out_path, qv_draw_info *info,
                  const char **code, const char **why);

#pragma GCC visibility pop
#endif
