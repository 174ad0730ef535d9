-- bench/summary.lua: the end of `make bench`: every goal beside what was
-- measured, met or missed, as one table (stdout and bench/summary.md).
--
--   lua5.4 bench/summary.lua            (`make bench-summary`)
--
-- Reads the lines the benchmarks left in build/bench/summary/*.tsv
-- (figure, measured, goal, verdict; tab-separated: bench/bench.lua and
-- bench/wan_bench.lua write them) and, for the goals bench-resize
-- measures, its report bench/resize-results.md. Rows are ordered by the
-- goal's number in issue 15. BENCH_SECONDS and BENCH_START (set by `make
-- bench`) are the run's duration and start (Unix time: a report older
-- than that is marked so); SUMMARY_OUT=- prints only.

-- bench/util.lua: the checkout's module paths and what the benchmarks share
local util = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "bench") .. "/util.lua")
util.use_checkout()
local ROOT = util.ROOT
local DIR = os.getenv("BENCH_SUMMARY_DIR") or (ROOT .. "/build/bench/summary")
local OUT = os.getenv("SUMMARY_OUT") or (ROOT .. "/bench/summary.md")
local OUT_NAME = os.getenv("SUMMARY_OUT") or "bench/summary.md"
local SECONDS = tonumber(os.getenv("BENCH_SECONDS"))

local read = require("spec.support.fixtures").try_read

local function cmd(c)
  local p = io.popen(c .. " 2>/dev/null")
  local s = p:read("*a")
  p:close()
  return (s:gsub("%s+$", ""))
end

local rows = {}
local function add(figure, measured, goal, verdict, source)
  rows[#rows + 1] = { figure, measured, goal, verdict, source }
end

-- the benchmarks' own lines
local files = {}
for name in cmd("ls " .. DIR .. "/*.tsv"):gmatch("[^\n]+") do files[#files + 1] = name end
table.sort(files)
for _, path in ipairs(files) do
  local src = path:match("([^/]+)%.tsv$")
  src = ({ bench = "results.md", wan = "wan-results.md" })[src] or src
  for line in (read(path) or ""):gmatch("[^\n]+") do
    local f, m, g, v = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)$")
    if f then add(f, m, g, v, src) end
  end
end

-- goals 1 (qwenvl.chat in a process) and 3 (24 MP) from bench-resize's report
do
  local path = ROOT .. "/bench/resize-results.md"
  local txt = read(path)
  local when = txt and cmd("date -u -r " .. path .. " '+%Y-%m-%d %H:%M UTC'") or ""
  local mtime = txt and tonumber(cmd("date -r " .. path .. " +%s")) or 0
  local start = tonumber(os.getenv("BENCH_START"))
  local src = "resize-results.md (" .. ((start and mtime >= start) and "this run" or ("written " .. when)) .. ")"
  if txt then
    local gms, gmib, wms, wmib = txt:match("Goal: at most (%d+) ms and (%d+) MiB per process: (%d+) ms and ([%d.]+) MiB here")
    if gms then
      add("1. `qwenvl.chat`, small JPEG, one fresh process (loopback): wall", wms .. " ms", "≤ " .. gms .. " ms",
        tonumber(wms) <= tonumber(gms) and "met" or "MISSED", src)
      add("1. `qwenvl.chat`, small JPEG, one fresh process (loopback): peak RSS", wmib .. " MiB", "≤ " .. gmib .. " MiB",
        tonumber(wmib) <= tonumber(gmib) and "met" or "MISSED", src)
    else
      add("1. `qwenvl.chat`, small image, one process", "n/a", "≤ 15 ms, ≤ 20 MiB", "n/a", src .. ": not found")
    end
    local gw, gr = txt:match("within ([%d.]+)× the wall time and ([%d.]+)× the peak RSS")
    local w, r = txt:match("worst here ([%d.]+)× and ([%d.]+)×")
    if gw and w then
      add("3. 24 MP downscale: `qwenvl.chat` vs vipsthumbnail, wall (worst photo)", w .. "×", "≤ " .. gw .. "×",
        tonumber(w) <= tonumber(gw) and "met" or "MISSED", src)
      add("3. 24 MP downscale: `qwenvl.chat` vs vipsthumbnail, peak RSS (worst photo)", r .. "×", "≤ " .. gr .. "×",
        tonumber(r) <= tonumber(gr) and "met" or "MISSED", src)
    else
      add("3. 24 MP downscale vs vipsthumbnail", "n/a", "≤ 1.2× wall, ≤ 1.3× RSS", "n/a", src .. ": not found")
    end
  else
    add("1. / 3. (bench-resize)", "n/a", "", "n/a", "no bench/resize-results.md")
  end
end

-- order: by the goal's number (1-5), then issue 4, keeping each file's order
local function key(figure)
  local n = tonumber(figure:match("^(%d+)"))
  return n or 99
end
for i, r in ipairs(rows) do r.i = i end
table.sort(rows, function(a, b)
  local ka, kb = key(a[1]), key(b[1])
  if ka ~= kb then return ka < kb end
  return a.i < b.i
end)

local met, missed, na = 0, 0, 0
for _, r in ipairs(rows) do
  if r[4] == "met" then met = met + 1 elseif r[4] == "MISSED" then missed = missed + 1 else na = na + 1 end
end

-- plain text for the terminal: columns padded (by characters, not bytes)
local function width(s)
  local _, n = s:gsub("[^\128-\191]", "")
  return n
end
local function pad(s, w) return s .. string.rep(" ", w - width(s)) end
local heads = { "figure", "measured", "goal", "verdict" }
local ws = {}
for c = 1, 4 do
  ws[c] = width(heads[c])
  for _, r in ipairs(rows) do ws[c] = math.max(ws[c], width(r[c])) end
end
local function line(cells)
  local parts = {}
  for c = 1, 4 do parts[c] = pad(cells[c], ws[c]) end
  return (table.concat(parts, "  "):gsub("%s+$", ""))
end
print("")
print("== make bench: summary" .. (SECONDS and (" (%d min %02d s)"):format(math.floor(SECONDS / 60), SECONDS % 60) or ""))
print("")
print(line(heads))
print(line({ string.rep("-", ws[1]), string.rep("-", ws[2]), string.rep("-", ws[3]), string.rep("-", ws[4]) }))
for _, r in ipairs(rows) do print(line(r)) end
print("")
print(("%d met, %d missed, %d n/a. Details: bench/results.md, bench/wan-results.md, " ..
  "bench/resize-results.md, bench/batch-results.md, bench/schema-results.md."):format(met, missed, na))

if OUT ~= "-" then
  local md = {
    "# `make bench`: the goals, measured",
    "",
    "Written by bench/summary.lua at the end of `make bench` (issue 15's goals, and issue 4's batch " ..
      "throughput). Each ratio is measured against its floor or rival in the same run; the machine " ..
      "is shared (2 cores), so wall figures move from run to run, instruction counts do not.",
    "",
    "Date: " .. os.date("!%Y-%m-%d %H:%M UTC") .. "  ",
    "Machine: " .. cmd("grep -m1 'model name' /proc/cpuinfo"):gsub("^.-:%s*", "") .. ", " .. cmd("nproc") ..
      " cores, load " .. (cmd("cat /proc/loadavg"):match("^(%S+ %S+ %S+)") or "?") .. " at the end" ..
      (SECONDS and ("; `make bench` took %d min %02d s"):format(math.floor(SECONDS / 60), SECONDS % 60) or ""),
    "",
    "| figure | measured | goal | verdict | from |",
    "|---|---|---|---|---|",
  }
  for _, r in ipairs(rows) do
    md[#md + 1] = ("| %s | %s | %s | %s | %s |"):format(r[1], r[2], r[3],
      r[4] == "MISSED" and "**missed**" or r[4], r[5])
  end
  md[#md + 1] = ""
  md[#md + 1] = ("%d met, %d missed, %d n/a."):format(met, missed, na)
  local f = assert(io.open(OUT, "wb"))
  f:write(table.concat(md, "\n"), "\n")
  f:close()
  print("written to " .. OUT_NAME)
end
