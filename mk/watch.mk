# mk/watch.mk: the engine's socket set (src/qv_watch.c) on both backends,
# on real sockets, with no Lua and no libcurl.
#
#   make units-watch     spec/c/test_watch.c built for epoll (where it
#                        exists) and for poll() (-DQV_WATCH_POLL), both run
#
# `make POLLER=poll` builds the whole module on poll() (see the Makefile);
# this is the unit's own test, run by `make test`.

WATCH_CFLAGS := -std=c99 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -O2 -g \
  -Wall -Wextra -Wshadow -Wmissing-prototypes -Wstrict-prototypes \
  -Wpointer-arith -Wcast-qual -Wformat=2 -Wvla -Wdeclaration-after-statement
WATCH_NATIVE := $(shell printf '\043include <sys/epoll.h>\nint main(void) { return epoll_create1(0) < 0; }\n' \
  | $(CC) -x c -o /dev/null - 2>/dev/null && echo epoll || echo poll)
WATCH_TESTS := build/test_watch_$(WATCH_NATIVE) build/test_watch_poll

.PHONY: units-watch

build/test_watch_$(WATCH_NATIVE): spec/c/test_watch.c spec/c/check.h src/qv_watch.c src/qv_watch.h
	@mkdir -p $(dir $@)
	$(CC) $(WATCH_CFLAGS) -DWANT_BACKEND='"$(WATCH_NATIVE)"' -Isrc spec/c/test_watch.c src/qv_watch.c -o $@

build/test_watch_poll: spec/c/test_watch.c spec/c/check.h src/qv_watch.c src/qv_watch.h
	@mkdir -p $(dir $@)
	$(CC) $(WATCH_CFLAGS) -DQV_WATCH_POLL -DWANT_BACKEND='"poll"' -Isrc spec/c/test_watch.c src/qv_watch.c -o $@

units-watch: $(sort $(WATCH_TESTS))
	@for t in $(sort $(WATCH_TESTS)); do ./$$t || exit 1; done
