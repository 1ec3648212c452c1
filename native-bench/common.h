/* Helpers shared by the load tools (each tool stays one .c file). */
#ifndef HOLDFAST_BENCH_COMMON_H
#define HOLDFAST_BENCH_COMMON_H
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define CHANNEL_NAME_MAX 201

/*
 * K channel names from `spec`: a printf format with one %d (0 … K-1), e.g. "steady%d", or
 * "@FILE" with one name per line (names chosen to collide, e.g. in one Redis Cluster slot).
 * Returns a table of K names, or NULL (with a message on stderr).
 */
static inline char (*channel_names(const char *spec, int k))[CHANNEL_NAME_MAX] {
  char (*names)[CHANNEL_NAME_MAX] = calloc((size_t)k, CHANNEL_NAME_MAX);
  if (spec[0] != '@') {
    if (!strstr(spec, "%d")) { fprintf(stderr, "channel format %s has no %%d\n", spec); return NULL; }
    for (int i = 0; i < k; i++) snprintf(names[i], CHANNEL_NAME_MAX, spec, i);
    return names;
  }
  FILE *f = fopen(spec + 1, "r");
  if (!f) { perror(spec + 1); return NULL; }
  int i = 0;
  while (i < k && fgets(names[i], CHANNEL_NAME_MAX, f)) {
    names[i][strcspn(names[i], "\r\n")] = 0;
    if (names[i][0]) i++;
  }
  fclose(f);
  if (i < k) { fprintf(stderr, "%s holds %d channel names, %d wanted\n", spec + 1, i, k); return NULL; }
  return names;
}

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

/*
 * A non-blocking connect to `dst` from 127.0.0.(2 + index % sources): spreading client sockets
 * over several source addresses (IP_BIND_ADDRESS_NO_PORT picks the port at connect time) stays
 * clear of the ~28K ephemeral ports one address has. Returns the fd, or -1.
 */
static inline int connect_from_loopback(const struct sockaddr_in *dst, int index, int sources) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, SOL_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct sockaddr_in src = {.sin_family = AF_INET};
  src.sin_addr.s_addr = htonl((127u << 24) | (uint32_t)(2 + index % sources));
  bind(fd, (const struct sockaddr *)&src, sizeof src);
  if (connect(fd, (const struct sockaddr *)dst, sizeof *dst) < 0 && errno != EINPROGRESS) {
    close(fd);
    return -1;
  }
  return fd;
}

#endif
