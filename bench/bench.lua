-- bench/bench.lua: qwenvl performance against the DashScope stand-in on
-- loopback (issue 4, "Performance, measured in a benchmark").
--
--   lua5.4 bench/bench.lua            (from the repository root; `make bench`)
--
-- (a) Sequential keep-alive calls: per-request client CPU and wall time of
--     qwenvl.chat next to build/bench/bare_curl (one libcurl easy handle,
--     the same body bytes and headers). Each side is its own process and
--     measures only itself: os.clock() here (clock(3) = process CPU time,
--     user+sys, all threads -- the same quantity as getrusage(RUSAGE_SELF)),
--     getrusage in bare_curl. The stand-in's CPU is in neither.
-- (b) Batch throughput: chat_many of N requests that each take `delay` ms
--     at the stand-in, with concurrency C, against ceil(N/C) x delay.
-- (c) Small image vs ~1 MB image upload (same comparison as (a)).
-- (d) Instructions per call under callgrind (valgrind --tool=callgrind),
--     qwenvl.chat and bare_curl, each the difference of two runs with
--     BENCH_CG_N1 and BENCH_CG_N2 calls divided by the difference in calls
--     (start-up, warm-up and the summary cancel out). CPU time is noisy on
--     a shared 2-core machine; instruction counts repeat to a fraction of
--     a percent, so this ratio is the headline figure for goal 4.
--
-- Goals (issue 15, goal 4): sequential call CPU ≤ 2× the bare libcurl
-- loop, wall p50 within 1.2× of it on loopback; (b) issue 4: batch wall
-- ≤ 1.2× the ideal.
--
-- Environment knobs: BENCH_N (sequential requests per row, default 400),
-- BENCH_N_BIG (1 MB rows, default 30), BENCH_WARMUP (default 20),
-- BENCH_DELAY_MS (default 200), BENCH_BARE (path of bare_curl),
-- BENCH_OUT (results file, default bench/results.md; "-" for none),
-- BENCH_ONLY ("a", "b", "c", "d" or a combination such as "ab"),
-- BENCH_CG_N1 / BENCH_CG_N2 (callgrind runs, default 20 and 120 calls),
-- BENCH_CHUNKS (4: qwenvl and bare_curl take turns this many times a row),
-- BENCH_SUMMARY (summary lines for bench/summary.lua, default
-- build/bench/summary/bench.tsv; "-" for none).
--
-- Child mode (what callgrind runs): bench.lua --calls N WARM BASE_URL KEY IMAGE

-- bench/util.lua: the checkout's module paths and what the benchmarks share
local util = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "bench") .. "/util.lua")
util.use_checkout()
local ROOT, LUA_ABI = util.ROOT, util.LUA_ABI

local qwenvl = require("qwenvl")

-- child: WARM + N sequential calls, nothing else (under callgrind)
if arg[1] == "--calls" then
  local n, warm = tonumber(arg[2]), tonumber(arg[3])
  local req = { prompt = "Describe the image.", image = arg[6], api_key = arg[5], base_url = arg[4],
                max_retries = 0 }
  for _ = 1, warm + n do
    local res, err = qwenvl.chat(req)
    if not res then io.stderr:write(tostring(err), "\n") os.exit(1) end
  end
  os.exit(0)
end

local standin = require("spec.support.standin")
local cjson = require("cjson")
local socket = require("socket")

local N = tonumber(os.getenv("BENCH_N")) or 400
local N_BIG = tonumber(os.getenv("BENCH_N_BIG")) or 30
local WARM = tonumber(os.getenv("BENCH_WARMUP")) or 20
local DELAY = tonumber(os.getenv("BENCH_DELAY_MS")) or 200
local BARE = os.getenv("BENCH_BARE") or (ROOT .. "/build/bench/bare_curl")
local OUT = os.getenv("BENCH_OUT") or (ROOT .. "/bench/results.md")
local ONLY = os.getenv("BENCH_ONLY") or "abcd"
local CHUNKS = tonumber(os.getenv("BENCH_CHUNKS")) or 4
local CG_N1 = tonumber(os.getenv("BENCH_CG_N1")) or 20
local CG_N2 = tonumber(os.getenv("BENCH_CG_N2")) or 120
local SUMMARY = os.getenv("BENCH_SUMMARY") or (ROOT .. "/build/bench/summary/bench.tsv")
local GOAL_CPU, GOAL_WALL, GOAL_BATCH = 2.0, 1.2, 1.2
local UA = "qwenvl/" .. tostring(qwenvl.version)   -- what qwenvl sends

