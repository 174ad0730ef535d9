-- OpenResty host: a real nginx (Debian's libnginx-mod-http-lua, one worker)
-- runs examples/openresty/describe.lua through qwenvl.ngx, once with the
-- epoll build (build/luajit) and once with the poll() build
-- (build/luajit-poll, where qwenvl.fd() is nil and the driver steps on
-- ngx.sleep alone). 50 concurrent requests whose stand-in answers take
-- 300 ms each must all succeed in far less than 50 x 300 ms: the worker
-- never blocked. A streamed answer reaches the client in several chunks;
-- a failure before the first byte gives the client the real HTTP status,
-- after it an [error] line; an on_delta error reaches the caller.
-- Last, the example's own nginx.conf runs with the command it (and the
-- README) gives, as a user who is not root.
local standin = require("spec.support.standin")
local fx = require("spec.support.fixtures")
local u = require("spec.hosts.util")
local cjson = require("cjson")
local socket = require("socket")

local NGINX_LUA = "/usr/lib/nginx/modules/ngx_http_lua_module.so"

-- A test-only handler beside the example: what the example cannot be asked
-- for from a query string (no retries, on_delta, the "sleep" driver).
-- ?model=&stream=1&retries=N&driver=sleep&raise_after=N
local T_CHAT = [[
local qv = require("qwenvl.ngx")
local args = ngx.req.get_uri_args()
local req = { prompt = "t", image = ngx.var.qwenvl_image_root .. "/a.png", model = args.model,
              max_retries = tonumber(args.retries), retry_backoff_s = 0.05 }
local opts = { driver = args.driver, stream_to_client = args.stream == "1" }
local raise_after = tonumber(args.raise_after)
if raise_after then
  local n = 0
  opts.on_delta = function(text)
    n = n + 1
    if n > raise_after then error("delta handler exploded at " .. n) end
  end
end
local res, err = qv.chat(req, opts)
if not res then return qv.send_error(err) end
if not opts.stream_to_client then ngx.say(res.text) end
]]

