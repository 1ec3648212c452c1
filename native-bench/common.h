/* Helpers shared by the load tools (each tool stays one .c file). */
#ifndef HOLDFAST_BENCH_COMMON_H
#define HOLDFAST_BENCH_COMMON_H
#include <stdint.h>
#include <time.h>

/* Microseconds of CLOCK_REALTIME: comparable across processes (publish vs answer times). */
static inline int64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Microseconds of CLOCK_MONOTONIC: for pacing and deadlines. */
static inline int64_t mono_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static inline int cmp64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

#endif
