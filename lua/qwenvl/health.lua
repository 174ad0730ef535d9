-- :checkhealth qwenvl: is the module built for this Neovim, does it load,
-- with which libcurl/TLS and libvips, where does the key come from and
-- where do requests go; with vim.g.qwenvl_health_probe = 1 (or
-- setup{ health_probe = true }) also a read-only GET /models.
--
-- Every problem is one ERROR or WARNING line that says what to run.
-- Neovim 0.10+ reports through vim.health.start/ok/warn/error/info, 0.8
-- and 0.9 through vim.health.report_*, 0.7 through require("health"):
-- whichever exists is used.

local M = {}

local function reporter()
  local h = vim.health
  if h and h.start then return h end
  if not (h and h.report_start) then h = require("health") end
  return { start = h.report_start, ok = h.report_ok, warn = h.report_warn,
           error = h.report_error, info = h.report_info }
end

-- a 12x12 white PNG: enough for a resize to run
local PNG = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAwAAAAMCAIAAADZF8uwAAAAEklEQVR42mP4TwRgGFU0GBUBAED3rmCGou5kAAAAAElFTkSuQmCC"

local TLS = { "OpenSSL/", "LibreSSL/", "BoringSSL", "AWS-LC", "quictls", "GnuTLS/",
              "NSS/", "mbedTLS/", "wolfSSL/", "Schannel", "SecureTransport", "rustls",
              "BearSSL" }

local KEY_SOURCES = {
  request = "setup{ api_key }",
  env = "DASHSCOPE_API_KEY",
  credentials = "~/.alibabacloud/credentials",
}

-- libcurl's own version string (the library qwenvl.so is linked to, found
-- by its soname): through LuaJIT's ffi, else only its path.
local function curl_version()
  local ok, ffi = pcall(require, "ffi")
  if ok then
    pcall(ffi.cdef, "const char *curl_version(void);")
    for _, name in ipairs({ "libcurl.so.4", "libcurl.4.dylib", "curl" }) do
      local okl, lib = pcall(ffi.load, name)
      if okl then
        local okv, v = pcall(function() return ffi.string(lib.curl_version()) end)
        if okv then return v end
      end
    end
  end
  local f = io.open("/proc/self/maps", "r")
  if f then
    for line in f:lines() do
      local path = line:match("(/%S*libcurl%.so[%.%d]*)$")
      if path then f:close() return nil, path end
    end
    f:close()
  end
  return nil
end

local function check_module(r, nv)
  r.start("qwenvl: module")
  local v = vim.version and vim.version() or {}
  r.info(("Neovim %s.%s.%s, %s"):format(v.major or "?", v.minor or "?", v.patch or "?",
    jit and jit.version or _VERSION))
  local loader = require("qwenvl.nvim.loader")
  local opts = nv.options()
  local found, ferr = loader.find({ module = opts.module })
  if not found and not package.loaded.qwenvl then
    r.error(ferr)
    return nil
  end
  local q, info = nv.load()
  if not q then
    r.error(info)
    return nil
  end
  local abi = ({ luajit = "LuaJIT build", ["lua5.1"] = "Lua 5.1 build" })[info.abi]
  r.ok(("qwenvl %s loads: %s (%s, Lua 5.1 ABI; found via %s)"):format(tostring(q.version),
    info.path, abi or info.abi, info.source))
  if info.json == "cjson" then
    local path = package.searchpath and package.searchpath("cjson", package.cpath)
    r.ok(("lua-cjson from package.cpath%s"):format(path and (" (" .. path .. ")") or ""))
  elseif info.json == "vim.json" then
    r.ok("lua-cjson is not on package.cpath: the module uses a private instance of "
      .. "Neovim's built-in vim.json (lua-cjson) instead")
  end
  return q, info, loader.root()
end

local function check_curl(r)
  r.start("qwenvl: libcurl and TLS")
  local version, path = curl_version()
  if not version then
    r.info(("libcurl %s (its version needs LuaJIT's ffi to read)"):format(path or "(not found in this process)"))
    return
  end
  for _, tls in ipairs(TLS) do
    if version:find(tls, 1, true) then
      r.ok(version)
      return
    end
  end
  r.error(version .. ": libcurl has no TLS backend, so https endpoints (DashScope) cannot be reached",
    { "install a libcurl with TLS (Debian/Ubuntu: apt-get install libcurl4-openssl-dev) and rebuild" })
end

