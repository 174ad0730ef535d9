# make bench-schema: qwenvl.schema on the adversarial probe's cases and on
# the inputs that run into its limits, Lua 5.4 and LuaJIT; writes
# bench/schema-results.md (bench/schema_bench.lua). Part of `make bench`.
BENCH_EXTRA += bench-schema

.PHONY: bench-schema
bench-schema:
	@printf '%s\n' '# qwenvl.schema benchmark' '' \
	  'Written by `make bench-schema` (bench/schema_bench.lua). Before patterns ran on' \
	  'PCRE2 (the Lua-pattern translation, same machine, Lua 5.4): `^[A-Z0-9-]{1,32}$$`' \
	  'on 40 characters took 47 s; `^.{1,40}$$` on 41 characters and' \
	  '`{"allOf":[{"$$ref":"#"},{"$$ref":"#"}]}` were killed after 300 s.' > bench/schema-results.md
	SCHEMA_BENCH_OUT=bench/schema-results.md lua5.4 bench/schema_bench.lua
	SCHEMA_BENCH_OUT=bench/schema-results.md luajit bench/schema_bench.lua
