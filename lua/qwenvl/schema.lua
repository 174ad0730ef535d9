-- qwenvl.schema: a small JSON Schema validator (the draft 2020-12 keywords
-- used in practice), pure Lua, for Lua 5.1-5.4 and LuaJIT.
--
--   local schema = require("qwenvl.schema")
--   local ok, errors = schema.validate(doc, schema_table_or_json_string)
--
-- `errors` is a list of strings such as
--   $.amount: expected number, got string
--   $: missing required property "title"
--   $.items[2].qty: 5 is greater than maximum 3
-- Array indices in paths are 0-based, as in JSON Path.
--
-- Supported keywords: type (string or list; "integer"; "null" is cjson.null),
-- properties, patternProperties, additionalProperties (boolean or schema),
-- required, minProperties, maxProperties, dependentRequired, propertyNames,
-- items (schema, or the older list form), prefixItems, minItems, maxItems,
-- uniqueItems, contains, enum, const, minimum, maximum, exclusiveMinimum,
-- exclusiveMaximum (number, or the draft-4 boolean form), multipleOf,
-- minLength, maxLength (counted in code points), pattern and
-- patternProperties (ECMA-262 regular expressions, see below), allOf, anyOf,
-- oneOf, not, if/then/else, boolean schemas, and local $ref ("#",
-- "#/$defs/x", "#/definitions/x", any local JSON pointer). "format" and
-- other annotations are ignored, as draft 2020-12 allows.
--
-- Patterns run on PCRE2 through lrexlib's rex_pcre2 (Debian lua-rex-pcre2,
-- luarocks lrexlib-pcre2), in UTF mode: "." is one character, and a string
-- checked against a pattern must be valid UTF-8. Without rex_pcre2,
-- schema.load (and so schema.validate) refuses a schema that holds a
-- pattern, saying what to install: a pattern is never silently unchecked.
-- ECMA-262 (u flag) is translated where PCRE2 differs: "." and \s take
-- ECMA-262's line terminators and white space, "$" is the end of the string
-- only, [] and [^] are empty/any, \v is U+000B, \uXXXX (surrogate pairs
-- too) and \u{X...} are code points, \p{gc=Lu} and long category names
-- work. \d \w \b are ASCII in both. Left as PCRE2 reads them: \S inside a
-- class (ASCII white space only), variable-length lookbehind (refused when
-- loading), and PCRE2-only syntax such as possessive quantifiers, atomic
-- groups and inline flags (accepted); PCRE2-only escapes (\A \Q \h ...)
-- are refused.
--
-- Validation time is bounded, whatever the schema and document: every
-- match by PCRE2's match/depth/heap limits, a validation by a work budget
-- (schema-node visits, keys and list entries looked at, pattern subjects,
-- uniqueItems pairs; about a second of work) and a nesting depth of 64.
-- Reaching one stops the validation with an error ("$.path: schema too
-- complex: ...", "...exceeded the regular-expression match limit...",
-- "schema nesting too deep ..."): the document fails, it is never taken as
-- valid. At most 100 errors are listed; then "$: N more errors not listed".
--
-- Lua has one table type for JSON arrays and objects. A table is taken as an
-- array when its keys are exactly 1..n (n > 0) or it carries an array
-- metatable (cjson.array_mt, cjson.empty_array_mt, or {__jsontype="array"});
-- an empty table counts as both an empty array and an empty object.

local M = {}

local ok_cjson, cjson = pcall(require, "cjson")
if not ok_cjson then
  ok_cjson, cjson = pcall(require, "cjson.safe")
end
if not ok_cjson then cjson = nil end

local NULL = cjson and cjson.null or nil
M.null = NULL

local floor, huge = math.floor, math.huge
local type, pairs, ipairs, tostring = type, pairs, ipairs, tostring
local format, concat = string.format, table.concat

---------------------------------------------------------------------------
-- value helpers

local function is_null(v)
  return v ~= nil and NULL ~= nil and v == NULL
end

local function is_array_mt(mt)
  if mt == nil then return false end
  if cjson and (mt == cjson.array_mt or mt == cjson.empty_array_mt) then return true end
  return type(mt) == "table" and mt.__jsontype == "array"
end

local function is_object_mt(mt)
  return type(mt) == "table" and mt.__jsontype == "object"
end

-- During a validation, what is learnt about the document's tables and
-- strings (kinds, lengths, sorted keys) is kept here, so a node visited
-- again costs what its schema does, not the size of its value; `ops`
-- counts the element-wise work (keys, list entries, comparisons) that the
-- validation's budget is charged for. nil outside schema.validate.
local memo

local function kind_of(t)
  local mt = getmetatable(t)
  if is_array_mt(mt) then return "array" end
  if is_object_mt(mt) then return "object" end
  local n = 0
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or k ~= floor(k) then return "object" end
    n = n + 1
  end
  if n == 0 then return "empty" end
  for i = 1, n do
    if t[i] == nil then return "object" end
  end
  return "array"
end

-- "array", "object" or "empty" (an empty table without a marker)
local function table_kind(t)
  if not memo then return kind_of(t) end
  local k = memo.kind[t]
  if not k then k = kind_of(t); memo.kind[t] = k end
  return k
end
M.table_kind = table_kind

local function array_len(t)
  local n = memo and memo.len[t]
  if n then return n end
  n = 0
  for k in pairs(t) do
    if type(k) == "number" and k > n then n = k end
  end
  if memo then memo.len[t] = n end
  return n
end

