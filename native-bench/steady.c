/*
 * steady — N clients loop poll → answer → re-poll with the answer's cursor on one Holdfast
 * channel while a publisher (pub -R) sends at a fixed rate. Checks that every client saw every
 * seq exactly once and measures publish→delivery latency from the "t" (µs) in each message.
 *
 * usage: steady -p PORT -n N -c CHANNEL -E EXPECTED [-H 127.0.0.1] [-s SOURCES] [-r RATE]
 *               [-w WAIT_S]
 *
 *   -E EXPECTED  messages the publisher will send (seq 1..EXPECTED); a client is complete
 *                when it has seen them all
 *   -w WAIT_S    give up this long after all clients parked (default 120)
 *
 * Prints "parked <n>" on stderr once every client's first poll is written, then one JSON line:
 *   {"clients":…,"complete":…,"deliveries":…,"missing":…,"duplicates":…,"gaps":…,"errors":…,
 *    "first_us":…,"last_us":…,"p50_us":…,"p99_us":…,"max_us":…}
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common.h"


#define MAX_SAMPLES 4000000

typedef struct {
  int fd;
  int connected;
  long last_seq;
  char cursor[4096];
  char *in;
  size_t in_len, in_cap;
} client_t;

static const char *channel;
static char host_hdr[] = "bench";
static long expected;
static long deliveries, missing, duplicates, gaps, errors;
static int64_t *samples;
static long nsamples;
static int64_t first_us, last_us;

static int send_poll(client_t *c) {
  char req[8192];
  int len = snprintf(req, sizeof req, "GET /v1/poll?ch=%s&cursor=%s&timeout=60000&max=1000 HTTP/1.1\r\nHost: %s\r\n\r\n", channel, c->cursor[0] ? c->cursor : "earliest", host_hdr);
  return write(c->fd, req, (size_t)len) == len ? 0 : -1;
}

/* Handles one complete answer body: seqs, latencies, cursor. */
static void on_answer(client_t *c, const char *body, size_t len) {
  int64_t t_now = now_us();
  const char *p = body, *end = body + len;
  if (memmem(body, len, "\"gap\":true", 10)) gaps++;
  while ((p = memmem(p, (size_t)(end - p), "\"seq\":", 6)) != NULL) {
    p += 6;
    long seq = strtol(p, NULL, 10);
    if (seq <= c->last_seq) duplicates++;
    else {
      missing += seq - c->last_seq - 1;
      c->last_seq = seq;
      deliveries++;
      const char *t = memmem(p, (size_t)(end - p), "\"t\":", 4);
      if (t) {
        int64_t sent = strtoll(t + 4, NULL, 10);
        if (nsamples < MAX_SAMPLES) samples[nsamples++] = t_now - sent;
      }
      if (!first_us) first_us = t_now;
      last_us = t_now;
    }
  }
  const char *cur = memmem(body, len, "\"cursor\":\"", 10);
  if (cur) {
    cur += 10;
    const char *q = memchr(cur, '"', (size_t)(end - cur));
    size_t n = q ? (size_t)(q - cur) : 0;
    if (n < sizeof c->cursor) { memcpy(c->cursor, cur, n); c->cursor[n] = 0; }
  }
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1";
  int port = 0, n = 0, sources = 16, rate = 10000, wait_s = 120, opt;
  channel = "steady";
  while ((opt = getopt(argc, argv, "H:p:n:c:E:s:r:w:")) != -1) {
    switch (opt) {
      case 'H': host = optarg; break;
      case 'p': port = atoi(optarg); break;
      case 'n': n = atoi(optarg); break;
      case 'c': channel = optarg; break;
      case 'E': expected = atol(optarg); break;
      case 's': sources = atoi(optarg); break;
      case 'r': rate = atoi(optarg); break;
      case 'w': wait_s = atoi(optarg); break;
      default:
        fprintf(stderr, "usage: steady -p PORT -n N -c CHANNEL -E EXPECTED [-s SOURCES] [-r RATE] [-w WAIT_S]\n");
        return 2;
    }
  }
  if (port <= 0 || n <= 0 || expected <= 0) { fprintf(stderr, "steady: -p, -n and -E are required\n"); return 2; }
  samples = malloc(sizeof(int64_t) * MAX_SAMPLES);
  client_t *cl = calloc((size_t)n, sizeof(client_t));
  int ep = epoll_create1(0);
  struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, host, &dst.sin_addr);

  int opened = 0, started = 0, complete = 0;
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  int64_t parked_at = 0;
  struct epoll_event evs[1024];
  for (;;) {
    struct timespec tn;
    clock_gettime(CLOCK_MONOTONIC, &tn);
    int64_t el = (tn.tv_sec - t0.tv_sec) * 1000000 + (tn.tv_nsec - t0.tv_nsec) / 1000;
    while (opened < n && opened < el * rate / 1000000 + 1) {
      client_t *c = &cl[opened];
      c->fd = connect_from_loopback(&dst, opened, sources);
      if (c->fd < 0) { errors++; opened++; continue; }
      c->in_cap = 1 << 16;
      c->in = malloc(c->in_cap);
      struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.u32 = (uint32_t)opened};
      epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
      opened++;
    }
    if (!parked_at && started + errors >= n) {
      parked_at = el;
      fprintf(stderr, "parked %d\n", started);
    }
    if (parked_at && (complete + errors >= n || el - parked_at > (int64_t)wait_s * 1000000)) break;

    int k = epoll_wait(ep, evs, 1024, 20);
    for (int i = 0; i < k; i++) {
      client_t *c = &cl[evs[i].data.u32];
      if (!c->connected && (evs[i].events & EPOLLOUT)) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err || send_poll(c) < 0) { errors++; epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL); close(c->fd); continue; }
        c->connected = 1;
        started++;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = evs[i].data.u32};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        continue;
      }
      if (c->in_cap - c->in_len < 16384) { c->in_cap *= 2; c->in = realloc(c->in, c->in_cap); }
      ssize_t r = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len - 1);
      if (r <= 0) {
        if (r < 0 && errno == EAGAIN) continue;
        errors++;
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        continue;
      }
      c->in_len += (size_t)r;
      c->in[c->in_len] = 0;
      char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
      if (!end) continue;
      size_t head = (size_t)(end - c->in) + 4;
      char *cl_hdr = strcasestr(c->in, "\r\ncontent-length:");
      long clen = cl_hdr && cl_hdr < end ? strtol(cl_hdr + 17, NULL, 10) : 0;
      if (c->in_len < head + (size_t)clen) continue;
      if (atoi(c->in + 9) != 200) errors++;
      else on_answer(c, c->in + head, (size_t)clen);
      memmove(c->in, c->in + head + clen, c->in_len - head - (size_t)clen);
      c->in_len -= head + (size_t)clen;
      if (c->last_seq >= expected) { complete++; epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL); close(c->fd); continue; }
      if (send_poll(c) < 0) errors++;
    }
  }
  /* Clients that stopped short: what they never got counts as missing. */
  for (int i = 0; i < n; i++) if (cl[i].connected && cl[i].last_seq < expected) missing += expected - cl[i].last_seq;
  qsort(samples, (size_t)nsamples, sizeof(int64_t), cmp64);
  printf("{\"clients\":%d,\"complete\":%d,\"deliveries\":%ld,\"missing\":%ld,\"duplicates\":%ld,\"gaps\":%ld,\"errors\":%ld,"
         "\"first_us\":%lld,\"last_us\":%lld,\"p50_us\":%lld,\"p99_us\":%lld,\"max_us\":%lld}\n",
         n, complete, deliveries, missing, duplicates, gaps, errors, (long long)first_us, (long long)last_us,
         (long long)(nsamples ? samples[nsamples / 2] : 0), (long long)(nsamples ? samples[(nsamples * 99) / 100] : 0),
         (long long)(nsamples ? samples[nsamples - 1] : 0));
  return 0;
}
