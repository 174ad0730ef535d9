# mk/rock.mk: a source rock that installs like a published one.
#
#   make rock        qwenvl-<version>-1.src.rock in the repository root: the
#                    working tree's tracked files packed (what is on disk
#                    now, committed or not) with a versioned rockspec; no
#                    network. Install it with
#                      luarocks install --deps-mode=none ./qwenvl-<v>-1.src.rock
#                    (--deps-mode=none where Debian's lua-cjson serves).
#   make test-hosts  (spec/hosts/luarocks_test.lua) installs that rock into
#                    clean trees for Lua 5.1 (LuaJIT's ABI) and 5.4 and uses it.
#
# The versioned rockspec is the scm one with its version set and its
# source pointing at the tarball next to it (file://), which `luarocks
# pack` copies into the rock instead of downloading.

ROCK_VERSION := $(shell sed -n 's/^\#define QV_VERSION "\(.*\)"/\1/p' src/qv_state.h)
ROCK_NAME := qwenvl-$(ROCK_VERSION)-1
ROCK_DIR := build/rock

.PHONY: rock

rock:
	@rm -rf $(ROCK_DIR) && mkdir -p $(ROCK_DIR)/qwenvl-$(ROCK_VERSION)
	@git ls-files -z | xargs -0 -I{} sh -c 'test -e "{}" && cp --parents -p "{}" $(ROCK_DIR)/qwenvl-$(ROCK_VERSION)/' 
	@tar -C $(ROCK_DIR) -czf $(ROCK_DIR)/qwenvl-$(ROCK_VERSION).tar.gz qwenvl-$(ROCK_VERSION)
	@sed -e 's/^version = "scm-1"/version = "$(ROCK_VERSION)-1"/' \
	    -e 's|^  url = "git+https://github.com/qwenvl/qwenvl.git",|  url = "file://$(CURDIR)/$(ROCK_DIR)/qwenvl-$(ROCK_VERSION).tar.gz",\n  dir = "qwenvl-$(ROCK_VERSION)",|' \
	    qwenvl-scm-1.rockspec > $(ROCK_DIR)/$(ROCK_NAME).rockspec
	@cd $(ROCK_DIR) && luarocks pack $(ROCK_NAME).rockspec >/dev/null
	@cp $(ROCK_DIR)/$(ROCK_NAME).src.rock .
	@echo "$(ROCK_NAME).src.rock"

