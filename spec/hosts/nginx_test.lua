-- OpenResty host: a real nginx (Debian's libnginx-mod-http-lua, one worker)
-- runs examples/openresty/describe.lua through qwenvl.ngx. 50 concurrent
-- requests whose stand-in answers take 300 ms each must all succeed in far
-- less than 50 x 300 ms: the worker never blocked. A streamed answer must
-- reach the client in several chunks.
local standin = require("spec.support.standin")
local fx = require("spec.support.fixtures")
local u = require("spec.hosts.util")
local cjson = require("cjson")
local socket = require("socket")

local NGINX_LUA = "/usr/lib/nginx/modules/ngx_http_lua_module.so"

describe("OpenResty (nginx + lua-nginx-module)", function()
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
  lua_package_cpath "%s/build/luajit/?.so;;";
  server {
    listen 127.0.0.1:%d;
    set $qwenvl_image_root "%s";
    location = /describe { content_by_lua_file %s/examples/openresty/describe.lua; }
    location = /stats {
      content_by_lua_block {
        ngx.say(require("cjson").encode(require("qwenvl.ngx").stats()))
      }
    }
    location = /reset { content_by_lua_block { require("qwenvl.ngx").reset_stats() ngx.say("ok") } }
  }
}
]]):format(NGINX_LUA, dir, dir, dir, dir, dir, dir, dir, u.root, u.root, u.root, port, dir, u.root)
  end

  setup(function()
    assert(u.have("nginx"), "nginx not installed (Debian: nginx-light)")
    assert(u.exists(NGINX_LUA), "libnginx-mod-http-lua not installed")
    assert(u.exists(u.root .. "/build/luajit/qwenvl.so"), "run make LUA=luajit first")
    srv = standin.start{}
    dir = fx.tmpdir()
    fx.sh("chmod 755 " .. u.quote(dir))   -- the worker may run as nobody
    fx.png(dir .. "/a.png", 64, 48)
    fx.sh("chmod 644 " .. u.quote(dir .. "/a.png"))
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

  local function error_log()
    return u.exists(dir .. "/error.log") and fx.read(dir .. "/error.log") or ""
  end

  it("answers one request as JSON", function()
    local status, body = standin.http("GET", url(standin.scenario_model("one", "ok")), nil, nil, 10)
    assert.are.equal(200, status, body .. error_log())
    local obj = cjson.decode(body)
    assert.matches("^STANDIN ", obj.text)
    assert.are.equal("png", cjson.decode(obj.text:sub(9)).images[1].format)
  end)

  it("refuses a local path that is not a plain file name", function()
    local status, body = standin.http("GET", ("http://127.0.0.1:%d/describe?image=/etc/passwd"):format(port))
    assert.are.equal(400, status)
    assert.matches("invalid_request", body)
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
    io.stderr:write(("\n[nginx] 50 x 300 ms requests: %.2f s total; stand-in max in flight %d; " ..
      "driver ticks %d (%.0f/s), request wake-ups %d, driver starts %d\n"):format(
      elapsed, st.max_in_flight or -1, ns.ticks, ns.ticks / elapsed, ns.wakeups, ns.driver_starts))
    assert.is_true(elapsed < 5, ("took %.2f s"):format(elapsed))
    assert.is_true((st.max_in_flight or 0) >= 25, "stand-in saw max " .. tostring(st.max_in_flight))
    assert.are.equal(50, ns.requests)
    assert.is_true(ns.max_in_flight >= 25)
  end)

  it("streams an answer to the client in several chunks", function()
    -- stall=400: the stand-in pauses 400 ms after the second content piece.
    local model = standin.scenario_model("stream", "stall=400")
    local path = url(model, "&stream=1"):match("^http://[^/]+(/.*)$")
    local c = socket.tcp()
    c:settimeout(5)
    assert(c:connect("127.0.0.1", port))
    c:send(("GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"):format(path))
    c:settimeout(0.01)
    local raw, arrivals = {}, {}
    local deadline = u.now() + 10
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
    assert.is_not_nil(head, all)
    assert.matches("^HTTP/1.1 200", head)
    assert.matches("[Tt]ransfer%-[Ee]ncoding: chunked", head)
    -- decode the chunked body
    local text, chunks, pos = {}, 0, 1
    while true do
      local size_hex, nxt = body:match("^(%x+)\r\n()", pos)
      if not size_hex then break end
      local n = tonumber(size_hex, 16)
      if n == 0 then break end
      text[#text + 1] = body:sub(nxt, nxt + n - 1)
      chunks = chunks + 1
      pos = nxt + n + 2
    end
    local answer = table.concat(text)
    assert.matches("^STANDIN ", answer)
    assert.is_nil(answer:find("[error]", 1, true), answer)
    assert.is_true(chunks >= 3, "chunks: " .. chunks)
    assert.is_true(#arrivals >= 2, "arrivals: " .. #arrivals)
    local spread = arrivals[#arrivals] - arrivals[1]
    io.stderr:write(("[nginx] stream: %d HTTP chunks in %d reads over %.0f ms\n"):format(
      chunks, #arrivals, spread * 1000))
    assert.is_true(spread >= 0.3, ("spread %.3f s"):format(spread))
  end)
end)
