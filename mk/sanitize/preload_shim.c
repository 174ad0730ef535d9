/*
** LD_PRELOADed next to libasan by `make check-asan` (test use only).
**
** 1. A dlclose that does nothing. Lua unloads C modules at lua_close;
**    LeakSanitizer runs later, at exit, and can only symbolize frames of
**    libraries that are still mapped. Keeping the module mapped turns
**    "<unknown module>" into file:line (google/sanitizers#89).
** 2. LD_PRELOAD is dropped from the environment once this process is
**    loaded, so the specs' children (the Python stand-in, curl, sh, the
**    CLI under test against the plain build) run without the ASan
**    runtime: with it, curl deadlocked at exit and LSan reported
**    CPython's own allocations.
*/
#include <stdlib.h>

int dlclose(void *handle);
int dlclose(void *handle) { (void)handle; return 0; }

__attribute__((constructor)) static void drop_preload(void) {
  unsetenv("LD_PRELOAD");
}
