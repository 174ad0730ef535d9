-- qwenvl.batch.api: DashScope's Files and Batch routes over qwenvl.http.
--
--   local api = require("qwenvl.batch.api").new(q, conn)
--   api:upload(path, name)  api:get_file(id)  api:delete_file(id)
--   api:download(id, dest)  api:create(t)  api:get(id)  api:cancel(id)
--   api:find(input_file_id)
--
-- Every call returns the decoded object or nil, err (the core's error
-- table). Ids from the server are allow-listed before they go into a path,
-- so the key never travels to an odd route. GETs and uploads retry as live
-- calls do; POST /batches never retries (it is not idempotent: see
-- qwenvl.batch for how an ambiguous failure is reconciled).

local M = {}
local A = {}
A.__index = A

local NULL = require("cjson").null

--- Connection fields copied from the caller's options into every call.
M.CONN_FIELDS = { "api_key", "base_url", "region", "max_retries", "retry_backoff_s",
                  "timeout_s", "connect_timeout_s", "max_retry_after_s", "cainfo",
                  "capath", "proxy", "noproxy" }

function M.conn_of(opts)
  local c = {}
  for _, k in ipairs(M.CONN_FIELDS) do
    if opts and opts[k] ~= nil then c[k] = opts[k] end
  end
  return c
end

function M.new(q, conn)
  return setmetatable({ q = q, conn = conn or {} }, A)
end

--- Ids are [A-Za-z0-9_.-] only.
function M.valid_id(id)
  return type(id) == "string" and #id > 0 and #id <= 200 and id:find("^[%w%-_.]+$") ~= nil
end

local function bad_id(self, what, id)
  return nil, self.q.error("bad_response", ("the service gave %s %q, which is not an id"):format(
    what, tostring(id)))
end

function A:call(t, retries)
  for k, v in pairs(self.conn) do if t[k] == nil then t[k] = v end end
  if retries and t.max_retries == nil then t.max_retries = retries end
  return self.q.http(t)
end

local function object(self, res, what)
  if type(res.json) ~= "table" then
    return nil, self.q.error("bad_response", what .. ": the answer is not a JSON object",
      { status = res.status, request_id = res.request_id })
  end
  return res.json
end

--- POST /files (multipart, purpose=batch) from the file at `path`.
function A:upload(path, name)
  local res, err = self:call({ method = "POST", path = "/files", form = {
    { name = "file", file = path, filename = name, type = "application/jsonl" },
    { name = "purpose", value = "batch" },
  } }, 2)
  if not res then return nil, err end
  local f, ferr = object(self, res, "upload")
  if not f then return nil, ferr end
  if not M.valid_id(f.id) then return bad_id(self, "the file id", f.id) end
  return f
end

function A:get_file(id)
  if not M.valid_id(id) then return bad_id(self, "the file id", id) end
  local res, err = self:call({ method = "GET", path = "/files/" .. id })
  if not res then return nil, err end
  return object(self, res, "file")
end

function A:delete_file(id)
  if not M.valid_id(id) then return bad_id(self, "the file id", id) end
  local res, err = self:call({ method = "DELETE", path = "/files/" .. id }, 2)
  if not res then return nil, err end
  return res.json or true
end

--- GET /files/{id}/content, streamed to `dest` through `dest`.part, which
-- is renamed only when the whole body arrived.
function A:download(id, dest)
  if not M.valid_id(id) then return bad_id(self, "the file id", id) end
  local part = dest .. ".part"
  local res, err = self:call({ method = "GET", path = "/files/" .. id .. "/content", download = part })
  if not res then
    os.remove(part)
    return nil, err
  end
  local ok, rerr = os.rename(part, dest)
  if not ok then
    os.remove(part)
    return nil, self.q.error("bad_response", "cannot keep the download: " .. tostring(rerr))
  end
  return dest
end

--- POST /batches, once: no retry (a retry could start a second paid job).
function A:create(t)
  local res, err = self:call({ method = "POST", path = "/batches", json = t, max_retries = 0 })
  if not res then return nil, err end
  local b, berr = object(self, res, "create")
  if not b then return nil, berr end
  if not M.valid_id(b.id) then return bad_id(self, "the batch id", b.id) end
  return b
end

function A:get(id)
  if not M.valid_id(id) then return bad_id(self, "the batch id", id) end
  local res, err = self:call({ method = "GET", path = "/batches/" .. id })
  if not res then return nil, err end
  return object(self, res, "batch")
end

--- POST /batches/{id}/cancel (asking twice is harmless, so it retries).
function A:cancel(id)
  if not M.valid_id(id) then return bad_id(self, "the batch id", id) end
  local res, err = self:call({ method = "POST", path = "/batches/" .. id .. "/cancel" }, 2)
  if not res then return nil, err end
  return object(self, res, "cancel")
end

--- The batches made from `input_file_id` (GET /batches?input_file_ids=),
-- newest first; DashScope answers "data": null when there is none.
function A:find(input_file_id)
  if not M.valid_id(input_file_id) then return bad_id(self, "the file id", input_file_id) end
  local res, err = self:call({ method = "GET", path = "/batches?input_file_ids=" .. input_file_id
    .. "&limit=100" })
  if not res then return nil, err end
  local list, lerr = object(self, res, "list")
  if not list then return nil, lerr end
  local out = {}
  if type(list.data) == "table" then
    for _, b in ipairs(list.data) do
      if type(b) == "table" and b.input_file_id == input_file_id and M.valid_id(b.id) then
        out[#out + 1] = b
      end
    end
  elseif list.data ~= nil and list.data ~= NULL then
    return nil, self.q.error("bad_response", "list: data is neither a list nor null")
  end
  return out
end

return M
