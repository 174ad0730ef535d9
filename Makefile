# qwenvl — build, test, bench.
#   make                 build/lua5.4/qwenvl.so
#   make LUA=luajit      build/luajit/qwenvl.so (also lua5.1, lua5.3)
#   make test            install missing Debian packages (as root), build, run everything
#   make bench           benchmarks against the stand-in (see bench/)

LUA ?= lua5.4
BUILD := build/$(LUA)

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
        -fvisibility=hidden $(WARN) -I$(LUA_INCDIR) $(EXTRA_CFLAGS) $(CFLAGS) $(SAN)
LIBFLAG ?= -shared
LIBS := -lcurl -lcrypto -lpthread -lm

SRC := $(wildcard src/*.c)
OBJ := $(SRC:src/%.c=$(BUILD)/%.o)
HDR := $(wildcard src/*.h)

.PHONY: all clean test deps test-lua54 test-luajit demo

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

DEB_PACKAGES := build-essential pkg-config python3 curl openssl lua5.4 liblua5.4-dev \
  lua5.3 liblua5.3-dev lua5.1 liblua5.1-0-dev luajit2 libluajit2-5.1-dev \
  libcurl4-openssl-dev libssl-dev lua-cjson lua-busted lua-socket lua-filesystem luarocks \
  libvips-dev libvips-tools nginx-light libnginx-mod-http-lua lua-resty-core \
  neovim clang libclang-rt-14-dev valgrind

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

# .busted holds the paths: task "default" is Lua 5.4, task "luajit" LuaJIT.
SPECS ?=

test: deps
	$(MAKE) --no-print-directory LUA=lua5.4 all
	$(MAKE) --no-print-directory LUA=luajit all
	$(MAKE) --no-print-directory units
	$(MAKE) --no-print-directory test-lua54
	$(MAKE) --no-print-directory test-luajit
	$(MAKE) --no-print-directory test-hosts
	$(MAKE) --no-print-directory fuzz-regress
	@echo "make test: every suite passed"

test-lua54:
	busted -o utfTerminal $(SPECS)

test-luajit:
	busted --run=luajit -o utfTerminal $(SPECS)

-include fuzz/fuzz.mk $(wildcard mk/*.mk)

# A real example: DashScope when DASHSCOPE_API_KEY is set, else the stand-in.
demo: deps
	$(MAKE) --no-print-directory LUA=lua5.4 all
	lua5.4 examples/describe.lua
