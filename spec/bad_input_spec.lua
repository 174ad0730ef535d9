-- Bad input at the API: every request field with a wrong type, an empty
-- string, a huge string, NUL bytes, bad images (a directory, a FIFO, an
-- empty file, a truncated PNG, a file being rewritten), unknown fields, bad
-- region/base_url, header injection. Each gets nil, err with
-- code "invalid_request" naming the field, and nothing reaches the stand-in.
-- A request that is not a table raises.
local standin = require("spec.support.standin")
local fx = require("spec.support.fixtures")
local qwenvl = require("qwenvl")
local socket = require("socket")

local NaN = 0 / 0
local HUGE = string.rep("a", 2 * 1024 * 1024)

describe("bad input", function()
  local srv, dir, png

  setup(function()
    srv = standin.start {}
    dir = fx.tmpdir()
    png = fx.png(dir .. "/a.png", 8, 8)
    fx.write(dir .. "/empty.png", "")
    fx.write(dir .. "/trunc.png", fx.read(png):sub(1, 20))   -- cut inside IHDR
    fx.write(dir .. "/notimage.png", "hello, not an image\n")
    fx.sh("mkfifo " .. fx.quote(dir .. "/fifo"))
  end)

  teardown(function()
    if srv then srv:stop() end
    if dir then fx.rm(dir) end
  end)

  local function base(over)
    local r = { prompt = "describe", image = png, api_key = srv.key, base_url = srv.base_url,
      max_retries = 0 }
    for k, v in pairs(over) do
      if v == false and k ~= "stream" and k ~= "json_mode" then r[k] = nil else r[k] = v end
    end
    return r
  end

  -- name, fields to set (false removes), the field the error must name
  local CASES = {
    { "prompt missing", { prompt = false }, "prompt" },
    { "prompt number", { prompt = 1 }, "prompt" },
    { "prompt table", { prompt = {} }, "prompt" },
    { "prompt empty", { prompt = "" }, "prompt" },
    { "prompt NUL", { prompt = "a\0b" }, "prompt" },
    { "prompt 2 MiB", { prompt = HUGE }, "prompt" },
    { "image number", { image = 1 }, "image" },
    { "image empty string", { image = "" }, "image" },
    { "image missing file", { image = "/nonexistent/x.png" }, "image" },
    { "image a directory", { image = "<dir>" }, "image" },
    { "image a FIFO (must not block)", { image = "<dir>/fifo" }, "image" },
    { "image a 0-byte file", { image = "<dir>/empty.png" }, "image" },
    { "image a truncated PNG", { image = "<dir>/trunc.png" }, "image" },
    { "image not an image", { image = "<dir>/notimage.png" }, "image" },
    { "image bad data URL", { image = "data:image/png;base64,@@@@" }, "image" },
    { "image data URL of nothing", { image = "data:image/png;base64," }, "image" },
    { "image URL with spaces", { image = "https://exa mple.com/a.png" }, "image" },
    { "image and images missing", { image = false }, "image" },
    { "images a string", { image = false, images = "x" }, "images" },
    { "images empty", { image = false, images = {} }, "images" },
    { "images with a number", { image = false, images = { "<png>", 3 } }, "images" },
    { "model number", { model = 1 }, "model" },
    { "model empty", { model = "" }, "model" },
    { "model NUL", { model = "a\0b" }, "model" },
    { "model header injection", { model = "x\r\nX-Evil: 1" }, "model" },
    { "api_key number", { api_key = 5 }, "api_key" },
    { "api_key empty", { api_key = "" }, "api_key" },
    { "api_key NUL", { api_key = "sk\0x" }, "api_key" },
    { "api_key header injection", { api_key = "x\r\nX-Evil: 1" }, "api_key" },
    { "api_key huge", { api_key = HUGE }, "api_key" },
    { "max_tokens string", { max_tokens = "5" }, "max_tokens" },
    { "max_tokens negative", { max_tokens = -1 }, "max_tokens" },
    { "max_tokens fraction", { max_tokens = 1.5 }, "max_tokens" },
    { "max_tokens 1e20", { max_tokens = 1e20 }, "max_tokens" },
    { "temperature string", { temperature = "hot" }, "temperature" },
    { "temperature negative", { temperature = -1 }, "temperature" },
    { "temperature NaN", { temperature = NaN }, "temperature" },
    { "detail unknown", { detail = "ultra" }, "detail" },
    { "json_mode string", { json_mode = "yes" }, "json_mode" },
    { "schema number", { schema = 5 }, "schema" },
    { "schema bad JSON", { schema = "{" }, "schema" },
    { "system number", { system = 5 }, "system" },
    { "system NUL", { system = "a\0b" }, "system" },
    { "max_retries negative", { max_retries = -1 }, "max_retries" },
    { "max_retries string", { max_retries = "2" }, "max_retries" },
    { "retry_backoff_s negative", { retry_backoff_s = -1 }, "retry_backoff_s" },
    { "timeout_s 0", { timeout_s = 0 }, "timeout_s" },
    { "timeout_s negative", { timeout_s = -5 }, "timeout_s" },
    { "timeout_s infinite", { timeout_s = math.huge }, "timeout_s" },
    { "timeout_s NaN", { timeout_s = NaN }, "timeout_s" },
    { "connect_timeout_s negative", { connect_timeout_s = -1 }, "connect_timeout_s" },
    { "idle_timeout_s negative", { idle_timeout_s = -1 }, "idle_timeout_s" },
    { "max_retry_after_s negative", { max_retry_after_s = -1 }, "max_retry_after_s" },
    { "max_response_bytes negative", { max_response_bytes = -1 }, "max_response_bytes" },
    { "max_response_bytes string", { max_response_bytes = "1" }, "max_response_bytes" },
    { "base_url ftp", { base_url = "ftp://x/" }, "base_url" },
    { "base_url with a space", { base_url = "http://a b/" }, "base_url" },
    { "base_url empty", { base_url = "" }, "base_url" },
    { "base_url header injection", { base_url = "http://x/\r\nX: 1" }, "base_url" },
    { "base_url number", { base_url = 5 }, "base_url" },
    { "region unknown", { region = "mars", base_url = false }, "region" },
    { "region number", { region = 1, base_url = false }, "region" },
    { "extra number", { extra = 5 }, "extra" },
    { "stream string", { stream = "yes" }, "stream" },
    { "on_delta string", { on_delta = "f" }, "on_delta" },
    { "coalesce_ms negative", { coalesce_ms = -1 }, "coalesce_ms" },
    { "coalesce_bytes string", { coalesce_bytes = "x" }, "coalesce_bytes" },
    { "enable_thinking string", { enable_thinking = "y" }, "enable_thinking" },
    { "thinking_budget negative", { thinking_budget = -1 }, "thinking_budget" },
    { "cainfo number", { cainfo = 1 }, "cainfo" },
    { "proxy number", { proxy = 1 }, "proxy" },
    { "noproxy table", { noproxy = {} }, "noproxy" },
    { "unknown field", { foo = 1 }, "foo" },
    { "a non-string key", { [1] = "x" }, "request" },
    -- C string APIs would cut a path at the NUL and read another file
    { "image path with a NUL", { image = "<png>\0.txt" }, "image" },
    { "proxy with CR LF", { proxy = "http://127.0.0.1:9\r\nX: 1" }, "proxy" },
  }

  local function subst(v)
    if type(v) == "string" then
      return (v:gsub("<dir>", dir):gsub("<png>", png))
    elseif type(v) == "table" then
      local t = {}
      for k, x in pairs(v) do t[k] = subst(x) end
      return t
    end
    return v
  end

  for _, case in ipairs(CASES) do
    local name, over, field = case[1], case[2], case[3]
    it(name .. " -> invalid_request (" .. field .. ")", function()
      local before = srv:stats().chat_requests
      for _, how in ipairs({ "chat", "start", "prepare", "chat_many" }) do
        local req = base(subst(over))
        local t0 = socket.gettime()
        local r, err
        if how == "chat" then
          r, err = qwenvl.chat(req)
        elseif how == "start" then
          r, err = qwenvl.start(req)
        elseif how == "prepare" then
          r, err = qwenvl.prepare(req)
        else
          local res, failures = qwenvl.chat_many({ req })
          assert.equal(1, failures)
          err = res[1]
        end
        assert.is_true(socket.gettime() - t0 < 5, how .. " took too long")
        assert.is_nil(r, how .. " accepted it")
        assert.is_table(err, how)
        assert.equal("invalid_request", err.code, how .. ": " .. tostring(err))
        assert.equal(field, err.field, how .. ": " .. tostring(err))
        assert.equal(0, err.attempts)
        assert.is_false(err.retryable)
        assert.is_string(err.message)
        assert.truthy(#err.message < 1000)
        assert.matches("^qwenvl: invalid_request", tostring(err))
      end
      assert.equal(before, srv:stats().chat_requests, "a bad request reached the stand-in")
    end)
  end

  it("no key at all -> auth, nothing sent", function()
    local before = srv:stats().chat_requests
    local interp, cpath = fx.interp()
    local out = fx.lua("env -u DASHSCOPE_API_KEY -u DASHSCOPE_BASE_URL -u DASHSCOPE_REGION " .. interp,
      { HOME = dir }, ([[local q = require("qwenvl")
        local r, e = q.chat{ prompt = "x", image = %q, base_url = %q, max_retries = 0 }
        io.write(tostring(r), " ", e and e.code or "-", " ", e and tostring(e.attempts) or "-")]]):format(png,
        srv.base_url), cpath)
    assert.matches("^nil auth 0", out)
    assert.equal(before, srv:stats().chat_requests)
  end)

  -- The numeric fields at their limits: the bound itself is accepted,
  -- a step beyond it refused, naming the field (the limits are the API's:
  -- docs/api.md). prepare sends nothing.
  local BOUNDS = {
    -- field, lowest, highest, integer, step
    { "max_retries", 0, 20, true },
    { "retry_backoff_s", 0, 600 },
    { "timeout_s", 0.001, 86400 },
    { "connect_timeout_s", 0.001, 3600 },
    { "idle_timeout_s", 0.001, 86400 },
    { "max_retry_after_s", 0, 86400 },
    { "max_response_bytes", 1024, 1e12, true },
    { "coalesce_ms", 0, 60000 },
    { "coalesce_bytes", 0, 1e9, true },
    { "max_tokens", 1, 131072, true },
    { "temperature", 0, 1.999999, false, 1e-6 },
    { "fps", 0.1, 10, false, 0.01, { image = false, video = { "<png>", "<png>", "<png>", "<png>" } } },
    { "thinking_budget", 1, 1e7, true },
    { "quality", 1, 100, true },
    { "max_side", 1, 1e6, true },
    { "max_pixels", 1, 1e10, true },
    { "min_pixels", 1, 1e10, true, nil, { max_pixels = 1e10 } },
    { "max_input_pixels", 1, 1e11, true },
  }
  for _, b in ipairs(BOUNDS) do
    local name, lo, hi, integer, step, with = b[1], b[2], b[3], b[4], b[5], b[6]
    step = step or (integer and 1) or (lo > 0 and lo / 2) or 0.5
    it(name .. " accepts " .. lo .. " and " .. hi .. ", refuses a step beyond", function()
      local function try(v)
        local over = { [name] = v }
        for k, x in pairs(with or {}) do over[k] = x end
        return qwenvl.prepare(base(subst(over)))
      end
      for _, v in ipairs { lo, hi } do
        local plan, err = try(v)
        assert.is_table(plan, name .. " = " .. v .. ": " .. tostring(err))
      end
      for _, v in ipairs { lo - step, hi + (integer and 1 or step) } do
        local plan, err = try(v)
        assert.is_nil(plan, name .. " = " .. v .. " was accepted")
        assert.equal("invalid_request", err.code)
        assert.equal(name, err.field)
        assert.matches("out of range", err.message)
      end
      if integer then
        local plan, err = try(lo + 0.5)
        assert.is_nil(plan, name .. " = " .. (lo + 0.5) .. " was accepted")
        assert.equal(name, err.field)
        assert.matches("integer", err.message)
      end
    end)
  end

  it("a request that is not a table raises", function()
    for _, v in ipairs({ "describe this", 1, true }) do
      assert.has_error(function() qwenvl.chat(v) end)
      assert.has_error(function() qwenvl.start(v) end)
    end
    assert.has_error(function() qwenvl.chat() end)
    assert.has_error(function() qwenvl.chat_many("x") end)
  end)

  it("a FIFO as the image path does not block even with a writer waiting", function()
    -- no reader ever opens it for the writer: if the module opened the
    -- FIFO, it would block until the writer's timeout
    local t0 = socket.gettime()
    local _, err = qwenvl.prepare(base { image = dir .. "/fifo" })
    assert.equal("invalid_request", err.code)
    assert.is_true(socket.gettime() - t0 < 1)
  end)

  it("a file rewritten while being read: a clean result or invalid_request, never a crash", function()
    local path = dir .. "/moving.png"
    fx.write(path, fx.read(png))
    local big = fx.png(dir .. "/big.png", 400, 300)
    -- a background writer alternates the two images and an empty file for ~2 s
    local cmd = ("sh -c 'end=$(($(date +%%s)+2)); while [ $(date +%%s) -lt $end ]; do "
      .. "cp %s %s.t && mv %s.t %s; cp %s %s; : > %s; cp %s %s; done' >/dev/null 2>&1 &"):format(
      fx.quote(big), fx.quote(path), fx.quote(path), fx.quote(path), fx.quote(png), fx.quote(path),
      fx.quote(path), fx.quote(png), fx.quote(path))
    os.execute(cmd)
    local ok_n, bad_n = 0, 0
    local t_end = socket.gettime() + 1.5
    while socket.gettime() < t_end do
      local plan, err = qwenvl.prepare(base { image = path })
      if plan then
        ok_n = ok_n + 1
        local im = plan.images[1]
        assert.truthy(im.bytes > 0)
        assert.truthy((im.width == 8 and im.height == 8) or (im.width == 400 and im.height == 300),
          "dimensions of neither file: " .. tostring(im.width) .. "x" .. tostring(im.height))
      else
        bad_n = bad_n + 1
        assert.equal("invalid_request", err.code, tostring(err))
        assert.equal("image", err.field)
      end
    end
    assert.truthy(ok_n + bad_n > 0)
    socket.sleep(0.8)
  end)
end)
