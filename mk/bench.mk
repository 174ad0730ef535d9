# make bench: performance against the stand-in on loopback (issue 4).
#   builds the module (lua5.4), compiles bench/bare_curl.c (the bare libcurl
#   floor), runs bench/bench.lua, which prints the table and writes
#   bench/results.md. Knobs (environment): BENCH_N, BENCH_N_BIG,
#   BENCH_WARMUP, BENCH_DELAY_MS, BENCH_ONLY=a|b|c, BENCH_STANDIN=plain,
#   BENCH_OUT=- (do not write results.md).
# Other fragments add their own benchmarks with `BENCH_EXTRA += bench-foo`
# (secondary expansion below: works whatever the include order).

BENCH_EXTRA ?=
BENCH_LUA ?= lua5.4
BENCH_BARE := build/bench/bare_curl

.PHONY: bench bench-qwenvl
.SECONDEXPANSION:

bench: bench-qwenvl $$(BENCH_EXTRA)

bench-qwenvl: $(BENCH_BARE)
	$(MAKE) --no-print-directory LUA=$(BENCH_LUA) all
	BENCH_BARE=$(BENCH_BARE) $(BENCH_LUA) bench/bench.lua

$(BENCH_BARE): bench/bare_curl.c
	@mkdir -p $(dir $@)
	$(CC) -std=c99 -D_POSIX_C_SOURCE=200809L -O2 -Wall -Wextra -o $@ $< -lcurl
