-- qwenvl.batch.results: the lines of a batch's output and error files ->
-- result tables shaped like qwenvl.chat's, or error tables like its errors.
--
--   local R = require("qwenvl.batch.results")
--   R.read_file(q, path, accept, on_line)   -- streamed, one line at a time
--   R.from_line(q, obj, opts) -> result | nil, err
--   R.code_for(status, api_code) -> the core's error code
--
-- Every line is judged on its own response.status_code: DashScope can write
-- failed requests into the OUTPUT file while request_counts.failed stays 0
-- (notes/batch-api.md section 6). The reason of a failure is looked for in
-- error.{code,message} and in response.body.error (both are seen).

local cjson_mod = require("cjson")

local M = {}
local NULL = cjson_mod.null
local cjson = cjson_mod.new and cjson_mod.new() or cjson_mod

local function val(v) if v == NULL then return nil end return v end

-- DashScope / OpenAI error codes -> the core's codes.
local API_CODES = {
  invalid_parameter_error = "invalid_request", invalid_request_error = "invalid_request",
  InvalidParameter = "invalid_request", model_not_found = "not_found",
  data_inspection_failed = "content_filter", DataInspectionFailed = "content_filter",
  invalid_api_key = "auth", AccessDenied = "auth",
  limit_requests = "rate_limited", Throttling = "rate_limited",
  internal_error = "server", InternalError = "server", ServiceUnavailable = "server",
  RequestTimeOut = "timeout",
  batch_expired = "expired", batch_cancelled = "canceled", batch_canceled = "canceled",
}

function M.code_for(status, api_code)
  local c = api_code and API_CODES[api_code]
  if c then return c end
  status = tonumber(status)
  if not status then return "server" end
  if status == 401 or status == 403 then return "auth" end
  if status == 404 then return "not_found" end
  if status == 408 then return "timeout" end
  if status == 409 or status == 429 then return "rate_limited" end
  if status >= 500 then return "server" end
  if status >= 400 then return "invalid_request" end
  return "bad_response"
end

local RETRYABLE = { server = true, rate_limited = true, timeout = true, expired = true,
                    canceled = true, network = true }

function M.error(q, code, message, fields)
  fields = fields or {}
  if fields.retryable == nil then fields.retryable = RETRYABLE[code] or false end
  local e = q.error(code, message, fields)
  return e
end

--- One decoded output/error line -> result or nil, err. opts: wants_json,
-- raw (the line's text, kept when given).
function M.from_line(q, obj, opts)
  local resp = val(obj.response)
  local lerr = val(obj.error)
  local status = type(resp) == "table" and tonumber(val(resp.status_code)) or nil
  local body = type(resp) == "table" and val(resp.body) or nil
  local rid = type(resp) == "table" and val(resp.request_id) or val(obj.id)
  if status == 200 and type(body) == "table" and type(val(body.choices)) == "table"
      and type(lerr) ~= "table" then
    local choice = val(body.choices[1])
    local msg = type(choice) == "table" and val(choice.message) or nil
    if type(msg) ~= "table" then
      return nil, M.error(q, "bad_response", "the output line has no message",
        { status = 200, request_id = rid, raw = opts.raw })
    end
    local text = val(msg.content)
    if type(text) == "table" then -- a list of parts
      local t = {}
      for _, p in ipairs(text) do
        if type(p) == "table" and type(val(p.text)) == "string" then t[#t + 1] = p.text end
      end
      text = table.concat(t)
    end
    local res = {
      text = type(text) == "string" and text or "",
      model = val(body.model), usage = type(val(body.usage)) == "table" and body.usage or {},
      finish_reason = val(choice.finish_reason), reasoning = val(msg.reasoning_content),
      request_id = rid, attempts = 1, raw = opts.raw,
    }
    if opts.wants_json then
      local j = q.extract_json(res.text)
      if j ~= nil then res.json = j else res.json_error = "the answer is not valid JSON" end
    end
    return res
  end
  -- a failure: the reason in error{} or in the response body's error{}
  local berr = type(body) == "table" and type(val(body.error)) == "table" and body.error or nil
  local api_code = (type(lerr) == "table" and val(lerr.code)) or (berr and val(berr.code))
  local message = (type(lerr) == "table" and val(lerr.message)) or (berr and val(berr.message))
  if api_code ~= nil then api_code = tostring(api_code) end
  if status == 200 and message == nil then
    return nil, M.error(q, "bad_response", "the output line has status 200 but no answer",
      { status = 200, request_id = rid, raw = opts.raw })
  end
  local code = M.code_for(status ~= 200 and status or nil, api_code)
  return nil, M.error(q, code, message and tostring(message)
    or ("the request failed in the batch" .. (status and (" (status " .. status .. ")") or "")),
    { status = status, api_code = api_code, request_id = rid, raw = opts.raw })
end

--- Read a downloaded output or error file line by line (never whole):
-- on_line(custom_id, obj, text) for each line whose custom_id `accept`
-- admits. Returns the number of lines read, or nil, message.
function M.read_file(path, accept, on_line)
  local f, err = io.open(path, "rb")
  if not f then return nil, "cannot read " .. path .. ": " .. tostring(err) end
  local n, bad = 0, 0
  for text in f:lines() do
    if text:find("%S") then
      local ok, obj = pcall(cjson.decode, text)
      if ok and type(obj) == "table" and type(val(obj.custom_id)) == "string"
          and accept(obj.custom_id) then
        n = n + 1
        on_line(obj.custom_id, obj, text)
      else
        bad = bad + 1
      end
    end
  end
  f:close()
  return n, bad
end

return M
