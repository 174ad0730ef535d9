# mk/mutate.mk: make mutate, a mutation tester for this project (issue 18).
# A development tool: not part of `make test` or CI.
#
#   make mutate          mutate src/*.c and lua/qwenvl/*.lua one mutant at a
#                        time in a scratch copy (build/mutate/tree), run the
#                        checks that cover the file, the rest of the suite
#                        only if those pass, and write bench/mutation.md
#   make mutate-list     the candidate mutants per file and operator, the
#                        covering map, and the first mutants of the seed
#   make mutate-report   rewrite the last run's report (build/mutate/state.lua)
#                        after marking survivors in MUTATE_EQUIVALENT
#
# Knobs:
#   MUTATE_MINUTES=30    time budget, baseline run included; mutants are taken
#                        in a seeded order until it is spent (the last may
#                        overrun by one suite run)
#   MUTATE_SEED=1        which mutants and in which order
#   MUTATE_FILES="..."   files to mutate (default src/*.c lua/qwenvl/*.lua)
#   MUTATE_OPS=cmp,...   operators: cmp bound bool const delete return errcode
#   MUTATE_MAX=N         stop after N mutants
#   MUTATE_LUAJIT=1      survivors also face the suite under LuaJIT
#   MUTATE_SUITE=0       covering checks only (faster, less sure)
#   MUTATE_TIMEOUT_FACTOR=3  a check may take 3 x its unmutated time + 15 s
#   MUTATE_OUT=bench/mutation.md   MUTATE_DIR=build/mutate
#   MUTATE_COVER=mk/mutate/cover.lua        the covering map (which specs
#                        exercise which file); derived, with overrides there
#   MUTATE_EQUIVALENT=mk/mutate/equivalent.txt   mutants marked by hand as
#                        unable to change behaviour, with the reason
#   MUTATE_HISTORY=mk/mutate/campaigns.md   the campaigns so far (rates
#                        before and after each round of specs), kept by
#                        hand and copied to the top of every report
# Ctrl-C stops it and leaves a valid report of the mutants done.
# Self-test of the operators: busted spec/mutate_tool_spec.lua

MUTATE_MINUTES ?= 30
MUTATE_SEED ?= 1
MUTATE_FILES ?=
MUTATE_OPS ?=
MUTATE_MAX ?=
MUTATE_LUAJIT ?= 0
MUTATE_SUITE ?= 1
MUTATE_TIMEOUT_FACTOR ?= 3
MUTATE_OUT ?= bench/mutation.md
MUTATE_DIR ?= build/mutate
MUTATE_COVER ?= mk/mutate/cover.lua
MUTATE_EQUIVALENT ?= mk/mutate/equivalent.txt
MUTATE_HISTORY ?= mk/mutate/campaigns.md

MUTATE_ARGS = --minutes=$(MUTATE_MINUTES) --seed=$(MUTATE_SEED) \
  --files='$(MUTATE_FILES)' --ops='$(MUTATE_OPS)' --max='$(MUTATE_MAX)' \
  --luajit=$(MUTATE_LUAJIT) --suite=$(MUTATE_SUITE) \
  --timeout-factor=$(MUTATE_TIMEOUT_FACTOR) --out='$(MUTATE_OUT)' \
  --dir='$(MUTATE_DIR)' --cover='$(MUTATE_COVER)' \
  --equivalent='$(MUTATE_EQUIVALENT)' --history='$(MUTATE_HISTORY)'

.PHONY: mutate mutate-list mutate-report

mutate:
	lua5.4 mk/mutate/mutate.lua run $(MUTATE_ARGS)

mutate-list:
	@lua5.4 mk/mutate/mutate.lua list $(MUTATE_ARGS)

mutate-report:
	@lua5.4 mk/mutate/mutate.lua report $(MUTATE_ARGS)
