/*
** timed: run one command and report its wall time and peak RSS, for the
** per-process rows of bench/wan_bench.lua and bench/resize_bench.lua.
** fork, exec, wait4: the peak is the child's own (a Lua or Python
** parent's pages would count as the child's until exec replaced them if
** the parent measured itself).
**
**   timed PROGRAM [ARGS...]
**
** The child's stdout and stderr pass through; then one line on stdout:
**   TIMED <wall seconds> <peak RSS KiB> <exit status, 128+signal if killed>
*/
#define _DEFAULT_SOURCE
#include <stdio.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
  struct timespec a, b;
  struct rusage ru;
  int st = 0;
  pid_t p;
  if (argc < 2) {
    fprintf(stderr, "usage: timed PROGRAM [ARGS...]\n");
    return 2;
  }
  fflush(stdout);
  clock_gettime(CLOCK_MONOTONIC, &a);
  p = fork();
  if (p < 0) { perror("fork"); return 2; }
  if (p == 0) {
    execvp(argv[1], argv + 1);
    perror(argv[1]);
    _exit(127);
  }
  if (wait4(p, &st, 0, &ru) < 0) { perror("wait4"); return 2; }
  clock_gettime(CLOCK_MONOTONIC, &b);
  printf("TIMED %.6f %ld %d\n",
         (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9, ru.ru_maxrss,
         WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0));
  return 0;
}
