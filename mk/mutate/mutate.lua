-- mk/mutate/mutate.lua: `make mutate`, the project's mutation tester
-- (a development tool: not part of `make test` or CI). Lua 5.4, run from
-- the repository root:
--
--   lua5.4 mk/mutate/mutate.lua run  [options]   mutate, test, write the report
--   lua5.4 mk/mutate/mutate.lua list [options]   the mutants and the map, no run
--
-- Options (mk/mutate.mk sets them from MUTATE_* variables):
--   --minutes=N         time budget, baseline included (default 30)
--   --seed=N            which mutants, in which order (default 1)
--   --files="a b"       files to mutate (default src/*.c lua/qwenvl/*.lua)
--   --ops=a,b           operators (default all; see mk/mutate/ops.lua)
--   --max=N             stop after N mutants (default: the budget decides)
--   --luajit            surviving mutants also face busted --run=luajit
--   --no-suite          covering checks only, not the rest of the suite
--   --timeout-factor=F  a check may take F x its baseline time (+15 s)
--   --out=PATH          the report (default bench/mutation.md)
--   --dir=PATH          scratch directory (default build/mutate)
--   --equivalent=PATH   exceptions (default mk/mutate/equivalent.txt)
--   --cover=PATH        covering map (default mk/mutate/cover.lua)
--   --history=PATH      the campaigns so far, kept by hand and copied into
--                       every report (default mk/mutate/campaigns.md)
--
-- How: the tracked and untracked-but-not-ignored files are copied into
-- <dir>/tree and built there, so the working tree and its build/ are never
-- touched. The unmutated copy runs every check once (their times set the
-- order and the time limits; a check that fails unmutated is left out).
-- Then one mutant at a time: write it into the copy, rebuild what changed
-- (make, per ABI the checks need; a C mutant that does not compile, or a
-- Lua one luac rejects, is "stillborn"), run the checks that cover the
-- file, the rest of the suite only if those pass, and put the file and its
-- objects back. Each check runs in a process group of its own under
-- timeout(1); past its limit the group is killed and the mutant counts as
-- killed by timeout. The report is rewritten after every mutant (write and
-- rename), so an interruption (Ctrl-C) leaves a valid one with what was done.

package.path = "./?.lua;" .. package.path
local ops = require("mk.mutate.ops")
local plan = require("mk.mutate.plan")

local unpack = table.unpack or unpack

-- ---- small utilities ----------------------------------------------------------

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function write_file(path, s)
  local f = assert(io.open(path, "wb"))
  assert(f:write(s))
  assert(f:close())
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

local function capture(cmd)
  local h = assert(io.popen(cmd, "r"))
  local s = h:read("a")
  h:close()
  return s
end

local function sh(cmd)
  local ok = os.execute(cmd)
  return ok == true or ok == 0
end

local function fmt_secs(s)
  s = math.floor(s + 0.5)
  if s >= 3600 then return string.format("%dh%02dm", s // 3600, s % 3600 // 60) end
  if s >= 60 then return string.format("%dm%02ds", s // 60, s % 60) end
  return string.format("%ds", s)
end

-- A Lua literal of plain data (the run's state, read back by `report`).
local function dump(v, indent)
  indent = indent or ""
  local t = type(v)
  if t == "string" then return string.format("%q", v) end
  if t == "number" or t == "boolean" or t == "nil" then return tostring(v) end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    if type(a) == type(b) then return a < b end
    return type(a) == "number"
  end)
  local inner, out = indent .. " ", {}
  for _, k in ipairs(keys) do
    local key = type(k) == "string" and string.format("[%q]", k) or "[" .. tostring(k) .. "]"
    out[#out + 1] = inner .. key .. " = " .. dump(v[k], inner)
  end
  return "{\n" .. table.concat(out, ",\n") .. "\n" .. indent .. "}"
end

local function now()
  -- wall clock with sub-second resolution, without luasocket
  local s = capture("date +%s.%N")
  return tonumber(s) or os.time()
end

local INTERRUPTED = setmetatable({}, { __tostring = function() return "interrupted" end })

local function is_interrupt(err)
  return err == INTERRUPTED or (type(err) == "string" and
    (err:find("interrupted!", 1, true) or err:find("Interrupted system call", 1, true)))
end

-- ---- options ------------------------------------------------------------------

local function parse_args(argv)
  local o = {
    mode = "run", minutes = 30, seed = 1, files = nil, ops = nil, max = nil,
    luajit = false, suite = true, timeout_factor = 3,
    out = "bench/mutation.md", dir = "build/mutate",
    equivalent = "mk/mutate/equivalent.txt", cover = "mk/mutate/cover.lua",
    history = "mk/mutate/campaigns.md",
  }
  for _, a in ipairs(argv) do
    local k, v = a:match("^%-%-([%w-]+)=(.*)$")
    if not k then k = a:match("^%-%-([%w-]+)$") end
    if a == "run" or a == "list" or a == "report" then
      o.mode = a
    elseif k == "minutes" then o.minutes = assert(tonumber(v), "--minutes")
    elseif k == "seed" then o.seed = assert(math.tointeger(tonumber(v)), "--seed: an integer")
    elseif k == "files" then
      if v:match("%S") then
        o.files = {}
        for f in v:gmatch("%S+") do o.files[#o.files + 1] = f end
      end
    elseif k == "ops" then
      if v:match("%S") then
        o.ops = {}
        for w in v:gmatch("[%w_]+") do o.ops[w] = true end
      end
    elseif k == "max" then o.max = (v ~= "" and assert(tonumber(v), "--max")) or nil
    elseif k == "luajit" then o.luajit = (v == nil or v == "1" or v == "yes")
    elseif k == "no-suite" then o.suite = false
    elseif k == "suite" then o.suite = not (v == "0" or v == "no")
    elseif k == "timeout-factor" then o.timeout_factor = assert(tonumber(v), "--timeout-factor")
    elseif k == "out" then o.out = v
    elseif k == "dir" then o.dir = v
    elseif k == "equivalent" then o.equivalent = v
    elseif k == "history" then o.history = v
    elseif k == "cover" then o.cover = v
    else
      error("mutate: unknown argument " .. a, 0)
    end
  end
  if o.ops then
    local known = {}
    for _, n in ipairs(ops.OPS) do known[n] = true end
    for n in pairs(o.ops) do
      if not known[n] then error("mutate: unknown operator " .. n .. " (known: " ..
        table.concat(ops.OPS, ", ") .. ")", 0) end
    end
  end
  return o
end

-- ---- equivalent mutants -----------------------------------------------------

local function load_equivalent(path)
  local text = read_file(path)
  if not text then return {} end
  return plan.parse_equivalent(text, path)
end

-- ---- the covering map -----------------------------------------------------------

local function list_specs(root)
  local out = {}
  for f in capture("cd " .. q(root) .. " && find spec -name '*_spec.lua' | sort"):gmatch("[^\n]+") do
    out[#out + 1] = f
  end
  return out
end

local requires_of = plan.requires_of

-- "a.b" -> the project file it loads (as busted's lpath finds it), or
-- "@cmodule" for the C module, or nil for anything else.
local function resolve(root, name)
  local p = name:gsub("%.", "/")
  for _, cand in ipairs({ p .. ".lua", "lua/" .. p .. ".lua", "lua/" .. p .. "/init.lua" }) do
    if exists(root .. "/" .. cand) then return cand end
  end
  if name == "qwenvl" then return "@cmodule" end
  return nil
end

local function reach(root, start_text)
  local seen, stack = {}, {}
  for name in pairs(requires_of(start_text)) do stack[#stack + 1] = name end
  while #stack > 0 do
    local name = table.remove(stack)
    local file = resolve(root, name)
    if file and not seen[file] then
      seen[file] = true
      if file ~= "@cmodule" then
        for n in pairs(requires_of(read_file(root .. "/" .. file) or "")) do
          stack[#stack + 1] = n
        end
      end
    end
  end
  return seen
end

local function unit_sources(root, vars)
  local refs = {}
  for _, v in ipairs(vars) do refs[#refs + 1] = "$(" .. v .. ")" end
  local out = capture("cd " .. q(root) .. " && make -s --no-print-directory --eval " ..
    q("__mutate_print: ; @echo " .. table.concat(refs, " ")) .. " __mutate_print 2>/dev/null")
  local set = {}
  for f in out:gmatch("%S+") do set[f] = true end
  return set
end

local function cover_map(root, cfg, files)
  local ignore = {}
  for _, s in ipairs(cfg.ignore or {}) do ignore[s] = true end
  local specs, suite, reached = list_specs(root), {}, {}
  for _, s in ipairs(specs) do
    if not ignore[s] then
      suite[#suite + 1] = s
      reached[s] = reach(root, read_file(root .. "/" .. s) or "")
    end
  end
  local units = unit_sources(root, cfg.unit_vars or {})
  local map = {}
  for _, f in ipairs(files) do
    local checks
    if cfg.files and cfg.files[f] then
      checks = { unpack(cfg.files[f]) }
    else
      checks = {}
      local key = f:match("%.c$") and "@cmodule" or f
      if units[f] then checks[#checks + 1] = "units" end
      for _, s in ipairs(suite) do
        if reached[s][key] then checks[#checks + 1] = s end
      end
    end
    for _, c in ipairs((cfg.extra or {})[f] or {}) do checks[#checks + 1] = c end
    map[f] = { covering = checks, unit = units[f] or false }
  end
  return map, suite
end

-- ---- jobs -------------------------------------------------------------------------

-- Run cmd from the scratch root in a new session (so its process group is
-- all of it), under timeout(1). Output goes to log. Returns rc, seconds,
-- timed_out. Raises INTERRUPTED on Ctrl-C, after killing the group.
local function run_job(ctx, cmd, limit, log)
  local inner = "unset MAKEFLAGS MFLAGS MAKELEVEL; cd " .. q(ctx.tree) .. " && " .. cmd
  local script = "echo @@mutate-pgid $$; s=$(date +%s.%N); " ..
    "timeout --foreground -k 5 " .. math.ceil(limit) .. " sh -c " .. q(inner) ..
    " </dev/null 2>&1; rc=$?; echo \"@@mutate-rc $rc $s $(date +%s.%N)\"; kill -KILL 0"
  local h = assert(io.popen("exec setsid sh -c " .. q(script) .. " 2>/dev/null", "r"))
  local lf = assert(io.open(log, "w"))
  local pgid, rc, t0, t1
  local ok, err = pcall(function()
    while true do
      local line, rerr = h:read("l")
      if not line then
        if rerr then error(INTERRUPTED) end
        break
      end
      local p = not pgid and line:match("^@@mutate%-pgid (%d+)$")
      local r, a, b = line:match("^@@mutate%-rc (%d+) ([%d%.]+) ([%d%.]+)$")
      if p then
        pgid = p
      elseif r then
        rc, t0, t1 = tonumber(r), tonumber(a), tonumber(b)
      else
        lf:write(line, "\n")
      end
    end
  end)
  lf:close()
  if not ok then
    if pgid then os.execute("kill -TERM -" .. pgid .. " 2>/dev/null") end
    pcall(h.close, h)
    error(is_interrupt(err) and INTERRUPTED or err, 0)
  end
  h:close()
  if not rc then error(INTERRUPTED) end   -- the job's shell was killed from outside
  return rc, (t1 or 0) - (t0 or 0), rc == 124 or rc == 137
end

local function check_cmd(check)
  local tap = " -o TAP --no-keep-going "
  if check == "units" then
    return "make -s --no-print-directory units", {}
  end
  local spec = check:match("^luajit:(.*)$")
  if spec then return "busted --run=luajit" .. tap .. q(spec), { "luajit" } end
  local host = check:match("^hosts:(.*)$")
  if host then
    -- as mk/hosts.mk runs them; hosts-build makes every ABI they load
    return "make -s --no-print-directory hosts-build >/dev/null && " ..
      "lua5.4 \"$(command -v busted)\" --ignore-lua " ..
      "-m './lua/?.lua;./lua/?/init.lua;./?.lua' --cpath='./build/lua5.4/?.so' " ..
      "--pattern=_test" .. tap .. q(host), {}
  end
  local cmd = check:match("^sh:(.*)$")
  if cmd then return cmd, {} end
  return "busted" .. tap .. q(check), { "lua5.4" }
end

-- What a failed check said: busted's first "not ok", a unit's failure,
-- else the last line.
local function why_failed(log)
  local text = read_file(log) or ""
  local nok = text:match("\nnot ok %d+ %- ([^\n]+)") or text:match("^not ok %d+ %- ([^\n]+)")
  if nok then return nok end
  local fail = text:match("[^\n]*FAIL[^\n]*") or text:match("[^\n]*[Ee]rror[^\n]*")
  if fail then return fail end
  local last
  for l in text:gmatch("[^\n]+") do last = l end
  return last or ""
end

local function first_error(log)
  local text = read_file(log) or ""
  return text:match("[^\n]*error:[^\n]*") or text:match("[^\n]+") or ""
end

-- ---- builds in the scratch copy ------------------------------------------------

local function build_abi(ctx, abi)
  local rc = run_job(ctx, "make -s --no-print-directory LUA=" .. abi .. " all",
    600, ctx.dir .. "/build.log")
  return rc == 0
end

-- Keep the unmutated objects of an ABI so that a C mutant costs one
-- compile and one link, and putting the file back costs none.
local function snapshot_abi(ctx, abi)
  local from, to = ctx.tree .. "/build/" .. abi, ctx.dir .. "/orig/" .. abi
  assert(sh("rm -rf " .. q(to) .. " && mkdir -p " .. q(to) .. " && cp " .. q(from) ..
    "/*.o " .. q(from) .. "/qwenvl.so " .. q(to) .. "/"), "mutate: cannot keep " .. from)
end

local function ensure_abi(ctx, abi)
  if ctx.built[abi] then return end
  io.write("  building ", abi, " in the scratch copy\n")
  if not build_abi(ctx, abi) then
    error("mutate: the unmutated copy does not build for " .. abi ..
      " (see " .. ctx.dir .. "/build.log)", 0)
  end
  snapshot_abi(ctx, abi)
  ctx.built[abi] = true
end

local function restore_objects(ctx, file, abis)
  local obj = file:match("^src/(.-)%.c$")
  if not obj then return end
  for abi in pairs(abis) do
    local b, o = ctx.tree .. "/build/" .. abi, ctx.dir .. "/orig/" .. abi
    -- copied after the source was put back, so newer than it: make keeps them
    assert(sh("cp " .. q(o .. "/" .. obj .. ".o") .. " " .. q(b .. "/" .. obj .. ".o") ..
      " && cp " .. q(o .. "/qwenvl.so") .. " " .. q(b .. "/qwenvl.so") ..
      " && touch " .. q(b .. "/" .. obj .. ".o") .. " && touch " .. q(b .. "/qwenvl.so")),
      "mutate: cannot restore the objects of " .. file)
  end
end

local function make_scratch(ctx)
  io.write("scratch copy: ", ctx.tree, "\n")
  assert(sh("rm -rf " .. q(ctx.tree) .. " " .. q(ctx.dir .. "/orig") .. " && mkdir -p " .. q(ctx.tree)))
  local list = capture("git ls-files -z -co --exclude-standard 2>/dev/null")
  local names = {}
  for name in list:gmatch("[^%z]+") do
    -- a tracked file deleted in the working tree is not copied
    if exists(name) or capture("test -L " .. q(name) .. " && echo y") ~= "" then
      names[#names + 1] = name
    end
  end
  if #names == 0 then error("mutate: not in a git checkout (git ls-files is empty)", 0) end
  local lst = ctx.dir .. "/files.lst"
  write_file(lst, table.concat(names, "\0") .. "\0")
  assert(sh("tar --null -T " .. q(lst) .. " -cf - | tar -xf - -C " .. q(ctx.tree)),
    "mutate: cannot copy the tree")
end

-- ---- the report ---------------------------------------------------------------------

local function pct(k, n)
  if n == 0 then return "–" end
  return string.format("%d%%", math.floor(100 * k / n + 0.5))
end

-- A mutant's description (its code already in `...`), cut to one line.
local function md_desc(s)
  s = s:gsub("%s+", " ")
  if #s > 90 then s = s:sub(1, 86) .. " ...`" end
  return s
end

local function write_report(ctx)
  local st, o = ctx.stats, ctx.opts
  local L = {}
  local function add(s) L[#L + 1] = s or "" end
  local elapsed = ctx.finished_at and (ctx.finished_at - ctx.started_at) or (now() - ctx.started_at)
  add("# Mutation testing")
  add()
  add("Written by `make mutate` (mk/mutate/mutate.lua); see mk/mutate.mk for the knobs. " ..
      "A development tool: not part of `make test` or CI.")
  add()
  -- a run sees only its own sample: the rates before and after each
  -- round of new specs live in a file kept by hand, shown with every report
  local history = o.history and read_file(o.history)
  if history and history:find("%S") then
    add((history:gsub("%s+$", "")))
    add()
    add("## This run")
    add()
  end
  local opsdesc = "all"
  if o.ops then
    local names = {}
    for n in pairs(o.ops) do names[#names + 1] = n end
    table.sort(names)
    opsdesc = table.concat(names, ",")
  end
  add(string.format("- Tree: %s, %s", ctx.rev, os.date("!%Y-%m-%d %H:%M UTC", math.floor(ctx.started_at))))
  add(string.format("- Run: `%s`", ctx.command))
  add(string.format("- Seed %d, budget %s min, operators %s; %s, took %s.",
    o.seed, tostring(o.minutes), opsdesc, ctx.status, fmt_secs(elapsed)))
  add(string.format("- Checks: covering checks first, then %s; busted on Lua 5.4%s. " ..
      "Check time limit: %s x its unmutated time + 15 s.",
    o.suite and "the rest of the suite for survivors" or "no rest of the suite (--no-suite)",
    o.luajit and ", survivors also on LuaJIT" or "", tostring(o.timeout_factor)))
  if ctx.baseline_line then add("- " .. ctx.baseline_line) end
  if (ctx.remarked or 0) > 0 then
    add(string.format("- %d survivors of this run were marked equivalent afterwards " ..
      "(mk/mutate/equivalent.txt, `make mutate-report`); they count as equivalent, not tried.",
      ctx.remarked))
  end
  if #ctx.excluded > 0 then
    add("- **Left out (failed unmutated):** " .. table.concat(ctx.excluded, ", "))
  end
  add()
  add("Kill rate = killed / (killed + survived); killed includes timeouts. " ..
      "Stillborn mutants (do not compile, or luac rejects them) and equivalent ones " ..
      "(mk/mutate/equivalent.txt) are not counted. Candidates: every mutant the " ..
      "operators generate for the file; tried: the seeded sample that fit the budget.")
  add()
  add("| file | candidates | tried | killed | (timeout) | survived | stillborn | equivalent | kill rate |")
  add("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
  local T = { cand = 0, tried = 0, killed = 0, timeout = 0, survived = 0, stillborn = 0, equivalent = 0 }
  for _, f in ipairs(ctx.files) do
    local s = st[f]
    add(string.format("| %s | %d | %d | %d | %d | %d | %d | %d | %s |", f, s.cand, s.tried,
      s.killed, s.timeout, s.survived, s.stillborn, s.equivalent, pct(s.killed, s.killed + s.survived)))
    for k in pairs(T) do T[k] = T[k] + (s[k] or 0) end
  end
  add(string.format("| **total** | %d | %d | %d | %d | %d | %d | %d | **%s** |", T.cand, T.tried,
    T.killed, T.timeout, T.survived, T.stillborn, T.equivalent, pct(T.killed, T.killed + T.survived)))
  add()
  add(string.format("**Summary:** %d mutants tried in %d files: %d killed (%d by timeout), " ..
      "%d survived, %d stillborn, %d equivalent; kill rate %s (%d/%d).",
    T.tried, #ctx.files, T.killed, T.timeout, T.survived, T.stillborn, T.equivalent,
    pct(T.killed, T.killed + T.survived), T.killed, T.killed + T.survived))
  add()
  -- operators overall
  local byop = {}
  for _, f in ipairs(ctx.files) do
    for _, r in ipairs(st[f].records) do
      local b = byop[r.m.op] or { killed = 0, survived = 0, stillborn = 0 }
      byop[r.m.op] = b
      if r.result == "killed" or r.result == "timeout" then b.killed = b.killed + 1
      elseif r.result == "survived" then b.survived = b.survived + 1
      elseif r.result == "stillborn" then b.stillborn = b.stillborn + 1 end
    end
  end
  local opl = {}
  for _, n in ipairs(ops.OPS) do
    local b = byop[n]
    if b and b.killed + b.survived + b.stillborn > 0 then
      opl[#opl + 1] = string.format("%s %s (%d/%d%s)", n, pct(b.killed, b.killed + b.survived),
        b.killed, b.killed + b.survived, b.stillborn > 0 and (", " .. b.stillborn .. " stillborn") or "")
    end
  end
  if #opl > 0 then add("By operator: " .. table.concat(opl, "; ") .. ".") add() end
  for _, f in ipairs(ctx.files) do
    local s = st[f]
    if s.tried > 0 or s.equivalent > 0 then
      add("## " .. f)
      add()
      local killers = {}
      for c, n in pairs(s.killers) do killers[#killers + 1] = { c, n } end
      table.sort(killers, function(a, b) if a[2] ~= b[2] then return a[2] > b[2] end return a[1] < b[1] end)
      local kl = {}
      for _, kv in ipairs(killers) do kl[#kl + 1] = kv[1] .. " " .. kv[2] end
      add(string.format("Tried %d: killed %d (%d by timeout), survived %d, stillborn %d, " ..
          "equivalent %d; kill rate %s.", s.tried, s.killed, s.timeout, s.survived,
          s.stillborn, s.equivalent, pct(s.killed, s.killed + s.survived)))
      if #kl > 0 then add("Killed by: " .. table.concat(kl, ", ") .. ".") end
      add("Covering checks: " .. (#ctx.map[f].covering > 0 and
        table.concat(ctx.map[f].covering, ", ") or "none (only the rest of the suite)") .. ".")
      add()
      local surv, still, eqv = {}, {}, {}
      for _, r in ipairs(s.records) do
        if r.result == "survived" then surv[#surv + 1] = r
        elseif r.result == "stillborn" then still[#still + 1] = r
        elseif r.result == "equivalent" then eqv[#eqv + 1] = r end
      end
      table.sort(surv, function(a, b) return a.m.line < b.m.line end)
      if #surv > 0 then
        add("### Survivors")
        add()
        for _, r in ipairs(surv) do
          add(string.format("**%s** line %d, %s: %s", r.m.id, r.m.line, r.m.op, md_desc(r.m.desc)))
          add()
          add("```diff")
          add((r.diff:gsub("\n$", "")))
          add("```")
          add()
        end
      end
      if #still > 0 then
        add("Stillborn: " .. (function()
          local t = {}
          for _, r in ipairs(still) do
            t[#t + 1] = string.format("%s (line %d, %s %s)", r.m.id, r.m.line, r.m.op, md_desc(r.m.desc))
          end
          return table.concat(t, "; ")
        end)() .. ".")
        add()
      end
      if #eqv > 0 then
        add("Equivalent (skipped): " .. (function()
          local t = {}
          for _, r in ipairs(eqv) do t[#t + 1] = string.format("%s (line %d: %s)", r.m.id, r.m.line, r.reason) end
          return table.concat(t, "; ")
        end)() .. ".")
        add()
      end
    end
  end
  local out = ctx.root .. "/" .. o.out
  local tmp = out .. ".tmp"
  write_file(tmp, table.concat(L, "\n"))
  assert(os.rename(tmp, out))
  if ctx.dir then
    -- what `make mutate-report` re-renders (after marking equivalents)
    local state = {}
    for _, k in ipairs({ "opts", "files", "map", "stats", "rev", "command", "status",
        "started_at", "finished_at", "baseline_line", "excluded", "remarked" }) do
      state[k] = ctx[k]
    end
    write_file(ctx.dir .. "/state.lua.tmp", "return " .. dump(state) .. "\n")
    assert(os.rename(ctx.dir .. "/state.lua.tmp", ctx.dir .. "/state.lua"))
  end
end

-- `report`: the last run's report again, with the survivors that
-- mk/mutate/equivalent.txt now names moved to "equivalent".
local function rerender(o)
  local path = o.dir .. "/state.lua"
  local chunk = loadfile(path)
  if not chunk then error("mutate: no run to report on (" .. path .. ")", 0) end
  local ctx = chunk()
  ctx.root = capture("pwd"):gsub("\n$", "")
  ctx.opts.out = o.out
  ctx.opts.history = o.history
  local eq = plan.parse_equivalent(read_file(o.equivalent) or "", o.equivalent)
  local n = 0
  for _, f in ipairs(ctx.files) do
    local s = ctx.stats[f]
    for _, r in ipairs(s.records) do
      local e = eq[r.m.id]
      if e and r.result == "survived" then
        r.result, r.reason, r.diff = "equivalent", e.reason, nil
        s.survived, s.tried, s.equivalent = s.survived - 1, s.tried - 1, s.equivalent + 1
        n = n + 1
      elseif e and (r.result == "killed" or r.result == "timeout") then
        io.stderr:write(("mutate: %s is marked equivalent but %s killed it: check %s\n")
          :format(r.m.id, r.check or "a check", o.equivalent))
      end
    end
  end
  ctx.remarked = (ctx.remarked or 0) + n
  ctx.dir = o.dir
  write_report(ctx)
  io.write(string.format("report: %s (%d more survivors marked equivalent)\n", o.out, n))
  return 0
end

-- ---- one mutant ------------------------------------------------------------------------

local function order_covering(ctx, f)
  local list = {}
  for _, c in ipairs(ctx.map[f].covering) do
    if not ctx.excluded_set[c] then list[#list + 1] = c end
  end
  local kills = ctx.stats[f].killers
  local pos = {}
  for i, c in ipairs(list) do pos[c] = i end
  table.sort(list, function(a, b)
    if (a == "units") ~= (b == "units") then return a == "units" end
    local ka, kb = kills[a] or 0, kills[b] or 0
    if ka ~= kb then return ka > kb end
    local da, db = ctx.durations[a] or 1e9, ctx.durations[b] or 1e9
    if da ~= db then return da < db end
    return pos[a] < pos[b]
  end)
  return list
end

local function rest_of_suite(ctx, f, covering)
  local done = {}
  for _, c in ipairs(covering) do done[c] = true end
  local rest = {}
  if ctx.map[f].unit and not done.units then rest[#rest + 1] = "units" end
  for _, s in ipairs(ctx.suite) do
    if not done[s] then rest[#rest + 1] = s end
  end
  if ctx.opts.luajit then
    for _, s in ipairs(ctx.suite) do rest[#rest + 1] = "luajit:" .. s end
  end
  local out = {}
  for _, c in ipairs(rest) do
    if not ctx.excluded_set[c] then out[#out + 1] = c end
  end
  table.sort(out, function(a, b)
    return (ctx.durations[a] or 1e9) < (ctx.durations[b] or 1e9)
  end)
  return out
end

local function limit_for(ctx, check)
  local d = ctx.durations[check] or 60
  return d * ctx.opts.timeout_factor + 15
end

local function run_mutant(ctx, m)
  local f = m.file
  local path = ctx.tree .. "/" .. f
  local src = ctx.sources[f]
  local covering = order_covering(ctx, f)
  local rest = ctx.opts.suite and rest_of_suite(ctx, f, covering) or {}
  local abis = {}
  for _, list in ipairs({ covering, rest }) do
    for _, c in ipairs(list) do
      local _, needs = check_cmd(c)
      for _, a in ipairs(needs) do abis[a] = true end
    end
  end
  for a in pairs(abis) do ensure_abi(ctx, a) end
  local result = { m = m }
  local applied = false
  local ok, err = pcall(function()
    write_file(path, ops.apply(src, m))
    applied = true
    if m.lang == "lua" then
      if not sh("luac5.4 -p " .. q(path) .. " >" .. q(ctx.dir .. "/build.log") .. " 2>&1") then
        result.result, result.why = "stillborn", first_error(ctx.dir .. "/build.log")
        return
      end
    else
      for a in pairs(abis) do
        if not build_abi(ctx, a) then
          result.result, result.why = "stillborn", first_error(ctx.dir .. "/build.log")
          return
        end
      end
    end
    for _, list in ipairs({ covering, rest }) do
      for _, c in ipairs(list) do
        local cmd = check_cmd(c)
        local log = ctx.dir .. "/check.log"
        local rc, secs, timed_out = run_job(ctx, cmd, limit_for(ctx, c), log)
        if rc ~= 0 then
          result.result = timed_out and "timeout" or "killed"
          result.check, result.secs = c, secs
          result.why = timed_out and ("no end after " .. fmt_secs(secs)) or why_failed(log)
          return
        end
      end
    end
    result.result = "survived"
  end)
  if applied then
    write_file(path, src)
    restore_objects(ctx, f, abis)
  end
  if not ok then error(err, 0) end
  return result
end

-- ---- main ----------------------------------------------------------------------------

local function enum_typedefs(root)
  local set = {}
  for h in capture("ls " .. q(root) .. "/src/*.h 2>/dev/null"):gmatch("[^\n]+") do
    local text = read_file(h) or ""
    for name in text:gmatch("typedef%s+enum%s*[%w_]*%s*%b{}%s*([%w_]+)%s*;") do set[name] = true end
  end
  return set
end

local function command_line(o)
  local parts = { "make mutate" }
  parts[#parts + 1] = "MUTATE_MINUTES=" .. tostring(o.minutes)
  parts[#parts + 1] = "MUTATE_SEED=" .. o.seed
  if o.files then parts[#parts + 1] = "MUTATE_FILES=\"" .. table.concat(o.files, " ") .. "\"" end
  if o.ops then
    local n = {}
    for k in pairs(o.ops) do n[#n + 1] = k end
    table.sort(n)
    parts[#parts + 1] = "MUTATE_OPS=" .. table.concat(n, ",")
  end
  if o.max then parts[#parts + 1] = "MUTATE_MAX=" .. o.max end
  if o.luajit then parts[#parts + 1] = "MUTATE_LUAJIT=1" end
  if not o.suite then parts[#parts + 1] = "MUTATE_SUITE=0" end
  return table.concat(parts, " ")
end

local function main(argv)
  local o = parse_args(argv)
  if o.mode == "report" then return rerender(o) end
  local root = capture("pwd"):gsub("\n$", "")
  if not exists(root .. "/Makefile") or not exists(root .. "/mk/mutate/ops.lua") then
    error("mutate: run from the repository root", 0)
  end
  local files = o.files
  if not files then
    files = {}
    for f in capture("ls src/*.c lua/qwenvl/*.lua 2>/dev/null"):gmatch("[^\n]+") do
      files[#files + 1] = f
    end
  end
  local cfg = dofile(o.cover)
  local eq = load_equivalent(o.equivalent)
  local sources, by_file = {}, {}
  local gen_opts = { ops = o.ops, c_scalars = enum_typedefs(root) }
  for _, f in ipairs(files) do
    local src = read_file(f)
    if not src then error("mutate: no such file: " .. f, 0) end
    if not ops.lang(f) then error("mutate: not a C or Lua file: " .. f, 0) end
    sources[f] = src
    by_file[f] = ops.generate(f, src, gen_opts)
  end
  local map, suite = cover_map(root, cfg, files)

  if o.mode == "list" then
    local total = 0
    for _, f in ipairs(files) do
      local by = {}
      for _, m in ipairs(by_file[f]) do by[m.op] = (by[m.op] or 0) + 1 end
      local parts = {}
      for _, n in ipairs(ops.OPS) do if by[n] then parts[#parts + 1] = n .. " " .. by[n] end end
      print(string.format("%-26s %5d mutants: %s", f, #by_file[f], table.concat(parts, ", ")))
      print(string.format("%-26s covering: %s", "", table.concat(map[f].covering, " ")))
      total = total + #by_file[f]
    end
    print(string.format("%d mutants in %d files; suite: %s", total, #files, table.concat(suite, " ")))
    local order = plan.order(files, by_file, o.seed, ops.OPS)
    print(string.format("first mutants of seed %d:", o.seed))
    for i = 1, math.min(#order, o.max or 20) do
      local m = order[i]
      print(string.format("  %s %s:%d %s %s%s", m.id, m.file, m.line, m.op, m.desc,
        eq[m.id] and "  [equivalent]" or ""))
    end
    return 0
  end

  local dir = root .. "/" .. o.dir
  assert(sh("mkdir -p " .. q(dir)))
  local rev = capture("git rev-parse --short HEAD 2>/dev/null"):gsub("%s+$", "")
  local dirty = capture("git status --porcelain -- src lua 2>/dev/null")
  rev = (rev ~= "" and ("commit " .. rev) or "no git revision") ..
    (dirty:match("%S") and " + uncommitted changes in src/ or lua/" or "")
  local ctx = {
    opts = o, root = root, dir = dir, tree = dir .. "/tree", files = files,
    sources = sources, map = map, suite = suite, durations = {}, built = {},
    excluded = {}, excluded_set = {}, stats = {}, started_at = now(),
    rev = rev, command = command_line(o), status = "in progress when written",
  }
  for _, f in ipairs(files) do
    ctx.stats[f] = { cand = #by_file[f], tried = 0, killed = 0, timeout = 0, survived = 0,
      stillborn = 0, equivalent = 0, records = {}, killers = {} }
  end
  local budget = o.minutes * 60
  local tsv = assert(io.open(dir .. "/results.tsv", "w"))
  tsv:write("id\tfile\tline\top\tresult\tcheck\tseconds\tdesc\twhy\n")

  local ok, err = pcall(function()
    make_scratch(ctx)
    -- baseline: every check the selected files need, once, unmutated
    local needed, seen = {}, {}
    local function need(c) if not seen[c] then seen[c] = true; needed[#needed + 1] = c end end
    for _, f in ipairs(files) do
      for _, c in ipairs(map[f].covering) do need(c) end
      if o.suite then
        if map[f].unit then need("units") end
        for _, s in ipairs(suite) do need(s) end
        if o.luajit then for _, s in ipairs(suite) do need("luajit:" .. s) end end
      end
    end
    local abis = { ["lua5.4"] = true }
    for _, c in ipairs(needed) do
      local _, needs = check_cmd(c)
      for _, a in ipairs(needs) do abis[a] = true end
    end
    for a in pairs(abis) do ensure_abi(ctx, a) end
    io.write("baseline: ", #needed, " checks, unmutated\n")
    local total = 0
    for _, c in ipairs(needed) do
      local cmd = check_cmd(c)
      local log = dir .. "/baseline.log"
      local rc, secs = run_job(ctx, cmd, 900, log)
      total = total + secs
      if rc ~= 0 then
        ctx.excluded[#ctx.excluded + 1] = c
        ctx.excluded_set[c] = true
        io.write(string.format("  %-34s FAILED unmutated (%s): left out\n", c, why_failed(log)))
        assert(sh("cp " .. q(log) .. " " .. q(dir .. "/baseline-failed-" ..
          c:gsub("[^%w]", "_") .. ".log")))
      else
        ctx.durations[c] = secs
        io.write(string.format("  %-34s %6.1f s\n", c, secs))
      end
    end
    ctx.baseline_line = string.format("Baseline (unmutated): %d checks, %s; %d failed and were left out.",
      #needed, fmt_secs(total), #ctx.excluded)
    write_report(ctx)

    local order = plan.order(files, by_file, o.seed, ops.OPS)
    io.write(string.format("%d candidate mutants; budget %s min, %s used by the baseline\n",
      #order, tostring(o.minutes), fmt_secs(now() - ctx.started_at)))
    local tried, spent = 0, 0
    for i, m in ipairs(order) do
      if o.max and tried >= o.max then ctx.status = "stopped at MUTATE_MAX" break end
      local elapsed = now() - ctx.started_at
      local avg = tried > 0 and spent / tried or 0
      if elapsed + avg > budget then ctx.status = "stopped by the budget" break end
      local s = ctx.stats[m.file]
      local r
      if eq[m.id] then
        r = { m = m, result = "equivalent", reason = eq[m.id].reason }
        s.equivalent = s.equivalent + 1
      else
        local t0 = now()
        r = run_mutant(ctx, m)
        local dt = now() - t0
        r.secs_total = dt
        tried, spent = tried + 1, spent + dt
        s.tried = s.tried + 1
        if r.result == "killed" or r.result == "timeout" then
          s.killed = s.killed + 1
          if r.result == "timeout" then s.timeout = s.timeout + 1 end
          s.killers[r.check] = (s.killers[r.check] or 0) + 1
        elseif r.result == "survived" then
          s.survived = s.survived + 1
          r.diff = ops.diff(sources[m.file], m, m.file, 3)
        else
          s.stillborn = s.stillborn + 1
        end
      end
      s.records[#s.records + 1] = r
      io.write(string.format("[%4d %s] %s:%d %-7s %-44s %s%s\n", i,
        fmt_secs(now() - ctx.started_at), m.file, m.line, m.op, m.desc:sub(1, 44),
        r.result, r.check and (" by " .. r.check) or ""))
      io.flush()
      tsv:write(table.concat({ m.id, m.file, m.line, m.op, r.result, r.check or "",
        string.format("%.1f", r.secs_total or 0), (m.desc:gsub("[\t\n]", " ")),
        ((r.why or r.reason or ""):gsub("[\t\n]", " ")) }, "\t"), "\n")
      tsv:flush()
      write_report(ctx)
      if i == #order then ctx.status = "complete (every candidate tried)" end
    end
  end)
  tsv:close()
  ctx.finished_at = now()
  if not ok then
    if is_interrupt(err) then
      ctx.status = "interrupted"
      io.write("\ninterrupted: writing the report of what was done\n")
    else
      ctx.status = "stopped by an error: " .. tostring(err)
    end
  end
  write_report(ctx)
  io.write(string.format("report: %s (%s)\n", o.out, ctx.status))
  if not ok then
    if is_interrupt(err) then return 130 end
    io.stderr:write(tostring(err), "\n")
    return 1
  end
  return 0
end

local ok, rc = pcall(main, arg)
if not ok then
  io.stderr:write(tostring(rc), "\n")
  os.exit(is_interrupt(rc) and 130 or 1)
end
os.exit(rc)
