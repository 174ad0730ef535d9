-- qwenvl.cli.chat: `qwenvl chat`, a conversation about images in a
-- terminal: a question per line, the answer streamed as it arrives,
-- follow-ups that carry the history and the images (qwenvl.session:
-- images are read, resized and encoded once).
--
-- Two modes, chosen by what standard input is:
--   terminal   a prompt ("> ", on stderr like every other piece of chrome,
--              so stdout holds the answers alone), commands (/image,
--              /reset, /save, /help, /quit), Ctrl-D ends (exit 0), Ctrl-C
--              while an answer streams stops it and returns to the prompt.
--   otherwise  each line is one question; answers follow one another on
--              stdout, no prompt, no footer; the exit code is that of the
--              first question that failed (0 when every one was answered).
-- In both, an error is one line on stderr and the conversation goes on.
--
-- Ctrl-C: lua.c and luajit.c catch SIGINT once (their handler puts the
-- default action back before it raises "interrupted!"), and Lua cannot
-- install it again. So the first Ctrl-C during an answer stops that answer
-- (the core cancels the transfer before the error reaches us) and the next
-- one, wherever it comes, ends the process (exit status 130, by the
-- signal). At the prompt the read returns at once on Lua 5.4 and 5.3
-- (their handler is installed without SA_RESTART); LuaJIT's read would be
-- restarted by the kernel and wait for Enter, so there the prompt waits
-- in poll() (through the FFI), which a signal always interrupts. Lua 5.1
-- waits for Enter.
local c = require("qwenvl.cli.common")
local evidence = require("qwenvl.evidence")
local sys = require("qwenvl.sys")
local EXIT = c.EXIT

local M = { name = "chat", summary = "talk about images: follow-up questions, streamed (interactive)" }

M.flags = c.with({
  image = "list", system = "string", ["max-tokens"] = "number", temperature = "number",
  detail = "string", ["max-history-tokens"] = "number", ["no-stream"] = "flag",
}, c.RESIZE_FLAGS)

M.COMMANDS_HELP = [[
  /image PATH|URL   add an image: it goes with the next question and stays in
                    the conversation
  /reset            forget the conversation; the images it began with go with
                    the next question again
  /save FILE        write the conversation as JSON (folders made, the file
                    replaced whole): the turns without image data, the model,
                    the usage of each answer
  /help             this list
  /quit             end the chat (as Ctrl-D)
  //text            ask "/text" (a question that starts with a slash)
]]

M.help = [[
Usage: qwenvl chat [--image PATH|URL]... [options]

A conversation about images: type a question, the answer streams in as it
arrives; follow-up questions carry the conversation and the images (read,
resized and encoded once). Lines that start with / are commands:

]] .. M.COMMANDS_HELP .. [[

Ctrl-D ends the chat (exit 0). Ctrl-C while an answer streams stops it: what
arrived stays on the screen, the question is left out of the conversation,
and the prompt comes back. Ctrl-C at the prompt ends the chat (exit 130), and
so does any Ctrl-C after an answer was stopped (the interpreter catches it
only once): /save first when the conversation matters.

When standard input is not a terminal, every line is a question: the answers
follow one another on stdout (each ends with a newline), without prompts; an
error is one line on stderr and the next line is asked. The exit code is
that of the first question that failed, 0 when all were answered.

Options:
  --image PATH|URL        an image to talk about; repeat for several (none:
                          start with text, add images with /image)
  --model NAME            model (default qwen3-vl-plus)
  --system TEXT           a system prompt for the whole conversation
  --max-tokens N, --temperature T, --detail auto|low|high
  --max-history-tokens N  keep what is sent under N estimated tokens: the
                          oldest turns are left out first (the first images
                          stay)
  --no-stream             wait for each whole answer
  --quiet                 no greeting, no notes, no footers (prompts stay)
  --max-retries N, --retry-backoff-s S, --timeout-s S, --connect-timeout-s S
Images (local files; URLs are sent as they are):
  --resize auto|off|always  shrink large images before upload (default auto)
  --max-pixels N, --max-side N   limits of the resized image
  --image-format jpeg|png|webp, --quality N   how a resized image is encoded
Endpoint:
  --region cn|intl|us|hk  --base-url URL

The key: DASHSCOPE_API_KEY from the environment, else from ./.env, else
dashscope_api_key in ~/.alibabacloud/credentials. It is never printed.

Examples (from a checkout: examples/ holds sample.png):
  qwenvl chat --image examples/sample.png
  qwenvl chat --image examples/sample.png --system "Answer in one sentence."
  qwenvl chat --image examples/sample.png --region intl
]]

