-- content_by_lua_file handler: ask Qwen-VL about an image without blocking
-- the nginx worker (see lua/qwenvl/ngx.lua).
--
--   GET /describe?image=<http(s) URL | file name under $qwenvl_image_root>
--                &prompt=...&model=...&stream=1
--
-- Plain requests answer JSON {text, model, usage, elapsed_s, attempts};
-- stream=1 sends the answer as it is generated (chunked text/plain).
-- A failure answers {"error": {code, message, request_id}} with its own
-- status (400 bad input, 401 key refused, 429 rate limited (Retry-After),
-- 504 timeout, 502 the service failed), streamed or not, as long as no
-- text went out yet; a stream that fails midway ends with a last line
-- "[error] <code>: <message>" (the 200 is gone by then).
-- Credentials come from DASHSCOPE_API_KEY / DASHSCOPE_BASE_URL, which
-- nginx passes to workers only when listed with `env` in nginx.conf.
local qv = require("qwenvl.ngx")
local cjson = require("cjson.safe")

local function fail(field, message)
  return qv.send_error({ code = "invalid_request", field = field, message = message })
end

local args = ngx.req.get_uri_args()
local image = args.image
if type(image) ~= "string" or image == "" then
  return fail("image", "image is required")
end
if not image:match("^https?://") then
  -- Local files only from one folder, by plain file name: never let a
  -- query string read arbitrary paths of the server.
  local root = ngx.var.qwenvl_image_root
  if not root or root == "" or image:find("/", 1, true) or image:sub(1, 1) == "." then
    return fail("image", "image must be an http(s) URL or a file name")
  end
  image = root .. "/" .. image
end

local req = {
  prompt = type(args.prompt) == "string" and args.prompt or "Describe this image in one sentence.",
  image = image,
  model = type(args.model) == "string" and args.model or nil,
  max_tokens = 512,
}

local stream = args.stream == "1" or args.stream == true
local res, err = qv.chat(req, { stream_to_client = stream })
if not res then
  -- the real status (401, 429, 502, ...) when nothing was sent yet; a
  -- stream that fails midway ends with an "[error] code: message" line
  return qv.send_error(err)
end
if stream then
  ngx.print("\n")
  return
end
ngx.header["Content-Type"] = "application/json"
ngx.say(cjson.encode({ text = res.text, model = res.model, usage = res.usage,
                       elapsed_s = res.elapsed_s, attempts = res.attempts }))