local now = socket.gettime

local function sh_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function read_cmd(cmd)
  local p = assert(io.popen(cmd, "r"))
  local s = p:read("*a")
  local ok, _, code = p:close()
  return s, ok, code
end

local write_file = require("spec.support.fixtures").write

local function fsize(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local n = f:seek("end")
  f:close()
  return n
end

-- Nearest-rank percentile (same rule as bare_curl.c).
local function stats(v)
  local s = {}
  for i, x in ipairs(v) do s[i] = x end
  table.sort(s)
  local sum = 0
  for _, x in ipairs(s) do sum = sum + x end
  local function pct(p)
    local k = math.ceil(p / 100 * #s - 1e-6)
    if k < 1 then k = 1 end
    if k > #s then k = #s end
    return s[k]
  end
  return { mean = sum / #s, p50 = pct(50), p95 = pct(95), n = #s }
end

local TMP = {}
local function tmpfile(suffix)
  local base = os.tmpname()      -- created by mkstemp on 5.4: remove it too
  TMP[#TMP + 1] = base
  if not suffix then return base end
  TMP[#TMP + 1] = base .. suffix
  return base .. suffix
end
local function cleanup()
  for _, p in ipairs(TMP) do os.remove(p) end
end

-- Test images (PNG, written by python3 -- the stand-in needs it anyway).
-- small: 64x48 gradient (~200 B); big: 600x580 RGB noise (~1 MB, incompressible).
local function make_png(path, w, h, noise)
  local py = [[
import struct, sys, zlib, os
w, h, noise, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
rows = []
for y in range(h):
    if noise:
        rows.append(b"\x00" + os.urandom(w * 3))
    else:
        rows.append(b"\x00" + bytes((x * 4 + y) & 255 for x in range(w) for _ in range(3)))
raw = b"".join(rows)
def chunk(t, d):
    c = struct.pack(">I", len(d)) + t + d
    return c + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) \
    + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
open(path, "wb").write(png)
]]
  local pyfile = tmpfile(".py")
  write_file(pyfile, py)
  local _, ok = read_cmd(string.format("python3 %s %d %d %s %s", sh_quote(pyfile), w, h,
    noise and "1" or "0", sh_quote(path)))
  assert(ok and fsize(path), "could not generate " .. path)
end

-- The exact body qwenvl sends for req (the inline image put back as qwenvl
-- writes it): see bench/util.lua.
local function body_for(req, image_path) return util.body_for(qwenvl, req, image_path) end

local function machine()
  local cpu = read_cmd("grep -m1 'model name' /proc/cpuinfo 2>/dev/null"):match(":%s*(.-)%s*$") or "?"
  local cores = read_cmd("nproc 2>/dev/null"):match("%d+") or "?"
  local kernel = read_cmd("uname -srm 2>/dev/null"):gsub("%s+$", "")
  local curlv = read_cmd("curl-config --version 2>/dev/null"):gsub("%s+$", "")
  local pyv = read_cmd("python3 --version 2>&1"):gsub("%s+$", "")
  return string.format("%s, %s cores, %s; %s; %s; %s; stand-in on %s",
    cpu, cores, kernel, LUA_ABI .. " (" .. (jit and jit.version or _VERSION) .. ")",
    curlv, "qwenvl " .. tostring(qwenvl.version), pyv)
end

local srv = standin.start {}
local base = { api_key = srv.key, base_url = srv.base_url, max_retries = 0 }
local function req_with(t)
  local r = {}
  for k, v in pairs(base) do r[k] = v end
  for k, v in pairs(t) do r[k] = v end
  return r
end

local lines = {}   -- markdown output
local function out(s) lines[#lines + 1] = s; print(s) end
local failed = false
-- summary lines: figure, measured, goal, met/MISSED (bench/summary.lua)
local summary = util.summary()
local add_summary = summary.add
local function verdict(x, goal) return x and (x <= goal and "met" or "missed") or "n/a" end

-- One qwenvl run: N sequential chat calls, warm-up first. Raw samples (µs)
-- are appended to into.wall / into.cpu.
local function run_qwenvl(req, n, warm, into)
  warm = warm or WARM
  into = into or { wall = {}, cpu = {} }
  for i = 1, warm + n do
    local w0, c0 = now(), os.clock()
    local res, err = qwenvl.chat(req)
    local c1, w1 = os.clock(), now()
    if not res then error("qwenvl.chat failed: " .. tostring(err)) end
    if i > warm then
      into.wall[#into.wall + 1] = (w1 - w0) * 1e6
      into.cpu[#into.cpu + 1] = (c1 - c0) * 1e6
    end
  end
  return into
end

-- prepare() alone: the planning share of the client CPU.
local function run_prepare(req, n)
  local c0 = os.clock()
  for _ = 1, n do assert(qwenvl.prepare(req)) end
  return (os.clock() - c0) * 1e6 / n
end

-- One bare_curl process: warm-up, then N calls; its raw samples (µs) are
-- appended to into.wall / into.cpu.
local function run_bare(body_path, n, server, warm, into)
  server = server or srv
  into = into or { wall = {}, cpu = {} }
  local errf = tmpfile(".err")
  local cmd = string.format("BARE_SAMPLES=1 %s %s %s %s %d %d %s 2>%s", sh_quote(BARE), sh_quote(server.base_url ..
    "/chat/completions"), sh_quote(server.key), sh_quote(body_path), n, warm or WARM, sh_quote(UA), sh_quote(errf))
  local s, ok = read_cmd(cmd)
  if not ok or not s:match("\nBARE ") and not s:match("^BARE ") then
    local f = io.open(errf)
    error("bare_curl failed: " .. s .. (f and f:read("*a") or ""))
  end
  for w, c in s:gmatch("S ([%d.]+) ([%d.]+)\n") do
    into.wall[#into.wall + 1] = tonumber(w)
    into.cpu[#into.cpu + 1] = tonumber(c)
  end
  return into
end

-- Check that both sides put the same request on the wire (stand-in records).
local function check_same(recs_q, recs_b, body)
  local q, b = recs_q[#recs_q], recs_b[#recs_b]
  local problems = {}
  if q.raw_size ~= #body then problems[#problems + 1] = ("qwenvl sent %d B, expected %d"):format(q.raw_size, #body) end
  if b.raw_size ~= #body then problems[#problems + 1] = ("bare sent %d B, expected %d"):format(b.raw_size, #body) end
  if cjson.encode(q.body) ~= cjson.encode(b.body) then
    -- compare via sorted re-encoding: records are decoded JSON, order may differ
    local function canon(x)
      if type(x) ~= "table" then return cjson.encode(x) end
      local keys = {}
      for k in pairs(x) do keys[#keys + 1] = k end
      table.sort(keys, function(m, n) return tostring(m) < tostring(n) end)
      local parts = {}
      for _, k in ipairs(keys) do parts[#parts + 1] = tostring(k) .. "=" .. canon(x[k]) end
      return "{" .. table.concat(parts, ",") .. "}"
    end
    if canon(q.body) ~= canon(b.body) then problems[#problems + 1] = "bodies differ" end
  end
  local hq, hb = {}, {}
  for k, v in pairs(q.headers) do if k ~= "content-length" then hq[#hq + 1] = k .. ": " .. tostring(v) end end
  for k, v in pairs(b.headers) do if k ~= "content-length" then hb[#hb + 1] = k .. ": " .. tostring(v) end end
  table.sort(hq); table.sort(hb)
  if table.concat(hq, "\n") ~= table.concat(hb, "\n") then
    problems[#problems + 1] = "headers differ:\n  qwenvl: " .. table.concat(hq, " | ") ..
      "\n  bare:   " .. table.concat(hb, " | ")
  end
  return problems
end

local function fmt_us(x) return x and string.format("%.0f", x) or "-" end
local function ratio(a, b) return (a and b and b > 0) and a / b or nil end
local function fmt_r(x) return x and string.format("%.2f×", x) or "-" end

local ok, err = xpcall(function()
  local date = os.date("!%Y-%m-%d %H:%M UTC")
  out("# qwenvl benchmark")
  out("")
  out("Date: " .. date .. "  ")
  out("Machine: " .. machine() .. "  ")
  out("Stand-in: spec/support/standin.py on 127.0.0.1 (Python ThreadingHTTPServer, HTTP/1.1 keep-alive, " ..
    "TCP_NODELAY on accepted sockets)" ..
    ". Times are per request, in microseconds; CPU = user+sys of the client process only " ..
    "(the stand-in's CPU is in neither column).")
  out("")

  -- images
  local small_png = tmpfile(".png")
  make_png(small_png, 64, 48, false)
  local big_png
  if ONLY:find("c") then
    big_png = tmpfile(".png")
    make_png(big_png, 600, 580, true)
  end

  -- the rows of (a) and (d), and (c)'s 1 MB row, with the exact body bytes
  local url_row = { name = "URL image", req = req_with { prompt = "Describe the image.",
    image = "https://example.com/images/cat.png" }, n = N, arg = "https://example.com/images/cat.png" }
  local file_row = { name = "small file image (" .. fsize(small_png) .. " B PNG)", req = req_with {
    prompt = "Describe the image.", image = small_png }, image = small_png, n = N, arg = small_png,
    short = "small file image" }
  local function with_body(row)
    row.body = body_for(row.req, row.image)
    row.body_path = tmpfile(".json")
    write_file(row.body_path, row.body)
    return row
  end
  with_body(url_row)
  with_body(file_row)

  if ONLY:find("[ac]") then
    local rows = {}
    if ONLY:find("a") then
      rows[#rows + 1] = url_row
      rows[#rows + 1] = file_row
    end
    if ONLY:find("c") then
      rows[#rows + 1] = with_body { name = string.format("1 MB file image (%.2f MB PNG)", fsize(big_png) / 1048576),
        req = req_with { prompt = "Describe the image.", image = big_png }, image = big_png, n = N_BIG, big = true }
    end
    out("## (a) Sequential calls, keep-alive: qwenvl.chat vs bare libcurl loop")
    out("")
    out(("N = %d per row (%d for the 1 MB row) after %d warm-up requests (%d for the 1 MB row), " ..
      "in " .. CHUNKS .. " turns of N/" .. CHUNKS .. " each (qwenvl, then a bare_curl process with its own " ..
      "warm-up), so that a change in the shared machine's load falls on both alike. " ..
      "Goals (issue 15, goal 4): client CPU ≤ %.1f× the bare loop's, wall p50 ≤ %.1f× (the 1 MB row " ..
      "is informational). Wall p50 is the steadier wall figure (the Python stand-in's thread " ..
      "scheduling on 2 shared cores adds multi-ms outliers to both columns); CPU time is noisy here " ..
      "too, which is why (d) counts instructions.")
      :format(N, N_BIG, WARM, math.min(WARM, 5), GOAL_CPU, GOAL_WALL))
    out("")
    out("| request | body B | client | CPU mean | CPU p50 | CPU p95 | wall mean | wall p50 | wall p95 |")
    out("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    local done = {}
    for _, row in ipairs(rows) do
      local body, body_path = row.body, row.body_path
      local warm = row.big and math.min(WARM, 5) or WARM
      -- the same request on the wire from both (one call each)
      srv:reset()
      run_qwenvl(row.req, 1, warm)
      local recs_q = srv:requests()
      srv:reset()
      run_bare(body_path, 1, nil, 0)
      local recs_b = srv:requests()
      local problems = check_same(recs_q, recs_b, body)
      -- then the two take turns, CHUNKS times (the machine's load moves)
      local chunks = row.big and 1 or CHUNKS
      local per = math.ceil(row.n / chunks)
      local qs, bs = { wall = {}, cpu = {} }, { wall = {}, cpu = {} }
      for _ = 1, chunks do
        run_qwenvl(row.req, per, 0, qs)
        run_bare(body_path, per, nil, warm, bs)
      end
      local q = { wall = stats(qs.wall), cpu = stats(qs.cpu) }
      local b = { wall = stats(bs.wall), cpu = stats(bs.cpu) }
      local prep = run_prepare(row.req, math.min(row.n, 200))
      out(("| %s | %d | qwenvl | %s | %s | %s | %s | %s | %s |"):format(row.name, #body,
        fmt_us(q.cpu.mean), fmt_us(q.cpu.p50), fmt_us(q.cpu.p95),
        fmt_us(q.wall.mean), fmt_us(q.wall.p50), fmt_us(q.wall.p95)))
      out(("| | | bare libcurl | %s | %s | %s | %s | %s | %s |"):format(
        fmt_us(b.cpu.mean), fmt_us(b.cpu.p50), fmt_us(b.cpu.p95),
        fmt_us(b.wall.mean), fmt_us(b.wall.p50), fmt_us(b.wall.p95)))
      local rc, rw = ratio(q.cpu.mean, b.cpu.mean), ratio(q.wall.mean, b.wall.mean)
      local rc50, rw50 = ratio(q.cpu.p50, b.cpu.p50), ratio(q.wall.p50, b.wall.p50)
      out(("| | | **ratio** | **%s** | %s | %s | %s | **%s** | %s |"):format(fmt_r(rc), fmt_r(rc50),
        fmt_r(ratio(q.cpu.p95, b.cpu.p95)), fmt_r(rw), fmt_r(rw50), fmt_r(ratio(q.wall.p95, b.wall.p95))))
      done[#done + 1] = { row = row, rc = rc, rw50 = rw50, prep = prep, problems = problems, q = q, b = b }
      if #problems > 0 then failed = true end
    end
    out("")
    for _, s in ipairs(done) do
      local info = s.row.big and " (informational)" or ""
      out(("- %s: CPU mean %s (goal ≤ %.1f×: %s%s), wall p50 %s (goal ≤ %.1f×: %s%s); of qwenvl's %s µs " ..
        "CPU, `prepare` alone (validation, image read/probe/sha256, body encoding) is %s µs.%s"):format(
        s.row.name, fmt_r(s.rc), GOAL_CPU, verdict(s.rc, GOAL_CPU), info, fmt_r(s.rw50), GOAL_WALL,
        verdict(s.rw50, GOAL_WALL), info, fmt_us(s.q.cpu.mean), fmt_us(s.prep),
        #s.problems > 0 and ("\n  **request mismatch:** " .. table.concat(s.problems, "; ")) or
        " Same bytes and headers on the wire (checked at the stand-in)."))
      if not s.row.big then
        add_summary(("4. sequential calls, %s: client CPU mean vs bare libcurl"):format(s.row.short or s.row.name),
          ("%s (%s vs %s µs)"):format(fmt_r(s.rc), fmt_us(s.q.cpu.mean), fmt_us(s.b.cpu.mean)),
          ("≤ %.1f×"):format(GOAL_CPU), s.rc and s.rc <= GOAL_CPU)
        add_summary(("4. sequential calls, %s: wall p50 vs bare libcurl (loopback)"):format(s.row.short or s.row.name),
          ("%s (%s vs %s µs)"):format(fmt_r(s.rw50), fmt_us(s.q.wall.p50), fmt_us(s.b.wall.p50)),
          ("≤ %.1f×"):format(GOAL_WALL), s.rw50 and s.rw50 <= GOAL_WALL)
      end
    end
    out("")
  end

  if ONLY:find("d") then
    out("## (d) Instructions per call (callgrind): qwenvl.chat vs bare libcurl loop")
    out("")
    out(("`valgrind --tool=callgrind`, instructions (Ir) of the whole client process with %d and with " ..
      "%d calls (after %d warm-up calls); per call = the difference / %d, so start-up, warm-up and " ..
      "exit cancel out. Repeatable where CPU time is not. Goal (issue 15, goal 4): ≤ %.1f×.")
      :format(CG_N1, CG_N2, 5, CG_N2 - CG_N1, GOAL_CPU))
    out("")
    out("| request | qwenvl.chat Ir/call | bare libcurl Ir/call | ratio | qwenvl start-up Ir | bare start-up Ir | goal |")
    out("|---|---:|---:|---:|---:|---:|---|")
    local function ir(argv)
      local f = tmpfile(".cg")
      local parts = { "valgrind --tool=callgrind --callgrind-out-file=" .. sh_quote(f) }
      for _, a in ipairs(argv) do parts[#parts + 1] = sh_quote(a) end
      local s, ok2 = read_cmd(table.concat(parts, " ") .. " 2>&1")
      local fh = io.open(f)
      local txt = fh and fh:read("*a") or ""
      if fh then fh:close() end
      local total = tonumber(txt:match("\ntotals:%s*(%d+)") or txt:match("\nsummary:%s*(%d+)"))
      if not ok2 or not total then error("callgrind run failed: " .. table.concat(argv, " ") .. "\n" .. s) end
      return total
    end
    local lua = arg[-1] or "lua5.4"
    local self_path = debug.getinfo(1, "S").source:sub(2)
    for _, row in ipairs({ url_row, file_row }) do
      local function qv(n) return ir({ lua, self_path, "--calls", tostring(n), "5", srv.base_url, srv.key, row.arg }) end
      local function bare(n)
        return ir({ BARE, srv.base_url .. "/chat/completions", srv.key, row.body_path, tostring(n), "5", UA })
      end
      local q1, q2 = qv(CG_N1), qv(CG_N2)
      local b1, b2 = bare(CG_N1), bare(CG_N2)
      local dn = CG_N2 - CG_N1
      local qc, bc = (q2 - q1) / dn, (b2 - b1) / dn
      local r = qc / bc
      out(("| %s | %.0f | %.0f | **%s** | %.1f M | %.1f M | %s |"):format(row.name, qc, bc, fmt_r(r),
        (q1 - (CG_N1 + 5) * qc) / 1e6, (b1 - (CG_N1 + 5) * bc) / 1e6, verdict(r, GOAL_CPU)))
      add_summary(("4. sequential calls, %s: instructions per call vs bare libcurl (callgrind; headline)"):format(
        row.short or row.name), ("%s (%.0f k vs %.0f k Ir)"):format(fmt_r(r), qc / 1000, bc / 1000),
        ("≤ %.1f×"):format(GOAL_CPU), r <= GOAL_CPU)
    end
    out("")
    out("Start-up = the N1 run less its calls: loading the interpreter, the modules and libcurl " ..
      "(OpenSSL's initialisation is most of it), and exit.")
    out("")
  end

  if ONLY:find("b") then
    out(("## (b) Batch throughput: chat_many at %d ms stand-in latency"):format(DELAY))
    out("")
    out(("Ideal = ceil(N/C) × %d ms. Goal: ≤ %.1f×. Median of 3 runs after a warm-up batch " ..
      "(connections already open); the cold run opens C connections first."):format(DELAY, GOAL_BATCH))
    out("")
    out("| N | C | ideal s | cold s | median s | ratio (median) | max in flight | new connections (3 runs) | client CPU s |")
    out("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    local cfgs = { { 32, 8 }, { 64, 16 }, { 100, 25 }, { 10, 1 } }
    for _, cfg in ipairs(cfgs) do
      local n, c = cfg[1], cfg[2]
      -- fresh module state per config would need a new process; use a
      -- distinct scenario and reset the stand-in's counters instead
      local model = standin.scenario_model("bench-batch", "ok+delay=" .. DELAY)
      local reqs = {}
      for i = 1, n do
        reqs[i] = req_with { prompt = "Describe image " .. i .. ".", image = "https://example.com/images/" .. i .. ".png",
          model = model, timeout_s = 60 }
      end
      srv:reset()
      local t0 = now()
      local res, fails = qwenvl.chat_many(reqs, { concurrency = c })
      local cold = now() - t0
      assert(fails == 0, "batch had failures: " .. tostring(fails))
      local times, cpus = {}, {}
      srv:reset()
      local max_inflight = 0
      for _ = 1, 3 do
        local c0 = os.clock()
        t0 = now()
        res, fails = qwenvl.chat_many(reqs, { concurrency = c })
        times[#times + 1] = now() - t0
        cpus[#cpus + 1] = os.clock() - c0
        assert(fails == 0 and #res == n, "batch had failures")
      end
      local st = srv:stats()
      max_inflight = st.max_in_flight
      table.sort(times)
      table.sort(cpus)
      local ideal = math.ceil(n / c) * DELAY / 1000
      local r = times[2] / ideal
      if r > GOAL_BATCH then failed = true end
      out(("| %d | %d | %.2f | %.3f | %.3f | %s%s | %d | %d | %.3f |"):format(n, c, ideal, cold, times[2],
        fmt_r(r), r <= GOAL_BATCH and "" or " (MISSES)", max_inflight, st.connections, cpus[2]))
      add_summary(("issue 4: chat_many N=%d C=%d at %d ms per request: wall vs ideal"):format(n, c, DELAY),
        ("%s (%.3f s vs %.2f s)"):format(fmt_r(r), times[2], ideal), ("≤ %.1f×"):format(GOAL_BATCH),
        r <= GOAL_BATCH)
    end
    out("")
  end
  out("Reproduce: `make bench-qwenvl` (builds, compiles bench/bare_curl.c, runs bench/bench.lua; knobs " ..
    "BENCH_N, BENCH_N_BIG, BENCH_WARMUP, BENCH_DELAY_MS, BENCH_ONLY, BENCH_CG_N1, BENCH_CG_N2); `make bench` " ..
    "runs it with the other benchmarks and prints the summary (bench/summary.md).")
end, debug.traceback)

srv:stop()
cleanup()
if not ok then
  io.stderr:write("bench failed: " .. tostring(err) .. "\n")
  os.exit(1)
end
if OUT ~= "-" then
  write_file(OUT, table.concat(lines, "\n") .. "\n")
  print("\nwritten to " .. OUT)
end
summary.write(SUMMARY)
if failed then io.stderr:write("note: a goal was missed or the requests differed (see above)\n") end
