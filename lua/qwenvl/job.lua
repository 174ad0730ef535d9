-- qwenvl.job: a batch job on disk, so that an interrupted or killed batch
-- keeps every finished item and a re-run sends only the rest.
--
--   local job = require("qwenvl.job")
--   local j, err = job.open("out/jobs/x", {prompt = p, model = m}, {fresh = false})
--   if not j then ... err.code == "locked" (err.pid), or "io" ... end
--   local key = j:key(job.image_ids({"a.png"})["a.png"])
--   if not j:done(key) then ... j:append(key, {ok = true, text = ...}) end
--   j:close()
--
-- A job is a folder holding `journal.jsonl` and `lock`. The journal is
-- append-only JSON lines: a header naming the job's identity, one line per
-- run, and one line per item outcome, appended (and flushed to the kernel)
-- the moment the item completes, fsync'd every SYNC_EVERY lines and on
-- close. A process killed at any moment loses at most the requests it had
-- in flight. Reading skips a torn last line (a crash mid-write) and any
-- line that does not parse, with a warning; lines of another job (another
-- identity) are never mixed in. Summaries and manifests are derived from
-- the journal by the caller and written atomically.
--
-- The identity is what determines the answers besides the images: prompt,
-- model, options. Its hash is the job id; an item's key is the job id
-- plus the content hashes (SHA-256) of its images, never a path alone, so
-- an image whose bytes changed is done again.
--
-- Only one process works on a job at a time: open() takes an exclusive
-- lock on the folder (see qwenvl.sys.lock) and says which process holds it.

local evidence = require("qwenvl.evidence")
local sys = require("qwenvl.sys")
local cjson = require("cjson")

local M = {}

M.FORMAT = "qwenvl.job/1"
M.SYNC_EVERY = 16        -- item lines between two fsyncs
M.SYNC_SECONDS = 2       -- and at most this long

local NULL = cjson.null

--- The id of an identity (any JSON-able table): 16 hex digits of the
-- SHA-256 of its canonical JSON (sorted keys).
function M.identity_id(identity)
  local h, err = sys.sha256(evidence.encode(identity))
  if not h then return nil, err end
  return h:sub(1, 16)
end

local function is_remote(s)
  return s:match("^[Hh][Tt][Tt][Pp][Ss]?://") or s:match("^data:")
end

