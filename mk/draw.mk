# mk/draw.mk: drawing boxes and labels (src/qv_draw.c): its unit tests and
# fuzz target, for the parts that need no libvips. Included by the
# top-level Makefile after fuzz/fuzz.mk.
#
#   make units-draw      build and run spec/c/test_draw_units.c (also run
#                        by `make units`; `make units-valgrind` too)
#   fuzz target draw     fuzz/fuzz_draw.c: geometry and label markup

UNIT_DRAW_SRCS = src/qv_draw.c src/qv_resize.c src/qv_exif.c src/qv_file.c \
  src/qv_image.c src/qv_buf.c
UNIT_DRAW_BIN = build/test_draw_units

$(UNIT_DRAW_BIN): spec/c/test_draw_units.c $(UNIT_DRAW_SRCS) $(FUZZ_HEADERS)
	@mkdir -p $(dir $@)
	$(UNIT_CC) $(UNIT_CFLAGS) -Isrc spec/c/test_draw_units.c $(UNIT_DRAW_SRCS) -o $@ \
	  -lm -lpthread $(filter -ldl,$(EXTRA_LIBS))

.PHONY: units-draw units-draw-valgrind
units-draw: $(UNIT_DRAW_BIN)
	./$(UNIT_DRAW_BIN)

units-draw-valgrind: $(UNIT_DRAW_BIN)
	valgrind -q --error-exitcode=1 --leak-check=full ./$(UNIT_DRAW_BIN)

units: units-draw
units-valgrind: units-draw-valgrind

FUZZ_TARGETS += draw
FUZZ_EXTRA_draw = $(UNIT_DRAW_SRCS)
FUZZ_LIBS_draw = -lpthread $(filter -ldl,$(EXTRA_LIBS))
