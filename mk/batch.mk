# make bench-batch: the Batch API path (qwenvl.batch: JSONL written,
#   uploaded, results mapped back) against live qwenvl.chat_many for the
#   same small requests, each in a fresh process against the stand-in;
#   writes bench/batch-results.md. Knobs: BATCH_BENCH_N (10000),
#   BATCH_BENCH_BIG (40000, a submit-only run; 0 skips it),
#   BATCH_BENCH_CONCURRENCY (16), BATCH_BENCH_OUT=- (print only).
# make test-batch: the batch specs on Lua 5.4 and LuaJIT.

BENCH_EXTRA += bench-batch
BATCH_BENCH_N ?= 10000
BATCH_SPECS := spec/batch_api_spec.lua spec/standin_batch_spec.lua

.PHONY: bench-batch test-batch

bench-batch:
	$(MAKE) --no-print-directory LUA=$(or $(BENCH_LUA),lua5.4) all
	$(or $(BENCH_LUA),lua5.4) bench/batch_bench.lua build/$(or $(BENCH_LUA),lua5.4) $(BATCH_BENCH_N)

test-batch:
	$(MAKE) --no-print-directory LUA=lua5.4 all
	$(MAKE) --no-print-directory LUA=luajit all
	busted -o utfTerminal $(BATCH_SPECS)
	busted --run=luajit -o utfTerminal $(BATCH_SPECS)
