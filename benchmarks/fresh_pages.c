/* What touching fresh memory costs on this machine, against touching memory already mapped: a
   fixed cost of every call that allocates (benchmarks/README.md, "Fresh memory"). Best of 20
   runs per size, one thread.

   gcc -O2 benchmarks/fresh_pages.c -o /tmp/fresh_pages && /tmp/fresh_pages
*/
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(void) {
  const size_t mib[] = {1, 4, 16};
  for (int i = 0; i < 3; ++i) {
    const size_t n = mib[i] << 20;
    double fresh = 1e9, mapped = 1e9;
    for (int r = 0; r < 20; ++r) {
      char* p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) return 1;
      double t = now();
      memset(p, 1, n);  // every page faults in
      double d = now() - t;
      if (d < fresh) fresh = d;
      t = now();
      memset(p, 2, n);  // the same pages, mapped
      d = now() - t;
      if (d < mapped) mapped = d;
      munmap(p, n);
    }
    printf("%2zu MiB: fresh %8.1f us, mapped %7.1f us\n", mib[i], fresh * 1e6, mapped * 1e6);
  }
  return 0;
}
