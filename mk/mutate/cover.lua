-- mk/mutate/cover.lua: which checks exercise which source file, for
-- `make mutate` (mk/mutate/mutate.lua). The map is derived; this file holds
-- its rules' parameters and the hand-written entries, and is the one place
-- to change it. `make mutate MUTATE_COVER=other.lua` reads another file of
-- the same shape. `make mutate-list` prints the map in use.
--
-- A check is a string:
--   "spec/x_spec.lua"          busted, Lua 5.4 (build/lua5.4)
--   "luajit:spec/x_spec.lua"   busted --run=luajit (build/luajit)
--   "units"                    make units: the Lua-free C units, alone
--   "hosts:spec/hosts/x.lua"   one host test of mk/hosts.mk (Neovim, nginx:
--                              builds lua5.4 and luajit)
--   "sh:<command>"             any command, from the root of the scratch copy
--
-- Derived rules (mutate.lua, cover_map):
--   lua/...    the specs that require the module, directly, through the
--              project's other modules, or by running bin/qwenvl (which
--              requires qwenvl.cli); requires are read from the text, so
--              code a spec runs in a child `lua -e` counts too
--   src/*.c    "units" first when the make variables of unit_vars link the
--              file into the C unit tests, then the specs that require
--              "qwenvl" (the C module) the same way
-- Covering checks run fastest first, except that the checks that already
-- killed mutants of the same file go first. Once a mutant survives them, the
-- rest of the suite runs: every spec file (spec/**/*_spec.lua) but `ignore`,
-- and "units" for a unit file.
return {
  -- not part of the suite a mutant must survive: they load none of
  -- src/ or lua/qwenvl/
  ignore = {
    "spec/standin_spec.lua",        -- the stand-in server itself
    "spec/mutate_tool_spec.lua",    -- this tool's own self-test
  },

  -- make variables listing the sources of the C unit tests (fuzz/fuzz.mk)
  unit_vars = { "UNIT_SRCS", "UNIT_IMAGE_SRCS" },

  -- Hand-written entries: they replace the derived covering checks of a
  -- file. The host adapters are exercised by host tests only.
  files = {
    ["lua/qwenvl/nvim.lua"] = { "hosts:spec/hosts/nvim_test.lua" },
    ["lua/qwenvl/health.lua"] = { "hosts:spec/hosts/nvim_test.lua" },
    ["lua/qwenvl/ngx.lua"] = { "hosts:spec/hosts/nginx_test.lua" },
  },

  -- Extra checks appended to the derived ones, e.g.
  --   ["src/qv_image.c"] = { "sh:make -s fuzz-regress" },
  extra = {},
}