-- GET on a raw socket: status line, headers (lowercased), the decoded
-- chunked body, the number of chunks and the times reads arrived.
local function raw_get(port, path)
  local c = socket.tcp()
  c:settimeout(5)
  assert(c:connect("127.0.0.1", port))
  c:send(("GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"):format(path))
  c:settimeout(0.01)
  local raw, arrivals = {}, {}
  local deadline = u.now() + 15
  while u.now() < deadline do
    local data, err, partial = c:receive(65536)
    data = data or partial
    if data and #data > 0 then
      raw[#raw + 1] = data
      arrivals[#arrivals + 1] = u.now()
    end
    if err == "closed" then break end
  end
  c:close()
  local all = table.concat(raw)
  local head, body = all:match("^(.-\r\n\r\n)(.*)$")
  assert(head, "no HTTP response: " .. all)
  local r = { status = tonumber(head:match("^HTTP/1%.1 (%d+)")), headers = {}, arrivals = arrivals,
              chunks = 0 }
  for k, v in head:gmatch("\r\n([^:\r\n]+):%s*([^\r\n]*)") do r.headers[k:lower()] = v end
  if (r.headers["transfer-encoding"] or ""):lower() == "chunked" then
    local text, pos = {}, 1
    while true do
      local size_hex, nxt = body:match("^(%x+)\r\n()", pos)
      if not size_hex then break end
      local n = tonumber(size_hex, 16)
      if n == 0 then break end
      text[#text + 1] = body:sub(nxt, nxt + n - 1)
      r.chunks = r.chunks + 1
      pos = nxt + n + 2
    end
    r.body = table.concat(text)
  else
    r.body = body
  end
  return r
end

local function host_suite(build)
  describe(("OpenResty (nginx + lua-nginx-module), build/%s"):format(build), function()
    local srv, dir, pid, port, log

    local function conf()
      return ([[
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module %s;
worker_processes 1;
pid %s/nginx.pid;
error_log %s/error.log warn;
env DASHSCOPE_API_KEY;
env DASHSCOPE_BASE_URL;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path %s/body;
  proxy_temp_path %s/proxy;
  fastcgi_temp_path %s/fastcgi;
  uwsgi_temp_path %s/uwsgi;
  scgi_temp_path %s/scgi;
  lua_package_path "%s/lua/?.lua;%s/lua/?/init.lua;;";
  lua_package_cpath "%s/build/%s/?.so;;";
  server {
    listen 127.0.0.1:%d;
    set $qwenvl_image_root "%s";
    location = /describe { content_by_lua_file %s/examples/openresty/describe.lua; }
    location = /t/chat { content_by_lua_file %s/t_chat.lua; }
    location = /engine {
      content_by_lua_block {
        local q = require("qwenvl.ngx").engine()
        ngx.say(require("cjson").encode({ engine = q.info().engine, fd = q.fd() or "nil" }))
      }
    }
    location = /stats {
      content_by_lua_block {
        ngx.say(require("cjson").encode(require("qwenvl.ngx").stats()))
      }
    }
    location = /reset { content_by_lua_block { require("qwenvl.ngx").reset_stats() ngx.say("ok") } }
  }
}
]]):format(NGINX_LUA, dir, dir, dir, dir, dir, dir, dir, u.root, u.root, u.root, build, port, dir,
        u.root, dir)
    end

    setup(function()
      assert(u.have("nginx"), "nginx not installed (Debian: nginx-light)")
      assert(u.exists(NGINX_LUA), "libnginx-mod-http-lua not installed")
      assert(u.exists(("%s/build/%s/qwenvl.so"):format(u.root, build)),
        "run make LUA=luajit" .. (build:find("poll") and " POLLER=poll" or "") .. " first")
      srv = standin.start{}
      dir = fx.tmpdir()
      fx.sh("chmod 755 " .. u.quote(dir))   -- the worker may run as nobody
      fx.png(dir .. "/a.png", 64, 48)
      fx.sh("chmod 644 " .. u.quote(dir .. "/a.png"))
      fx.write(dir .. "/t_chat.lua", T_CHAT)
      port = u.free_port()
      fx.write(dir .. "/nginx.conf", conf())
      log = dir .. "/nginx.out"
      pid = u.spawn(("nginx -p %s -c %s -g 'daemon off;'"):format(u.quote(dir), u.quote(dir .. "/nginx.conf")),
        log, { DASHSCOPE_API_KEY = srv.key, DASHSCOPE_BASE_URL = srv.base_url })
      if not u.wait_port(port, 10) then
        error("nginx did not start:\n" .. fx.read(log) .. (u.exists(dir .. "/error.log") and fx.read(dir .. "/error.log") or ""))
      end
    end)

    teardown(function()
      if pid then u.kill(pid, "QUIT") end
      if srv then srv:stop() end
      if dir then fx.rm(dir) end
    end)

    local function url(model, extra)
      return ("http://127.0.0.1:%d/describe?image=a.png&model=%s%s"):format(
        port, standin.url_encode(model), extra or "")
    end

    local function t_chat(model, extra)
      return ("/t/chat?model=%s%s"):format(standin.url_encode(model), extra or "")
    end

    local function error_log()
      return u.exists(dir .. "/error.log") and fx.read(dir .. "/error.log") or ""
    end

    local function json_error(body)
      local ok, obj = pcall(cjson.decode, body)
      assert(ok and type(obj) == "table" and type(obj.error) == "table", "not a JSON error: " .. body)
      return obj.error
    end

    it("runs the engine this build was made with", function()
      local status, body = standin.http("GET", ("http://127.0.0.1:%d/engine"):format(port))
      assert.are.equal(200, status, body .. error_log())
      local e = cjson.decode(body)
      if build:find("%-poll$") then
        assert.are.same({ engine = "poll", fd = "nil" }, e)
      else
        assert.are.equal("epoll", e.engine)
        assert.is_number(e.fd)
      end
    end)

    it("answers one request as JSON", function()
      local status, body = standin.http("GET", url(standin.scenario_model("one", "ok")), nil, nil, 10)
      assert.are.equal(200, status, body .. error_log())
      local obj = cjson.decode(body)
      assert.matches("^STANDIN ", obj.text)
      assert.are.equal("png", cjson.decode(obj.text:sub(9)).images[1].format)
    end)

    it("refuses a local path that is not a plain file name, sending nothing", function()
      local before = srv:stats().chat_requests
      local status, body = standin.http("GET", ("http://127.0.0.1:%d/describe?image=/etc/passwd"):format(port))
      assert.are.equal(400, status)
      assert.are.equal("invalid_request", json_error(body).code)
      assert.are.equal(before, srv:stats().chat_requests)
    end)

    it("serves 50 concurrent 300 ms requests in well under 50 x 300 ms", function()
      standin.http("GET", ("http://127.0.0.1:%d/reset"):format(port))
      srv:reset()
      local urls = {}
      for i = 1, 50 do
        urls[#urls + 1] = ("-o %s %s"):format(u.quote(("%s/out%d.json"):format(dir, i)),
          u.quote(url(standin.scenario_model("par" .. i, "delay=300"))))
      end
      local t0 = u.now()
      local out, ok = fx.sh("curl -s --parallel --parallel-immediate --parallel-max 50 --max-time 20 " ..
        "-w 'CODE=%{http_code}\\n' " .. table.concat(urls, " ") .. " 2>/dev/null")
      local elapsed = u.now() - t0
      assert.is_true(ok, out)
      local codes = {}
      for c in out:gmatch("CODE=(%d+)") do codes[#codes + 1] = c end
      assert.are.equal(50, #codes, out)
      for i = 1, 50 do
        local body = fx.read(("%s/out%d.json"):format(dir, i))
        local obj = cjson.decode(body)
        assert.is_string(obj.text, body)
        assert.matches("^STANDIN ", obj.text)
      end
      for _, c in ipairs(codes) do assert.are.equal("200", c, out .. error_log()) end
      local st = srv:stats()
      local _, sbody = standin.http("GET", ("http://127.0.0.1:%d/stats"):format(port))
      local ns = cjson.decode(sbody)
      io.stderr:write(("\n[nginx %s] 50 x 300 ms requests: %.2f s total; stand-in max in flight %d; " ..
        "driver ticks %d (%.0f/s), request wake-ups %d, driver starts %d\n"):format(
        build, elapsed, st.max_in_flight or -1, ns.ticks, ns.ticks / elapsed, ns.wakeups, ns.driver_starts))
      assert.is_true(elapsed < 5, ("took %.2f s"):format(elapsed))
      assert.is_true((st.max_in_flight or 0) >= 25, "stand-in saw max " .. tostring(st.max_in_flight))
      assert.are.equal(50, ns.requests)
      assert.is_true(ns.max_in_flight >= 25)
    end)

    it("streams an answer to the client in several chunks", function()
      -- stall=400: the stand-in pauses 400 ms after the second content piece.
      local model = standin.scenario_model("stream", "stall=400")
      local r = raw_get(port, url(model, "&stream=1"):match("^http://[^/]+(/.*)$"))
      assert.are.equal(200, r.status)
      assert.are.equal("chunked", r.headers["transfer-encoding"])
      assert.matches("^text/plain", r.headers["content-type"])
      assert.matches("^STANDIN ", r.body)
      assert.is_nil(r.body:find("[error]", 1, true), r.body)
      assert.is_true(r.chunks >= 3, "chunks: " .. r.chunks)
      assert.is_true(#r.arrivals >= 2, "arrivals: " .. #r.arrivals)
      local spread = r.arrivals[#r.arrivals] - r.arrivals[1]
      io.stderr:write(("[nginx %s] stream: %d HTTP chunks in %d reads over %.0f ms\n"):format(
        build, r.chunks, #r.arrivals, spread * 1000))
      assert.is_true(spread >= 0.3, ("spread %.3f s"):format(spread))
      assert.is_true(srv:requests(model)[1].body.stream)
    end)

    describe("a failure before the first byte gives the client the real status", function()
      for _, mode in ipairs({ "plain", "stream" }) do
        local extra = mode == "stream" and "&stream=1" or ""

        it(("401 from the service: 401 (%s)"):format(mode), function()
          local model = standin.scenario_model("s401" .. mode, "401")
          local status, body, headers = standin.http("GET", url(model, extra))
          assert.are.equal(401, status, body)
          assert.matches("^application/json", headers["content-type"])
          local e = json_error(body)
          assert.are.equal("auth", e.code)
          assert.matches("API key", e.message)
          assert.is_nil(body:find("[error]", 1, true), body)
          assert.is_nil(body:find(srv.key, 1, true))
          assert.are.equal(1, srv:scenario(model).attempts)
        end)

        it(("429 with a Retry-After beyond the wait limit: 429 and Retry-After (%s)"):format(mode), function()
          local model = standin.scenario_model("s429" .. mode, "429ra=3600")
          local status, body, headers = standin.http("GET", url(model, extra))
          assert.are.equal(429, status, body)
          assert.are.equal("3600", headers["retry-after"])
          assert.are.equal("rate_limited", json_error(body).code)
          assert.are.equal(1, srv:scenario(model).attempts)
        end)

        it(("a 5xx after the retries: 502 (%s)"):format(mode), function()
          local model = standin.scenario_model("s502" .. mode, "500")
          local r = raw_get(port, t_chat(model, "&retries=1" .. extra))
          assert.are.equal(502, r.status, r.body)
          local e = json_error(r.body)
          assert.are.equal("server", e.code)
          assert.are.equal(2, srv:scenario(model).attempts)
        end)
      end

      it("a stream the service cuts after the first bytes: 200, the text, then an [error] line", function()
        local model = standin.scenario_model("cut", "error_event")
        local r = raw_get(port, url(model, "&stream=1"):match("^http://[^/]+(/.*)$"))
        assert.are.equal(200, r.status)
        local text, line = r.body:match("^(STANDIN .-)\n%[error%] ([^\n]*)\n$")
        assert.is_string(text, r.body)
        assert.matches("^content_filter: ", line)
      end)
    end)

    describe("an on_delta error reaches the caller (not \"canceled\")", function()
      for _, driver in ipairs({ "shared", "sleep" }) do
        it(("before the first byte: 500 with the callback error (driver %s)"):format(driver), function()
          local model = standin.scenario_model("delta" .. driver, "ok")
          local r = raw_get(port, t_chat(model, "&raise_after=0&driver=" .. driver))
          assert.are.equal(500, r.status, r.body .. error_log())
          local e = json_error(r.body)
          assert.are.equal("callback", e.code)
          assert.matches("delta handler exploded at 1", e.message, 1, true)
          assert.are.equal(1, srv:scenario(model).attempts)
          assert.is_true(srv:requests(model)[1].body.stream)
        end)

        it(("after bytes went out: the [error] line names it (driver %s)"):format(driver), function()
          local model = standin.scenario_model("delta2" .. driver, "stall=200")
          local r = raw_get(port, t_chat(model, "&stream=1&raise_after=1&driver=" .. driver))
          assert.are.equal(200, r.status)
          local text, line = r.body:match("^(STANDIN .-)\n%[error%] ([^\n]*)\n$")
          assert.is_string(text, r.body)
          assert.matches("^callback: on_delta: .*delta handler exploded at 2", line)
        end)
      end
    end)
  end)
end

host_suite("luajit")
host_suite("luajit-poll")

-- The example as shipped: examples/openresty/nginx.conf started with the
-- command its header (and the README) gives, as a user who is not root,
-- from a copy of the checkout that user owns (only the port is changed).
describe("OpenResty example (examples/openresty), as a user who is not root", function()
  local srv, dir, pid, port

  local function command()
    local conf = fx.read(u.root .. "/examples/openresty/nginx.conf")
    local cmd = conf:match("\n#%s+DASHSCOPE_API_KEY=%S+ (nginx [^\n]+)\n")
    assert(cmd, "examples/openresty/nginx.conf gives no command line")
    return cmd
  end

  setup(function()
    assert(u.have("nginx"), "nginx not installed (Debian: nginx-light)")
    srv = standin.start{}
    dir = fx.tmpdir()
    local co = dir .. "/qwenvl"
    fx.sh(("mkdir -p %s/build/luajit %s/examples && cp -r %s %s/ && cp -r %s %s/examples/ && cp %s %s/build/luajit/"):format(
      u.quote(co), u.quote(co), u.quote(u.root .. "/lua"), u.quote(co),
      u.quote(u.root .. "/examples/openresty"), u.quote(co),
      u.quote(u.root .. "/build/luajit/qwenvl.so"), u.quote(co)))
    port = u.free_port()
    local conf = co .. "/examples/openresty/nginx.conf"
    local text, n = fx.read(conf):gsub("listen 127%.0%.0%.1:8080;", ("listen 127.0.0.1:%d;"):format(port))
    assert.are.equal(1, n, "the example listens on 127.0.0.1:8080")
    fx.write(conf, text)
    local as_user = ""
    if fx.sh("id -u"):match("^0") then
      -- setpriv execs (no child), so the pid is nginx's own
      assert(u.have("setpriv"), "setpriv (util-linux) is needed to test as a user who is not root")
      fx.sh("chmod 755 " .. u.quote(dir) .. " && chown -R nobody " .. u.quote(co))
      as_user = "setpriv --reuid=nobody --regid=nogroup --clear-groups "
    end
    pid = u.spawn(("%ssh -c %s"):format(as_user, u.quote("cd " .. u.quote(co) .. " && exec " .. command())),
      dir .. "/nginx.out", { DASHSCOPE_API_KEY = srv.key, DASHSCOPE_BASE_URL = srv.base_url, HOME = dir })
    if not u.wait_port(port, 10) then
      error("the example did not start:\n" .. fx.read(dir .. "/nginx.out"))
    end
  end)

  teardown(function()
    if pid then u.kill(pid, "QUIT") end
    if srv then srv:stop() end
    if dir then fx.rm(dir) end
  end)

  it("the README gives the same command", function()
    assert.matches(command(), fx.read(u.root .. "/README.md"), 1, true)
  end)

  it("answers ?image=<URL> as JSON and streams with &stream=1, writing nothing outside its build/", function()
    local img = "https://example.com/cat.jpg"
    local model = standin.scenario_model("example", "ok")
    local status, body = standin.http("GET", ("http://127.0.0.1:%d/describe?image=%s&model=%s"):format(
      port, standin.url_encode(img), standin.url_encode(model)))
    assert.are.equal(200, status, body .. fx.read(dir .. "/nginx.out"))
    local a = cjson.decode(cjson.decode(body).text:sub(9))
    assert.are.equal(img, a.images[1].url)
    local r = raw_get(port, ("/describe?stream=1&image=%s&model=%s"):format(
      standin.url_encode(img), standin.url_encode(model)))
    assert.are.equal(200, r.status)
    assert.matches("^STANDIN ", r.body)
    assert.are.equal(2, srv:scenario(model).attempts)
    -- the pid file and temp folders are where the example says
    assert.is_true(u.exists(dir .. "/qwenvl/build/nginx.pid"))
    assert.are.equal("", (fx.sh("grep -E '\\[(alert|emerg|crit)\\]' " .. u.quote(dir .. "/nginx.out"))))
  end)
end)
