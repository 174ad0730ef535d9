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
-- minLength, maxLength (counted in UTF-8 code points), pattern (the common
-- regular-expression subset; patterns using groups or alternation are not
-- checked), allOf, anyOf, oneOf, not, if/then/else, boolean schemas, and
-- local $ref ("#", "#/$defs/x", "#/definitions/x", any local JSON pointer).
-- "format" and other annotations are ignored, as draft 2020-12 allows.
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

-- "array", "object" or "empty" (an empty table without a marker)
local function table_kind(t)
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
M.table_kind = table_kind

local function array_len(t)
  local n = 0
  for k in pairs(t) do
    if type(k) == "number" and k > n then n = k end
  end
  return n
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

local function quote(s)
  s = tostring(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    if c == '"' then return '\\"' end
    if c == "\\" then return "\\\\" end
    if c == "\n" then return "\\n" end
    if c == "\t" then return "\\t" end
    return format("\\u%04x", c:byte())
  end) .. '"'
end

-- short rendering of a value for messages
local function show(v, depth)
  depth = depth or 0
  local t = type(v)
  if v == nil or is_null(v) then return "null" end
  if t == "number" then return fmtnum(v) end
  if t == "boolean" then return tostring(v) end
  if t == "string" then
    if #v > 40 then v = v:sub(1, 37) .. "..." end
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
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = tostring(k) end
    table.sort(keys)
    for i = 1, math.min(#keys, 5) do parts[#parts + 1] = quote(keys[i]) .. ":" .. show(v[keys[i]], depth + 1) end
    if #keys > 5 then parts[#parts + 1] = "..." end
    return "{" .. concat(parts, ",") .. "}"
  end
  return tostring(v)
end

local function utf8_len(s)
  -- count bytes that do not continue a multi-byte sequence
  local n = 0
  for i = 1, #s do
    local b = s:byte(i)
    if b < 0x80 or b >= 0xC0 then n = n + 1 end
  end
  return n
end
M.utf8_len = utf8_len

local function deep_equal(a, b)
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
-- regular expressions: translate the common ECMA-262 subset to Lua patterns.
-- Returns nil for constructs Lua patterns cannot express (groups,
-- alternation, counted repeats of a class larger than a small bound);
-- such patterns are skipped.

local regex_cache = {}

local function translate_regex(re)
  local cached = regex_cache[re]
  if cached ~= nil then return cached or nil end
  local out, i, n = {}, 1, #re
  local anchored_start = false
  local last_atom -- the last emitted atom, for {n,m}
  local function emit_atom(a) out[#out + 1] = a; last_atom = a end
  local escapes = { d = "%d", D = "%D", w = "[%w_]", W = "[^%w_]", s = "%s", S = "%S",
                    n = "\n", t = "\t", r = "\r" }
  local function escape_lit(c)
    if c:match("%p") then return "%" .. c end
    return c
  end
  if re:sub(1, 1) == "^" then anchored_start = true; i = 2 end
  local result
  while i <= n do
    local c = re:sub(i, i)
    if c == "(" or c == ")" or c == "|" then result = false; break
    elseif c == "\\" then
      local e = re:sub(i + 1, i + 1)
      if e == "" then result = false; break end
      if escapes[e] then emit_atom(escapes[e])
      elseif e:match("%a") or e:match("%d") then result = false; break
      else emit_atom(escape_lit(e)) end
      i = i + 2
    elseif c == "[" then
      local j = i + 1
      local parts = { "[" }
      if re:sub(j, j) == "^" then parts[#parts + 1] = "^"; j = j + 1 end
      local first = true
      while j <= n do
        local d = re:sub(j, j)
        if d == "]" and not first then break end
        first = false
        if d == "\\" then
          local e = re:sub(j + 1, j + 1)
          local cls = ({ d = "%d", D = "%D", w = "%w_", s = "%s", S = "%S", n = "\n", t = "\t", r = "\r" })[e]
          if cls then parts[#parts + 1] = cls
          elseif e:match("%a") then result = false; break
          else parts[#parts + 1] = escape_lit(e) end
          j = j + 2
        elseif d == "-" then
          parts[#parts + 1] = "-"; j = j + 1
        else
          parts[#parts + 1] = escape_lit(d); j = j + 1
        end
      end
      if result == false then break end
      if j > n then result = false; break end
      parts[#parts + 1] = "]"
      emit_atom(concat(parts))
      i = j + 1
    elseif c == "." then
      emit_atom("."); i = i + 1
    elseif c == "*" or c == "+" or c == "?" then
      if not last_atom then result = false; break end
      if re:sub(i + 1, i + 1) == "?" then
        if c == "*" then out[#out + 1] = "-"; i = i + 2
        else result = false; break end
      else
        out[#out + 1] = c; i = i + 1
      end
      last_atom = nil
    elseif c == "{" then
      local a, b, close = re:match("^{(%d+)(,?%d*)}()", i)
      if not a or not last_atom then result = false; break end
      local lo = tonumber(a)
      local hi
      if b == "" then hi = lo
      elseif b == "," then hi = nil
      else hi = tonumber(b:sub(2)) end
      if lo > 64 or (hi and hi > 64) then result = false; break end
      local atom = last_atom
      out[#out] = nil
      for _ = 1, lo do out[#out + 1] = atom end
      if hi == nil then out[#out + 1] = atom .. "*"
      else for _ = lo + 1, hi do out[#out + 1] = atom .. "?" end end
      last_atom = nil
      i = close
    elseif c == "$" and i == n then
      out[#out + 1] = "$"; i = i + 1
    else
      emit_atom(escape_lit(c)); i = i + 1
    end
  end
  if result == nil then
    result = (anchored_start and "^" or "") .. concat(out)
    -- check that Lua accepts it
    if not pcall(string.find, "", result) then result = false end
  end
  regex_cache[re] = result
  return result or nil
end
M.translate_regex = translate_regex

-- true / false, or nil when the pattern cannot be checked
local function regex_match(re, s)
  local p = translate_regex(re)
  if not p then return nil end
  return s:find(p) ~= nil
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
    local function walk(s, depth)
      if found or type(s) ~= "table" or depth > 32 then return end
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

local validate_node

local function sub_errors(ctx, doc, s, path)
  local sub = { root = ctx.root, errors = {}, depth = ctx.depth }
  validate_node(sub, doc, s, path)
  return sub.errors
end

local function add(ctx, path, msg)
  ctx.errors[#ctx.errors + 1] = path .. ": " .. msg
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
    if has_type(doc, name) then return true end
  end
  local got = json_type(doc)
  if got == "integer" then got = "number" end
  if #types == 1 and types[1] == "integer" and got == "number" then
    add(ctx, path, "expected integer, got number " .. fmtnum(doc))
  else
    add(ctx, path, "expected " .. concat(types, " or ") .. ", got " .. got)
  end
  return false
end

local function check_object(ctx, doc, s, path)
  local props = type(s.properties) == "table" and s.properties or nil
  local pprops = type(s.patternProperties) == "table" and s.patternProperties or nil
  if type(s.required) == "table" then
    for _, name in ipairs(s.required) do
      if doc[name] == nil then
        add(ctx, path, "missing required property " .. quote(name))
      end
    end
  end
  local count = 0
  local keys = {}
  for k in pairs(doc) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  for _, k in ipairs(keys) do
    local v = doc[k]
    local ks = tostring(k)
    count = count + 1
    local matched = false
    if props and props[ks] ~= nil then
      matched = true
      validate_node(ctx, v, props[ks], path_key(path, ks))
    end
    if pprops then
      for re, ps in pairs(pprops) do
        if regex_match(re, ks) then
          matched = true
          validate_node(ctx, v, ps, path_key(path, ks))
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
  local dr = s.dependentRequired
  if type(dr) == "table" then
    for name, needs in pairs(dr) do
      if doc[name] ~= nil and type(needs) == "table" then
        for _, other in ipairs(needs) do
          if doc[other] == nil then
            add(ctx, path, "property " .. quote(name) .. " requires property " .. quote(other))
          end
        end
      end
    end
  end
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
    for i = 1, n do
      for j = i + 1, n do
        if deep_equal(doc[i], doc[j]) then
          add(ctx, path, "items " .. (i - 1) .. " and " .. (j - 1) .. " are equal, but uniqueItems is set")
        end
      end
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
    if regex_match(s.pattern, doc) == false then
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
  if ctx.depth > 64 then
    add(ctx, path, "schema nesting too deep (recursive $ref?)")
    ctx.depth = ctx.depth - 1
    return
  end

  if s["$ref"] ~= nil then
    local target = resolve_ref(ctx.root, s["$ref"])
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

--- Decode a schema given as a JSON string; tables are returned unchanged.
function M.load(s)
  if type(s) == "string" then
    if not cjson then return nil, "cjson is not available to decode the schema" end
    local ok, v = pcall(cjson.decode, s)
    if not ok then return nil, "schema is not valid JSON: " .. tostring(v) end
    if type(v) ~= "table" and type(v) ~= "boolean" then
      return nil, "schema must be a JSON object"
    end
    return v
  end
  if type(s) == "table" or type(s) == "boolean" then return s end
  return nil, "schema must be a table or a JSON string, got " .. type(s)
end

--- Validate `doc` against `schema` (a table, a boolean or a JSON string).
-- Returns true, {} or false, {error strings}.
function M.validate(doc, schema)
  local s, err = M.load(schema)
  if s == nil then return false, { "$: " .. err } end
  local ctx = { root = s, errors = {}, depth = 0 }
  validate_node(ctx, doc, s, "$")
  return #ctx.errors == 0, ctx.errors
end

return M
