-- bench/schema_bench.lua: how long qwenvl.schema takes on the adversarial
-- probe's cases and on the inputs that run into its limits (the worst a
-- schema or a document can make it do), next to a large legitimate one.
--
--   make bench-schema                      (lua5.4 and luajit)
--   lua5.4 bench/schema_bench.lua [runs]   (from the repository root)
--
-- CPU time per validation (os.clock), median and maximum of `runs` (5).
-- Prints a Markdown table; SCHEMA_BENCH_OUT=path appends it to a file.
-- Needs lua-cjson and lua-rex-pcre2. Pure Lua: no build needed.

package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local schema = require("qwenvl.schema")
local cjson = require("cjson")

local RUNS = tonumber(arg[1]) or 5
local LUA = type(jit) == "table" and jit.version or _VERSION

local function exp_graph(levels, leaf)
  local defs = {}
  for i = 0, levels - 1 do
    local nxt = { ["$ref"] = "#/$defs/a" .. (i + 1) }
    defs["a" .. i] = { allOf = { nxt, nxt } }
  end
  defs["a" .. levels] = leaf
  return { ["$defs"] = defs, ["$ref"] = "#/$defs/a0" }
end

local invoices = {}
for i = 1, 20000 do invoices[i] = { id = "INV-" .. i, qty = i % 7, name = "item " .. i } end
local unique = {}
for i = 1, 10000 do unique[i] = i end

local CASES = {
  { "probe: ^.{1,40}$, 45 characters", ("A"):rep(45), { type = "string", pattern = "^.{1,40}$" } },
  { "probe: ^[A-Z0-9-]{1,32}$, 40 characters", ("B"):rep(40), { pattern = "^[A-Z0-9-]{1,32}$" } },
  { "probe: ^.{1,4}$, 发票号码", "发票号码", { pattern = "^.{1,4}$" } },
  { "probe: allOf [$ref #, $ref #] (depth limit)", {}, cjson.decode('{"allOf":[{"$ref":"#"},{"$ref":"#"}]}') },
  { "exponential $ref graph, 30 levels (work limit)", "x", exp_graph(30, { type = "string", pattern = "^x$" }) },
  { "^(a+)+$, 40 a and ! (match limit)", ("a"):rep(40) .. "!", { pattern = "^(a+)+$" } },
  { "(\\w+\\s?)*$ unanchored, 40 a and ! (match limit)", ("a"):rep(40) .. "!", { pattern = "(\\w+\\s?)*$" } },
  { "[a-z]{2,}\\d, 31000 bytes (quadratic scan, about the largest allowed)", ("a"):rep(31000), { pattern = "[a-z]{2,}\\d" } },
  { "[a-z]{2,}\\d, 100000 bytes (refused by the budget)", ("a"):rep(100000), { pattern = "[a-z]{2,}\\d" } },
  { "uniqueItems, 10000 items (work limit)", unique, { uniqueItems = true } },
  { "legitimate: 20000 invoice lines, 3 properties, a pattern", invoices,
    { type = "array", items = { type = "object", required = { "id", "qty" }, properties = {
      id = { type = "string", pattern = "^INV-\\d+$" }, qty = { type = "integer", minimum = 0 },
      name = { type = "string", maxLength = 100 } } } } },
}

local lines = {
  "", "### qwenvl.schema, " .. LUA .. " (CPU ms per validation, " .. RUNS .. " runs)", "",
  "| case | median | max | result |", "|---|---:|---:|---|",
}
for _, c in ipairs(CASES) do
  local name, doc, s = c[1], c[2], c[3]
  local times, first = {}, nil
  for r = 1, RUNS do
    local t0 = os.clock()
    local ok, errs = schema.validate(doc, s)
    times[r] = (os.clock() - t0) * 1000
    first = first or (ok and "valid" or errs[1])
  end
  table.sort(times)
  if #first > 90 then first = first:sub(1, 87) .. "..." end
  lines[#lines + 1] = string.format("| %s | %.1f | %.1f | %s |", name, times[math.ceil(RUNS / 2)],
    times[RUNS], (first:gsub("|", "\\|")))
end
local text = table.concat(lines, "\n") .. "\n"
io.write(text)
local out = os.getenv("SCHEMA_BENCH_OUT")
if out and out ~= "" then
  local f = assert(io.open(out, "a"))
  f:write(text)
  f:close()
end
