-- For the qwenvl.schema specs (schema_spec, schema_regex_spec):
--   local check = require("spec.support.schema_check")
--   check(doc, s)                  doc is valid against s, with no errors
--   check(doc, s, "$: message")    invalid, with exactly these errors (a
--                                  string is the only one; or a list)
-- Lua 5.1-5.4 and LuaJIT.
local assert = require("luassert")
local schema = require("qwenvl.schema")

return function(doc, s, expected_errors)
  local ok, errs = schema.validate(doc, s)
  if expected_errors == nil then
    assert.are.same({}, errs)
    assert.is_true(ok)
  else
    assert.is_false(ok)
    if type(expected_errors) == "string" then expected_errors = { expected_errors } end
    assert.are.same(expected_errors, errs)
  end
end
