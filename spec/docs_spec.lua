-- The reference keeps up with the module: every function qwenvl exports,
-- every handle and session method, has a heading in docs/api.md, and
-- every heading names something that exists.
local qwenvl = require("qwenvl")
local fx = require("spec.support.fixtures")

describe("docs/api.md", function()
  local doc = fx.read("docs/api.md")
  local headings = {}
  for h in doc:gmatch("\n### ([^\n]+)") do headings[#headings + 1] = h end

  local function has(name)
    for _, h in ipairs(headings) do
      if h:find("`" .. name .. "(", 1, true) or h:find("`" .. name .. "`", 1, true) then
        return true
      end
    end
    return false
  end

  it("has a heading for every function the module exports", function()
    for name, v in pairs(qwenvl) do
      if type(v) == "function" then
        assert.is_true(has("qwenvl." .. name), "no heading for qwenvl." .. name)
      end
    end
    assert.is_true(has("qwenvl.version"))
  end)

  it("has a heading for every handle and session method", function()
    local env = fx.standin_env()
    env.start()
    local h = assert(qwenvl.start(env.req {}))
    for name, v in pairs(getmetatable(h).__index) do
      if type(v) == "function" then assert.is_true(has("h:" .. name), "no heading for h:" .. name) end
    end
    h:close()
    local s = assert(qwenvl.session(env.req { prompt = nil }))
    for _, name in ipairs({ "ask", "start", "history", "reset" }) do
      assert.is_function(s[name])
      assert.is_true(has("s:" .. name), "no heading for s:" .. name)
    end
    env.stop()
  end)

  it("names nothing that does not exist", function()
    for _, h in ipairs(headings) do
      local fn = h:match("^`qwenvl%.([%w_]+)")
      if fn then assert.is_not_nil(qwenvl[fn], "docs/api.md documents qwenvl." .. fn) end
    end
  end)
end)

describe("the rockspec", function()
  local spec = fx.read("qwenvl-scm-1.rockspec")

  it("builds every C source and installs every Lua module", function()
    for f in fx.sh("ls src/*.c"):gmatch("%S+") do
      assert.is_truthy(spec:find('"' .. f .. '"', 1, true), f .. " is not in the rockspec")
    end
    for f in fx.sh("cd lua && find qwenvl -name '*.lua'"):gmatch("%S+") do
      local m = f:gsub("%.lua$", ""):gsub("/", ".")
      assert.is_truthy(spec:find('["' .. m .. '"] = "lua/' .. f .. '"', 1, true), m .. " is not in the rockspec")
    end
  end)
end)
