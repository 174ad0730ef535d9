-- mk/mutate/ops.lua: the mutation operators of `make mutate`.
--
--   local ops = require("mk.mutate.ops")
--   local list = ops.generate(path, src [, opts])  -- every mutant of one file
--   local text = ops.apply(src, m)                 -- the mutated source
--   local diff = ops.diff(src, m, path [, ctx])    -- unified diff, one hunk
--
-- A mutant is { file, lang = "c"|"lua", op, s, e, repl, line, desc, id }:
-- bytes s..e of the file are replaced by repl (e = s - 1 inserts). id is a
-- hash of the file, the operator and the text of the mutated lines before
-- and after (plus a counter for identical ones), so it survives edits
-- elsewhere in the file; mk/mutate/equivalent.txt names mutants by it.
--
-- Operators (opts.ops, a set, limits them; default all):
--   cmp      negated comparison: == <-> != (~=), < <-> >=, > <-> <=
--   bound    off-by-one bound:   < <-> <=, > <-> >=
--   bool     && <-> ||, and <-> or, ! / not deleted, true <-> false
--   const    a number literal plus one and minus one
--   delete   a statement deleted (C: expression statements, break and
--            continue; Lua: calls and assignments that are not `local`)
--   return   an early return at the top of a function body
--            (C: return; / return 0; by the return type; Lua: do return end)
--   errcode  an error code swapped: the string literals of ops.STRING_SWAPS
--            (C and Lua) and the C identifiers of ops.IDENT_SWAPS
-- Comments are never mutated, nor string literals except for errcode.
-- Works on Lua 5.1-5.4 and LuaJIT.

local lex = require("mk.mutate.lex")

local M = {}

M.OPS = { "cmp", "bound", "bool", "const", "delete", "return", "errcode" }

-- The error codes of README.md's table, each with a partner whose
-- handling differs (retried or not, another exit code, another message).
M.STRING_SWAPS = {
  rate_limited = "server", server = "rate_limited",
  invalid_request = "bad_response", bad_response = "invalid_request",
  auth = "not_found", not_found = "auth",
  timeout = "network", network = "timeout",
  canceled = "callback", callback = "canceled",
  content_filter = "bad_response",
}

-- How a call ended (qv_call.h): the binding maps each to an error code.
M.IDENT_SWAPS = {
  QV_END_RESPONSE = "QV_END_TRANSPORT", QV_END_TRANSPORT = "QV_END_RESPONSE",
  QV_END_BUDGET = "QV_END_IDLE", QV_END_IDLE = "QV_END_BUDGET",
  QV_END_TOO_LARGE = "QV_END_STREAM", QV_END_STREAM = "QV_END_TOO_LARGE",
  QV_END_CANCELED = "QV_END_BUDGET",
}

-- C calls whose deletion only a leak checker or a debug build could see:
-- releasing memory, and assert(). Not generated (see bench/mutation.md).
M.C_KEEP_CALLS = { "^free$", "_free$", "_free_all$", "_cleanup$", "_unref$",
  "^assert$" }

-- Return types that take `return 0;` (any pointer type does too).
M.C_SCALARS = {}
for w in ([[int long short char signed unsigned double float size_t ssize_t
  ptrdiff_t off_t time_t bool _Bool int8_t int16_t int32_t int64_t uint8_t
  uint16_t uint32_t uint64_t intptr_t uintptr_t lua_Integer lua_Number
  lua_Unsigned CURLcode CURLMcode curl_off_t]]):gmatch("[%w_]+") do
  M.C_SCALARS[w] = true
end

local C_QUALIFIERS = {}
for w in ("static inline extern const volatile register __inline__ __inline"):gmatch("[%w_]+") do
  C_QUALIFIERS[w] = true
end

local C_KEYWORDS = {}
for w in ([[auto break case char const continue default do double else enum
  extern float for goto if inline int long register restrict return short
  signed sizeof static struct switch typedef union unsigned void volatile
  while _Bool _Complex _Imaginary bool size_t]]):gmatch("[%w_]+") do
  C_KEYWORDS[w] = true
end

