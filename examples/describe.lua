-- Describe an image with qwen3-vl. Usage (after `make`):
--   lua5.4 examples/describe.lua [image] [prompt]
-- With DASHSCOPE_API_KEY set this asks DashScope; without it, it starts
-- the local stand-in (spec/support/standin.py) and says so.
package.path = "./lua/?.lua;./?.lua;" .. package.path
package.cpath = "./build/lua5.4/?.so;" .. package.cpath
local qwenvl = require("qwenvl")

local image = arg[1] or "examples/sample.png"
local prompt = arg[2] or "Describe this image in one sentence."
local request = { prompt = prompt, image = image, stream = true,
                  on_delta = function(text) io.write(text) io.flush() end }

local srv
if (os.getenv("DASHSCOPE_API_KEY") or "") == "" then
  srv = require("spec.support.standin").start{}
  request.api_key, request.base_url = srv.key, srv.base_url
  print("(no DASHSCOPE_API_KEY: asking the local stand-in at " .. srv.base_url .. ")")
else
  print("(asking DashScope at " .. qwenvl.config().base_url .. ")")
end

local res, err = qwenvl.chat(request)
print()
if srv then srv:stop() end
if not res then
  io.stderr:write(tostring(err), "\n")
  os.exit(1)
end
print(("model=%s tokens=%s request_id=%s attempts=%d %.2fs"):format(res.model,
  tostring(res.usage.total_tokens), tostring(res.request_id), res.attempts, res.elapsed_s))
