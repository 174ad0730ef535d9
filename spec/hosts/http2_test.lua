-- HTTP/2: where the server offers it, a batch shares one connection.
-- nginx terminates TLS with HTTP/2 on loopback and proxies to the stand-in;
-- its access log says which connection and protocol each request used.
local qwenvl = require("qwenvl")
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

  it("runs a batch of 16 over one HTTP/2 connection", function()
    local base = ("https://127.0.0.1:%d/compatible-mode/v1"):format(port)
    local requests = {}
    for i = 1, 16 do
      requests[i] = { prompt = "p" .. i, image = dir .. "/a.png", api_key = srv.key,
        base_url = base, cainfo = cert, model = standin.scenario_model("h2", "delay=200") }
    end
    local t0 = u.now()
    local results, failures = qwenvl.chat_many(requests, { concurrency = 16 })
    local elapsed = u.now() - t0
    assert.are.equal(0, failures, tostring(results[1].code and results[1]))
    for i = 1, 16 do assert.matches('"prompt":"p' .. i .. '"', results[i].text) end
    local conns, lines = {}, 0
    for line in io.lines(dir .. "/access.log") do
      local conn, proto = line:match("^(%d+) (%S+)")
      assert.are.equal("HTTP/2.0", proto)
      conns[conn] = true
      lines = lines + 1
    end
    local n = 0
    for _ in pairs(conns) do n = n + 1 end
    assert.are.equal(16, lines)
    assert.are.equal(1, n)                 -- every request on one connection
    assert.is_true(elapsed < 16 * 0.2 / 2, "concurrent, not serialized: " .. elapsed)
    io.stderr:write(("\n[http2] 16 requests x 200 ms over %d connection(s) in %.2f s\n"):format(n, elapsed))
  end)
end)