local function set(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s
end

local CMP = { ["=="] = "!=", ["!="] = "==", ["<"] = ">=", [">="] = "<",
              [">"] = "<=", ["<="] = ">" }
local LUA_CMP = { ["=="] = "~=", ["~="] = "==", ["<"] = ">=", [">="] = "<",
                  [">"] = "<=", ["<="] = ">" }
local BOUND = { ["<"] = "<=", ["<="] = "<", [">"] = ">=", [">="] = ">" }

function M.lang(path)
  if path:match("%.c$") or path:match("%.h$") then return "c" end
  if path:match("%.lua$") then return "lua" end
  return nil
end

-- ---- numbers --------------------------------------------------------------

local function fmt_float(v)
  local s = string.format("%.17g", v)
  -- the shortest text that reads back as v
  for p = 1, 17 do
    local t = string.format("%." .. p .. "g", v)
    if tonumber(t) == v then s = t break end
  end
  if not s:find("[%.eEn]") then s = s .. ".0" end
  return s
end

-- The two neighbours (n + 1, n - 1) of a number literal, as text in the
-- same notation (hex stays hex, a C suffix stays), or {} when the literal
-- is not worth it (octal, huge, or a float far from 1).
function M.neighbours(text, lang)
  local body, suffix = text, ""
  if lang == "c" then
    if text:match("^0[xX]") then
      body, suffix = text:match("^(0[xX]%x+)([uUlL]*)$")
    else
      body, suffix = text:match("^([%d%.eE+-]+)([uUlLfF]*)$")
    end
    if not body then return {} end
    if body:match("^0%d") then return {} end   -- octal
  end
  local is_float = not body:match("^0[xX]") and body:find("[%.eE]") ~= nil
  local v = tonumber(body)
  if not v then return {} end
  local out = {}
  if is_float then
    if math.abs(v) >= 1000 then return {} end
    for _, d in ipairs({ 1, -1 }) do
      local w = v + d
      if w < 0 then
        out[#out + 1] = "(-" .. fmt_float(-w) .. suffix .. ")"
      else
        out[#out + 1] = fmt_float(w) .. suffix
      end
    end
  else
    if v > 2 ^ 52 or v ~= math.floor(v) then return {} end
    local hex = body:match("^0([xX])")
    for _, d in ipairs({ 1, -1 }) do
      local w = v + d
      local t
      if w < 0 then
        t = "(-" .. string.format("%d", -w) .. suffix .. ")"
      elseif hex then
        t = "0" .. hex .. string.format("%x", w) .. suffix
      else
        t = string.format("%d", w) .. suffix
      end
      out[#out + 1] = t
    end
  end
  return out
end

-- ---- shared helpers ---------------------------------------------------------

local function matches(toks)
  local match, stack = {}, {}
  local open = { ["("] = ")", ["["] = "]", ["{"] = "}" }
  local close = { [")"] = true, ["]"] = true, ["}"] = true }
  for k, t in ipairs(toks) do
    if t.t == "op" and open[t.text] then
      stack[#stack + 1] = k
    elseif t.t == "op" and close[t.text] then
      local o = stack[#stack]
      if o and open[toks[o].text] == t.text then
        stack[#stack] = nil
        match[o], match[k] = k, o
      end
    end
  end
  return match
end

local function line_bounds(src, s, e)
  local ls = s
  while ls > 1 and src:sub(ls - 1, ls - 1) ~= "\n" do ls = ls - 1 end
  local le = math.max(e, s - 1)
  while le < #src and src:sub(le + 1, le + 1) ~= "\n" do le = le + 1 end
  return ls, le
end

local function squash(s)
  return (s:gsub("%s+", " "):gsub("^ ", ""):gsub(" $", ""))
end

local function hash(s)
  local h = 0
  for i = 1, #s do
    h = (h * 257 + s:byte(i)) % 4294967291
  end
  return string.format("%08x", h)
end
M.hash = hash

function M.apply(src, m)
  return src:sub(1, m.s - 1) .. m.repl .. src:sub(m.e + 1)
end

-- The text of the lines a mutant touches, before and after.
function M.lines_of(src, m)
  local ls, le = line_bounds(src, m.s, m.e)
  local before = src:sub(ls, le)
  local after = src:sub(ls, m.s - 1) .. m.repl .. src:sub(m.e + 1, le)
  return before, after
end

-- ---- C ----------------------------------------------------------------------

local function c_token_ops(toks, add, opts)
  for k, t in ipairs(toks) do
    local prev, nxt = toks[k - 1], toks[k + 1]
    if t.t == "op" then
      if CMP[t.text] then add("cmp", t, CMP[t.text]) end
      if BOUND[t.text] then add("bound", t, BOUND[t.text]) end
      if t.text == "&&" then add("bool", t, "||") end
      if t.text == "||" then add("bool", t, "&&") end
      if t.text == "!" then add("bool", t, "", "delete `!`") end
    elseif t.t == "id" then
      if t.text == "true" then add("bool", t, "false") end
      if t.text == "false" then add("bool", t, "true") end
      local swap = opts.ident_swaps[t.text]
      if swap then add("errcode", t, swap) end
    elseif t.t == "num" then
      -- `char buf[64]`: an array size in a declaration; its neighbours
      -- only move a capacity
      local k2, k3 = toks[k - 2], toks[k - 3]
      local decl_size = prev and prev.text == "[" and nxt and nxt.text == "]"
        and k2 and k2.t == "id" and k3 and (k3.text == "*" or
        (k3.t == "id" and not ({ ["return"] = 1, case = 1, sizeof = 1,
          ["else"] = 1, ["do"] = 1, ["goto"] = 1 })[k3.text]))
      if not decl_size then
        for _, v in ipairs(M.neighbours(t.text, "c")) do add("const", t, v) end
      end
    elseif t.t == "str" then
      local inner = t.text:sub(t.is - t.s + 1, t.ie - t.s + 1)
      local swap = opts.string_swaps[inner]
      if swap then add("errcode", t, t.text:sub(1, t.is - t.s) .. swap .. '"') end
    end
  end
end

local function keep_call(name, opts)
  for _, p in ipairs(opts.c_keep_calls) do
    if name:match(p) then return true end
  end
  return false
end

local SECOND = set({ "(", "=", "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=",
  "<<=", ">>=", "->", ".", "[", "++", "--" })

-- The C functions of a file: { brace = k, close = k, kind = "void" |
-- "value" | nil } over the code tokens (directives dropped).
local function c_functions(ct, match, opts)
  local funcs = {}
  local depth = 0
  for k, t in ipairs(ct) do
    if t.text == "{" and t.t == "op" then
      if depth == 0 and ct[k - 1] and ct[k - 1].text == ")" then
        local open = match[k - 1]
        local name = open and ct[open - 1]
        if name and name.t == "id" and not C_KEYWORDS[name.text] then
          local ds = open - 1
          while ds > 1 and (ct[ds - 1].t == "id" or ct[ds - 1].text == "*") do
            ds = ds - 1
          end
          local star, base, other = false, {}, false
          for j = ds, open - 2 do
            local w = ct[j].text
            if w == "*" then star = true
            elseif w == "struct" or w == "union" then other = true
            elseif not C_QUALIFIERS[w] then base[#base + 1] = w end
          end
          local kind
          if star then kind = "value"
          elseif other then kind = nil
          elseif #base == 1 and base[1] == "void" then kind = "void"
          elseif #base >= 1 then
            kind = "value"
            for _, w in ipairs(base) do
              if not (M.C_SCALARS[w] or opts.c_scalars[w]) then kind = nil end
            end
          end
          funcs[#funcs + 1] = { brace = k, close = match[k], kind = kind,
                                name = name.text }
        end
      end
      depth = depth + 1
    elseif t.text == "}" and t.t == "op" then
      depth = depth - 1
    end
  end
  return funcs
end

local function c_statements(ct, match, funcs, add_range, opts)
  local in_body = {}
  for _, f in ipairs(funcs) do
    if f.close then
      for k = f.brace + 1, f.close - 1 do in_body[k] = true end
    end
  end
  local pdepth = {}
  local d = 0
  for k, t in ipairs(ct) do
    if t.text == ")" or t.text == "]" then d = d - 1 end
    pdepth[k] = d
    if t.text == "(" or t.text == "[" then d = d + 1 end
  end
  local label_colon = {}
  for k, t in ipairs(ct) do
    local prev = ct[k - 1]
    local start = in_body[k] and pdepth[k] == 0 and prev and (
      prev.text == ";" or prev.text == "{" or prev.text == "}" or
      prev.text == "else" or label_colon[k - 1] or
      (prev.text == ")" and match[k - 1] and ct[match[k - 1] - 1] and
       ({ ["if"] = 1, ["while"] = 1, ["for"] = 1 })[ct[match[k - 1] - 1].text]))
    if start and (t.text == "case" or t.text == "default") then
      for j = k + 1, #ct do
        if ct[j].text == ":" and pdepth[j] == 0 then label_colon[j] = true break end
        if ct[j].text == ";" or ct[j].text == "{" then break end
      end
    elseif start then
      local ok, callee = false, nil
      local n2, n3 = ct[k + 1], ct[k + 3]
      if t.text == "break" or t.text == "continue" then
        ok = true
      elseif t.t == "id" and not C_KEYWORDS[t.text] and n2 and SECOND[n2.text] then
        ok = true
        if n2.text == "(" then callee = t.text end
      elseif (t.text == "*" or t.text == "++" or t.text == "--") and n2 and n2.t == "id" then
        ok = true
      elseif t.text == "(" and n2 and n2.text == "void" and ct[k + 2] and
          ct[k + 2].text == ")" and n3 and n3.t == "id" and ct[k + 4] and
          ct[k + 4].text == "(" then
        ok, callee = true, n3.text
      end
      if ok and callee and keep_call(callee, opts) then ok = false end
      if ok then
        -- the statement runs to the first `;` outside brackets
        local j = k
        local last
        while j <= #ct do
          local w = ct[j].text
          if (w == "(" or w == "[") and match[j] then
            j = match[j] + 1
          elseif w == "{" or w == "}" then
            break
          elseif w == ";" then
            last = j
            break
          else
            j = j + 1
          end
        end
        if last then add_range("delete", t.s, ct[last].e, ";", t.line) end
      end
    end
  end
end

local function gen_c(src, opts, add, add_range)
  local toks = lex.c(src)
  local code = {}
  for _, t in ipairs(toks) do
    if t.t ~= "pp" then code[#code + 1] = t end
  end
  c_token_ops(code, add, opts)
  local ct = {}
  for _, t in ipairs(code) do
    if not t.pp then ct[#ct + 1] = t end
  end
  local match = matches(ct)
  local funcs = c_functions(ct, match, opts)
  if opts.ops.delete then c_statements(ct, match, funcs, add_range, opts) end
  if opts.ops["return"] then
    for _, f in ipairs(funcs) do
      local b = ct[f.brace]
      if f.kind and f.close and f.close > f.brace + 1 then
        local r = f.kind == "void" and " return;" or " return 0;"
        add_range("return", b.e + 1, b.e, r, b.line)
      end
    end
  end
end

-- ---- Lua ----------------------------------------------------------------------

local LUA_BINOPS = set({ "+", "-", "*", "/", "//", "%", "^", "..", "==", "~=",
  "<", "<=", ">", ">=", "and", "or", "&", "|", "~", "<<", ">>" })
local LUA_UNOPS = set({ "not", "-", "#", "~" })

local function is_op(t, set_)
  return t and (t.t == "op" or t.kw) and set_[t.text]
end

local function lua_function_end(toks, k)
  local depth = 0
  for j = k, #toks do
    local t = toks[j]
    if t.kw then
      local w = t.text
      if w == "function" or w == "if" or w == "do" or w == "repeat" then
        depth = depth + 1
      elseif w == "end" or w == "until" then
        depth = depth - 1
        if depth == 0 then return j end
      end
    end
  end
  return nil
end

local lua_exp

-- A suffixed expression (name or parenthesised, then fields, indexes and
-- calls) from k: its last token and whether it ends in a call.
local function lua_suffixed(toks, match, k)
  local t = toks[k]
  local j
  if t.t == "name" and not t.kw then
    j = k
  elseif t.text == "(" and t.t == "op" then
    j = match[k]
  end
  if not j then return nil end
  local call = false
  while true do
    local nx, nx2 = toks[j + 1], toks[j + 2]
    if not nx then break end
    if nx.text == "." and nx.t == "op" and nx2 and nx2.t == "name" then
      j, call = j + 2, false
    elseif nx.text == "[" and nx.t == "op" and match[j + 1] then
      j, call = match[j + 1], false
    elseif nx.text == ":" and nx.t == "op" and nx2 and nx2.t == "name" then
      j, call = j + 2, false
    elseif nx.text == "(" and nx.t == "op" and match[j + 1] and nx.line == toks[j].line then
      j, call = match[j + 1], true
    elseif nx.text == "{" and nx.t == "op" and match[j + 1] then
      j, call = match[j + 1], true
    elseif nx.t == "str" then
      j, call = j + 1, true
    else
      break
    end
  end
  return j, call
end

lua_exp = function(toks, match, k)
  local j = k
  while true do
    while is_op(toks[j], LUA_UNOPS) do j = j + 1 end
    local t = toks[j]
    if not t then return nil end
    local last
    if t.t == "num" or t.t == "str" or t.text == "nil" or t.text == "true"
        or t.text == "false" or t.text == "..." then
      last = j
    elseif t.text == "{" and t.t == "op" then
      last = match[j]
    elseif t.text == "function" and t.kw then
      last = lua_function_end(toks, j)
    elseif (t.t == "name" and not t.kw) or (t.text == "(" and t.t == "op") then
      last = lua_suffixed(toks, match, j)
    end
    if not last then return nil end
    if is_op(toks[last + 1], LUA_BINOPS) then
      j = last + 2
    else
      return last
    end
  end
end

local START_AFTER_KW = set({ "then", "do", "else", "repeat", "end", "break" })

local function lua_statement_start(toks, k)
  local t, prev = toks[k], toks[k - 1]
  if t.t ~= "name" or t.kw then return false end
  if not prev then return true end
  if prev.kw then
    if START_AFTER_KW[prev.text] then return true end
    if prev.text == "nil" or prev.text == "true" or prev.text == "false" then
      return prev.line < t.line
    end
    return false
  end
  if prev.t == "op" and prev.text == ";" then return true end
  local ender = prev.t == "name" or prev.t == "num" or prev.t == "str" or
    (prev.t == "op" and (prev.text == ")" or prev.text == "]" or
     prev.text == "}" or prev.text == "..."))
  return ender and prev.line < t.line
end

local function lua_statements(toks, match, add_range)
  for k = 1, #toks do
    if lua_statement_start(toks, k) then
      local last, call = lua_suffixed(toks, match, k)
      local nx = last and toks[last + 1]
      local stop
      if nx and nx.t == "op" and (nx.text == "=" or nx.text == ",") then
        local j = last
        while toks[j + 1] and toks[j + 1].text == "," and toks[j + 1].t == "op" do
          j = toks[j + 2] and lua_suffixed(toks, match, j + 2)
          if not j then break end
        end
        if j and toks[j + 1] and toks[j + 1].text == "=" and toks[j + 1].t == "op" then
          local e = lua_exp(toks, match, j + 2)
          while e and toks[e + 1] and toks[e + 1].text == "," and toks[e + 1].t == "op" do
            e = lua_exp(toks, match, e + 2)
          end
          stop = e
        end
      elseif call then
        stop = last
      end
      -- a `;` after it goes too: Lua 5.1 has no empty statement
      if stop and toks[stop + 1] and toks[stop + 1].t == "op" and toks[stop + 1].text == ";" then
        stop = stop + 1
      end
      if stop then add_range("delete", toks[k].s, toks[stop].e, "", toks[k].line) end
    end
  end
end

local function gen_lua(src, opts, add, add_range)
  local toks = lex.lua(src)
  local match = matches(toks)
  for k, t in ipairs(toks) do
    if t.t == "op" then
      if LUA_CMP[t.text] then add("cmp", t, LUA_CMP[t.text]) end
      if BOUND[t.text] then add("bound", t, BOUND[t.text]) end
    elseif t.t == "name" and t.kw then
      if t.text == "and" then add("bool", t, "or") end
      if t.text == "or" then add("bool", t, "and") end
      if t.text == "not" then add("bool", t, "", "delete `not`") end
      if t.text == "true" then add("bool", t, "false") end
      if t.text == "false" then add("bool", t, "true") end
      if t.text == "function" and opts.ops["return"] then
        -- `function a.b:c(...)`: the parameter list is the next "("
        local j = k + 1
        while toks[j] and toks[j].text ~= "(" do j = j + 1 end
        local close = toks[j] and match[j]
        local after = close and toks[close + 1]
        if close and after and not (after.kw and after.text == "end") then
          add_range("return", toks[close].e + 1, toks[close].e, " do return end",
                    toks[close].line)
        end
      end
    elseif t.t == "num" then
      -- `x-1` mutated to `x--1` would comment out the rest of the line
      for _, v in ipairs(M.neighbours(t.text, "lua")) do add("const", t, v) end
    elseif t.t == "str" then
      local inner = src:sub(t.is, t.ie)
      local swap = opts.string_swaps[inner]
      if swap then
        add("errcode", t, src:sub(t.s, t.is - 1) .. swap .. src:sub(t.ie + 1, t.e))
      end
    end
  end
  if opts.ops.delete then lua_statements(toks, match, add_range) end
end

-- ---- entry points -------------------------------------------------------------

local function with_defaults(opts)
  opts = opts or {}
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.ops = o.ops or set(M.OPS)
  o.string_swaps = o.string_swaps or M.STRING_SWAPS
  o.ident_swaps = o.ident_swaps or M.IDENT_SWAPS
  o.c_keep_calls = o.c_keep_calls or M.C_KEEP_CALLS
  o.c_scalars = o.c_scalars or {}
  return o
end

--- Every mutant of one file, in source order. opts: ops (set of operator
--- names), string_swaps, ident_swaps, c_keep_calls, c_scalars (extra
--- typedef names that take `return 0;`, e.g. enum typedefs of headers).
function M.generate(path, src, opts)
  opts = with_defaults(opts)
  local lang = M.lang(path)
  local out = {}
  local function add_range(op, s, e, repl, line, desc)
    if not opts.ops[op] then return end
    local orig = src:sub(s, e)
    if not desc then
      if op == "delete" then
        desc = "delete `" .. squash(orig) .. "`"
      elseif op == "return" then
        desc = "early `" .. squash(repl) .. "`"
      else
        desc = "`" .. orig .. "` -> `" .. repl .. "`"
      end
    end
    out[#out + 1] = { file = path, lang = lang, op = op, s = s, e = e,
                      repl = repl, line = line, desc = desc }
  end
  local function add(op, t, repl, desc)
    add_range(op, t.s, t.e, repl, t.line, desc)
  end
  if lang == "c" then
    gen_c(src, opts, add, add_range)
  elseif lang == "lua" then
    gen_lua(src, opts, add, add_range)
  else
    error("mutate: not a C or Lua file: " .. tostring(path), 2)
  end
  for i, m in ipairs(out) do m.seq = i end
  table.sort(out, function(a, b)
    if a.s ~= b.s then return a.s < b.s end
    if a.e ~= b.e then return a.e < b.e end
    return a.seq < b.seq
  end)
  local seen = {}
  for _, m in ipairs(out) do
    local before, after = M.lines_of(src, m)
    local key = path .. "\0" .. m.op .. "\0" .. squash(before) .. "\0" .. squash(after)
    seen[key] = (seen[key] or 0) + 1
    m.id = hash(key .. "\0" .. seen[key])
  end
  return out
end

local function split_lines(s)
  local lines = {}
  for l in (s .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = l end
  if s:sub(-1) == "\n" then lines[#lines] = nil end
  return lines
end

--- A unified diff (one hunk, ctx lines of context, default 3) of a mutant.
function M.diff(src, m, path, ctx)
  ctx = ctx or 3
  local a, b = split_lines(src), split_lines(M.apply(src, m))
  local pre = 0
  while pre < #a and pre < #b and a[pre + 1] == b[pre + 1] do pre = pre + 1 end
  local suf = 0
  while suf < #a - pre and suf < #b - pre and a[#a - suf] == b[#b - suf] do
    suf = suf + 1
  end
  local from = math.max(1, pre + 1 - ctx)
  local a_to = math.min(#a, #a - suf + ctx)
  local b_to = math.min(#b, #b - suf + ctx)
  local out = { "--- a/" .. path, "+++ b/" .. path }
  local a_n, b_n = a_to - from + 1, b_to - from + 1
  out[#out + 1] = string.format("@@ -%d,%d +%d,%d @@",
    a_n > 0 and from or from - 1, a_n, b_n > 0 and from or from - 1, b_n)
  for i = from, pre do out[#out + 1] = " " .. a[i] end
  for i = pre + 1, #a - suf do out[#out + 1] = "-" .. a[i] end
  for i = pre + 1, #b - suf do out[#out + 1] = "+" .. b[i] end
  for i = #a - suf + 1, a_to do out[#out + 1] = " " .. a[i] end
  return table.concat(out, "\n") .. "\n"
end

return M
