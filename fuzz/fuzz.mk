# fuzz/fuzz.mk: libFuzzer targets and the C unit tests.
# Included from the top-level Makefile and run from the repository root.
# Only FUZZ_ and UNIT_ names, so nothing of the includer is overridden.
#
#   make fuzz            fuzz each target for FUZZ_SECONDS on a copy of its
#                        corpus under build/fuzz/ (fails on any crash)
#   make fuzz-regress    run every committed input once, no fuzzing
#   make units           build and run spec/c/test_units.c with gcc
#
# A target `t` is fuzz/fuzz_t.c linked with $(FUZZ_EXTRA_t) and
# $(FUZZ_LIBS_t); to add one, add a block below (one target per block).

FUZZ_SECONDS ?= 10
FUZZ_TARGETS := sse data_url image ini retry_after base64 response

FUZZ_CC ?= clang
FUZZ_CFLAGS ?= -g -O1 -fsanitize=fuzzer,address,undefined \
  -fno-sanitize-recover=undefined -Isrc
FUZZ_LIBS ?= -lm
FUZZ_FLAGS ?= -timeout=20
FUZZ_DIR = build/fuzz
FUZZ_HEADERS = $(wildcard src/qv_*.h spec/c/*.h)

FUZZ_EXTRA_sse ?= src/qv_sse.c src/qv_buf.c
FUZZ_EXTRA_data_url ?= src/qv_image.c src/qv_buf.c
FUZZ_EXTRA_image ?= src/qv_image.c src/qv_buf.c
FUZZ_EXTRA_ini ?= src/qv_ini.c src/qv_text.c src/qv_buf.c
FUZZ_EXTRA_retry_after ?= src/qv_retry.c
FUZZ_EXTRA_base64 ?= src/qv_image.c src/qv_buf.c

# scrub: secrets found in every escaped form, and the text checks
FUZZ_TARGETS += scrub
FUZZ_EXTRA_scrub = src/qv_scrub.c src/qv_text.c src/qv_buf.c

# response: field extraction and stream folding of the real binding code in
# a Lua 5.4 state with Debian's lua-cjson; no network, no engine.
FUZZ_EXTRA_response = src/qv_result.c src/qv_json.c src/qv_stream.c src/qv_state.c \
  src/qv_error.c src/qv_scrub.c src/qv_text.c src/qv_sse.c src/qv_engine.c \
  src/qv_call.c src/qv_watch.c src/qv_retry.c src/qv_buf.c src/qv_compat.c
FUZZ_LIBS_response = -llua5.4 -lcurl
$(FUZZ_DIR)/fuzz_response: FUZZ_CFLAGS += -I/usr/include/lua5.4

# schema: qwenvl.schema (patterns on PCRE2, $ref graphs, the work budget)
# in a Lua 5.4 state with Debian's lua-cjson and lua-rex-pcre2; an input
# that takes more than 5 s is a finding: the validator must always answer.
FUZZ_TARGETS += schema
FUZZ_LIBS_schema = -llua5.4
FUZZ_FLAGS_schema = -timeout=5 -dict=fuzz/schema.dict
$(FUZZ_DIR)/fuzz_schema: FUZZ_CFLAGS += -I/usr/include/lua5.4 -DQV_LUA_DIR='"$(CURDIR)/lua"'

FUZZ_BINS = $(patsubst %,$(FUZZ_DIR)/fuzz_%,$(FUZZ_TARGETS))

# Per-target libFuzzer flags, FUZZ_FLAGS_<t>, go after FUZZ_FLAGS (the last
# of a flag wins): in a recipe, $(FUZZ_TFLAGS) sets the shell's $tf for $t.
FUZZ_RP := )
FUZZ_TFLAGS = case $$t in $(foreach x,$(FUZZ_TARGETS),$(x)$(FUZZ_RP) tf='$(FUZZ_FLAGS_$(x))';;) *$(FUZZ_RP) tf=;; esac

# Second expansion ($$) lets targets appended to FUZZ_TARGETS after this
# file is included still be built, with their FUZZ_EXTRA_ sources.
.SECONDEXPANSION:
$(FUZZ_DIR)/fuzz_%: fuzz/fuzz_%.c $$(FUZZ_EXTRA_$$*) $(FUZZ_HEADERS)
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< $(FUZZ_EXTRA_$*) $(FUZZ_LIBS_$*) $(FUZZ_LIBS)

.PHONY: fuzz fuzz-build fuzz-regress units units-valgrind

fuzz-build: $$(FUZZ_BINS)

# The committed corpus is only read: seeds (and fixed crashes) are copied
# into build/fuzz/corpus/<t>, which also keeps what earlier runs found.
fuzz: $$(FUZZ_BINS)
	@mkdir -p $(FUZZ_DIR)/artifacts
	@fail=0; for t in $(FUZZ_TARGETS); do \
	  c=$(FUZZ_DIR)/corpus/$$t; mkdir -p $$c; \
	  for d in fuzz/corpus/$$t fuzz/regress/$$t; do \
	    if [ -d $$d ]; then find $$d -type f -exec cp {} $$c/ \; ; fi; \
	  done; \
	  log=$(FUZZ_DIR)/$$t.log; $(FUZZ_TFLAGS); \
	  if $(FUZZ_DIR)/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) \
	      -print_final_stats=1 -artifact_prefix=$(FUZZ_DIR)/artifacts/$$t- \
	      $(FUZZ_FLAGS) $$tf $$c >$$log 2>&1; then \
	    echo "fuzz $$t: ok: $$(grep -E '^#[0-9]+' $$log | tail -n 1)"; \
	  else \
	    fail=1; echo "fuzz $$t: FAILED (log $$log)"; tail -n 40 $$log; \
	  fi; \
	done; exit $$fail

fuzz-regress: $$(FUZZ_BINS)
	@fail=0; for t in $(FUZZ_TARGETS); do \
	  files=$$(for d in fuzz/corpus/$$t fuzz/regress/$$t; do \
	    if [ -d $$d ]; then find $$d -type f; fi; done); \
	  if [ -z "$$files" ]; then echo "fuzz-regress $$t: no inputs"; continue; fi; \
	  log=$(FUZZ_DIR)/$$t.regress.log; $(FUZZ_TFLAGS); \
	  if $(FUZZ_DIR)/fuzz_$$t $(FUZZ_FLAGS) $$tf $$files >$$log 2>&1; then \
	    echo "fuzz-regress $$t: $$(echo $$files | wc -w) inputs ok"; \
	  else \
	    fail=1; echo "fuzz-regress $$t: FAILED (log $$log)"; tail -n 40 $$log; \
	  fi; \
	done; exit $$fail

UNIT_CC ?= gcc
UNIT_CFLAGS ?= -std=c99 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -O2 -g -fPIC \
  -Wall -Wextra -Wshadow -Wmissing-prototypes -Wstrict-prototypes -Wpointer-arith \
  -Wcast-qual -Wformat=2 -Wvla -Wdeclaration-after-statement
UNIT_SRCS = src/qv_buf.c src/qv_image.c src/qv_sse.c src/qv_retry.c \
  src/qv_ini.c src/qv_text.c src/qv_file.c src/qv_scrub.c src/qv_rate.c \
  src/qv_target.c src/qv_watch.c
UNIT_BIN = build/test_units

$(UNIT_BIN): spec/c/test_units.c $(UNIT_SRCS) $(FUZZ_HEADERS)
	@mkdir -p $(dir $@)
	$(UNIT_CC) $(UNIT_CFLAGS) -Isrc spec/c/test_units.c $(UNIT_SRCS) -o $@ -lm

units: $(UNIT_BIN)
	./$(UNIT_BIN)

units-valgrind: $(UNIT_BIN)
	valgrind -q --error-exitcode=1 --leak-check=full ./$(UNIT_BIN)

# ---- images: qv_exif and qv_resize's decisions (no libvips) -------------
#   make units-image     build and run spec/c/test_image_units.c (also run
#                        by `make units`; `make units-valgrind` too)
#   fuzz target exif     fuzz/fuzz_exif.c: qv_exif on raw bytes and wrapped
#                        in JPEG/PNG/WebP containers, and qv_resize_plan
FUZZ_TARGETS += exif
FUZZ_EXTRA_exif = src/qv_exif.c src/qv_resize.c src/qv_image.c src/qv_buf.c
FUZZ_LIBS_exif = $(filter -ldl,$(EXTRA_LIBS))

UNIT_IMAGE_SRCS = src/qv_exif.c src/qv_resize.c src/qv_image.c src/qv_buf.c
UNIT_IMAGE_BIN = build/test_image_units

$(UNIT_IMAGE_BIN): spec/c/test_image_units.c $(UNIT_IMAGE_SRCS) $(FUZZ_HEADERS)
	@mkdir -p $(dir $@)
	$(UNIT_CC) $(UNIT_CFLAGS) -D_DEFAULT_SOURCE -Isrc spec/c/test_image_units.c \
	  $(UNIT_IMAGE_SRCS) -o $@ -lm -lpthread $(filter -ldl,$(EXTRA_LIBS))

.PHONY: units-image
units-image: $(UNIT_IMAGE_BIN)
	./$(UNIT_IMAGE_BIN)

units: units-image
units-valgrind: units-image-valgrind
.PHONY: units-image-valgrind
units-image-valgrind: $(UNIT_IMAGE_BIN)
	valgrind -q --error-exitcode=1 --leak-check=full ./$(UNIT_IMAGE_BIN)

# ---- json: qv_json, field reads on JSON text without decoding -----------
#   make units-json      build and run spec/c/test_json_units.c (also run
#                        by `make units`; `make units-valgrind` too)
#   fuzz target json     fuzz/fuzz_json.c: qv_json against Debian's
#                        lua-cjson in a Lua 5.4 state (the oracle): same
#                        acceptance, same values along every path
FUZZ_TARGETS += json
FUZZ_EXTRA_json = src/qv_json.c src/qv_buf.c
FUZZ_LIBS_json = -llua5.4
FUZZ_FLAGS_json = -max_len=4096 -dict=fuzz/json.dict
$(FUZZ_DIR)/fuzz_json: FUZZ_CFLAGS += -I/usr/include/lua5.4

# The tests run twice: as built for this machine (SSE2 on x86-64) and with
# QV_JSON_NO_SIMD, the portable string scan other machines get.
UNIT_JSON_SRCS = src/qv_json.c src/qv_buf.c
UNIT_JSON_BIN = build/test_json_units
UNIT_JSON_BIN_PORTABLE = build/test_json_units_portable

$(UNIT_JSON_BIN): spec/c/test_json_units.c $(UNIT_JSON_SRCS) $(FUZZ_HEADERS)
	@mkdir -p $(dir $@)
	$(UNIT_CC) $(UNIT_CFLAGS) -Isrc spec/c/test_json_units.c \
	  $(UNIT_JSON_SRCS) -o $@ -lm

$(UNIT_JSON_BIN_PORTABLE): spec/c/test_json_units.c $(UNIT_JSON_SRCS) $(FUZZ_HEADERS)
	@mkdir -p $(dir $@)
	$(UNIT_CC) $(UNIT_CFLAGS) -DQV_JSON_NO_SIMD -Isrc spec/c/test_json_units.c \
	  $(UNIT_JSON_SRCS) -o $@ -lm

.PHONY: units-json units-json-valgrind
units-json: $(UNIT_JSON_BIN) $(UNIT_JSON_BIN_PORTABLE)
	./$(UNIT_JSON_BIN)
	./$(UNIT_JSON_BIN_PORTABLE)

units-json-valgrind: $(UNIT_JSON_BIN) $(UNIT_JSON_BIN_PORTABLE)
	valgrind -q --error-exitcode=1 --leak-check=full ./$(UNIT_JSON_BIN)
	valgrind -q --error-exitcode=1 --leak-check=full ./$(UNIT_JSON_BIN_PORTABLE)

units: units-json
units-valgrind: units-json-valgrind
