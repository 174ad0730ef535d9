-- Describe an image with qwen3-vl. Usage, from a checkout after `make`
-- (or `make LUA=luajit` for luajit):
--   lua5.4 examples/describe.lua [image] [prompt]
-- With a key (DASHSCOPE_API_KEY in the environment or ./.env, or
-- ~/.alibabacloud/credentials) this asks DashScope; without one, it starts
-- the local stand-in (spec/support/standin.py) and says so.
local abi = type(jit) == "table" and "luajit" or ("lua" .. _VERSION:match("(%d+%.%d+)"))
package.path = "./lua/?.lua;./?.lua;" .. package.path
package.cpath = "./build/" .. abi .. "/?.so;" .. package.cpath
local qwenvl = require("qwenvl")

local image = arg[1] or "examples/sample.png"
local prompt = arg[2] or "Describe this image in one sentence."
local request = { prompt = prompt, image = image, stream = true,
                  on_delta = function(text) io.write(text) io.flush() end }

local srv
if not qwenvl.config().has_key then
  srv = require("spec.support.standin").start{}
  request.api_key, request.base_url = srv.key, srv.base_url
  print("(no API key: asking the local stand-in at " .. srv.base_url .. ")")
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
