# qwenvl — build, test, bench.
#   make                 build/lua5.4/qwenvl.so
#   make LUA=luajit      build/luajit/qwenvl.so (also lua5.1, lua5.3)
#   make POLLER=poll     the poll() engine instead of epoll: build/<abi>-poll/
#                        (POSIX; chosen by itself where epoll does not exist)
#   make test            install missing Debian packages (as root), build, run everything
#                        (the busted suite on epoll and on poll(): test-lua54-poll, test-luajit-poll)
#   make bench           benchmarks against the stand-in (see bench/)

LUA ?= lua5.4
# The engine's socket set (src/qv_watch.c): epoll on Linux, poll()
# elsewhere. POLLER=poll builds the poll() engine on Linux too, into a
# folder of its own, so both can be tested side by side.
POLLER ?=
ifeq ($(POLLER),poll)
BUILD := build/$(LUA)-poll
POLLER_CFLAGS := -DQV_WATCH_POLL
else ifeq ($(POLLER),)
BUILD := build/$(LUA)
else
$(error POLLER=$(POLLER): leave it unset (epoll where it exists) or use POLLER=poll)
endif

LUA_INCDIR_lua5.4 := /usr/include/lua5.4
LUA_INCDIR_lua5.3 := /usr/include/lua5.3
LUA_INCDIR_lua5.1 := /usr/include/lua5.1
LUA_INCDIR_luajit := /usr/include/luajit-2.1
LUA_INCDIR ?= $(LUA_INCDIR_$(LUA))

CC ?= cc
OPT ?= -O2 -g
WARN := -Wall -Wextra -Wshadow -Wmissing-prototypes -Wstrict-prototypes \
        -Wpointer-arith -Wcast-qual -Wformat=2 -Wvla -Wdeclaration-after-statement
# Only luaopen_qwenvl is exported: the qv_* names stay out of the host.
CFLAGS_ALL = -std=c99 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE $(OPT) -fPIC \
        -fvisibility=hidden $(WARN) -I$(LUA_INCDIR) $(POLLER_CFLAGS) $(EXTRA_CFLAGS) $(CFLAGS) $(SAN)
LIBFLAG ?= -shared
LIBS := -lcurl -lcrypto -lpthread -lm

SRC := $(wildcard src/*.c)
OBJ := $(SRC:src/%.c=$(BUILD)/%.o)
HDR := $(wildcard src/*.h)

.PHONY: all clean test deps test-lua54 test-luajit test-lua54-poll test-luajit-poll demo

all: $(BUILD)/qwenvl.so

$(BUILD)/%.o: src/%.c $(HDR) | $(BUILD)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(BUILD)/qwenvl.so: $(OBJ)
	$(CC) $(LIBFLAG) $(SAN) -o $@ $(OBJ) $(LIBS) $(EXTRA_LIBS) $(LDFLAGS)

$(BUILD):
	mkdir -p $@

clean:
	rm -rf build

# ---- dependencies -------------------------------------------------------

# What `make demo` needs: build the Lua 5.4 module and run it (libcurl,
# Lua 5.4, lua-cjson, libvips for resizing; python3 and lua-socket run
# the local stand-in when there is no key). Nothing for development.
DEB_RUN_PACKAGES := build-essential libcurl4-openssl-dev libssl-dev \
  lua5.4 liblua5.4-dev lua-cjson libvips42 python3 lua-socket lua-filesystem

# What `make test` needs on top: the other ABIs, busted, the hosts
# (nginx, Neovim, luarocks), sanitizers, fuzzing, memcheck.
DEB_DEV_PACKAGES := pkg-config curl openssl lua5.3 liblua5.3-dev lua5.1 \
  liblua5.1-0-dev luajit2 libluajit2-5.1-dev lua-busted luarocks python3-yaml \
  libvips-dev libvips-tools python3-requests nginx-light libnginx-mod-http-lua lua-resty-core \
  neovim tmux clang libclang-rt-14-dev valgrind lua-rex-pcre2

DEB_PACKAGES := $(DEB_RUN_PACKAGES) $(DEB_DEV_PACKAGES)

.PHONY: deps-run

deps-run:
	@$(MAKE) --no-print-directory deps DEB_PACKAGES='$(DEB_RUN_PACKAGES)'

deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' \
	    || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "missing Debian packages; run:"; \
	    echo "  sudo apt-get install -y$$missing"; exit 1; \
	  fi; fi

# ---- tests --------------------------------------------------------------

# .busted holds the paths: task "default" is Lua 5.4, task "luajit" LuaJIT,
# "poll" and "luajit-poll" the same on the poll() engine (POLLER=poll).
# The whole suite runs on all four (each run is 1.5-2 min on 2 cores).
SPECS ?=

test: deps
	$(MAKE) --no-print-directory LUA=lua5.4 all
	$(MAKE) --no-print-directory LUA=luajit all
	$(MAKE) --no-print-directory LUA=lua5.4 POLLER=poll all
	$(MAKE) --no-print-directory LUA=luajit POLLER=poll all
	$(MAKE) --no-print-directory units
	$(MAKE) --no-print-directory units-watch
	$(MAKE) --no-print-directory check-vips-abi
	$(MAKE) --no-print-directory test-lua54
	$(MAKE) --no-print-directory test-luajit
	$(MAKE) --no-print-directory test-lua54-poll
	$(MAKE) --no-print-directory test-luajit-poll
	$(MAKE) --no-print-directory test-hosts
	$(MAKE) --no-print-directory fuzz-regress
	@echo "make test: every suite passed"

test-lua54:
	busted -o utfTerminal $(SPECS)

test-luajit:
	busted --run=luajit -o utfTerminal $(SPECS)

test-lua54-poll:
	busted --run=poll -o utfTerminal $(SPECS)

test-luajit-poll:
	busted --run=luajit-poll -o utfTerminal $(SPECS)

-include fuzz/fuzz.mk $(wildcard mk/*.mk)

# A real example: DashScope when DASHSCOPE_API_KEY is set, else the stand-in.
demo: deps-run
	$(MAKE) --no-print-directory LUA=lua5.4 all
	lua5.4 examples/describe.lua