-- the keys of t, sorted as strings (a deterministic order for messages)
local function sorted_keys(t)
  local keys = memo and memo.keys[t]
  if keys then return keys end
  keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  if memo then memo.keys[t] = keys end
  return keys
end

local function is_integer(n)
  return type(n) == "number" and n == n and n ~= huge and n ~= -huge and n == floor(n)
end

-- JSON type name of a Lua value
local function json_type(v)
  local t = type(v)
  if t == "nil" then return "null" end
  if is_null(v) then return "null" end
  if t == "boolean" or t == "string" then return t end
  if t == "number" then return is_integer(v) and "integer" or "number" end
  if t == "table" then
    local k = table_kind(v)
    return k == "empty" and "object" or k
  end
  return t
end
M.json_type = json_type

local function has_type(v, name)
  local t = type(v)
  if name == "null" then return v == nil or is_null(v) end
  if name == "boolean" then return t == "boolean" end
  if name == "string" then return t == "string" end
  if name == "number" then return t == "number" end
  if name == "integer" then return is_integer(v) end
  if name == "object" then
    return t == "table" and table_kind(v) ~= "array"
  end
  if name == "array" then
    return t == "table" and table_kind(v) ~= "object"
  end
  return false
end

local function fmtnum(n)
  if is_integer(n) and n > -1e15 and n < 1e15 then
    return format("%d", n)
  end
  return format("%.14g", n)
end
M.format_number = fmtnum

-- nil when s is well-formed UTF-8 (no overlongs, surrogates or code points
-- past U+10FFFF), else the byte offset of the first bad sequence
local function utf8_error(s)
  local find, byte = string.find, string.byte
  local i = 1
  while true do
    i = find(s, "[\128-\255]", i)
    if not i then return nil end
    local c = byte(s, i)
    local need, lo, hi = 1, 0x80, 0xBF
    if c >= 0xC2 and c <= 0xDF then need = 1
    elseif c == 0xE0 then need, lo = 2, 0xA0
    elseif c == 0xED then need, hi = 2, 0x9F
    elseif c >= 0xE1 and c <= 0xEF then need = 2
    elseif c == 0xF0 then need, lo = 3, 0x90
    elseif c == 0xF4 then need, hi = 3, 0x8F
    elseif c >= 0xF1 and c <= 0xF3 then need = 3
    else return i end
    local c1 = byte(s, i + 1)
    if not c1 or c1 < lo or c1 > hi then return i end
    for k = 2, need do
      local ck = byte(s, i + k)
      if not ck or ck < 0x80 or ck > 0xBF then return i end
    end
    i = i + need + 1
  end
end

-- messages end up in JSON: text that is not UTF-8 has its high bytes
-- shown as \xNN instead of copied
local function clean(s)
  s = tostring(s)
  if utf8_error(s) then
    s = s:gsub("[\128-\255]", function(c) return format("\\x%02x", c:byte()) end)
  end
  return s
end

local function quote(s)
  s = tostring(s):gsub('[%c"\\]', function(c)
    if c == '"' then return '\\"' end
    if c == "\\" then return "\\\\" end
    if c == "\n" then return "\\n" end
    if c == "\t" then return "\\t" end
    return format("\\u%04x", c:byte())
  end)
  return '"' .. clean(s) .. '"'
end

