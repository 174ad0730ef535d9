-- mk/mutate/plan.lua: which mutants `make mutate` tries, in which order,
-- and the pure parts of the covering map. No I/O, so the self-test
-- (spec/mutate_tool_spec.lua) runs it on Lua 5.1-5.4 and LuaJIT.
--
--   plan.order(files, by_file, seed, op_names) -> list of mutants
--   plan.parse_equivalent(text, name)          -> { [id] = {file, reason} }
--   plan.requires_of(text)                     -> set of module names

local M = {}

-- Park-Miller "minimal standard": the same sequence on every Lua (products
-- stay below 2^46, exact in a double), independent of math.random.
function M.rng(seed)
  local x = seed % 2147483646 + 1
  return function(n)
    x = x * 16807 % 2147483647
    return x % n + 1
  end
end

function M.shuffle(list, rand)
  for i = #list, 2, -1 do
    local j = rand(i)
    list[i], list[j] = list[j], list[i]
  end
  return list
end

local function round_robin(lists)
  local out, i = {}, 1
  while true do
    local any = false
    for _, l in ipairs(lists) do
      if l[i] then out[#out + 1] = l[i]; any = true end
    end
    if not any then return out end
    i = i + 1
  end
end

--- The seeded order of a campaign. Within a file the operators take turns
--- (each operator's mutants shuffled), and the files take turns too, so a
--- budget that fits a few mutants still samples every file and every kind
--- of mutant. by_file[f] is ops.generate's list for f.
function M.order(files, by_file, seed, op_names)
  local rand = M.rng(seed)
  local queues = {}
  for _, f in ipairs(files) do
    local per_op = {}
    for _, m in ipairs(by_file[f]) do
      per_op[m.op] = per_op[m.op] or {}
      table.insert(per_op[m.op], m)
    end
    local lists = {}
    for _, name in ipairs(op_names) do
      if per_op[name] then lists[#lists + 1] = M.shuffle(per_op[name], rand) end
    end
    queues[#queues + 1] = round_robin(lists)
  end
  return round_robin(queues)
end

--- mk/mutate/equivalent.txt: `<id> <file> <reason>` per line, # comments.
function M.parse_equivalent(text, name)
  local eq, n = {}, 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if not line:match("^%s*#") and line:match("%S") then
      local id, file, reason = line:match("^%s*(%x%x%x%x%x%x%x%x)%s+(%S+)%s+(%S.-)%s*$")
      if not id then
        error(("mutate: %s:%d: expected `<id> <file> <reason>`"):format(name or "equivalent", n), 0)
      end
      eq[id] = { file = file, reason = reason }
    end
  end
  return eq
end

--- The modules a Lua text loads: require("x"), require "x", pcall(require,
--- "x"), in code or in a string run by a child Lua; running bin/qwenvl
--- loads qwenvl.cli.
function M.requires_of(text)
  local set = {}
  for name in text:gmatch("require%s*%(?%s*[\"']([%w_%.%-]+)[\"']") do set[name] = true end
  for name in text:gmatch("pcall%s*%(%s*require%s*,%s*[\"']([%w_%.%-]+)[\"']") do set[name] = true end
  if text:find("bin/qwenvl", 1, true) then set["qwenvl.cli"] = true end
  return set
end

return M
