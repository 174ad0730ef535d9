/*
** forktest: fork() for specs (spec/resize_spec.lua), where no luaposix is
** installed. Built by the spec itself into a temporary directory, for
** the interpreter running it (Lua 5.1 API: works on 5.1-5.4 and LuaJIT).
**   forktest.fork()               -> pid (0 in the child)
**   forktest.wait(pid, timeout_s) -> exit code, or nil, "timeout" (the
**                                    child is then killed with SIGKILL)
**   forktest.exit(code)           -> _exit(code): the child leaves without
**                                    running the parent's atexit handlers
*/
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <lua.h>
#include <lauxlib.h>

int luaopen_forktest(lua_State *L);

static int l_fork(lua_State *L) {
  pid_t p = fork();
  if (p < 0) return luaL_error(L, "fork failed");
  lua_pushinteger(L, (lua_Integer)p);
  return 1;
}

static int l_wait(lua_State *L) {
  pid_t pid = (pid_t)luaL_checkinteger(L, 1);
  double left = luaL_checknumber(L, 2);
  int st = 0;
  struct timespec ts = { 0, 10 * 1000 * 1000 };
  for (;;) {
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) return luaL_error(L, "waitpid failed");
    if (left <= 0) {
      kill(pid, SIGKILL);
      waitpid(pid, &st, 0);
      lua_pushnil(L);
      lua_pushliteral(L, "timeout");
      return 2;
    }
    nanosleep(&ts, NULL);
    left -= 0.01;
  }
  lua_pushinteger(L, WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
  return 1;
}

static int l_exit(lua_State *L) {
  _exit((int)luaL_optinteger(L, 1, 0));
  return 0;
}

int luaopen_forktest(lua_State *L) {
  lua_newtable(L);
  lua_pushcfunction(L, l_fork); lua_setfield(L, -2, "fork");
  lua_pushcfunction(L, l_wait); lua_setfield(L, -2, "wait");
  lua_pushcfunction(L, l_exit); lua_setfield(L, -2, "exit");
  return 1;
}
