/*
** resize_check: qv_resize on one file, with options the request does not
** carry yet; for spec/resize_spec.lua, which builds it in a temporary
** directory from src/qv_resize.c and the units it builds on.
**   resize_check FILE [timeout_s [max_input_pixels]]
** prints "ok WxH resized=R" or "error: <why>", exits 0 either way (1 on
** bad usage or an unreadable file).
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qv_buf.h"
#include "qv_image.h"
#include "qv_file.h"
#include "qv_resize.h"

int main(int argc, char **argv) {
  qv_buf in, out;
  qv_image_info info;
  qv_resize_opts o;
  qv_resize_info ri;
  const char *why = NULL;
  if (argc < 2) {
    fprintf(stderr, "usage: resize_check FILE [timeout_s [max_input_pixels]]\n");
    return 1;
  }
  qv_buf_init(&in);
  qv_buf_init(&out);
  memset(&o, 0, sizeof o);
  if (argc > 2) o.timeout_s = atof(argv[2]);
  if (argc > 3) o.max_input_pixels = strtoul(argv[3], NULL, 10);
  if (qv_file_read(argv[1], (size_t)1 << 30, &in, &why) != 0 ||
      qv_image_probe((const unsigned char *)in.data, in.len, &info, &why) != 0) {
    fprintf(stderr, "resize_check: %s: %s\n", argv[1], why);
    return 1;
  }
  if (qv_resize((const unsigned char *)in.data, in.len, &info, &o, &out, &ri,
                &why) != 0)
    printf("error: %s\n", why);
  else
    printf("ok %ux%u resized=%d\n", ri.out_w, ri.out_h, ri.resized);
  qv_buf_free(&in);
  qv_buf_free(&out);
  return 0;
}