-- short rendering of a value for messages
local function show(v, depth)
  depth = depth or 0
  local t = type(v)
  if v == nil or is_null(v) then return "null" end
  if t == "number" then return fmtnum(v) end
  if t == "boolean" then return tostring(v) end
  if t == "string" then
    if #v > 40 then
      -- cut at a character boundary, so messages stay valid UTF-8
      local cut = 37
      while cut > 0 and (v:byte(cut + 1) or 0) >= 0x80 and v:byte(cut + 1) < 0xC0 do cut = cut - 1 end
      v = v:sub(1, cut) .. "..."
    end
    return quote(v)
  end
  if t == "table" then
    if depth > 1 then return "..." end
    local kind = table_kind(v)
    local parts = {}
    if kind == "array" then
      for i = 1, math.min(array_len(v), 5) do parts[#parts + 1] = show(v[i], depth + 1) end
      if array_len(v) > 5 then parts[#parts + 1] = "..." end
      return "[" .. concat(parts, ",") .. "]"
    end
    local keys = sorted_keys(v)
    for i = 1, math.min(#keys, 5) do parts[#parts + 1] = quote(keys[i]) .. ":" .. show(v[keys[i]], depth + 1) end
    if #keys > 5 then parts[#parts + 1] = "..." end
    return "{" .. concat(parts, ",") .. "}"
  end
  return tostring(v)
end

local function utf8_len(s)
  local n = memo and memo.ulen[s]
  if n then return n end
  -- count bytes that do not continue a multi-byte sequence
  local _
  _, n = s:gsub("[^\128-\191]", "")
  if memo then memo.ulen[s] = n end
  return n
end
M.utf8_len = utf8_len

local function deep_equal(a, b)
  if memo then memo.ops = memo.ops + 1 end
  if a == b then return true end
  local ta, tb = type(a), type(b)
  if (a == nil or is_null(a)) and (b == nil or is_null(b)) then return true end
  if ta ~= "table" or tb ~= "table" then return false end
  local ka, kb = table_kind(a), table_kind(b)
  if ka ~= kb and ka ~= "empty" and kb ~= "empty" then return false end
  for k, v in pairs(a) do
    if not deep_equal(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end
M.equal = deep_equal

local function path_key(path, key)
  key = tostring(key)
  if key:match("^[%a_][%w_]*$") then return path .. "." .. key end
  return path .. "[" .. quote(key) .. "]"
end

local function path_index(path, i) -- i is 1-based; paths are 0-based
  return path .. "[" .. (i - 1) .. "]"
end

---------------------------------------------------------------------------
-- regular expressions: ECMA-262 patterns run by PCRE2 (lrexlib's rex_pcre2)
--
-- A backtracking engine can take exponential time; every match is bounded:
--   * PCRE2's match, depth and heap limits, set by (*LIMIT_...) items at the
--     start of each compiled pattern (they can only lower the library's);
--   * one pcre2_match call per subject: PCRE2 restarts its match counter at
--     every start position of an unanchored search, so an unanchored
--     pattern P runs as \A(?s:.*?)(?:P) instead, which counts globally;
--   * a run that is not counted as steps (a possessive scan at each of n
--     start positions is n^2) is paid for up front from the validation's
--     work budget, n*n/PATTERN_COST_DIV units for an n-byte subject.
-- A limit that is hit stops the validation with an error naming the path
-- and the pattern: the answer is neither accepted nor silently unchecked.

local MATCH_LIMIT = 2000000     -- PCRE2 match steps per subject
local DEPTH_LIMIT = 100000      -- nested backtracking points
local HEAP_LIMIT_KIB = 16384    -- backtracking memory
local PATTERN_COST_DIV = 2048

local ok_rex, rex = pcall(require, "rex_pcre2")
if not ok_rex or type(rex) ~= "table" or type(rex.new) ~= "function" then rex = nil end

local INSTALL_REX = "the rex_pcre2 module (PCRE2) is not installed: "
  .. "apt-get install lua-rex-pcre2, or luarocks install lrexlib-pcre2"

-- UTF: "." and classes take characters, and patterns and subjects must be
-- UTF-8. DOLLAR_ENDONLY: "$" is the end of the string, as in ECMA-262 (not
-- "before a final newline"). ALLOW_EMPTY_CLASS: "[]" matches nothing and
-- "[^]" any character, as in ECMA-262. No UCP: \d \w \b stay ASCII, as in
-- ECMA-262 (even with the u flag).
local COMPILE_FLAGS, ANCHORED_BIT
if rex then
  local f = rex.flags()
  COMPILE_FLAGS = f.UTF + f.DOLLAR_ENDONLY + f.ALLOW_EMPTY_CLASS
  ANCHORED_BIT = f.ANCHORED
end
local LIMITS = format("(*LIMIT_MATCH=%d)(*LIMIT_DEPTH=%d)(*LIMIT_HEAP=%d)",
  MATCH_LIMIT, DEPTH_LIMIT, HEAP_LIMIT_KIB)

-- ECMA-262 white space and line terminators (what \s means there); PCRE2's
-- own \s, without UCP, is ASCII only
local ECMA_SPACE = "\\t\\n\\x{0b}\\f\\r \\x{a0}\\x{1680}\\x{2000}-\\x{200a}"
  .. "\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}\\x{feff}"
-- "." in ECMA-262 excludes all four line terminators, PCRE2's only "\n"
local ECMA_DOT = "[^\\n\\r\\x{2028}\\x{2029}]"

-- long General_Category values (ECMA-262 accepts them; PCRE2 10.42 wants
-- the short ones)
local GC_LONG = {
  Letter = "L", Cased_Letter = "LC", Uppercase_Letter = "Lu",
  Lowercase_Letter = "Ll", Titlecase_Letter = "Lt", Modifier_Letter = "Lm",
  Other_Letter = "Lo", Mark = "M", Combining_Mark = "M", Nonspacing_Mark = "Mn",
  Spacing_Mark = "Mc", Enclosing_Mark = "Me", Number = "N", Decimal_Number = "Nd",
  digit = "Nd", Letter_Number = "Nl", Other_Number = "No", Punctuation = "P",
  punct = "P", Connector_Punctuation = "Pc", Dash_Punctuation = "Pd",
  Open_Punctuation = "Ps", Close_Punctuation = "Pe", Initial_Punctuation = "Pi",
  Final_Punctuation = "Pf", Other_Punctuation = "Po", Symbol = "S",
  Math_Symbol = "Sm", Currency_Symbol = "Sc", Modifier_Symbol = "Sk",
  Other_Symbol = "So", Separator = "Z", Space_Separator = "Zs",
  Line_Separator = "Zl", Paragraph_Separator = "Zp", Other = "C", Control = "Cc",
  cntrl = "Cc", Format = "Cf", Surrogate = "Cs", Private_Use = "Co",
  Unassigned = "Cn",
}

-- letters ECMA-262 (u flag) allows after a backslash; the others (\A \Z \Q
-- \h \R ...) are PCRE2 extensions and refused, \Q...\E above all since it
-- would hide the pattern's structure from the translation
local ECMA_ESCAPE = {}
for ch in ("dDwWsSbBfnrtvcpPuxk"):gmatch(".") do ECMA_ESCAPE[ch] = true end

local function property(e, body)
  local k, v = body:match("^([%a_]+)=(.*)$")
  if k == "General_Category" or k == "gc" then body = v end
  body = GC_LONG[body] or body
  return "\\" .. e .. "{" .. body .. "}"
end

-- ECMA-262 pattern -> PCRE2 pattern, or nil, message
local function ecma_to_pcre2(re)
  local out, i, n, in_class = {}, 1, #re, false
  local sub, match = string.sub, string.match
  while i <= n do
    local c = sub(re, i, i)
    if c == "\\" then
      local e = sub(re, i + 1, i + 1)
      if e == "u" then
        local h = match(re, "^{(%x+)}", i + 2)
        local cp, len
        if h then
          -- long hex would wrap around in tonumber: past U+10FFFF anyway
          cp, len = #h:gsub("^0+", "") > 6 and huge or tonumber(h, 16), #h + 4
        else
          h = match(re, "^%x%x%x%x", i + 2)
          if not h then return nil, "\\u must be followed by 4 hex digits or {hex}" end
          cp, len = tonumber(h, 16), 6
          -- a surrogate pair written as two escapes is one code point
          local lo = match(re, "^\\u(%x%x%x%x)", i + 6)
          lo = lo and tonumber(lo, 16)
          if cp >= 0xD800 and cp <= 0xDBFF and lo and lo >= 0xDC00 and lo <= 0xDFFF then
            cp, len = 0x10000 + (cp - 0xD800) * 0x400 + (lo - 0xDC00), 12
          end
        end
        if cp > 0x10FFFF then return nil, "\\u escape beyond U+10FFFF" end
        out[#out + 1] = format("\\x{%x}", cp)
        i = i + len
      elseif e == "v" then
        out[#out + 1] = "\\x{0b}"; i = i + 2
      elseif e == "s" then
        out[#out + 1] = in_class and ECMA_SPACE or ("[" .. ECMA_SPACE .. "]"); i = i + 2
      elseif e == "S" and not in_class then
        out[#out + 1] = "[^" .. ECMA_SPACE .. "]"; i = i + 2
      elseif (e == "p" or e == "P") and match(re, "^{[^}]*}", i + 2) then
        local body = match(re, "^{([^}]*)}", i + 2)
        out[#out + 1] = property(e, body)
        i = i + #body + 4
      elseif e:match("%a") and not ECMA_ESCAPE[e] then
        return nil, "\\" .. e .. " is not an ECMA-262 escape"
      else
        -- also "\" at the end: PCRE2 reports it
        out[#out + 1] = "\\" .. e; i = i + 2
      end
    elseif in_class then
      if c == "]" then in_class = false end
      -- a "[" in a class is a literal in ECMA-262, not "[:alpha:]"
      out[#out + 1] = c == "[" and "\\[" or c
      i = i + 1
    elseif c == "[" then
      -- "[]" and "[^]" close at once (ALLOW_EMPTY_CLASS reads them so too)
      in_class = true
      if sub(re, i + 1, i + 1) == "^" then out[#out + 1] = "[^"; i = i + 2
      else out[#out + 1] = "["; i = i + 1 end
    elseif c == "." then
      out[#out + 1] = ECMA_DOT; i = i + 1
    else
      out[#out + 1] = c; i = i + 1
    end
  end
  return concat(out)
end

local function rex_message(e)
  -- offsets refer to the translated pattern: leave them out
  return (tostring(e):gsub("%s*%(pattern offset: %d+%)", ""))
end

local function anchored(r)
  local ok, info = pcall(r.fullinfo, r)
  local opts = ok and type(info) == "table" and tonumber(info.ALLOPTIONS)
  return opts and floor(opts / ANCHORED_BIT) % 2 == 1 or false
end

-- compiled form of one pattern: a rex object, or nil, message
local function compile(re)
  if not rex then return nil, INSTALL_REX end
  local bad = utf8_error(re)
  if bad then return nil, format("not valid UTF-8 (byte %d)", bad) end
  local p, terr = ecma_to_pcre2(re)
  if not p then return nil, terr end
  local ok, r = pcall(rex.new, LIMITS .. p, COMPILE_FLAGS)
  if not ok then return nil, rex_message(r) end
  if anchored(r) then return r end
  -- compiled alone first, so P cannot close the wrapper's group
  ok, r = pcall(rex.new, LIMITS .. "\\A(?s:.*?)(?:" .. p .. ")", COMPILE_FLAGS)
  if not ok then return nil, rex_message(r) end
  return r
end

-- one cache per schema (the root table), so each pattern is compiled once
-- per schema however often it is used; weak, so it goes with the schema
local caches = setmetatable({}, { __mode = "k" })

local function cache_for(root)
  if type(root) ~= "table" then return {} end
  local c = caches[root]
  if not c then c = {}; caches[root] = c end
  return c
end

-- the compiled pattern, or nil, message (both cached)
local function compiled(cache, re)
  local e = cache[re]
  if e == nil then
    local r, err = compile(re)
    e = r or { err = err }
    cache[re] = e
  end
  if type(e) == "table" then return nil, e.err end
  return e
end

local LIMIT_NAMES = {
  MATCHLIMIT = "match limit (" .. MATCH_LIMIT .. " steps; catastrophic backtracking?)",
  DEPTHLIMIT = "depth limit (" .. DEPTH_LIMIT .. ")",
  RECURSIONLIMIT = "depth limit (" .. DEPTH_LIMIT .. ")",
  HEAPLIMIT = "heap limit (" .. HEAP_LIMIT_KIB .. " KiB)",
  NOMEMORY = "memory",
}

-- true/false; or nil, message when the match could not be completed
local function regex_find(r, s)
  local ok, start = pcall(r.exec, r, s)
  if ok then return start ~= nil end
  local e = tostring(start)
  -- lrexlib names the errors it knows; 10.42's heap limit it gives by number
  local name = e:match("PCRE2_ERROR_(%u+)") or ({ ["-63"] = "HEAPLIMIT", ["-48"] = "NOMEMORY",
    ["-47"] = "MATCHLIMIT", ["-53"] = "DEPTHLIMIT" })[e:match("code (%-%d+)") or ""]
  if name and LIMIT_NAMES[name] then
    return nil, "it exceeded the regular-expression " .. LIMIT_NAMES[name]
  end
  return nil, "the regular-expression engine failed: " .. e
end

---------------------------------------------------------------------------
-- schema.load: every pattern the schema holds must compile

-- keywords whose value is a schema, a list of schemas, a map of schemas
local SUB_SCHEMA = { "items", "additionalProperties", "propertyNames", "additionalItems",
  "contains", "not", "if", "then", "else", "unevaluatedItems",
  "unevaluatedProperties", "contentSchema" }
local SUB_LIST = { "allOf", "anyOf", "oneOf", "prefixItems", "items" }
local SUB_MAP = { "properties", "patternProperties", "$defs", "definitions",
  "dependentSchemas", "dependencies" }

local function pointer_tok(k)
  return clean((tostring(k):gsub("~", "~0"):gsub("/", "~1")))
end


-- nil, or a message naming the first pattern that cannot be used
local function check_patterns(root)
  local cache = cache_for(root)
  local seen = {}
  local function bad(re, where, err)
    return format("pattern %s at %s: %s", quote(re), where, err)
  end
  local function walk(s, where)
    if type(s) ~= "table" or seen[s] then return nil end
    seen[s] = true
    if type(s.pattern) == "string" then
      local _, err = compiled(cache, s.pattern)
      if err then return bad(s.pattern, where .. "/pattern", err) end
    end
    if type(s.patternProperties) == "table" then
      for _, re in ipairs(sorted_keys(s.patternProperties)) do
        if type(re) == "string" then
          local _, err = compiled(cache, re)
          if err then return bad(re, where .. "/patternProperties", err) end
        end
      end
    end
    for _, k in ipairs(SUB_SCHEMA) do
      local err = walk(s[k], where .. "/" .. k)
      if err then return err end
    end
    for _, k in ipairs(SUB_LIST) do
      local v = s[k]
      if type(v) == "table" and table_kind(v) == "array" then
        for i, sub in ipairs(v) do
          local err = walk(sub, where .. "/" .. k .. "/" .. (i - 1))
          if err then return err end
        end
      end
    end
    for _, k in ipairs(SUB_MAP) do
      local v = s[k]
      if type(v) == "table" and table_kind(v) ~= "array" then
        for _, name in ipairs(sorted_keys(v)) do
          local err = walk(v[name], where .. "/" .. pointer_tok(k) .. "/" .. pointer_tok(name))
          if err then return err end
        end
      end
    end
    return nil
  end
  return walk(root, "#")
end

---------------------------------------------------------------------------
-- $ref resolution

local function unescape_pointer(tok)
  tok = tok:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
  return (tok:gsub("~1", "/"):gsub("~0", "~"))
end

local function resolve_ref(root, ref)
  if type(ref) ~= "string" or ref:sub(1, 1) ~= "#" then return nil end
  local frag = ref:sub(2)
  if frag == "" then return root end
  if frag:sub(1, 1) ~= "/" then
    -- plain-name anchor: look for a matching $anchor
    local found
    local seen = {}   -- a table schema may share (or loop back to) subtables
    local function walk(s, depth)
      if found or type(s) ~= "table" or depth > 32 or seen[s] then return end
      seen[s] = true
      if s["$anchor"] == frag then found = s; return end
      for _, v in pairs(s) do walk(v, depth + 1) end
    end
    walk(root, 0)
    return found
  end
  local node = root
  for tok in (frag:sub(2) .. "/"):gmatch("([^/]*)/") do
    tok = unescape_pointer(tok)
    if type(node) ~= "table" then return nil end
    local v = node[tok]
    if v == nil and tok:match("^%d+$") then v = node[tonumber(tok) + 1] end
    node = v
  end
  return node
end

---------------------------------------------------------------------------
-- the validator
--
-- ctx: {root, errors, depth, shared}; sub-schemas of anyOf/oneOf/not/if/
-- contains/propertyNames get a ctx of their own (their errors decide
-- locally), all share `shared`: the pattern cache, the work spent, and the
-- one message that stopped the validation.

local validate_node

-- Work budget of one validation, in units of about one schema-node visit:
-- recursive or exponential $ref/allOf graphs that stay under the depth
-- limit end here. Element-wise work (memo.ops: keys, list entries,
-- comparisons) costs a unit per OPS_PER_UNIT.
local WORK_LIMIT = 500000
local OPS_PER_UNIT = 8
local DEPTH_LIMIT_NODES = 64
-- errors kept per list; the rest are counted ("$: N more errors not listed")
local MAX_ERRORS = 100

-- A validation that cannot be decided (a limit hit, a pattern that cannot
-- be checked) stops at once: it must not pass as a mere mismatch inside
-- "not" or "anyOf", and stopping bounds the time it takes.
local STOP = setmetatable({}, { __tostring = function() return "qwenvl.schema: validation stopped" end })

local function stop(ctx, path, msg)
  ctx.shared.stopped = path .. ": " .. msg
  error(STOP, 0)
end

local function too_many_nodes()
  return format("the validation passed its work limit (%d, about one per schema node visited): "
    .. "a recursive or exponential $ref/allOf graph?", WORK_LIMIT)
end

-- why(a, b): the message when a large charge (a long string, a long array)
-- is what passes the budget, built only then
local function spend(ctx, path, units, why, a, b)
  local sh = ctx.shared
  local ops = memo.ops
  if ops >= OPS_PER_UNIT then
    units = units + floor(ops / OPS_PER_UNIT)
    memo.ops = ops % OPS_PER_UNIT
  end
  sh.work = sh.work + units
  if sh.work > WORK_LIMIT then
    local big = why and units >= WORK_LIMIT / 4
    stop(ctx, path, "schema too complex: " .. (big and why(a, b) or too_many_nodes()))
  end
end

-- resolve_ref, remembered per validation (a recursive schema resolves the
-- same few references over and over)
local function ref_target(ctx, ref)
  local refs = ctx.shared.refs
  local t = refs[ref]
  if t == nil then
    t = resolve_ref(ctx.root, ref)
    if t == nil then t = false end
    refs[ref] = t
  end
  if t == false then return nil end
  return t
end

local function sub_errors(ctx, doc, s, path)
  memo.ops = memo.ops + OPS_PER_UNIT
  local sub = { root = ctx.root, errors = {}, depth = ctx.depth, shared = ctx.shared }
  validate_node(sub, doc, s, path)
  return sub.errors
end

-- an error costs about two visits to format (paid here, even when only
-- counted)
local function add(ctx, path, msg)
  memo.ops = memo.ops + 2 * OPS_PER_UNIT
  local errors = ctx.errors
  if #errors >= MAX_ERRORS then ctx.dropped = (ctx.dropped or 0) + 1; return end
  errors[#errors + 1] = path .. ": " .. msg
end

local function too_long_for_pattern(re, n)
  return format("checking pattern %s against a string of %d bytes would pass the work limit (%d)",
    quote(re), n, WORK_LIMIT)
end

-- does `subject` (a string) match pattern `re`? Stops the validation when
-- that cannot be decided.
local function pattern_match(ctx, re, subject, path)
  local r, err = compiled(ctx.shared.cache, re)
  if not r then
    stop(ctx, path, "cannot check pattern " .. quote(re) .. ": " .. err)
  end
  local bad = memo.uerr[subject]
  if bad == nil then
    bad = utf8_error(subject) or false
    memo.uerr[subject] = bad
  end
  if bad then
    stop(ctx, path, format("string is not valid UTF-8 (byte %d), so pattern %s cannot be checked",
      bad, quote(re)))
  end
  local n = #subject
  spend(ctx, path, 1 + floor(n * n / PATTERN_COST_DIV), too_long_for_pattern, re, n)
  local found, merr = regex_find(r, subject)
  if found == nil then
    stop(ctx, path, "pattern " .. quote(re) .. " could not be checked against " .. show(subject)
      .. ": " .. merr)
  end
  return found
end

local function type_list(t)
  if type(t) == "string" then return { t } end
  if type(t) == "table" then return t end
  return {}
end

local function check_type(ctx, doc, s, path)
  local types = type_list(s.type)
  if #types == 0 then return true end
  for _, name in ipairs(types) do
    memo.ops = memo.ops + 1
    if has_type(doc, name) then return true end
  end
  local got = json_type(doc)
  if got == "integer" then got = "number" end
  if #types == 1 and types[1] == "integer" and got == "number" then
    add(ctx, path, "expected integer, got number " .. fmtnum(doc))
  else
    local names = {}
    for i, name in ipairs(types) do names[i] = clean(name) end
    add(ctx, path, "expected " .. concat(names, " or ") .. ", got " .. got)
  end
  return false
end

local function check_dependent(ctx, doc, s, path)
  local dr = s.dependentRequired
  if type(dr) ~= "table" then return end
  for _, name in ipairs(sorted_keys(dr)) do
    local needs = dr[name]
    memo.ops = memo.ops + 1
    if doc[name] ~= nil and type(needs) == "table" then
      for _, other in ipairs(needs) do
        memo.ops = memo.ops + 1
        if doc[other] == nil then
          add(ctx, path, "property " .. quote(name) .. " requires property " .. quote(other))
        end
      end
    end
  end
end

local function check_object(ctx, doc, s, path)
  local props = type(s.properties) == "table" and s.properties or nil
  local pprops = type(s.patternProperties) == "table" and s.patternProperties or nil
  local pkeys = pprops and sorted_keys(pprops)
  if type(s.required) == "table" then
    for _, name in ipairs(s.required) do
      memo.ops = memo.ops + 1
      if doc[name] == nil then
        add(ctx, path, "missing required property " .. quote(name))
      end
    end
  end
  -- the document's keys only when a keyword looks at them
  local names = s.propertyNames
  if not (props or pprops or s.additionalProperties ~= nil or type(names) == "table" or names == false
          or type(s.minProperties) == "number" or type(s.maxProperties) == "number") then
    return check_dependent(ctx, doc, s, path)
  end
  local keys = sorted_keys(doc)
  local count = #keys
  memo.ops = memo.ops + count
  for _, k in ipairs(keys) do
    local v = doc[k]
    local ks = tostring(k)
    local matched = false
    if props and props[ks] ~= nil then
      matched = true
      validate_node(ctx, v, props[ks], path_key(path, ks))
    end
    if pprops then
      for _, re in ipairs(pkeys) do
        if type(re) == "string" and pattern_match(ctx, re, ks, path_key(path, ks)) then
          matched = true
          validate_node(ctx, v, pprops[re], path_key(path, ks))
        end
      end
    end
    if not matched and s.additionalProperties ~= nil then
      local ap = s.additionalProperties
      if ap == false then
        add(ctx, path, "additional property " .. quote(ks) .. " is not allowed")
      elseif type(ap) == "table" then
        validate_node(ctx, v, ap, path_key(path, ks))
      end
    end
    if type(s.propertyNames) == "table" or s.propertyNames == false then
      local errs = sub_errors(ctx, ks, s.propertyNames, path)
      if #errs > 0 then
        add(ctx, path, "property name " .. quote(ks) .. " is not valid (" .. errs[1] .. ")")
      end
    end
  end
  if type(s.minProperties) == "number" and count < s.minProperties then
    add(ctx, path, "has " .. count .. " properties, fewer than minProperties " .. fmtnum(s.minProperties))
  end
  if type(s.maxProperties) == "number" and count > s.maxProperties then
    add(ctx, path, "has " .. count .. " properties, more than maxProperties " .. fmtnum(s.maxProperties))
  end
  check_dependent(ctx, doc, s, path)
end

local function too_many_pairs(n)
  return format("uniqueItems over %d items would pass the work limit (%d)", n, WORK_LIMIT)
end

local function check_array(ctx, doc, s, path)
  local n = array_len(doc)
  local start = 1
  local prefix = s.prefixItems
  local items = s.items
  -- the older list form of "items" is prefixItems + additionalItems
  if type(items) == "table" and table_kind(items) == "array" then
    prefix = items
    items = s.additionalItems
  end
  if type(prefix) == "table" then
    for i, ps in ipairs(prefix) do
      if i > n then break end
      validate_node(ctx, doc[i], ps, path_index(path, i))
    end
    start = #prefix + 1
  end
  if items ~= nil then
    if items == false then
      if n >= start then
        add(ctx, path, "has " .. n .. " items, at most " .. (start - 1) .. " allowed")
      end
    elseif type(items) == "table" then
      for i = start, n do
        validate_node(ctx, doc[i], items, path_index(path, i))
      end
    end
  end
  if type(s.minItems) == "number" and n < s.minItems then
    add(ctx, path, "has " .. n .. " items, fewer than minItems " .. fmtnum(s.minItems))
  end
  if type(s.maxItems) == "number" and n > s.maxItems then
    add(ctx, path, "has " .. n .. " items, more than maxItems " .. fmtnum(s.maxItems))
  end
  if s.uniqueItems == true then
    -- pairwise: a comparison per pair paid up front, deeper ones (items
    -- that are tables) row by row as deep_equal counts them
    spend(ctx, path, floor(n * (n - 1) / 2 / OPS_PER_UNIT), too_many_pairs, n)
    for i = 1, n do
      for j = i + 1, n do
        if deep_equal(doc[i], doc[j]) then
          add(ctx, path, "items " .. (i - 1) .. " and " .. (j - 1) .. " are equal, but uniqueItems is set")
        end
      end
      memo.ops = memo.ops - (n - i)
      spend(ctx, path, 0)
    end
  end
  if s.contains ~= nil then
    local hits = 0
    for i = 1, n do
      if #sub_errors(ctx, doc[i], s.contains, path_index(path, i)) == 0 then hits = hits + 1 end
    end
    local minc = type(s.minContains) == "number" and s.minContains or 1
    local maxc = type(s.maxContains) == "number" and s.maxContains or nil
    if hits < minc then
      add(ctx, path, "contains " .. hits .. " matching items, fewer than " .. fmtnum(minc))
    elseif maxc and hits > maxc then
      add(ctx, path, "contains " .. hits .. " matching items, more than maxContains " .. fmtnum(maxc))
    end
  end
end

local function check_number(ctx, doc, s, path)
  local v = doc
  if type(s.minimum) == "number" then
    if s.exclusiveMinimum == true then
      if v <= s.minimum then add(ctx, path, fmtnum(v) .. " is not greater than exclusive minimum " .. fmtnum(s.minimum)) end
    elseif v < s.minimum then
      add(ctx, path, fmtnum(v) .. " is less than minimum " .. fmtnum(s.minimum))
    end
  end
  if type(s.maximum) == "number" then
    if s.exclusiveMaximum == true then
      if v >= s.maximum then add(ctx, path, fmtnum(v) .. " is not less than exclusive maximum " .. fmtnum(s.maximum)) end
    elseif v > s.maximum then
      add(ctx, path, fmtnum(v) .. " is greater than maximum " .. fmtnum(s.maximum))
    end
  end
  if type(s.exclusiveMinimum) == "number" and v <= s.exclusiveMinimum then
    add(ctx, path, fmtnum(v) .. " is not greater than exclusive minimum " .. fmtnum(s.exclusiveMinimum))
  end
  if type(s.exclusiveMaximum) == "number" and v >= s.exclusiveMaximum then
    add(ctx, path, fmtnum(v) .. " is not less than exclusive maximum " .. fmtnum(s.exclusiveMaximum))
  end
  if type(s.multipleOf) == "number" and s.multipleOf > 0 then
    local q = v / s.multipleOf
    if math.abs(q - floor(q + 0.5)) > 1e-9 then
      add(ctx, path, fmtnum(v) .. " is not a multiple of " .. fmtnum(s.multipleOf))
    end
  end
end

local function check_string(ctx, doc, s, path)
  local len
  if type(s.minLength) == "number" then
    len = utf8_len(doc)
    if len < s.minLength then
      add(ctx, path, "string of length " .. len .. " is shorter than minLength " .. fmtnum(s.minLength))
    end
  end
  if type(s.maxLength) == "number" then
    len = len or utf8_len(doc)
    if len > s.maxLength then
      add(ctx, path, "string of length " .. len .. " is longer than maxLength " .. fmtnum(s.maxLength))
    end
  end
  if type(s.pattern) == "string" then
    if not pattern_match(ctx, s.pattern, doc, path) then
      add(ctx, path, show(doc) .. " does not match pattern " .. quote(s.pattern))
    end
  end
end

function validate_node(ctx, doc, s, path)
  if s == true or s == nil then return end
  if s == false then
    add(ctx, path, "no value is allowed here (schema is false)")
    return
  end
  if type(s) ~= "table" then return end
  ctx.depth = (ctx.depth or 0) + 1
  if ctx.depth > DEPTH_LIMIT_NODES then
    stop(ctx, path, "schema nesting too deep (recursive $ref?)")
  end
  spend(ctx, path, 1, too_many_nodes)

  if s["$ref"] ~= nil then
    local target = ref_target(ctx, s["$ref"])
    if target == nil then
      add(ctx, path, "cannot resolve $ref " .. quote(s["$ref"]))
    else
      validate_node(ctx, doc, target, path)
    end
  end

  local type_ok = true
  if s.type ~= nil then type_ok = check_type(ctx, doc, s, path) end

  if s.enum ~= nil and type(s.enum) == "table" then
    local found = false
    for _, e in ipairs(s.enum) do
      if deep_equal(doc, e) then found = true; break end
    end
    if not found then
      local opts = {}
      for _, e in ipairs(s.enum) do opts[#opts + 1] = show(e) end
      memo.ops = memo.ops + #opts * OPS_PER_UNIT
      add(ctx, path, show(doc) .. " is not one of " .. concat(opts, ", "))
    end
  end
  if s.const ~= nil then
    if not deep_equal(doc, s.const) then
      add(ctx, path, show(doc) .. " is not equal to const " .. show(s.const))
    end
  end

  if type_ok then
    local t = type(doc)
    if t == "table" then
      local kind = table_kind(doc)
      if kind ~= "array" then check_object(ctx, doc, s, path) end
      if kind ~= "object" then check_array(ctx, doc, s, path) end
    elseif t == "number" then
      check_number(ctx, doc, s, path)
    elseif t == "string" then
      check_string(ctx, doc, s, path)
    end
  end

  if type(s.allOf) == "table" then
    for _, sub in ipairs(s.allOf) do validate_node(ctx, doc, sub, path) end
  end
  if type(s.anyOf) == "table" then
    local best
    local matched = false
    for _, sub in ipairs(s.anyOf) do
      local errs = sub_errors(ctx, doc, sub, path)
      if #errs == 0 then matched = true; break end
      if not best or #errs < #best then best = errs end
    end
    if not matched then
      add(ctx, path, "does not match any of the " .. #s.anyOf .. " anyOf alternatives"
        .. (best and best[1] and (" (closest: " .. best[1] .. ")") or ""))
    end
  end
  if type(s.oneOf) == "table" then
    local hits, best = 0, nil
    for _, sub in ipairs(s.oneOf) do
      local errs = sub_errors(ctx, doc, sub, path)
      if #errs == 0 then hits = hits + 1
      elseif not best or #errs < #best then best = errs end
    end
    if hits == 0 then
      add(ctx, path, "does not match any of the " .. #s.oneOf .. " oneOf alternatives"
        .. (best and best[1] and (" (closest: " .. best[1] .. ")") or ""))
    elseif hits > 1 then
      add(ctx, path, "matches " .. hits .. " oneOf alternatives, expected exactly one")
    end
  end
  if s["not"] ~= nil then
    if #sub_errors(ctx, doc, s["not"], path) == 0 then
      add(ctx, path, "must not match the \"not\" schema")
    end
  end
  if s["if"] ~= nil then
    if #sub_errors(ctx, doc, s["if"], path) == 0 then
      if s["then"] ~= nil then validate_node(ctx, doc, s["then"], path) end
    elseif s["else"] ~= nil then
      validate_node(ctx, doc, s["else"], path)
    end
  end
  ctx.depth = ctx.depth - 1
end

--- Decode a schema given as a JSON string (tables are returned unchanged)
-- and compile its patterns: nil, message when one cannot be used (invalid,
-- or rex_pcre2 is not installed).
function M.load(s)
  if type(s) == "string" then
    if not cjson then return nil, "cjson is not available to decode the schema" end
    local ok, v = pcall(cjson.decode, s)
    if not ok then return nil, "schema is not valid JSON: " .. tostring(v) end
    if type(v) ~= "table" and type(v) ~= "boolean" then
      return nil, "schema must be a JSON object"
    end
    s = v
  end
  if type(s) == "boolean" then return s end
  if type(s) ~= "table" then
    return nil, "schema must be a table or a JSON string, got " .. type(s)
  end
  local err = check_patterns(s)
  if err then return nil, err end
  return s
end

--- Validate `doc` against `schema` (a table, a boolean or a JSON string).
-- Returns true, {} or false, {error strings}.
function M.validate(doc, schema)
  local s, err = M.load(schema)
  if s == nil then return false, { "$: " .. err } end
  local shared = { work = 0, cache = cache_for(s), refs = {} }
  local ctx = { root = s, errors = {}, depth = 0, shared = shared }
  local outer = memo
  memo = { kind = {}, len = {}, keys = {}, ulen = {}, uerr = {}, ops = 0 }
  local ok, e = pcall(validate_node, ctx, doc, s, "$")
  memo = outer
  if not ok then
    if e ~= STOP then error(e, 0) end
    ctx.errors[#ctx.errors + 1] = shared.stopped
  elseif ctx.dropped then
    ctx.errors[#ctx.errors + 1] = "$: " .. ctx.dropped .. " more errors not listed"
  end
  return #ctx.errors == 0, ctx.errors
end

return M
