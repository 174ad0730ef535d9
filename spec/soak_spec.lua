-- Soak: thousands of requests through one process, about 10% of them
-- faulty (retried 429/503/reset, a 200 that is not JSON, 401, streams,
-- a stream cut off, requests refused locally), mostly through chat_many
-- (concurrency 16) plus sequential chat and up to 16 handles at once
-- (spec/support/soak.lua, in a fresh interpreter: what earlier specs left
-- in the heap would blur the figures). Resident memory and open
-- descriptors are measured after a warm-up and at the end and must stay
-- flat:
--
--   RSS growth  < 8 MiB      (after collectgarbage, VmRSS of /proc/self/status)
--   fd growth  <= 2          (descriptors other than sockets)
--   sockets    grow <= 16 + 4 (libcurl's pool: one per concurrent transfer)
--
-- The figures are printed (start/end RSS, fds, requests/s) for the README.
-- QWENVL_SOAK_N overrides the request count (default 5000; 300 under the
-- sanitizer and valgrind targets, where only the fd bound is checked for
-- ASan, whose quarantine holds freed memory on purpose; the child then
-- runs the plain build).
local fx = require("spec.support.fixtures")

local UNDER_ASAN = os.getenv("QWENVL_UNDER_ASAN") == "1"
local UNDER_VALGRIND = os.getenv("QWENVL_UNDER_VALGRIND") == "1"
local N = tonumber(os.getenv("QWENVL_SOAK_N") or "")
  or ((UNDER_ASAN or UNDER_VALGRIND) and 300 or 5000)
local RSS_BOUND_KIB = 8 * 1024
local FD_BOUND = 2
local SOCKET_BOUND = 16 + 4

describe("soak", function()
  it(("%d requests with ~10%% faults keep RSS and descriptors flat"):format(N), function()
    local f
    if UNDER_ASAN or UNDER_VALGRIND then
      f = require("spec.support.soak").run(N)  -- in-process: checked too
    else
      local interp, cpath = fx.interp()
      local out, ok = fx.sh(("%s -e %s spec/support/soak.lua %d"):format(interp,
        fx.quote("package.cpath=" .. ("%q"):format(cpath) .. "..';'..package.cpath; " ..
          "package.path='./lua/?.lua;./lua/?/init.lua;./?.lua;'..package.path"), N))
      assert.is_true(ok, out)
      f = {}
      for k, v in out:gmatch("([%w_]+)=([%d.]+)") do f[k] = tonumber(v) end
      assert.is_not_nil(f.rss1, out)
    end
    print(("\nsoak: %d requests (+%d warm-up) in %.1f s = %.0f req/s; RSS %.1f -> %.1f MiB (%+.2f); "
      .. "fds %d -> %d, sockets %d -> %d"):format(f.n, f.warm, f.seconds, f.n / f.seconds,
      f.rss0 / 1024, f.rss1 / 1024, (f.rss1 - f.rss0) / 1024, f.fd0, f.fd1, f.sock0, f.sock1))
    assert.is_true(f.fd1 - f.fd0 <= FD_BOUND, ("fds grew from %d to %d"):format(f.fd0, f.fd1))
    assert.is_true(f.sock1 - f.sock0 <= SOCKET_BOUND, ("sockets grew from %d to %d"):format(f.sock0, f.sock1))
    if not UNDER_ASAN then
      assert.is_true(f.rss1 - f.rss0 < RSS_BOUND_KIB,
        ("RSS grew by %.2f MiB (bound %d MiB)"):format((f.rss1 - f.rss0) / 1024,
          math.floor(RSS_BOUND_KIB / 1024)))
    end
    assert.equal(0, f.in_flight)           -- no request stuck open at the stand-in
  end)
end)
