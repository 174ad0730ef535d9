# make bench-json: what reading a chat completion body costs, qv_json
#   (src/qv_json.c) against cjson.decode, in instructions per body under
#   callgrind (bench/json_bench.c, bench/json_bench.sh); writes
#   bench/json-results.md. Knob: JSON_BENCH_N (2000 bodies a mode).
# The unit tests and the fuzz target are in fuzz/fuzz.mk (units-json,
#   fuzz target json).

BENCH_EXTRA += bench-json
JSON_BENCH_N ?= 2000
JSON_BENCH_BIN := build/bench/json_bench

.PHONY: bench-json

$(JSON_BENCH_BIN): bench/json_bench.c src/qv_json.c src/qv_json.h src/qv_buf.c src/qv_buf.h
	@mkdir -p $(dir $@)
	$(CC) -std=c99 -D_POSIX_C_SOURCE=200809L -O2 -g -Wall -Wextra \
	  -Wdeclaration-after-statement -Isrc -I/usr/include/lua5.4 -o $@ \
	  bench/json_bench.c src/qv_json.c src/qv_buf.c -llua5.4 -lm

bench-json: $(JSON_BENCH_BIN)
	@{ echo "# qv_json against cjson.decode"; echo; \
	  echo "Date: $$(date -u '+%Y-%m-%d %H:%M UTC'); $$(uname -m); $$($(CC) --version | head -n 1); -O2."; \
	  echo "Instructions (callgrind Ir) per body, mean of $(JSON_BENCH_N) runs of each mode's function"; \
	  echo "after one warm-up; Lua 5.4 and Debian's lua-cjson 2.1.0. Reproduce: \`make bench-json\`."; \
	  echo; sh bench/json_bench.sh $(JSON_BENCH_BIN) $(JSON_BENCH_N); } > build/bench/json-results.md
	@cat build/bench/json-results.md
	@cp build/bench/json-results.md bench/json-results.md