--- Content ids of images: a table image -> "sha256:<hex>" for a readable
-- file, "url:<url>" for a URL, "missing:<path>" for a file that cannot be
-- read (its item fails, and is tried again next time).
function M.image_ids(images)
  local files = {}
  for _, img in ipairs(images) do
    if not is_remote(img) then files[#files + 1] = img end
  end
  local hashes = sys.sha256_files(files)
  local ids = {}
  for _, img in ipairs(images) do
    if is_remote(img) then ids[img] = "url:" .. img
    elseif hashes[img] then ids[img] = "sha256:" .. hashes[img]
    else ids[img] = "missing:" .. img end
  end
  return ids
end

local Job = {}
Job.__index = Job

local function warn(self, msg)
  if self.on_warning then self.on_warning(msg) end
  self.warnings[#self.warnings + 1] = msg
end

-- Read the journal: the last line per key of this job, after the last
-- fresh start.
local function read_journal(self)
  local f = io.open(self.journal_path, "rb")
  if not f then return true end
  local text = f:read("*a") or ""
  f:close()
  self.size = #text
  self.ends_in_newline = text == "" or text:sub(-1) == "\n"
  local lineno, foreign = 0, 0
  local pos = 1
  while pos <= #text do
    local nl = text:find("\n", pos, true)
    local line = text:sub(pos, (nl or (#text + 1)) - 1)
    pos = (nl or #text) + 1
    lineno = lineno + 1
    if line:find("%S") then
      local ok, v = sys.pcall(cjson.decode, line)
      if not ok or type(v) ~= "table" then
        if nl then
          warn(self, ("%s: line %d does not parse, skipped"):format(self.journal_path, lineno))
        else
          warn(self, ("%s: the last line was cut short (a crash while writing it), skipped"):format(self.journal_path))
        end
        self.stats.unreadable = self.stats.unreadable + 1
      elseif v.job ~= self.id then
        foreign = foreign + 1
      elseif v.t == "run" and v.fresh then
        self.entries = {}
      elseif v.t == "item" and type(v.key) == "string" then
        for k, val in pairs(v) do if val == NULL then v[k] = nil end end
        self.entries[v.key] = v
        self.stats.items = self.stats.items + 1
      end
    end
  end
  self.stats.foreign = foreign
  if foreign > 0 then
    warn(self, ("%s: %d lines belong to another job (another prompt, model or options) and are ignored")
      :format(self.journal_path, foreign))
  end
  return true
end

local function write_line(self, t)
  local line = evidence.encode(evidence.redact(t, self.secrets)) .. "\n"
  local ok, err = self.fh:write(line)
  if ok then ok, err = self.fh:flush() end
  if not ok then return nil, "cannot append to " .. self.journal_path .. ": " .. tostring(err) end
  return true
end

--- Open (create) the job in folder `dir` for `identity`. opts: fresh
-- (forget earlier outcomes: every item is done again), on_warning(msg),
-- id (use this job id instead of hashing the identity), secrets (what
-- evidence.redact scrubs lines with: the request, or strings).
-- Returns the job, or nil and an error {code = "locked", pid, lock,
-- message} when another process works on it, {code = "io", message}
-- when the folder or journal cannot be written.
function M.open(dir, identity, opts)
  opts = opts or {}
  local id = opts.id
  if not id then
    local ierr
    id, ierr = M.identity_id(identity)
    if not id then return nil, { code = "io", message = "cannot hash the job's identity: " .. tostring(ierr) } end
  end
  local self = setmetatable({
    dir = dir, id = id, identity = identity, journal_path = dir .. "/journal.jsonl",
    lock_path = dir .. "/lock", entries = {}, warnings = {}, on_warning = opts.on_warning,
    secrets = opts.secrets, size = 0, ends_in_newline = true,
    stats = { items = 0, unreadable = 0, foreign = 0 }, unsynced = 0, last_sync = os.time(),
  }, Job)
  local ok, err = sys.mkdir_p(dir)
  if not ok then return nil, { code = "io", message = tostring(err) } end
  local lock, holder, lerr = sys.lock(self.lock_path)
  if not lock then
    if lerr then return nil, { code = "io", message = lerr } end
    return nil, { code = "locked", pid = holder, lock = self.lock_path,
      message = ("this job is already running%s (lock %s)"):format(
        holder and (" in process " .. holder) or "", self.lock_path) }
  end
  self.lock = lock
  read_journal(self)
  local fh, ferr = io.open(self.journal_path, "ab")
  if not fh then
    self:close()
    return nil, { code = "io", message = "cannot write " .. self.journal_path .. ": " .. tostring(ferr) }
  end
  self.fh = fh
  local wok, werr = true, nil
  if not self.ends_in_newline then wok, werr = fh:write("\n") end   -- end the torn line
  if wok and (self.size or 0) == 0 then
    wok, werr = write_line(self, { t = "job", job = id, format = M.FORMAT, identity = identity,
                                   created_at = evidence.iso_time(os.time()) })
  end
  if wok then
    wok, werr = write_line(self, { t = "run", job = id, pid = sys.pid(), fresh = opts.fresh and true or nil,
                                   started_at = evidence.iso_time(os.time()) })
  end
  if wok then wok, werr = sys.fsync(fh, self.journal_path) end
  if not wok then
    self:close()
    return nil, { code = "io", message = tostring(werr) }
  end
  if opts.fresh then self.entries = {} end
  return self
end

--- The key of an item: the job id and the content ids of its images.
function Job:key(image_ids)
  if type(image_ids) == "string" then image_ids = { image_ids } end
  return self.id .. "|" .. table.concat(image_ids, "|")
end

--- The last recorded outcome of `key` (a table with ok, ...), or nil.
function Job:lookup(key) return self.entries[key] end

--- The outcome of `key` when it succeeded, else nil.
function Job:done(key)
  local e = self.entries[key]
  if e and e.ok == true then return e end
  return nil
end

--- Append the outcome of an item (a table; `ok` says whether it
-- succeeded). Flushed at once, fsync'd in groups. Returns true or nil, err.
function Job:append(key, entry)
  if not self.fh then return nil, "the job is closed" end
  local line = {}
  for k, v in pairs(entry) do line[k] = v end
  line.t, line.job, line.key = "item", self.id, key
  line.at = line.at or evidence.iso_time(os.time())
  local ok, err = write_line(self, line)
  if not ok then return nil, err end
  self.entries[key] = line
  self.unsynced = self.unsynced + 1
  if self.unsynced >= M.SYNC_EVERY or os.time() - self.last_sync >= M.SYNC_SECONDS then
    return self:sync()
  end
  return true
end

--- fsync the journal now. Returns true or nil, err.
function Job:sync()
  if not self.fh or self.unsynced == 0 then return true end
  local ok, err = sys.fsync(self.fh, self.journal_path)
  self.unsynced, self.last_sync = 0, os.time()
  if not ok then return nil, "cannot sync " .. self.journal_path .. ": " .. tostring(err) end
  return true
end

--- Sync, close the journal and release the lock (idempotent). Returns
-- true or nil, err (the sync's).
function Job:close()
  local ok, err = true, nil
  if self.fh then
    ok, err = self:sync()
    self.fh:close()
    self.fh = nil
  end
  if self.lock then
    self.lock:release()
    self.lock = nil
  end
  return ok, err
end

return M