---------------------------------------------------------------------------
-- reading lines

-- LuaJIT: block in poll() on stdin before reading, so a Ctrl-C at the
-- prompt ends the wait (read() would be restarted after the signal).
local function stdin_waiter()
  if type(jit) ~= "table" then return nil end
  local ok, ffi = pcall(require, "ffi")
  if not ok then return nil end
  pcall(ffi.cdef, "struct pollfd { int fd; short events; short revents; };"
    .. "int poll(struct pollfd *fds, unsigned long nfds, int timeout);")
  local ok2, pfd = pcall(ffi.new, "struct pollfd[1]")
  if not ok2 then return nil end
  local function wait()
    pfd[0].fd, pfd[0].events, pfd[0].revents = 0, 1, 0     -- POLLIN
    -- -1 is EINTR: the interrupt's hook raises at the next instruction,
    -- which only the interpreter runs (hence jit.off)
    while ffi.C.poll(pfd, 1, -1) < 0 do end
  end
  jit.off(wait)
  return wait
end

--- A function returning the next line of stdin (without its newline), or
-- nil at the end.
local function line_reader(interactive)
  local wait = interactive and stdin_waiter() or nil
  return function()
    if wait then wait() end
    local line = io.stdin:read("*l")
    if line then line = line:gsub("\r$", "") end
    return line
  end
end

---------------------------------------------------------------------------
-- the conversation

local Chat = {}
Chat.__index = Chat

local function plural(n, word)
  return ("%d %s%s"):format(n, word, n == 1 and "" or "s")
end

-- "sample.png (64x48)" for a local image, the URL for another.
local function image_label(info)
  local name = info.path and info.path:match("([^/]*)$") or info.url or "image"
  if info.width and info.height then
    return ("%s (%dx%d)"):format(c.printable(name), info.width, info.height)
  end
  return c.printable(name)
end

function Chat:note(s)
  if self.interactive and not self.quiet then c.err:write(c.scrub(s), "\n") end
end

function Chat:fail(err)
  c.fail_line("chat", c.describe_error(err))
  if not self.first_failure then self.first_failure = c.exit_code(err) end
end

