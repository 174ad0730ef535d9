-- HTTP/2: where the server offers it, a batch shares one connection.
-- nginx terminates TLS with HTTP/2 on loopback and proxies to the stand-in;
-- its access log says which connection and protocol each request used.
-- Once with each engine: epoll (build/lua5.4) and poll() (build/lua5.4-poll).
local cjson = require("cjson")
local standin = require("spec.support.standin")
local fx = require("spec.support.fixtures")
local u = require("spec.hosts.util")

describe("HTTP/2 through nginx", function()
  local srv, dir, pid, port, cert

  setup(function()
    assert(u.have("nginx"), "nginx not installed (Debian: nginx-light)")
    srv = standin.start{}
    dir = fx.tmpdir()
    fx.sh("chmod 755 " .. u.quote(dir))   -- the worker may run as nobody
    cert = dir .. "/cert.pem"
    local out, ok = fx.sh(("openssl req -x509 -newkey rsa:2048 -nodes -days 1 " ..
      "-subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 -keyout %s -out %s"):format(
      u.quote(cert), u.quote(cert)))
    assert(ok, out)
    fx.png(dir .. "/a.png", 64, 48)
    port = u.free_port()
    fx.write(dir .. "/nginx.conf", ([[
worker_processes 1;
pid %s/nginx.pid;
error_log %s/error.log warn;
events { worker_connections 256; }
http {
  log_format conn '$connection $server_protocol $status';
  access_log %s/access.log conn;
  client_body_temp_path %s/body;
  proxy_temp_path %s/proxy;
  fastcgi_temp_path %s/fastcgi;
  uwsgi_temp_path %s/uwsgi;
  scgi_temp_path %s/scgi;
  client_max_body_size 20m;
  upstream standin { server 127.0.0.1:%d; keepalive 32; }
  server {
    listen 127.0.0.1:%d ssl http2;
    ssl_certificate %s;
    ssl_certificate_key %s;
    http2_max_concurrent_streams 128;
    location / {
      proxy_pass http://standin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
]]):format(dir, dir, dir, dir, dir, dir, dir, dir, srv.port, port, cert, cert))
    pid = u.spawn(("nginx -p %s -c %s -g 'daemon off;'"):format(u.quote(dir),
      u.quote(dir .. "/nginx.conf")), dir .. "/nginx.out")
    assert(u.wait_port(port, 10), "nginx did not start")
  end)

  teardown(function()
    if pid then u.kill(pid, "QUIT") end
    if srv then srv:stop() end
    if dir then fx.rm(dir) end
  end)

  -- The batch runs in its own interpreter so that each engine build can
  -- be used (this suite's process has build/lua5.4 loaded).
  local BATCH = [[
local qwenvl = require("qwenvl")
local cjson = require("cjson")
local socket = require("socket")
local a = cjson.decode(arg[1])
local requests = {}
for i = 1, 16 do
  requests[i] = { prompt = "p" .. i, image = a.image, api_key = a.key, base_url = a.base,
                  cainfo = a.cert, model = a.model }
end
local t0 = socket.gettime()
local results, failures = qwenvl.chat_many(requests, { concurrency = 16 })
local texts = {}
for i, r in ipairs(results) do texts[i] = r.text or tostring(r) end
print(cjson.encode({ elapsed = socket.gettime() - t0, failures = failures, texts = texts,
                     engine = qwenvl.info().engine }))
]]

  for _, build in ipairs({ "lua5.4", "lua5.4-poll" }) do
    it(("runs a batch of 16 over one HTTP/2 connection (build/%s)"):format(build), function()
      assert(u.exists(("%s/build/%s/qwenvl.so"):format(u.root, build)),
        "run make" .. (build:find("poll") and " POLLER=poll" or "") .. " first")
      local log = fx.read(dir .. "/access.log")
      local before = select(2, log:gsub("\n", ""))
      local args = cjson.encode({ image = dir .. "/a.png", key = srv.key, cert = cert,
        base = ("https://127.0.0.1:%d/compatible-mode/v1"):format(port),
        model = standin.scenario_model("h2", "delay=200") })
      fx.write(dir .. "/batch.lua", BATCH)
      local out, ok = fx.sh(("lua5.4 -e %s %s %s 2>&1"):format(
        u.quote(("package.cpath = %q .. package.cpath; package.path = %q .. package.path"):format(
          u.root .. "/build/" .. build .. "/?.so;", u.root .. "/lua/?.lua;")),
        u.quote(dir .. "/batch.lua"), u.quote(args)))
      assert.is_true(ok, out)
      local r = cjson.decode(out:match("[^\n]*\n?$"))
      assert.are.equal(build:find("poll") and "poll" or "epoll", r.engine)
      assert.are.equal(0, r.failures, r.texts[1])
      for i = 1, 16 do assert.matches('"prompt":"p' .. i .. '"', r.texts[i], 1, true) end
      -- nginx logs a request after its response went out: the last lines
      -- may land a moment after the client has every answer
      local deadline = u.now() + 5
      while select(2, fx.read(dir .. "/access.log"):gsub("\n", "")) < before + 16 and u.now() < deadline do
        u.sleep(0.02)
      end
      local conns, lines, k = {}, 0, 0
      for line in io.lines(dir .. "/access.log") do
        k = k + 1
        if k > before then
          local conn, proto = line:match("^(%d+) (%S+)")
          assert.are.equal("HTTP/2.0", proto)
          conns[conn] = true
          lines = lines + 1
        end
      end
      local n = 0
      for _ in pairs(conns) do n = n + 1 end
      assert.are.equal(16, lines)
      assert.are.equal(1, n)                 -- every request on one connection
      assert.is_true(r.elapsed < 16 * 0.2 / 2, "concurrent, not serialized: " .. r.elapsed)
      io.stderr:write(("\n[http2 %s] 16 requests x 200 ms over %d connection(s) in %.2f s\n"):format(
        build, n, r.elapsed))
    end)
  end
end)
