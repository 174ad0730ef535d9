/* qv_sys: hashes, fsync, locks (see qv_sys.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>
#include <openssl/evp.h>

#include "qv_sys.h"
#include "qv_error.h"

#define QV_LOCK_MT "qwenvl.lock"

static void to_hex(const unsigned char *md, unsigned len, char out[65]) {
  static const char hex[] = "0123456789abcdef";
  unsigned i;
  for (i = 0; i < len && i < 32; i++) {
    out[2 * i] = hex[md[i] >> 4];
    out[2 * i + 1] = hex[md[i] & 15];
  }
  out[64] = '\0';
}

void qv_sys_sha256_hex(const void *p, size_t n, char out[65]) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(p, n, md, &len, EVP_sha256(), NULL);
  to_hex(md, len, out);
}

/* qwenvl.sha256(s) -> hex */
static int m_sha256(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  char hex[65];
  qv_sys_sha256_hex(s, n, hex);
  lua_pushstring(L, hex);
  return 1;
}

/* qwenvl.sha256_file(path) -> hex, or nil, err: read in pieces. */
static int m_sha256_file(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  unsigned char md[EVP_MAX_MD_SIZE], buf[65536];
  unsigned int len = 0;
  char hex[65];
  ssize_t r;
  EVP_MD_CTX *ctx;
  int fd;
  do fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) return qv_return(L, qv_fail(L, "invalid_request", "cannot read %s: %s",
                                          path, strerror(errno)), 0);
  ctx = EVP_MD_CTX_new();
  if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
    EVP_MD_CTX_free(ctx);
    close(fd);
    return qv_return(L, qv_fail(L, "invalid_request", "out of memory"), 0);
  }
  for (;;) {
    r = read(fd, buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    EVP_DigestUpdate(ctx, buf, (size_t)r);
  }
  if (r < 0) {
    int e = errno;
    EVP_MD_CTX_free(ctx);
    close(fd);
    return qv_return(L, qv_fail(L, "invalid_request", "cannot read %s: %s", path,
                                strerror(e)), 0);
  }
  EVP_DigestFinal_ex(ctx, md, &len);
  EVP_MD_CTX_free(ctx);
  close(fd);
  to_hex(md, len, hex);
  lua_pushstring(L, hex);
  return 1;
}

/* qwenvl.fs.fsync(file or path) -> true, or nil, err. A Lua file handle
** is flushed first (its FILE * is the first member of its userdata on
** every Lua version: luaL_Stream, and 5.1/LuaJIT's own). */
static int fs_fsync(lua_State *L) {
  int fd, owned = 0, r;
  if (lua_type(L, 1) == LUA_TSTRING) {
    do fd = open(lua_tostring(L, 1), O_RDONLY | O_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) return qv_return(L, qv_fail(L, "io", "cannot open %s: %s",
                                            lua_tostring(L, 1), strerror(errno)), 0);
    owned = 1;
  } else {
    FILE **f = luaL_checkudata(L, 1, "FILE*");
    if (f == NULL || *f == NULL) return luaL_argerror(L, 1, "a closed file");
    if (fflush(*f) != 0)
      return qv_return(L, qv_fail(L, "io", "cannot flush: %s", strerror(errno)), 0);
    fd = fileno(*f);
  }
  do r = fsync(fd); while (r != 0 && errno == EINTR);
  if (owned) close(fd);
  if (r != 0) return qv_return(L, qv_fail(L, "io", "fsync: %s", strerror(errno)), 0);
  lua_pushboolean(L, 1);
  return 1;
}

typedef struct qv_lock { int fd; } qv_lock;

static int lock_release(lua_State *L) {
  qv_lock *k = luaL_checkudata(L, 1, QV_LOCK_MT);
  if (k->fd >= 0) {
    flock(k->fd, LOCK_UN);
    close(k->fd);
    k->fd = -1;
  }
  return 0;
}

/* The pid written in the lock file, or 0. */
static long holder_of(int fd) {
  char buf[32];
  ssize_t r = pread(fd, buf, sizeof buf - 1, 0);
  if (r <= 0) return 0;
  buf[r] = '\0';
  return strtol(buf, NULL, 10);
}

/* qwenvl.fs.lock(path) -> a lock (lock:release(), also on __gc; the
** kernel releases it when the process ends, kill -9 included), or nil,
** holder_pid (nil when unknown), err (nil when it is simply held). */
static int fs_lock(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  qv_lock *k = qv_newudata(L, sizeof *k);
  char pid[32];
  int fd, n;
  k->fd = -1;
  luaL_getmetatable(L, QV_LOCK_MT);
  lua_setmetatable(L, -2);
  do fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    lua_pushnil(L);
    lua_pushnil(L);
    lua_pushfstring(L, "cannot open lock file %s: %s", path, strerror(errno));
    return 3;
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    long holder = holder_of(fd);
    int e = errno;
    close(fd);
    lua_pushnil(L);
    if (holder > 0) lua_pushinteger(L, (lua_Integer)holder); else lua_pushnil(L);
    if (e == EWOULDBLOCK) lua_pushnil(L);
    else lua_pushfstring(L, "cannot lock %s: %s", path, strerror(e));
    return 3;
  }
  k->fd = fd;
  n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
  if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
    /* the lock holds; only the message naming its owner would suffer */
  }
  return 1;
}

void qv_sys_register(lua_State *L, int idx) {
  static const luaL_Reg fs[] = {
    { "fsync", fs_fsync }, { "lock", fs_lock }, { NULL, NULL }
  };
  idx = qv_absindex(L, idx);
  if (luaL_newmetatable(L, QV_LOCK_MT)) {
    lua_pushcfunction(L, lock_release);
    lua_setfield(L, -2, "__gc");
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, lock_release);
    lua_setfield(L, -2, "release");
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, m_sha256);
  lua_setfield(L, idx, "sha256");
  lua_pushcfunction(L, m_sha256_file);
  lua_setfield(L, idx, "sha256_file");
  lua_createtable(L, 0, 2);
  luaL_setfuncs(L, fs, 0);
  lua_setfield(L, idx, "fs");
}
