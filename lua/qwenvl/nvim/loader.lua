-- qwenvl.nvim.loader: find and load the C module (qwenvl.so) for Neovim.
--
-- The repository is the plugin: this file is <root>/lua/qwenvl/nvim/loader.lua
-- and `make LUA=luajit` in <root> leaves <root>/build/luajit/qwenvl.so, so the
-- module is found next to the plugin without touching package.cpath. Neovim
-- runs Lua 5.1 (LuaJIT, or PUC 5.1 on a few platforms): the luajit and the
-- lua5.1 builds both load; a 5.2-5.4 build does not (undefined symbols), and
-- is recognised by the folder it is in (or by the loader's error) so the
-- message can say what to run.
--
-- qwenvl.so require()s cjson while it opens. Neovim's package.cpath finds
-- Debian's lua-cjson, but upstream builds (AppImage, tarballs, Homebrew) do
-- not look there. Neovim carries its own lua-cjson as vim.json; a private
-- instance of it (vim.json.new(), so vim.json's own settings are untouched)
-- is handed to the module for the duration of the load only, so nothing
-- else that require()s "cjson" later is affected.
--
--   local loader = require("qwenvl.nvim.loader")
--   loader.root()              -> "/path/to/qwenvl"
--   loader.find(opts)          -> {path, abi, source} | nil, message
--   loader.load(opts)          -> qwenvl, info | nil, message
--   loader.info()              -> info of the loaded module (or nil)
-- opts: module (explicit path to qwenvl.so), json ("auto" | "cjson").
-- Every failure is one message that says what to run.

local M = {}

local unpack = unpack or table.unpack
local GOOD = jit and { "luajit", "lua5.1" } or { "lua5.1", "luajit" }
local WRONG = { ["lua5.4"] = "5.4", ["lua5.3"] = "5.3", ["lua5.2"] = "5.2" }
local WRONG_ORDER = { "lua5.4", "lua5.3", "lua5.2" }

local loaded_info  -- what load() found, once it succeeded

local function readable(path)
  return path ~= nil and vim.fn.filereadable(path) == 1
end

local function root_of(source)
  local path = source:gsub("^@", "")
  path = vim.fn.fnamemodify(path, ":p")
  return path:match("^(.*)/lua/qwenvl/nvim/loader%.lua$")
end

--- The plugin's root: the folder holding plugin/, lua/ and build/.
function M.root()
  local root = root_of(debug.getinfo(1, "S").source)
  if root then return root end
  local hits = vim.api.nvim_get_runtime_file("lua/qwenvl/nvim/loader.lua", false)
  return hits[1] and root_of(hits[1]) or vim.fn.getcwd()
end

local function build_cmd(root)
  return ("run `make LUA=luajit` in %s (lazy.nvim: build = \"make LUA=luajit\")"):format(root)
end

local function wrong_abi(path, version, root)
  return ("qwenvl: %s is built for Lua %s, but Neovim runs LuaJIT (the Lua 5.1 ABI); %s")
    :format(path, version, build_cmd(root))
end

--- Where the module is: opts.module, else <root>/build/{luajit,lua5.1}/,
--- else package.cpath (a luarocks install for Lua 5.1).
function M.find(opts)
  opts = opts or {}
  local root = M.root()
  if opts.module then
    if readable(opts.module) then
      return { path = opts.module, abi = opts.module:match("build/([^/]+)/") or "?",
               source = "setup{ module }" }
    end
    return nil, ("qwenvl: setup{ module = %q }: no such file; leave it unset to use %s/build/luajit/qwenvl.so"):format(opts.module, root)
  end
  for _, abi in ipairs(GOOD) do
    local path = ("%s/build/%s/qwenvl.so"):format(root, abi)
    if readable(path) then return { path = path, abi = abi, source = "build" } end
  end
  local on_cpath = package.searchpath and package.searchpath("qwenvl", package.cpath)
  if on_cpath then return { path = on_cpath, abi = "5.1?", source = "package.cpath" } end
  for _, abi in ipairs(WRONG_ORDER) do
    local path = ("%s/build/%s/qwenvl.so"):format(root, abi)
    if readable(path) then return nil, wrong_abi(path, WRONG[abi], root) end
  end
  return nil, ("qwenvl: the module is not built (no %s/build/luajit/qwenvl.so); %s")
    :format(root, build_cmd(root))
end

-- lua-cjson for Lua 5.1 installed but not on package.cpath: name it.
local function cjson_on_disk()
  local dirs = { "/usr/lib/*/lua/5.1", "/usr/lib/lua/5.1", "/usr/lib64/lua/5.1",
                 "/usr/local/lib/lua/5.1", "/opt/homebrew/lib/lua/5.1",
                 vim.fn.expand("~/.luarocks/lib/lua/5.1") }
  for _, d in ipairs(dirs) do
    local hit = vim.fn.glob(d .. "/cjson.so", false, true)[1]
    if hit then return hit end
  end
end

function M.cjson_message(why)
  local found = cjson_on_disk()
  local fix
  if found then
    fix = ("%s exists but is not on package.cpath: add package.cpath = package.cpath .. \";%s/?.so\" to your config")
      :format(found, vim.fn.fnamemodify(found, ":h"))
  else
    fix = "install it (Debian/Ubuntu: apt-get install lua-cjson; elsewhere: luarocks --lua-version=5.1 install lua-cjson) and add its folder to package.cpath"
  end
  return ("qwenvl: lua-cjson for Lua 5.1 is not found (%s); %s, or drop setup{ json = \"cjson\" } to use Neovim's built-in vim.json")
    :format(why or "require(\"cjson\") failed", fix)
end

local function first_line(s)
  return (tostring(s):match("^[^\n]*"):gsub("[:%s]+$", ""))
end

-- Which cjson the module will get: "cjson" (require finds it), else a
-- private vim.json instance. Returns kind, instance-or-nil | nil, message.
local function pick_json(mode)
  local ok, cj = pcall(require, "cjson")
  if ok and type(cj) == "table" and cj.encode and cj.decode then return "cjson" end
  if mode == "cjson" then return nil, M.cjson_message(first_line(cj)) end
  if vim.json and type(vim.json.new) == "function" then
    local inst = vim.json.new()
    -- lua-cjson's default; vim.json encodes {} as [] instead
    if inst.encode_empty_table_as_object then inst.encode_empty_table_as_object(true) end
    return "vim.json", inst
  end
  return nil, M.cjson_message(first_line(cj))
end

-- Run fn with require("cjson") answering inst; afterwards "cjson" is as it was.
local function with_cjson(inst, fn)
  if not inst then return pcall(fn) end
  local saved_preload, saved_loaded = package.preload.cjson, package.loaded.cjson
  package.preload.cjson = function() return inst end
  package.loaded.cjson = nil
  local res = { pcall(fn) }
  package.preload.cjson, package.loaded.cjson = saved_preload, saved_loaded
  return unpack(res, 1, 2)
end

local function explain_open_error(err, found, root)
  local sym = err:match("undefined symbol: ([%w_]+)")
  if sym then
    local v = found.path:match("build/lua(5%.[234])/") or "another Lua than 5.1"
    return ("qwenvl: %s does not load in Neovim (undefined symbol %s): it is built for Lua %s; %s")
      :format(found.path, sym, v, build_cmd(root))
  end
  local lib = err:match("(lib[%w%-_]+%.so[%.%d]*): cannot open shared object file")
  if lib then
    return ("qwenvl: %s needs %s, which is not installed (Debian/Ubuntu: apt-get install libcurl4 libssl3); then %s")
      :format(found.path, lib, build_cmd(root))
  end
  return ("qwenvl: cannot load %s: %s; %s"):format(found.path, err, build_cmd(root))
end

--- Load the module (once). Returns qwenvl, info | nil, message.
--- info: {path, abi, source, json = "cjson" | "vim.json", version}.
function M.load(opts)
  opts = opts or {}
  if loaded_info then return package.loaded.qwenvl, loaded_info end
  local pre = package.loaded.qwenvl
  if type(pre) == "table" and pre.start and pre.fd then
    -- someone (a config, a test) already required it
    loaded_info = { path = "(already loaded)", abi = "?", source = "require", json = "?",
                    version = pre.version }
    return pre, loaded_info
  end
  local found, ferr = M.find(opts)
  if not found then return nil, ferr end
  local json, inst = pick_json(opts.json)
  if not json then return nil, inst end
  local open, oerr = package.loadlib(found.path, "luaopen_qwenvl")
  if not open then return nil, explain_open_error(tostring(oerr), found, M.root()) end
  local ok, mod = with_cjson(inst, function() return open("qwenvl") end)
  if not ok then
    local msg = tostring(mod)
    if msg:find("cjson", 1, true) then return nil, M.cjson_message(first_line(msg)) end
    return nil, ("qwenvl: %s failed to open: %s"):format(found.path, msg)
  end
  package.loaded.qwenvl = mod
  found.json, found.version = json, mod.version
  loaded_info = found
  return mod, found
end

function M.info() return loaded_info end

return M
