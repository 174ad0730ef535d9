-- content_by_lua_file handler: ask Qwen-VL about an image without blocking
-- the nginx worker (see lua/qwenvl/ngx.lua).
--
--   GET /describe?image=<http(s) URL | file name under $qwenvl_image_root>
--                &prompt=...&model=...&stream=1
--
-- Plain requests answer JSON {text, model, usage, elapsed_s, attempts};
-- stream=1 sends the answer as it is generated (chunked text/plain).
-- Credentials come from DASHSCOPE_API_KEY / DASHSCOPE_BASE_URL, which
-- nginx passes to workers only when listed with `env` in nginx.conf.
local qv = require("qwenvl.ngx")
local cjson = require("cjson.safe")

local function fail(status, code, message)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  ngx.say(cjson.encode({ error = { code = code, message = message } }))
  return ngx.exit(status)
end

local args = ngx.req.get_uri_args()
local image = args.image
if type(image) ~= "string" or image == "" then
  return fail(400, "invalid_request", "image is required")
end
if not image:match("^https?://") then
  -- Local files only from one folder, by plain file name: never let a
  -- query string read arbitrary paths of the server.
  local root = ngx.var.qwenvl_image_root
  if not root or root == "" or image:find("/", 1, true) or image:sub(1, 1) == "." then
    return fail(400, "invalid_request", "image must be an http(s) URL or a file name")
  end
  image = root .. "/" .. image
end

local req = {
  prompt = type(args.prompt) == "string" and args.prompt or "Describe this image in one sentence.",
  image = image,
  model = type(args.model) == "string" and args.model or nil,
  max_tokens = 512,
}

if args.stream == "1" or args.stream == true then
  ngx.header["Content-Type"] = "text/plain; charset=utf-8"
  local res, err = qv.chat(req, { stream_to_client = true })
  if not res then
    ngx.print("\n[error] ", tostring(err))
  else
    ngx.print("\n")
  end
  return
end

local res, err = qv.chat(req)
if not res then
  local status = (err.code == "invalid_request" and 400) or (err.code == "timeout" and 504) or 502
  return fail(status, err.code, err.message)
end
ngx.header["Content-Type"] = "application/json"
ngx.say(cjson.encode({ text = res.text, model = res.model, usage = res.usage,
                       elapsed_s = res.elapsed_s, attempts = res.attempts }))
