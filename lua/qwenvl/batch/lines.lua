-- qwenvl.batch.lines: one chat request -> one JSONL line of a Batch input
-- file, or a clear reason why that request cannot go into a batch.
--
--   local lines = require("qwenvl.batch.lines")
--   local line, info = lines.build(q, req, custom_id, opts)   -- or nil, err
--
-- Builds on qwenvl.prepare (validation, image reading and resizing) and
-- lua-cjson. What DashScope accepts and then never finishes (local paths,
-- file://, intranet URLs: notes/batch-api.md section 5) is refused here,
-- before anything is uploaded.

local cjson_mod = require("cjson")

local M = {}

-- Our own cjson instance: settings changed here never reach the host's.
local cjson = cjson_mod.new and cjson_mod.new() or cjson_mod

M.CHAT_URL = "/v1/chat/completions"
M.TEST_URL = "/v1/chat/ds-test"
M.TEST_MODEL = "batch-test-model"

local byte, char, floor, concat = string.byte, string.char, math.floor, table.concat

local function fail(q, message, field)
  return nil, q.error("invalid_request", message, { field = field or "image" })
end

---------------------------------------------------------------------------
-- base64 (only for the stopgap below)

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local PAIR = {}
for i = 0, 4095 do
  local a, b = floor(i / 64), i % 64
  PAIR[i] = B64:sub(a + 1, a + 1) .. B64:sub(b + 1, b + 1)
end

function M.base64(s)
  local out, buf, nb = {}, {}, 0
  local n = #s
  local full = n - n % 3
  local i = 1
  -- twelve bytes (sixteen characters) per step: fewer calls, no new strings
  while i + 11 <= full do
    local a1, b1, c1, a2, b2, c2, a3, b3, c3, a4, b4, c4 = byte(s, i, i + 11)
    local v1 = a1 * 65536 + b1 * 256 + c1
    local v2 = a2 * 65536 + b2 * 256 + c2
    local v3 = a3 * 65536 + b3 * 256 + c3
    local v4 = a4 * 65536 + b4 * 256 + c4
    buf[nb + 1], buf[nb + 2] = PAIR[floor(v1 / 4096)], PAIR[v1 % 4096]
    buf[nb + 3], buf[nb + 4] = PAIR[floor(v2 / 4096)], PAIR[v2 % 4096]
    buf[nb + 5], buf[nb + 6] = PAIR[floor(v3 / 4096)], PAIR[v3 % 4096]
    buf[nb + 7], buf[nb + 8] = PAIR[floor(v4 / 4096)], PAIR[v4 % 4096]
    nb = nb + 8
    if nb >= 4096 then out[#out + 1] = concat(buf, "", 1, nb); nb = 0 end
    i = i + 12
  end
  while i <= full do
    local a, b, c = byte(s, i, i + 2)
    local v = a * 65536 + b * 256 + c
    buf[nb + 1], buf[nb + 2] = PAIR[floor(v / 4096)], PAIR[v % 4096]
    nb = nb + 2
    i = i + 3
  end
  out[#out + 1] = concat(buf, "", 1, nb)
  local rest = n - full
  if rest > 0 then
    local a, b = byte(s, full + 1, n)
    local v = a * 65536 + (b or 0) * 256
    local four = PAIR[floor(v / 4096)] .. PAIR[v % 4096]
    out[#out + 1] = rest == 1 and four:sub(1, 2) .. "==" or four:sub(1, 3) .. "="
  end
  return concat(out)
end

---------------------------------------------------------------------------
-- where images come from

local function image_list(req)
  local list = {}
  if req.image ~= nil then list[1] = req.image end
  if type(req.images) == "table" then
    for _, v in ipairs(req.images) do list[#list + 1] = v end
  end
  return list
end
M.image_list = image_list

-- IPv4 as inet_aton reads it (1 to 4 parts, decimal, 0octal or 0xhex), so
-- "127.1", "0x7f.0.0.1" and "2130706433" are all seen as loopback.
local function ipv4(host)
  if not host:find("^[%dxXa-fA-F.]+$") then return nil end
  local parts = {}
  for p in (host .. "."):gmatch("([^.]*)%.") do parts[#parts + 1] = p end
  if #parts < 1 or #parts > 4 then return nil end
  local nums = {}
  for i, p in ipairs(parts) do
    local v
    if p:find("^0[xX]%x*$") then v = tonumber(p:sub(3) ~= "" and p:sub(3) or "0", 16)
    elseif p:find("^0[0-7]+$") then v = tonumber(p, 8)
    elseif p:find("^%d+$") then v = tonumber(p, 10)
    else return nil end
    nums[i] = v
  end
  local last = nums[#nums]
  local bytes = {}
  for i = 1, #nums - 1 do
    if nums[i] > 255 then return nil end
    bytes[i] = nums[i]
  end
  local left = 4 - (#nums - 1)
  if last >= 256 ^ left then return nil end
  for i = left, 1, -1 do
    bytes[#bytes + 1] = floor(last / 256 ^ (i - 1)) % 256
  end
  return bytes
end

local function private_v4(b)
  local a, c = b[1], b[2]
  return a == 0 or a == 10 or a == 127 or (a == 169 and c == 254)
    or (a == 172 and c >= 16 and c <= 31) or (a == 192 and c == 168)
    or (a == 100 and c >= 64 and c <= 127) or (a == 198 and (c == 18 or c == 19))
    or (a == 192 and c == 0 and b[3] == 0) or a >= 224
end

local function private_v6(h)
  h = h:lower()
  if h == "::" or h == "::1" or h:find("^0*:0*:0*:0*:0*:0*:0*:0*1?$") then return true end
  if h:find("^f[cd]%x*:") or h:find("^fe[89ab]%x*:") then return true end
  local v4 = h:match("^::ffff:([%d.]+)$") or h:match("^::([%d.]+)$")
  if v4 then
    local b = ipv4(v4)
    return b == nil or private_v4(b)
  end
  local hi, lo = h:match("^::ffff:(%x+):(%x+)$")
  if hi then
    local x, y = tonumber(hi, 16), tonumber(lo, 16)
    return private_v4({ floor(x / 256), x % 256, floor(y / 256), y % 256 })
  end
  return false
end

-- Names that only an intranet resolves.
local LOCAL_SUFFIXES = { "localhost", "local", "internal", "intranet", "lan", "home.arpa",
                         "localdomain", "corp" }

--- Is `host` (from a URL) loopback, private, link-local or an intranet name?
function M.private_host(host)
  host = host:lower():gsub("%.$", "")
  if host == "" then return true end
  local v6 = host:match("^%[(.*)%]$")
  if v6 then return private_v6(v6) end
  local b = ipv4(host)
  if b then return private_v4(b) end
  if not host:find(".", 1, true) then return true end -- one label: an intranet name
  for _, s in ipairs(LOCAL_SUFFIXES) do
    if host == s or host:sub(-#s - 1) == "." .. s then return true end
  end
  return false
end

local function url_host(url)
  local rest = url:match("^[%a][%w+.-]*://(.*)$")
  if not rest then return nil end
  local authority = rest:match("^([^/?#]*)") or ""
  authority = authority:gsub("^.*@", "")
  if authority:sub(1, 1) == "[" then return authority:match("^(%[[^%]]*%])") or authority end
  return (authority:gsub(":%d*$", ""))
end
M.url_host = url_host

--- nil when every image of `req` can be fetched by DashScope's batch
-- workers (a public URL) or inlined (a readable file, a data URL); else an
-- error naming the image.
function M.check_sources(q, req)
  for i, img in ipairs(image_list(req)) do
    if type(img) == "string" then
      local scheme = img:match("^([%a][%w+.-]*):")
      scheme = scheme and scheme:lower()
      if scheme == "http" or scheme == "https" then
        local host = url_host(img)
        if not host or M.private_host(host) then
          local _, err = fail(q, ("image %d: %s is on a private, loopback or intranet host, "
            .. "which DashScope's batch workers cannot reach (the batch would never finish); "
            .. "use a public URL or a local file"):format(i, host or img))
          return err
        end
      elseif scheme == "data" then -- checked by prepare
      elseif img:find("^[%a][%w+.-]*://") then
        local _, err = fail(q, ("image %d: %s URLs cannot be used in a batch (the service "
          .. "accepts the line and never finishes it); use a public https URL or a local "
          .. "file path"):format(i, scheme))
        return err
      else
        local f, ferr = io.open(img, "rb")
        if not f then
          local _, err = fail(q, ("image %d: cannot read the local file %s: %s"):format(
            i, img, tostring(ferr)))
          return err
        end
        f:close()
      end
    end
  end
  return nil
end

---------------------------------------------------------------------------
-- the body

local PLACEHOLDER = "qwenvl-batch-inline-image-"
local PLACEHOLDER_RX = "qwenvl%-batch%-inline%-image%-(%d+)@"

local function read_all(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local s = f:read("*a")
  f:close()
  return s
end

-- The data URL that prepare's note "<prefix><omitted n chars>" stands for.
local function inline_data(q, k, info, src, prefix, n)
  if type(info) ~= "table" then
    return fail(q, ("image %d: no image information from prepare"):format(k))
  end
  if info.resized then
    return fail(q, ("image %d (%s) needs downscaling, and the downscaled bytes cannot be "
      .. "inlined in a batch line yet (this build's qwenvl.prepare does not return them); "
      .. "pass resize = false or a smaller image, or send it live"):format(
      k, tostring(info.path or "data URL")))
  end
  local payload
  if info.source == "data_url" and type(src) == "string" then
    payload = src:match(";base64,(.*)$")
  elseif info.source == "file" then
    local bytes, err = read_all(info.path or src)
    if not bytes then
      return fail(q, ("image %d: cannot read %s: %s"):format(k, tostring(info.path), tostring(err)))
    end
    payload = M.base64(bytes)
  end
  if not payload or #payload ~= n then
    return fail(q, ("image %d changed while the batch line was built"):format(k))
  end
  return prefix .. payload
end

-- STOPGAP until the core hands over the exact body it would send (the lead
-- is asked for `body_json, info = qwenvl.encode(req, {stream = false})`):
-- prepare's body has its inline images replaced by notes, so they are put
-- back here from the file (or data URL) bytes. Images prepare downscaled
-- cannot be put back: such a request fails with a clear error.
local function encode_body_stopgap(q, req)
  local p, err = q.prepare(req)
  if not p then return nil, err end
  local body = p.body
  local srcs = image_list(req)
  local subs, notes, k = {}, {}, 0
  for _, m in ipairs(type(body.messages) == "table" and body.messages or {}) do
    if type(m.content) == "table" then
      for _, part in ipairs(m.content) do
        if type(part) == "table" and part.type == "image_url" and type(part.image_url) == "table" then
          k = k + 1
          local url = part.image_url.url
          local prefix, n = tostring(url):match("^(data:[^;,]+;base64,)<omitted (%d+) chars>$")
          if prefix then
            local data, derr = inline_data(q, k, p.images and p.images[k], srcs[k], prefix, tonumber(n))
            if not data then return nil, derr end
            subs[tostring(k)] = data
            notes[#notes + 1] = { part.image_url, url }
            part.image_url.url = PLACEHOLDER .. k .. "@"
          end
        end
      end
    end
  end
  -- batch lines never stream (the live path streams thinking under the hood)
  body.stream, body.stream_options = nil, nil
  local json = cjson.encode(body)
  json = json:gsub(PLACEHOLDER_RX, function(i) return subs[i] end)
  for _, n in ipairs(notes) do n[1].url = n[2] end -- info.body keeps the notes (safe to log)
  return json, p
end

--- The exact JSON body a batch line carries for `req` (never streamed):
-- body_json, info (qwenvl.prepare's table: model, images, body with notes)
-- or nil, err. The one place to switch to the core's encoder.
M.encode_body = encode_body_stopgap

---------------------------------------------------------------------------
-- the line

local FORBIDDEN = { stream = "batch lines cannot stream (the answer arrives in a file)",
                    on_delta = "batch lines cannot stream (the answer arrives in a file)" }

--- Build the line for `req`. opts: max_line_bytes. Returns line (without
-- the newline), info {model, thinking, endpoint, group, body (with notes),
-- images, wants_json} or nil, err.
function M.build(q, req, custom_id, opts)
  if type(req) ~= "table" then
    return nil, q.error("invalid_request", "request must be a table", { field = "request" })
  end
  for k, why in pairs(FORBIDDEN) do
    if req[k] ~= nil and req[k] ~= false then
      return nil, q.error("invalid_request", k .. ": " .. why, { field = k })
    end
  end
  local serr = M.check_sources(q, req)
  if serr then return nil, serr end
  local body_json, p = M.encode_body(q, req)
  if not body_json then return nil, p end
  local model = p.body and p.body.model or p.model
  local endpoint = model == M.TEST_MODEL and M.TEST_URL or M.CHAT_URL
  local thinking = p.body and p.body.enable_thinking
  local line = '{"custom_id":' .. cjson.encode(custom_id) .. ',"method":"POST","url":"'
    .. endpoint .. '","body":' .. body_json .. "}"
  local cap = opts and opts.max_line_bytes
  if cap and #line > cap then
    return nil, q.error("invalid_request", ("the batch line is %d bytes, over the per-line cap "
      .. "of %d (max_line_bytes): downscale the images (max_pixels, max_side) or raise "
      .. "max_line_bytes (DashScope documents 6 MB, its newest guide 1 MB)"):format(#line, cap),
      { field = "image" })
  end
  return line, {
    model = model, endpoint = endpoint, thinking = thinking,
    group = tostring(model) .. "\0" .. tostring(thinking),
    body = p.body, images = p.images,
    wants_json = req.json_mode == true or (req.schema ~= nil and req.schema ~= cjson_mod.null),
    bytes = #line,
  }
end

return M