-- What the next question is about: the images the conversation began with
-- (the first question's, else --image), then those added since.
function Chat:about()
  local names = {}
  local first = self.turns[1]
  if first and #first.images > 0 then
    for _, info in ipairs(first.images) do names[#names + 1] = image_label(info) end
  else
    for _, src in ipairs(self.opts.images or {}) do names[#names + 1] = image_label({ path = src }) end
  end
  return names
end

-- A path as typed: surrounding quotes (a file dropped on the terminal)
-- and a leading ~/ are understood.
local function typed_path(s)
  s = s:gsub("^%s+", ""):gsub("%s+$", "")
  local inner = s:match("^'(.*)'$") or s:match('^"(.*)"$')
  if inner then s = inner end
  local home = os.getenv("HOME")
  if home and s:sub(1, 2) == "~/" then s = home .. s:sub(2) end
  return s
end

function Chat:add_image(arg)
  local src = typed_path(arg or "")
  if src == "" then
    return self:fail(c.usage_error("/image needs a file or URL: /image shot.png"))
  end
  -- encoded now, so a file that cannot be used is said at once; the
  -- session is handed the encoded form (a check, no second resize)
  local im, err = self.q.image(src, self.image_opts)
  if not im then return self:fail(err) end
  if im.info.path == nil and not c.is_remote(src) then im.info.path = src end
  self.pending[#self.pending + 1] = im
  self:note(("(%s goes with the next question)"):format(image_label(im.info)))
  return im
end

function Chat:reset()
  local names = self:about()
  self.session:reset()
  self.turns = {}
  for _, im in ipairs(self.pending) do names[#names + 1] = image_label(im.info) end
  self:note("(conversation reset" .. (#names > 0 and ("; the next question is about "
    .. table.concat(names, ", ")) or "") .. ")")
end

--- The conversation as saved: no image data, the model and usage per answer.
function Chat:transcript()
  local model = self.opts.model
  for i = #self.turns, 1, -1 do
    if not model and self.turns[i].model then model = self.turns[i].model end
  end
  return {
    kind = "qwenvl.chat",
    saved_at = evidence.iso_time(),
    model = model,
    system = self.opts.system,
    base_url = self.cfg.base_url,
    region = self.cfg.region,
    turns = evidence.array(self.turns),
  }
end

function Chat:save(arg)
  local path = typed_path(arg or "")
  if path == "" then
    return self:fail(c.usage_error("/save needs a file name: /save talk.json"))
  end
  local ok, err = evidence.check_file(path)
  if ok then ok, err = evidence.write_file(path, c.json_out(self:transcript(), true) .. "\n") end
  if not ok then return self:fail({ save = true, message = tostring(err) }) end
  self:note(("(saved %s to %s)"):format(plural(#self.turns, "turn"), c.printable(path)))
end

local function footer(res)
  local u = type(res.usage) == "table" and res.usage or {}
  local parts = { tostring(res.model), ("%.2f s"):format(tonumber(res.elapsed_s) or 0),
                  ("%s tokens"):format(tostring(u.total_tokens or "?")) }
  if res.finish_reason == "length" then parts[#parts + 1] = "cut at max_tokens" end
  return "(" .. table.concat(parts, ", ") .. ")"
end

-- The user turn as saved: the images sent with it, each described as the
-- user gave it (the session describes an image given as data by its data).
function Chat:record(question, res, extras)
  local images = {}
  local sent = type(res.images) == "table" and res.images or {}
  local first_extra = #sent - #extras
  for i, info in ipairs(sent) do
    images[i] = i > first_extra and extras[i - first_extra].info or info
  end
  self.turns[#self.turns + 1] = { role = "user", text = question, images = evidence.array(images) }
  self.turns[#self.turns + 1] = {
    role = "assistant", text = res.text or "", model = res.model, usage = res.usage,
    finish_reason = res.finish_reason, request_id = res.request_id, elapsed_s = res.elapsed_s,
  }
end

-- One question: the answer streams to stdout. Raises the interrupt.
function Chat:ask(question)
  local extras = self.pending
  local urls = {}
  for i, im in ipairs(extras) do urls[i] = im.url end
  local at_line_start = true
  local turn = { stream = self.stream, images = #urls > 0 and urls or nil }
  if self.stream then
    turn.on_delta = function(text, kind)
      if kind ~= "content" or text == "" then return end
      c.out:write(text)
      c.out:flush()
      at_line_start = text:sub(-1) == "\n"
    end
  end
  local res, err = self.session:ask(question, turn)
  if not res then
    if not at_line_start then c.out:write("\n") c.out:flush() end
    return self:fail(err)
  end
  if self.stream then
    if not at_line_start then c.out:write("\n") end
  else
    local text = res.text or ""
    c.out:write(text, text:sub(-1) == "\n" and "" or "\n")
  end
  c.out:flush()
  self.pending = {}
  self:record(question, res, extras)
  self:note(footer(res))
end

function Chat:command(line)
  local name, arg = line:match("^/(%S*)%s*(.-)%s*$")
  if name == "image" then return self:add_image(arg)
  elseif name == "reset" then return self:reset()
  elseif name == "save" then return self:save(arg)
  elseif name == "help" or name == "?" then
    if self.interactive then c.err:write(M.COMMANDS_HELP) end
    return
  elseif name == "quit" or name == "exit" then return "quit"
  end
  return self:fail(c.usage_error("unknown command /" .. name .. " (/help lists them)"))
end

-- One line of input: a command, a question, or nothing.
function Chat:handle(line)
  self.question = nil
  if line:match("^%s*$") then return end
  if line:sub(1, 2) == "//" then line = line:sub(2)
  elseif line:sub(1, 1) == "/" then return self:command(line) end
  self.question = line
  return self:ask(line)
end

-- Ctrl-C while a line is handled: the answer (or the image being read)
-- stops and the prompt comes back; in a pipe there is no prompt to go to.
function Chat:interrupted(e)
  if not self.interactive then error(e, 0) end
  c.out:write("\n")
  c.out:flush()
  self:note("(stopped" .. (self.question and ": the question is left out of the conversation" or "")
    .. "; another Ctrl-C ends the chat)")
end

function Chat:loop()
  local read = line_reader(self.interactive)
  while true do
    if self.interactive then c.err:write("> ") c.err:flush() end
    local ok, line = pcall(read)
    if not ok then
      if sys.is_interrupt(line) then c.err:write("\n") end
      error(line, 0)
    end
    if line == nil then
      if self.interactive then c.err:write("\n") end
      break
    end
    local hok, what = pcall(self.handle, self, line)
    if not hok then
      if not sys.is_interrupt(what) then error(what, 0) end
      self:interrupted(what)
    elseif what == "quit" then
      break
    end
  end
  if self.interactive then return EXIT.ok end
  return self.first_failure or EXIT.ok
end

---------------------------------------------------------------------------

local function check_flags(flags, pos)
  if #pos > 0 then
    return c.usage_error("chat takes no arguments (images go with --image; questions are typed)")
  end
  return c.check_integer(flags, "max-history-tokens", 1, 1e9)
    or c.check_integer(flags, "max-tokens", 1, 1e7)
end

function M.run(flags, pos)
  local uerr = check_flags(flags, pos)
  if uerr then return nil, uerr end
  local opts = {}
  c.apply_common(opts, flags)
  opts.images = flags.image
  opts.max_history_tokens = flags["max-history-tokens"]
  c.secrets = opts
  local q, lerr = c.core()
  if not q then return nil, lerr end
  -- before anything is typed: where it goes, and that there is a key
  local cfg, cerr = q.config({ base_url = opts.base_url, region = opts.region })
  if not cfg then return nil, cerr end
  if not cfg.has_key then
    return nil, q.error("auth", "no DashScope API key: set DASHSCOPE_API_KEY (or put it in ./.env,"
      .. " or dashscope_api_key in ~/.alibabacloud/credentials)")
  end
  local ok, cferr = c.check_images(opts)
  if not ok then return nil, cferr end
  local s, serr = q.session(opts)
  if not s then return nil, serr end
  local image_opts = {}
  for _, k in ipairs({ "resize", "max_pixels", "max_side", "image_format", "quality", "detail" }) do
    image_opts[k] = opts[k]
  end
  local chat = setmetatable({
    q = q, session = s, opts = opts, cfg = cfg, image_opts = image_opts,
    interactive = sys.isatty(0), quiet = flags.quiet, stream = not flags["no-stream"],
    pending = {}, turns = {},
  }, Chat)
  local names = chat:about()
  chat:note(("qwenvl chat: %s at %s%s. /help lists the commands; Ctrl-D ends.")
    :format(opts.model or "qwen3-vl-plus", cfg.base_url,
      #names > 0 and (", about " .. table.concat(names, ", ")) or ""))
  return chat:loop()
end

return M
