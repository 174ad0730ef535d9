#!/bin/sh
# bench/json_bench.sh BIN [N]: instructions per chat completion body for
# each json_bench mode, counted by callgrind on the mode's function only
# (--toggle-collect), so Lua start-up and cjson loading are left out.
# Prints a Markdown table; `make bench-json` writes it to
# bench/json-results.md.
set -eu
bin=$1
n=${2:-2000}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
row() {
  valgrind --tool=callgrind --toggle-collect="one_$1" \
    --callgrind-out-file="$out/cg.$1" "$bin" "$1" "$n" >"$out/$1.txt" 2>"$out/$1.err"
  total=$(sed -n 's/^summary: *//p' "$out/cg.$1")
  # the warm-up call counts too: n + 1 bodies
  echo $(( total / (n + 1) ))
}
parse=$(row parse)
qv=$(row qv)
qv_all=$(row qv_all)
qv_lua=$(row qv_lua)
cjson=$(row cjson)
bytes=$(sed -n 's/.*body \([0-9]*\) B.*/\1/p' "$out/qv.txt")
echo "| per ${bytes}-byte chat completion body | instructions | vs cjson.decode |"
echo "|---|---:|---:|"
echo "| parse: qv_json_parse alone (validation) | $parse | $(awk "BEGIN{printf \"%.2f\", $parse/$cjson}") |"
echo "| qv: validate, then content + model unescaped, usage's span | $qv | $(awk "BEGIN{printf \"%.2f\", $qv/$cjson}") |"
echo "| qv_all: as qv + reasoning, finish_reason, id; usage by cjson.decode of its span | $qv_all | $(awk "BEGIN{printf \"%.2f\", $qv_all/$cjson}") |"
echo "| qv_lua: as qv_all, usage's tables built from qv_json walks | $qv_lua | $(awk "BEGIN{printf \"%.2f\", $qv_lua/$cjson}") |"
echo "| cjson: lua_pushlstring + cjson.decode, content/model/usage read from the tables | $cjson | 1.00 |"
