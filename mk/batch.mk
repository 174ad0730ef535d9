# make bench-batch: the Batch API path (qwenvl.batch: JSONL written,
#   uploaded, results mapped back) against live qwenvl.chat_many for the
#   same small requests, each in a fresh process against the stand-in;
#   writes bench/batch-results.md. Knobs: BATCH_BENCH_N (10000),
#   BATCH_BENCH_BIG (40000, a submit-only run; 0 skips it),
#   BATCH_BENCH_CONCURRENCY (16), BATCH_BENCH_OUT=- (print only).
# (The batch specs alone: make test-lua54 SPECS="spec/batch_api_spec.lua
# spec/standin_batch_spec.lua", and test-luajit likewise.)

BENCH_EXTRA += bench-batch
BATCH_BENCH_N ?= 10000

.PHONY: bench-batch

bench-batch:
	$(MAKE) --no-print-directory LUA=$(or $(BENCH_LUA),lua5.4) all
	$(or $(BENCH_LUA),lua5.4) bench/batch_bench.lua build/$(or $(BENCH_LUA),lua5.4) $(BATCH_BENCH_N)
