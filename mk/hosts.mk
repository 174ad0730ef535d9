# mk/hosts.mk: host integration tests (issue 5; also HTTP/2 through nginx), included by the Makefile.
#
#   make test-hosts     build lua5.1/lua5.3/luajit/lua5.4 modules and the
#                       poll() builds (build/lua5.4-poll, build/luajit-poll), then run
#                       spec/hosts/*_test.lua on Lua 5.4: 5.1/5.3 smoke,
#                       luarocks make into temp trees (5.4, 5.1), nginx with
#                       lua-nginx-module on both engines (50 x 300 ms
#                       concurrent, statuses, streams; the example as a
#                       user who is not root), headless Neovim (vim.loop;
#                       the timer loop on the poll() build), HTTP/2 on both
#                       engines, batch captioning tool, `qwenvl chat` in a
#                       terminal (tmux) on Lua 5.4 and LuaJIT.
#   make test-hosts HOSTS_SPECS=spec/hosts/nginx_test.lua   one host alone
#   make deps-hosts     install what those need (as root), like `make deps`
#
# The files are named *_test.lua so `busted spec` (pattern _spec) skips them.
#
# busted is started as `lua5.4 <busted> --ignore-lua`, not `busted --lua=...`:
# busted 2.1.1 re-executes itself for --lua (and for `lua` in .busted) by
# pasting its arguments into a shell command unquoted, so the `;` in -m's
# path list ends the command and the rest (cpath, pattern, files) is lost.

HOSTS_DEB_PACKAGES := lua5.1 liblua5.1-0-dev lua5.3 liblua5.3-dev lua5.4 \
  liblua5.4-dev luajit2 libluajit2-5.1-dev lua-cjson lua-socket lua-busted \
  luarocks nginx-light libnginx-mod-http-lua lua-resty-core neovim tmux curl \
  python3 libvips-tools build-essential libcurl4-openssl-dev libssl-dev

HOSTS_BUSTED = lua5.4 $$(command -v busted) --ignore-lua \
  -m './lua/?.lua;./lua/?/init.lua;./?.lua' --cpath='./build/lua5.4/?.so' \
  --pattern=_test
HOSTS_SPECS ?= spec/hosts

.PHONY: test-hosts hosts-build deps-hosts

hosts-build:
	$(MAKE) --no-print-directory LUA=lua5.1 all
	$(MAKE) --no-print-directory LUA=lua5.3 all
	$(MAKE) --no-print-directory LUA=luajit all
	$(MAKE) --no-print-directory LUA=lua5.4 all
	$(MAKE) --no-print-directory LUA=lua5.4 POLLER=poll all
	$(MAKE) --no-print-directory LUA=luajit POLLER=poll all

test-hosts: hosts-build
	$(HOSTS_BUSTED) -o utfTerminal $(HOSTS_SPECS)

deps-hosts:
	@$(MAKE) --no-print-directory deps DEB_PACKAGES='$(HOSTS_DEB_PACKAGES)'