local function check_vips(r, q, root)
  r.start("qwenvl: libvips (image resizing)")
  local res, err = q.prepare({ prompt = "health", image = PNG, resize = "always",
    api_key = "sk-health-check-never-sent", base_url = "http://127.0.0.1:9/v1" })
  if res then
    r.ok("libvips loads: images over the model's pixel budget are downscaled before upload")
  elseif tostring(err):find("without libvips", 1, true) then
    r.warn("qwenvl.so is built without libvips: large images are sent as they are "
      .. "(and refused over 10 MiB)",
      { ("install libvips-dev and run `make LUA=luajit` again in %s"):format(root) })
  else
    r.warn("resizing does not work: " .. tostring(err),
      { "install libvips (Debian/Ubuntu: apt-get install libvips42)" })
  end
end

local function endpoint_source(conn)
  if conn.base_url then return "setup{ base_url }" end
  if conn.region then return "setup{ region }" end
  if (os.getenv("DASHSCOPE_BASE_URL") or "") ~= "" then return "DASHSCOPE_BASE_URL" end
  if (os.getenv("DASHSCOPE_REGION") or "") ~= "" then return "DASHSCOPE_REGION" end
  return "the default region"
end

local function probe(r, q, conn)
  local wf = require("qwenvl.workflow")
  local p, err = wf.probe({ qwenvl = q, api_key = conn.api_key, base_url = conn.base_url,
                            region = conn.region, timeout_s = 10, max_retries = 0 })
  if p then
    r.ok(("probe: %s answered in %d ms%s"):format(p.method == "models" and "GET /models"
      or "a 1-token chat", math.floor((p.latency_s or 0) * 1000 + 0.5),
      p.models and (" (" .. p.models .. " models)") or ""))
  else
    local hint = type(err) == "table" and err.hint or nil
    r.error("probe failed: " .. tostring(err), hint and { hint } or nil)
  end
end

local function check_target(r, q, nv)
  r.start("qwenvl: API key and endpoint")
  local conn = nv.connection()
  local cfg, err = q.config({ api_key = conn.api_key, base_url = conn.base_url,
                              region = conn.region })
  if not cfg then
    r.error(tostring(err))
    return
  end
  if cfg.has_key then
    r.ok(("API key found (from %s)"):format(KEY_SOURCES[cfg.key_source] or tostring(cfg.key_source)))
  else
    r.error("no DashScope API key: " .. nv.KEY_FIX)
  end
  r.ok(("endpoint %s (region %s, from %s)"):format(cfg.base_url, tostring(cfg.region),
    endpoint_source(conn)))
  local host = cfg.base_url:match("^http://([^/:]+)")
  if host and host ~= "127.0.0.1" and host ~= "localhost" and host ~= "::1" then
    r.warn("the endpoint is plain http: the API key would travel unencrypted",
      { "use an https:// base_url" })
  end
  if not cfg.has_key then return end
  if nv.options().health_probe or vim.g.qwenvl_health_probe then
    probe(r, q, conn)
  else
    r.info("not probed; to ask the endpoint (read-only GET /models), set "
      .. "vim.g.qwenvl_health_probe = 1 or setup{ health_probe = true } and run :checkhealth qwenvl again")
  end
end

local function check_loop(r, q, nv)
  r.start("qwenvl: event loop")
  local opts = nv.options()
  local fd = q.fd()
  if opts.loop == "timer" then
    r.ok(("timer loop (setup{ loop = \"timer\" }): steps at least every %d ms while requests run")
      :format(opts.tick_ms))
  elseif type(fd) == "number" then
    r.ok(("qwenvl.fd() = %d: a vim.loop poll handle on it and a timer at "
      .. "qwenvl.timeout_ms() drive the requests"):format(fd))
  else
    r.ok(("qwenvl.fd() is nil: a timer steps the requests at least every %d ms while they run")
      :format(opts.tick_ms))
  end
  r.info(("%d request(s) in flight"):format(nv.in_flight()))
end

function M.check()
  local r = reporter()
  local nv = require("qwenvl.nvim")
  local q, _, root = check_module(r, nv)
  if not q then
    r.start("qwenvl: libcurl, libvips, key, endpoint")
    r.warn("not checked: the module does not load (see above)")
    return
  end
  check_curl(r)
  check_vips(r, q, root or require("qwenvl.nvim.loader").root())
  check_target(r, q, nv)
  check_loop(r, q, nv)
end

return M
