# mk/vips.mk: libvips for image resizing (src/qv_resize.c).
# Included by the top-level Makefile after its variables.
#
#   make                 with libvips when pkg-config finds it (libvips-dev)
#   make VIPS=0          without it (requests that need a resize then fail)
#   make bench-resize    24-megapixel JPEG: resize="auto" against "off"
#                        (bytes uploaded, wall time, peak RSS), writes
#                        bench/resize-results.md
#   make test-resize     just spec/resize_spec.lua on lua5.4 and luajit
#
# libvips is compiled against (its headers: types, constants, prototypes)
# but not linked: src/qv_resize.c dlopen()s libvips.so.42 on the first
# resize. Linked, its ~100 shared libraries cost every require("qwenvl")
# ~50 ms warm (150-250 ms cold), resizing or not. At run time a missing
# libvips only makes resizing fail (apt-get install libvips42).

VIPS ?= $(shell pkg-config --exists vips 2>/dev/null && echo 1 || echo 0)

ifeq ($(VIPS),1)
# -isystem keeps glib's headers out of our warnings
VIPS_CFLAGS := -DQV_HAVE_VIPS $(patsubst -I%,-isystem %,$(shell pkg-config --cflags vips))
# dlopen is in libc from glibc 2.34; older C libraries need -ldl
VIPS_LIBS := $(shell printf '\043include <dlfcn.h>\nint main(void) { return dlopen("x", RTLD_NOW) != 0; }\n' \
  | $(CC) -x c -o /dev/null - 2>/dev/null || echo -ldl)
else
VIPS_CFLAGS :=
VIPS_LIBS :=
endif
EXTRA_CFLAGS += $(VIPS_CFLAGS)
EXTRA_LIBS += $(VIPS_LIBS)

# Rebuild qv_resize.o when switching between VIPS=1 and VIPS=0.
VIPS_STAMP := $(BUILD)/vips-$(VIPS).stamp
$(VIPS_STAMP): | $(BUILD)
	rm -f $(BUILD)/vips-*.stamp
	touch $@
$(BUILD)/qv_resize.o: $(VIPS_STAMP)

.PHONY: bench-resize test-resize

bench-resize: all
	$(LUA) bench/resize_bench.lua $(BUILD)

test-resize: 
	$(MAKE) --no-print-directory LUA=lua5.4 all
	$(MAKE) --no-print-directory LUA=luajit all
	# the .busted tasks: `busted --lua=X -m 'a;b'` re-executes through sh
	# without quoting, which cuts the arguments at the ';' (whole suite runs)
	busted -o utfTerminal spec/resize_spec.lua
	busted --run=luajit -o utfTerminal spec/resize_spec.lua
