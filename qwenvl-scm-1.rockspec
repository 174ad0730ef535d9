-- qwenvl: ask Qwen-VL vision models (Alibaba DashScope) about images.
--   luarocks --lua-version=5.4 make qwenvl-scm-1.rockspec      (also 5.1, 5.3)
-- One C module (libcurl + OpenSSL's libcrypto) plus pure-Lua workflow files
-- and the `qwenvl` command. The C sources compile against Lua 5.1-5.4 and
-- LuaJIT 2.1 headers; luarocks builds one .so per tree (per Lua ABI).
rockspec_format = "3.0"
package = "qwenvl"
version = "scm-1"

source = {
  url = "git+https://github.com/qwenvl/qwenvl.git",
}

description = {
  summary = "Ask Qwen-VL vision models on Alibaba DashScope about images",
  detailed = [[
A C Lua module on libcurl: blocking calls, non-blocking handles driven by
any event loop (an epoll fd + timeout, or a timer where there is no epoll),
streaming, retries, batch calls, and Lua workflow helpers (structured
extraction, evidence, CLI) and hosts (OpenResty, Neovim).
]],
  license = "MIT",
  labels = { "llm", "vision", "http", "curl", "openresty", "neovim" },
}

-- Optional at run time, not required here: lrexlib-pcre2 (JSON Schema
-- `pattern`: refused with a clear message without it), luafilesystem
-- (job folders; POSIX commands otherwise), libvips (resizing: dlopen()ed).
dependencies = {
  "lua >= 5.1, < 5.5",
  "lua-cjson",
}

-- POSIX: epoll on Linux, poll() elsewhere; tested on Linux only.
supported_platforms = { "unix" }

test_dependencies = {
  "busted",
}

-- By library name, not header: Debian/Ubuntu keep curl/curl.h under a
-- multiarch include dir that luarocks 3.8 does not search; the compiler
-- finds it on its own.
external_dependencies = {
  CURL = { library = "curl" },
  OPENSSL = { library = "crypto" },
}

build = {
  type = "builtin",
  modules = {
    qwenvl = {
      sources = {
        "src/qv_body.c",
        "src/qv_buf.c",
        "src/qv_call.c",
        "src/qv_compat.c",
        "src/qv_draw.c",     -- libvips as qv_resize loads it: no headers needed
        "src/qv_draw_lua.c",
        "src/qv_engine.c",
        "src/qv_error.c",
        "src/qv_exif.c",
        "src/qv_file.c",
        "src/qv_handle.c",
        "src/qv_image.c",
        "src/qv_images.c",
        "src/qv_json.c",
        "src/qv_ini.c",
        "src/qv_many.c",
        "src/qv_messages.c",
        "src/qv_rate.c",
        "src/qv_request.c",
        "src/qv_resize.c",   -- libvips dlopen()ed at run time: no headers needed
        "src/qv_result.c",
        "src/qv_retry.c",
        "src/qv_scrub.c",
        "src/qv_sse.c",
        "src/qv_state.c",
        "src/qv_stream.c",
        "src/qv_sys.c",
        "src/qv_target.c",
        "src/qv_text.c",
        "src/qv_watch.c",    -- epoll on Linux, poll() elsewhere (chosen in the file)
        "src/qwenvl.c",
      },
      defines = { "_POSIX_C_SOURCE=200809L", "_DEFAULT_SOURCE" },
      incdirs = { "src", "$(CURL_INCDIR)", "$(OPENSSL_INCDIR)" },
      libdirs = { "$(CURL_LIBDIR)", "$(OPENSSL_LIBDIR)" },
      libraries = { "curl", "crypto", "pthread", "m" },
    },
    ["qwenvl.batch"] = "lua/qwenvl/batch.lua",
    ["qwenvl.batch.api"] = "lua/qwenvl/batch/api.lua",
    ["qwenvl.batch.cli"] = "lua/qwenvl/batch/cli.lua",
    ["qwenvl.batch.job"] = "lua/qwenvl/batch/job.lua",
    ["qwenvl.batch.lines"] = "lua/qwenvl/batch/lines.lua",
    ["qwenvl.batch.record"] = "lua/qwenvl/batch/record.lua",
    ["qwenvl.batch.results"] = "lua/qwenvl/batch/results.lua",
    ["qwenvl.batch.store"] = "lua/qwenvl/batch/store.lua",
    ["qwenvl.batch.writer"] = "lua/qwenvl/batch/writer.lua",
    ["qwenvl.cli"] = "lua/qwenvl/cli.lua",
    ["qwenvl.cli.analyze"] = "lua/qwenvl/cli/analyze.lua",
    ["qwenvl.cli.annotate"] = "lua/qwenvl/cli/annotate.lua",
    ["qwenvl.cli.batch"] = "lua/qwenvl/cli/batch.lua",
    ["qwenvl.cli.chat"] = "lua/qwenvl/cli/chat.lua",
    ["qwenvl.cli.common"] = "lua/qwenvl/cli/common.lua",
    ["qwenvl.cli.job"] = "lua/qwenvl/cli/job.lua",
    ["qwenvl.cli.ocr"] = "lua/qwenvl/cli/ocr.lua",
    ["qwenvl.cli.probe"] = "lua/qwenvl/cli/probe.lua",
    ["qwenvl.cli.smoke"] = "lua/qwenvl/cli/smoke.lua",
    ["qwenvl.cli.validate"] = "lua/qwenvl/cli/validate.lua",
    ["qwenvl.evidence"] = "lua/qwenvl/evidence.lua",
    ["qwenvl.grounding"] = "lua/qwenvl/grounding.lua",
    ["qwenvl.health"] = "lua/qwenvl/health.lua",
    ["qwenvl.job"] = "lua/qwenvl/job.lua",
    ["qwenvl.ngx"] = "lua/qwenvl/ngx.lua",
    ["qwenvl.nvim"] = "lua/qwenvl/nvim.lua",
    ["qwenvl.nvim.driver"] = "lua/qwenvl/nvim/driver.lua",
    ["qwenvl.nvim.loader"] = "lua/qwenvl/nvim/loader.lua",
    ["qwenvl.nvim.view"] = "lua/qwenvl/nvim/view.lua",
    ["qwenvl.ocr"] = "lua/qwenvl/ocr.lua",
    ["qwenvl.schema"] = "lua/qwenvl/schema.lua",
    ["qwenvl.session"] = "lua/qwenvl/session.lua",
    ["qwenvl.sys"] = "lua/qwenvl/sys.lua",
    ["qwenvl.workflow"] = "lua/qwenvl/workflow.lua",
  },
  install = {
    bin = { qwenvl = "bin/qwenvl" },
  },
}

test = {
  type = "busted",
}
