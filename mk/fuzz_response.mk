# mk/fuzz_response.mk: the libFuzzer target for response-body field
# extraction and stream-event folding (fuzz/fuzz_response.c), added to
# the fuzz/fuzz.mk list. It runs the real qv_result code in a Lua 5.4
# state with Debian's lua-cjson; no network, no engine.
#
#   make fuzz FUZZ_SECONDS=N     also fuzzes `response`
#   make fuzz-regress            also replays fuzz/corpus/response and
#                                fuzz/regress/response

FUZZ_TARGETS += response
FUZZ_EXTRA_response = src/qv_result.c src/qv_buf.c src/qv_compat.c
FUZZ_LIBS_response = -llua5.4 -lcurl

$(FUZZ_DIR)/fuzz_response: FUZZ_CFLAGS += -I$(LUA_INCDIR_lua5.4)

# fuzz/fuzz.mk expands $(FUZZ_BINS) in its prerequisites before this file
# appends to FUZZ_TARGETS: add the binary to those goals here.
fuzz fuzz-build fuzz-regress: $(FUZZ_DIR)/fuzz_response
