# mk/sanitize.mk: the busted suite under AddressSanitizer + UBSan, and
# under valgrind memcheck, both on the stock lua5.4 interpreter.
#
#   make check-asan            module built with ASan+UBSan into build/asan/,
#                              whole suite, zero reports (~3 min on 2 cores)
#   make check-valgrind        whole suite under memcheck against
#                              build/lua5.4/qwenvl.so (slow: see spec/RELIABILITY.md)
#   make check-valgrind-ci     the representative subset CI runs
#   SAN_SPECS=spec/x_spec.lua  run other specs (any of the three targets)
#
# How (see /work/shared/notes/ecosystem.md §6):
# - only the module is instrumented; the interpreter is Debian's. The ASan
#   runtime must come first, so it is LD_PRELOADed, together with
#   mk/sanitize/preload_shim.c (a no-op dlclose, so leak stacks keep their
#   file:line after lua_close unloads the module; it also removes
#   LD_PRELOAD from the environment so the specs' children run plain).
# - busted is started as `lua5.4 busted --ignore-lua`: .busted names
#   `lua = "lua5.4"`, and busted's re-exec of that interpreter passes its
#   arguments through the shell unquoted (the ';' of --lpath splits the
#   command).
# - suppressions (mk/sanitize/lsan.supp, mk/sanitize/valgrind.supp) name
#   third-party frames only (libcurl, OpenSSL, glib/vips, ld.so, Lua
#   itself); nothing from qv_*.
# - valgrind 3.19 stops with SIGILL on RDTSCP in libhwy, which libvips
#   pulls in through its dynamic modules (vips-jxl); VIPSHOME=/nonexistent
#   keeps libvips from loading those modules (PNG/JPEG/WebP/TIFF/GIF are
#   built in, so resizing still runs under memcheck). VIPS_NOVECTOR=1 turns
#   off libvips' ORC run-time generated SIMD code, which memcheck cannot
#   follow (invalid reads "in orcexec.* (deleted)").
# - specs start the stand-in themselves; nothing is started by hand.

SAN_LUA := lua5.4
SAN_BUSTED_BIN := $(shell command -v busted 2>/dev/null || echo /usr/bin/busted)
SAN_LPATH := ./lua/?.lua;./lua/?/init.lua;./?.lua
SAN_SPECS ?= spec
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined
SAN_OPT := -O1 -g -fno-omit-frame-pointer
SAN_BUILD := build/asan
SAN_SHIM := $(SAN_BUILD)/preload_shim.so
SAN_BUSTED = $(SAN_LUA) $(SAN_BUSTED_BIN) --ignore-lua --lpath='$(SAN_LPATH)' \
  --cpath='./$(1)/?.so' -o utfTerminal

# LSan: leaks are errors; UBSan: stop at the first report, with a stack.
# ASAN_LEAKS=0 leaves leaks to valgrind: LSan's tracer thread sometimes
# crashes at exit in this container ("Tracer caught signal 11"), no report.
ASAN_LEAKS ?= 1
SAN_ASAN_OPTIONS := detect_leaks=$(ASAN_LEAKS):abort_on_error=1
SAN_LSAN_OPTIONS := suppressions=$(CURDIR)/mk/sanitize/lsan.supp:print_suppressions=0
SAN_UBSAN_OPTIONS := print_stacktrace=1:halt_on_error=1

# Valgrind: errors and definite leaks fail the run (99); keep the
# module's debug info after dlclose so its frames stay readable.
SAN_VALGRIND := valgrind --error-exitcode=99 --leak-check=full \
  --errors-for-leak-kinds=definite --show-leak-kinds=definite \
  --keep-debuginfo=yes --num-callers=30 \
  --suppressions=$(CURDIR)/mk/sanitize/valgrind.supp

# The subset CI runs under valgrind (every C path: blocking, handles,
# streams, chat_many, retries and faults, bad input, secrets).
SAN_VALGRIND_CI_SPECS ?= spec/fault_matrix_spec.lua spec/bad_input_spec.lua \
  spec/secrets_spec.lua spec/stream_spec.lua spec/handle_spec.lua

.PHONY: asan check-asan check-valgrind check-valgrind-ci

$(SAN_SHIM): mk/sanitize/preload_shim.c
	@mkdir -p $(dir $@)
	gcc -std=c99 -D_POSIX_C_SOURCE=200809L -O1 -Wall -Wextra -shared -fPIC -o $@ $<

# The instrumented module, through the top-level rules (BUILD, OPT and SAN
# are plain variables there, so the command line overrides them).
asan: $(SAN_SHIM)
	$(MAKE) --no-print-directory LUA=lua5.4 BUILD=$(SAN_BUILD) CC=gcc \
	  OPT='$(SAN_OPT)' SAN='$(SAN_FLAGS)' $(SAN_BUILD)/qwenvl.so

# build/lua5.4 is needed too: subprocess specs (CLI, env) load the plain
# module from there.
check-asan: asan
	$(MAKE) --no-print-directory LUA=lua5.4 all
	@echo "check-asan: $(SAN_SPECS)"; start=$$(date +%s); \
	QWENVL_UNDER_ASAN=1 LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $(CURDIR)/$(SAN_SHIM)" \
	ASAN_OPTIONS='$(SAN_ASAN_OPTIONS)' LSAN_OPTIONS='$(SAN_LSAN_OPTIONS)' \
	UBSAN_OPTIONS='$(SAN_UBSAN_OPTIONS)' \
	  $(call SAN_BUSTED,$(SAN_BUILD)) $(SAN_SPECS); rc=$$?; \
	echo "check-asan: exit $$rc after $$(( $$(date +%s) - start )) s"; exit $$rc

check-valgrind:
	$(MAKE) --no-print-directory LUA=lua5.4 all
	$(MAKE) --no-print-directory units-valgrind
	@echo "check-valgrind: $(SAN_SPECS)"; start=$$(date +%s); \
	QWENVL_UNDER_VALGRIND=1 VIPSHOME=/nonexistent VIPS_NOVECTOR=1 $(SAN_VALGRIND) \
	  $(call SAN_BUSTED,build/lua5.4) $(SAN_SPECS); rc=$$?; \
	echo "check-valgrind: exit $$rc after $$(( $$(date +%s) - start )) s"; exit $$rc

check-valgrind-ci:
	$(MAKE) --no-print-directory check-valgrind SAN_SPECS='$(SAN_VALGRIND_CI_SPECS)'
