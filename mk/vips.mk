# mk/vips.mk: image resizing (src/qv_resize.c) needs no libvips at build
# time: src/qv_vips.h declares the part of libvips' ABI it uses, and
# libvips.so.42 is dlopen()ed on the first image that needs work. At run
# time a missing libvips only makes the requests that must shrink an
# image fail, with what to install (apt-get install libvips42, brew
# install vips). Included by the top-level Makefile after its variables.
#
#   make check-vips-abi  compile spec/c/check_vips_abi.c against
#                        <vips/vips.h> (libvips-dev): fails on any
#                        difference from src/qv_vips.h; skipped, saying
#                        so, when pkg-config finds no vips
#   make bench-resize    24-megapixel JPEG against vipsthumbnail, and one
#                        small image per process; writes
#                        bench/resize-results.md

# dlopen is in libc from glibc 2.34; older C libraries need -ldl
EXTRA_LIBS += $(shell printf '\043include <dlfcn.h>\nint main(void) { return dlopen("x", RTLD_NOW) != 0; }\n' \
  | $(CC) -x c -o /dev/null - 2>/dev/null || echo -ldl)

.PHONY: bench-resize check-vips-abi

# -isystem keeps glib's own warnings out; -Werror turns a mismatch
# (incompatible pointer types, a failed static assertion) into a failure
check-vips-abi:
	@if pkg-config --exists vips 2>/dev/null; then \
	  $(CC) -std=c99 -Wall -Wextra -Werror -pedantic -Isrc \
	    $$(pkg-config --cflags vips | sed 's/-I/-isystem /g') \
	    -c -o /dev/null spec/c/check_vips_abi.c \
	  && echo "check-vips-abi: src/qv_vips.h matches <vips/vips.h> $$(pkg-config --modversion vips)"; \
	else echo "check-vips-abi: skipped (no libvips-dev: pkg-config finds no vips)"; fi

bench-resize: all
	$(LUA) bench/resize_bench.lua $(BUILD)
