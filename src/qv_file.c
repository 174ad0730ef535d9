/* qv_file: read whole files safely (see qv_file.h). */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qv_file.h"


#if defined(__APPLE__)
#define MTIME(s) ((s)->st_mtimespec)
#else
#define MTIME(s) ((s)->st_mtim)
#endif

/* Same size and modification time: the file did not change under us. */
static int same_stat(const struct stat *a, const struct stat *b) {
  return a->st_size == b->st_size && MTIME(a).tv_sec == MTIME(b).tv_sec &&
         MTIME(a).tv_nsec == MTIME(b).tv_nsec;
}

/* read(2) that retries on EINTR. */
static ssize_t read_some(int fd, void *p, size_t n) {
  ssize_t r;
  do r = read(fd, p, n); while (r < 0 && errno == EINTR);
  return r;
}

int qv_file_read(const char *path, size_t max, qv_buf *out,
                       const char **why) {
  struct stat st, st2;
  size_t size, got = 0, base = out->len;
  const char *dummy;
  char extra;
  ssize_t r;
  int fd;
  if (!why) why = &dummy;
  /* O_NONBLOCK: opening a FIFO must not wait for a writer */
  do fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) { *why = strerror(errno); return -1; }
  if (fstat(fd, &st) != 0) { *why = strerror(errno); goto fail; }
  if (!S_ISREG(st.st_mode)) {
    *why = "not a regular file (directory, FIFO or device)";
    goto fail;
  }
  if (st.st_size <= 0) { *why = "file is empty"; goto fail; }
  if ((unsigned long long)st.st_size > (unsigned long long)max) {
    *why = "file is larger than the limit";
    goto fail;
  }
  size = (size_t)st.st_size;
  if (!qv_buf_reserve(out, size)) { *why = "out of memory"; goto fail; }
  while (got < size) {
    r = read_some(fd, out->data + base + got, size - got);
    if (r < 0) { *why = strerror(errno); goto fail; }
    if (r == 0) goto changed;                  /* shrank */
    got += (size_t)r;
  }
  if (fstat(fd, &st2) != 0) { *why = strerror(errno); goto fail; }
  if (!same_stat(&st, &st2)) goto changed;
  r = read_some(fd, &extra, 1);
  if (r < 0) { *why = strerror(errno); goto fail; }
  if (r > 0) goto changed;                     /* grew */
  close(fd);
  out->len = base + size;
  out->data[out->len] = '\0';
  return 0;
changed:
  *why = "file changed while being read";
fail:
  close(fd);
  if (out->data) out->data[base] = '\0';
  return -1;
}
