# mk/async.mk: specs for issue 4 (handles, streaming, chat_many), included
# by the Makefile. `make test` already runs them (busted picks up every
# spec/*_spec.lua); this target runs just these three on Lua 5.4 and LuaJIT.
#   make test-async
# The paths come from .busted (tasks "default" and "luajit"): passing
# -m/--cpath together with --lua breaks, because busted re-runs itself
# through the shell without quoting and the ';' in the paths splits it.

ASYNC_SPECS := spec/handle_spec.lua spec/stream_spec.lua spec/many_spec.lua

.PHONY: test-async

test-async:
	$(MAKE) --no-print-directory LUA=lua5.4 all
	$(MAKE) --no-print-directory LUA=luajit all
	busted -o utfTerminal $(ASYNC_SPECS)
	busted --run=luajit -o utfTerminal $(ASYNC_SPECS)
