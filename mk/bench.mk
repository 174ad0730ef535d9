# make bench: every benchmark, then a summary table of the goals (issue 15,
# and issue 4's batch throughput): figure, goal, met/missed. Each figure is
# measured against its floor or its rival in the same run; nothing here is
# an absolute wall-clock claim to assert in a test. About 4-5 minutes on
# 2 cores. Parts (each also runs alone):
#
#   make bench-qwenvl   bench/bench.lua -> bench/results.md: sequential
#                       calls against a bare libcurl loop (bench/bare_curl.c)
#                       in CPU, wall and callgrind instructions per call,
#                       chat_many throughput, a 1 MB upload. Knobs:
#                       BENCH_N (400), BENCH_N_BIG (30), BENCH_WARMUP (20),
#                       BENCH_DELAY_MS (200), BENCH_ONLY=abcd (letters to run),
#                       BENCH_CG_N1/BENCH_CG_N2 (20/120 calls under callgrind),
#                       BENCH_CHUNKS (4: qwenvl and bare_curl take turns),
#                       BENCH_OUT=- (do not write results.md)
#   make bench-wan      bench/wan_bench.lua -> bench/wan-results.md: one
#                       `qwenvl analyze` process on loopback (goal 1), then
#                       through bench/wan_proxy.py (a delaying TCP proxy) the
#                       analyze process in round trips (goal 2), 10 calls
#                       keep-alive vs `requests.post` per call, one process
#                       per image vs bench/script_way.py, and the streaming
#                       first-delta latency (goal 5). Knobs: WAN_RTT_MS (60),
#                       WAN_RUNS (7), WAN_SEQ (10), WAN_SEQ_RUNS (5),
#                       WAN_LOCAL_RUNS (15), WAN_STREAM_N (20), WAN_ONLY=1abcs,
#                       WAN_PYTHON (a python3 with requests), WAN_OUT=-
#   bench-batch, bench-schema, bench-resize (mk/batch.mk, mk/schema.mk,
#                       mk/vips.mk): the Batch API path, qwenvl.schema, and
#                       resizing against vipsthumbnail (goals 1 and 3 for
#                       qwenvl.chat are read from bench/resize-results.md)
#   make bench-summary  the table again, from the last runs' lines
#                       (build/bench/summary/*.tsv and bench/resize-results.md);
#                       also written to bench/summary.md
#
# Other fragments add their own benchmarks with `BENCH_EXTRA += bench-foo`;
# `make bench` runs them all in turn (one failing does not stop the rest,
# but makes `make bench` fail after the summary).

BENCH_EXTRA ?=
BENCH_EXTRA += bench-resize
BENCH_LUA ?= lua5.4
BENCH_BARE := build/bench/bare_curl
BENCH_TIMED := build/bench/timed
BENCH_SUMMARY_DIR := build/bench/summary

.PHONY: bench bench-qwenvl bench-wan bench-summary bench-tools

bench:
	@rm -f $(BENCH_SUMMARY_DIR)/*.tsv
	@start=$$(date +%s); st=0; \
	for t in bench-qwenvl bench-wan $(BENCH_EXTRA); do \
	  echo "== make $$t"; \
	  $(MAKE) --no-print-directory $$t || { echo "== make $$t FAILED"; st=1; }; \
	done; \
	BENCH_START=$$start BENCH_SECONDS=$$(( $$(date +%s) - start )) $(BENCH_LUA) bench/summary.lua || st=1; \
	exit $$st

bench-tools: $(BENCH_BARE) $(BENCH_TIMED)
	$(MAKE) --no-print-directory LUA=$(BENCH_LUA) all

bench-qwenvl: bench-tools
	BENCH_BARE=$(BENCH_BARE) BENCH_SUMMARY=$(BENCH_SUMMARY_DIR)/bench.tsv $(BENCH_LUA) bench/bench.lua

bench-wan: bench-tools
	BENCH_TIMED=$(BENCH_TIMED) BENCH_BARE=$(BENCH_BARE) BENCH_SUMMARY=$(BENCH_SUMMARY_DIR)/wan.tsv \
	  $(BENCH_LUA) bench/wan_bench.lua

bench-summary:
	$(BENCH_LUA) bench/summary.lua

$(BENCH_BARE): bench/bare_curl.c
	@mkdir -p $(dir $@)
	$(CC) -std=c99 -D_POSIX_C_SOURCE=200809L -O2 -Wall -Wextra -o $@ $< -lcurl

$(BENCH_TIMED): bench/timed.c
	@mkdir -p $(dir $@)
	$(CC) -std=c99 -O2 -Wall -Wextra -o $@ $<
