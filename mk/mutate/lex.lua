-- mk/mutate/lex.lua: the two light tokenizers of the mutation tester.
--
--   local lex = require("mk.mutate.lex")
--   lex.c(src)   -> tokens of a C file
--   lex.lua(src) -> tokens of a Lua file
--
-- A token is { t = type, s = first byte, e = last byte, line = n,
-- text = src:sub(s, e) }. Comments and white space are dropped, so an
-- operator never looks inside them. Types:
--   C:   "id", "num", "str", "chr", "op", "pp" (a whole preprocessor line
--        other than #define); the tokens of a #define body carry pp = true
--        and the "#define NAME" head is one "pp" token
--   Lua: "name" (kw = true for keywords), "num", "str", "op"
-- String tokens also carry is/ie: the first and last byte of their
-- contents (between the quotes or long brackets).
--
-- Only as much of each language as the operators need: no trigraphs,
-- no digraphs, no string prefixes beyond a plain identifier before the
-- quote. Works on Lua 5.1-5.4 and LuaJIT (the self-test runs on both).

local M = {}

local function newline_count(s, i, j)
  local n = 0
  for _ in s:sub(i, j):gmatch("\n") do n = n + 1 end
  return n
end

-- End of a quoted string or char starting at i (the quote); escapes skip a
-- byte. An unterminated one runs to the end of the line.
local function quoted_end(src, i, q)
  local j = i + 1
  local n = #src
  while j <= n do
    local c = src:sub(j, j)
    if c == "\\" then
      j = j + 2
    elseif c == q then
      return j
    elseif c == "\n" then
      return j - 1
    else
      j = j + 1
    end
  end
  return n
end

local C_OPS = {
  ">>=", "<<=", "...",
  "->", "++", "--", "<<", ">>", "<=", ">=", "==", "!=", "&&", "||",
  "*=", "/=", "%=", "+=", "-=", "&=", "^=", "|=", "##",
}

local function c_op_at(src, i)
  for _, op in ipairs(C_OPS) do
    if src:sub(i, i + #op - 1) == op then return op end
  end
  return src:sub(i, i)
end

function M.c(src)
  local toks = {}
  local i, n, line = 1, #src, 1
  local at_line_start = true  -- only white space since the last newline
  local in_define = false     -- inside the body of a #define
  local function add(t, s, e, extra)
    local tok = { t = t, s = s, e = e, line = line, text = src:sub(s, e) }
    if in_define then tok.pp = true end
    if extra then for k, v in pairs(extra) do tok[k] = v end end
    toks[#toks + 1] = tok
    line = line + newline_count(src, s, e)
    return tok
  end
  while i <= n do
    local c = src:sub(i, i)
    if c == "\n" then
      if in_define then in_define = false end
      line = line + 1
      at_line_start = true
      i = i + 1
    elseif c == "\\" and src:sub(i + 1, i + 1) == "\n" then
      line = line + 1           -- a continued line: the directive goes on
      i = i + 2
    elseif c:match("%s") then
      i = i + 1
    elseif src:sub(i, i + 1) == "/*" then
      local _, e = src:find("*/", i + 2, true)
      e = e or n
      line = line + newline_count(src, i, e)
      i = e + 1
    elseif src:sub(i, i + 1) == "//" then
      local e = src:find("\n", i, true)
      i = e or n + 1
    elseif c == "#" and at_line_start then
      -- A directive: the whole logical line, unless it is a #define, whose
      -- body is tokenized (its numbers and comparisons are mutation sites).
      local word_s, word_e = src:find("^%s*[%a_]+", i + 1)
      local word = word_s and src:sub(word_s, word_e):match("[%a_]+") or ""
      if word == "define" then
        local _, name_e = src:find("^%s+[%a_][%w_]*", word_e + 1)
        local e = name_e or word_e
        -- a function-like macro's parameter list belongs to the head
        if src:sub(e + 1, e + 1) == "(" then
          local close = src:find(")", e + 1, true)
          if close then e = close end
        end
        add("pp", i, e)
        in_define = true
        i = e + 1
      else
        local j = i
        while true do
          local e = src:find("\n", j, true)
          if not e then j = n break end
          -- a comment may hide the newline; a backslash continues
          if src:sub(e - 1, e - 1) == "\\" then
            j = e + 1
          else
            j = e - 1
            break
          end
        end
        add("pp", i, j)
        i = j + 1
      end
      at_line_start = false
    else
      at_line_start = false
      if c:match("[%a_]") then
        local s, e = src:find("^[%w_]+", i)
        local q = src:sub(e + 1, e + 1)
        if (q == '"' or q == "'") and src:sub(s, e):match("^[LuU]8?$") then
          local qe = quoted_end(src, e + 1, q)
          add(q == '"' and "str" or "chr", i, qe, { is = e + 2, ie = qe - 1 })
          i = qe + 1
        else
          add("id", s, e)
          i = e + 1
        end
      elseif c:match("%d") or (c == "." and src:sub(i + 1, i + 1):match("%d")) then
        -- a pp-number: digits, letters, dots, and signs after e/E/p/P
        local j = i + 1
        while j <= n do
          local d = src:sub(j, j)
          if d:match("[%w_%.]") then
            j = j + 1
          elseif (d == "+" or d == "-") and src:sub(j - 1, j - 1):match("[eEpP]") then
            j = j + 1
          else
            break
          end
        end
        add("num", i, j - 1)
        i = j
      elseif c == '"' or c == "'" then
        local e = quoted_end(src, i, c)
        add(c == '"' and "str" or "chr", i, e, { is = i + 1, ie = e - 1 })
        i = e + 1
      else
        local op = c_op_at(src, i)
        add("op", i, i + #op - 1)
        i = i + #op
      end
    end
  end
  return toks
end

local LUA_KW = {}
for w in ([[and break do else elseif end false for function goto if in
  local nil not or repeat return then true until while]]):gmatch("%a+") do
  LUA_KW[w] = true
end
M.LUA_KW = LUA_KW

local LUA_OPS = {
  "...", "..", "==", "~=", "<=", ">=", "//", "::", "<<", ">>",
}

-- "[[", "[==[" ...: the level of a long bracket opening at i, or nil.
local function long_open(src, i)
  local eq = src:match("^%[(=*)%[", i)
  return eq
end

local function long_close(src, i, eq)
  local close = "]" .. eq .. "]"
  local _, e = src:find(close, i, true)
  return e or #src
end

function M.lua(src)
  local toks = {}
  local i, n, line = 1, #src, 1
  local function add(t, s, e, extra)
    local tok = { t = t, s = s, e = e, line = line, text = src:sub(s, e) }
    if extra then for k, v in pairs(extra) do tok[k] = v end end
    toks[#toks + 1] = tok
    line = line + newline_count(src, s, e)
    return tok
  end
  if src:sub(1, 2) == "#!" then     -- a shebang line is not Lua
    i = (src:find("\n", 1, true) or n) + 0
  end
  while i <= n do
    local c = src:sub(i, i)
    if c == "\n" then
      line = line + 1
      i = i + 1
    elseif c:match("%s") then
      i = i + 1
    elseif src:sub(i, i + 1) == "--" then
      local eq = long_open(src, i + 2)
      local e
      if eq then
        e = long_close(src, i + 2 + #eq + 2, eq)
      else
        e = (src:find("\n", i, true) or n + 1) - 1
      end
      line = line + newline_count(src, i, e)
      i = e + 1
    elseif c == "[" and long_open(src, i) then
      local eq = long_open(src, i)
      local e = long_close(src, i + #eq + 2, eq)
      add("str", i, e, { is = i + #eq + 2, ie = e - #eq - 2 })
      i = e + 1
    elseif c == '"' or c == "'" then
      -- quoted_end stops at a newline; Lua's "\z" and "\<newline>" are
      -- escapes, which quoted_end already skips (a backslash skips a byte)
      local e = quoted_end(src, i, c)
      add("str", i, e, { is = i + 1, ie = e - 1 })
      i = e + 1
    elseif c:match("[%a_]") then
      local s, e = src:find("^[%w_]+", i)
      local w = src:sub(s, e)
      add("name", s, e, { kw = LUA_KW[w] or nil })
      i = e + 1
    elseif c:match("%d") or (c == "." and src:sub(i + 1, i + 1):match("%d")) then
      local e
      if src:match("^0[xX]", i) then
        e = select(2, src:find("^0[xX][%x%.]*", i))
        e = select(2, src:find("^[pP][+-]?%d+", e + 1)) or e
      else
        e = select(2, src:find("^%d*%.?%d*", i))
        e = select(2, src:find("^[eE][+-]?%d+", e + 1)) or e
      end
      local j = e + 1
      add("num", i, j - 1)
      i = j
    else
      local op
      for _, o in ipairs(LUA_OPS) do
        if src:sub(i, i + #o - 1) == o then op = o break end
      end
      op = op or c
      add("op", i, i + #op - 1)
      i = i + #op
    end
  end
  return toks
end

return M
