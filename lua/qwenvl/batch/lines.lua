-- qwenvl.batch.lines: one chat request -> one JSONL line of a Batch input
-- file, or a clear reason why that request cannot go into a batch.
--
--   local lines = require("qwenvl.batch.lines")
--   local line, info = lines.build(q, req, custom_id, opts)   -- or nil, err
--
-- Builds on qwenvl.encode (validation, image reading, resizing, the body) and
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

local floor = math.floor

local function fail(q, message, field)
  return nil, q.error("invalid_request", message, { field = field or "image" })
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

--- The exact JSON body a batch line carries for `req` (never streamed;
-- images inlined as the live call would send them, resized ones
-- included): body_json, info (qwenvl.encode's: model, images, request =
-- the body with notes for the images) or nil, err.
function M.encode_body(q, req)
  local body, info = q.encode(req, { batch = true })
  if not body then return nil, info end
  info.body = info.request
  return body, info
end

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
