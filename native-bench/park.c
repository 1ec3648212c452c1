/*
 * park — parks N long-polls on an HTTP server and reports when their answers arrive.
 *
 * usage: park -p PORT -n N [-H 127.0.0.1] [-c CHANNEL | -C PREFIX] [-s SOURCES] [-r RATE]
 *             [-T TIMEOUT_MS] [-w WAIT_S] [-q QUERY_EXTRA]
 *
 *   -c CHANNEL   every poll follows CHANNEL (fan-out)           (default "bench")
 *   -C PREFIX    poll i follows PREFIX<i + OFFSET> (inbox)      (-o OFFSET, default 0)
 *   -s SOURCES   spread client sockets over 127.0.0.2 … 127.0.0.(SOURCES+1), binding with
 *                IP_BIND_ADDRESS_NO_PORT, to stay clear of ~28K ephemeral ports per address
 *   -r RATE      connects per second (paced: the listen backlog is 4096)   (default 10000)
 *   -w WAIT_S    after all are parked, wait up to WAIT_S for answers        (default 10)
 *   -S           use the seed API: GET /poll?clientId=<name> instead of /v1/poll
 *   -u FORMAT    request path printf format with one %s (channel) or %s%d (prefix, index), e.g.
 *                "/sub/%s" for Nchan; overrides -S and the /v1/poll default
 *   -O FILE      write "<index> <answer_us>" per answered poll (for per-message latency)
 *   -x           after printing the summary, keep the sockets open until stdin closes (so a
 *                measurement of the server can end before it sees N connections close)
 *   -h HEADER    an extra request header line, e.g. "Accept-Encoding: gzip"
 *   -F           an answer counts when all of it has arrived (its Content-Length), not its
 *                first byte; the summary adds "bytes" (every byte read, headers included)
 *   -G           connect everything first, then write every request at once (a burst: for
 *                polls answered at once, e.g. a catch-up); the summary adds "sent_us"
 *
 * Prints "parked <n>" on stderr once every request is written (orchestrators wait for it),
 * then, when all answers are in or WAIT_S passed, one JSON line on stdout:
 *   {"requested":N,"connected":…,"parked":…,"early":…,"answered":…,"errors":…,
 *    "first_us":…,"p50_us":…,"p99_us":…,"last_us":…}
 * with answer times in microseconds of CLOCK_REALTIME, for comparison with a publish time.
 * An answer counts when its first byte arrives; "early" counts answers before all were parked.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common.h"


enum { S_CONNECTING, S_CONNECTED, S_SENT, S_ANSWERED, S_FAILED };

typedef struct {
  int fd;
  int state;
  int64_t answered_us;
  /* -F: bytes read so far, and the answer's total length once its head has arrived (0: not yet). */
  long got, total;
  char head[512];
  int head_len;
} conn_t;

/* What writing a request needs (filled in by main). */
static struct {
  conn_t *conns;
  int ep, offset, seed, timeout_ms;
  const char *path_fmt, *prefix, *channel, *extra;
  int *errors, *sent;
} W;

/* Writes poll idx's request; the connection fails if the write does. */
static void write_request(uint32_t idx) {
  conn_t *c = &W.conns[idx];
  char req[1024], path[512];
  int len2;
  if (W.path_fmt) {
    char name[256];
    if (W.prefix) snprintf(name, sizeof name, "%s%d", W.prefix, (int)idx + W.offset);
    else snprintf(name, sizeof name, "%s", W.channel);
    snprintf(path, sizeof path, W.path_fmt, name);
    len2 = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: bench\r\n%s\r\n", path, W.extra);
  } else if (W.seed)
    len2 = snprintf(req, sizeof req, "GET /poll?clientId=%s%d&timeout=%d HTTP/1.1\r\nHost: bench\r\n%s\r\n", W.prefix ? W.prefix : W.channel, W.prefix ? (int)idx + W.offset : 0, W.timeout_ms, W.extra);
  else if (W.prefix)
    len2 = snprintf(req, sizeof req, "GET /v1/poll?ch=%s%d&timeout=%d HTTP/1.1\r\nHost: bench\r\n%s\r\n", W.prefix, (int)idx + W.offset, W.timeout_ms, W.extra);
  else
    len2 = snprintf(req, sizeof req, "GET /v1/poll?ch=%s&timeout=%d HTTP/1.1\r\nHost: bench\r\n%s\r\n", W.channel, W.timeout_ms, W.extra);
  if (write(c->fd, req, (size_t)len2) != len2) { c->state = S_FAILED; (*W.errors)++; epoll_ctl(W.ep, EPOLL_CTL_DEL, c->fd, NULL); close(c->fd); return; }
  c->state = S_SENT;
  (*W.sent)++;
  struct epoll_event ev = {.events = EPOLLIN, .data.u32 = idx};
  epoll_ctl(W.ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void usage(void) {
  fprintf(stderr, "usage: park -p PORT -n N [-H host] [-c CHANNEL | -C PREFIX [-o OFFSET]] [-s SOURCES] [-r RATE] [-T TIMEOUT_MS] [-w WAIT_S] [-S] [-u PATH_FMT] [-O FILE] [-x] [-h HEADER] [-F] [-G]\n");
  exit(2);
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1", *channel = "bench", *prefix = NULL;
  int port = 0, n = 0, sources = 8, rate = 10000, timeout_ms = 120000, wait_s = 10, offset = 0, seed = 0, hold = 0, full = 0, gate = 0;
  const char *extra = "";
  const char *path_fmt = NULL, *dump = NULL;
  int opt;
  while ((opt = getopt(argc, argv, "H:p:n:c:C:o:s:r:T:w:Su:O:xh:FG")) != -1) {
    switch (opt) {
      case 'H': host = optarg; break;
      case 'p': port = atoi(optarg); break;
      case 'n': n = atoi(optarg); break;
      case 'c': channel = optarg; break;
      case 'C': prefix = optarg; break;
      case 'o': offset = atoi(optarg); break;
      case 's': sources = atoi(optarg); break;
      case 'r': rate = atoi(optarg); break;
      case 'T': timeout_ms = atoi(optarg); break;
      case 'w': wait_s = atoi(optarg); break;
      case 'S': seed = 1; break;
      case 'u': path_fmt = optarg; break;
      case 'O': dump = optarg; break;
      case 'x': hold = 1; break;
      case 'h': {
        static char headers[1024];
        size_t used = strlen(headers);
        snprintf(headers + used, sizeof headers - used, "%s\r\n", optarg);
        extra = headers;
        break;
      }
      case 'F': full = 1; break;
      case 'G': gate = 1; break;
      default: usage();
    }
  }
  if (port <= 0 || n <= 0 || sources < 1 || sources > 250 || rate <= 0) usage();

  conn_t *conns = calloc((size_t)n, sizeof(conn_t));
  int ep = epoll_create1(0);
  struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, host, &dst.sin_addr);

  int connected = 0, sent = 0, answered = 0, early = 0, errors = 0, opened = 0;
  long long bytes = 0;
  int64_t sent_us = 0;
  W.conns = conns;
  W.ep = ep;
  W.offset = offset;
  W.seed = seed;
  W.timeout_ms = timeout_ms;
  W.path_fmt = path_fmt;
  W.prefix = prefix;
  W.channel = channel;
  W.extra = extra;
  W.errors = &errors;
  W.sent = &sent;
  int64_t start = mono_us();
  int64_t parked_at = 0;
  struct epoll_event evs[1024];
  char buf[65536];

  for (;;) {
    /* Pace connects: open as many as the rate allows by now. */
    int64_t due = (mono_us() - start) * rate / 1000000 + 1;
    while (opened < n && opened < due) {
      conn_t *c = &conns[opened];
      c->fd = connect_from_loopback(&dst, opened, sources);
      if (c->fd < 0) { c->state = S_FAILED; errors++; opened++; continue; }
      struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.u32 = (uint32_t)opened};
      epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
      c->state = S_CONNECTING;
      opened++;
    }

    /* -G: every connection is up (or failed): write all requests at once. */
    if (gate && !sent_us && opened == n && connected + errors >= n) {
      sent_us = now_us();
      for (int j = 0; j < n; j++) if (conns[j].state == S_CONNECTED) write_request((uint32_t)j);
    }
    /* >=: a poll that was sent and then failed counts in both. */
    if (!parked_at && sent + errors >= n) {
      parked_at = mono_us();
      fprintf(stderr, "parked %d\n", sent);
    }
    if (parked_at && (answered + errors >= n || mono_us() - parked_at > (int64_t)wait_s * 1000000)) break;
    /* Connects that never complete (a server out of connections) must not stall the run. */
    if (!parked_at && opened == n && mono_us() - start > (int64_t)(n / rate + 60) * 1000000) {
      for (int i = 0; i < n; i++) if (conns[i].state == S_CONNECTING) { conns[i].state = S_FAILED; errors++; }
    }

    int k = epoll_wait(ep, evs, 1024, opened < n ? 1 : 50);
    for (int i = 0; i < k; i++) {
      uint32_t idx = evs[i].data.u32;
      conn_t *c = &conns[idx];
      if (c->state == S_CONNECTING && (evs[i].events & EPOLLOUT)) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) { c->state = S_FAILED; errors++; epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL); close(c->fd); continue; }
        connected++;
        if (gate) {
          c->state = S_CONNECTED;
          struct epoll_event ev = {.events = EPOLLIN, .data.u32 = idx};
          epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
          continue;
        }
        write_request(idx);
      } else if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        ssize_t r = read(c->fd, buf, sizeof buf);
        if (c->state == S_SENT && r > 0 && full) {
          bytes += r;
          c->got += r;
          if (c->total == 0 && c->head_len < (int)sizeof c->head - 1) {
            int take = (int)r < (int)sizeof c->head - 1 - c->head_len ? (int)r : (int)sizeof c->head - 1 - c->head_len;
            memcpy(c->head + c->head_len, buf, (size_t)take);
            c->head_len += take;
            c->head[c->head_len] = 0;
            char *end = strstr(c->head, "\r\n\r\n");
            char *cl = strcasestr(c->head, "\r\ncontent-length:");
            if (end && cl && cl < end) c->total = (long)(end - c->head) + 4 + strtol(cl + 17, NULL, 10);
          }
          if (c->total > 0 && c->got >= c->total) {
            c->state = S_ANSWERED;
            c->answered_us = now_us();
            answered++;
            if (!parked_at) early++;
          }
        } else if (c->state == S_SENT && r > 0) {
          c->state = S_ANSWERED;
          c->answered_us = now_us();
          answered++;
          if (!parked_at) early++;
        } else if (r == 0 || (r < 0 && errno != EAGAIN)) {
          if (c->state != S_ANSWERED) { c->state = S_FAILED; errors++; }
          epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
          close(c->fd);
          c->fd = -1;
        }
      }
    }
  }

  if (dump) {
    FILE *f = fopen(dump, "w");
    if (f) {
      for (int i = 0; i < n; i++) if (conns[i].state == S_ANSWERED) fprintf(f, "%d %lld\n", i + offset, (long long)conns[i].answered_us);
      fclose(f);
    }
  }
  int64_t *times = malloc(sizeof(int64_t) * (size_t)(answered + 1));
  int m = 0;
  for (int i = 0; i < n; i++) if (conns[i].state == S_ANSWERED) times[m++] = conns[i].answered_us;
  qsort(times, (size_t)m, sizeof(int64_t), cmp64);
  printf("{\"requested\":%d,\"connected\":%d,\"parked\":%d,\"early\":%d,\"answered\":%d,\"errors\":%d,\"bytes\":%lld,\"sent_us\":%lld,"
         "\"first_us\":%lld,\"p50_us\":%lld,\"p99_us\":%lld,\"last_us\":%lld}\n",
         n, connected, sent, early, answered, errors, bytes, (long long)sent_us,
         (long long)(m ? times[0] : 0), (long long)(m ? times[m / 2] : 0),
         (long long)(m ? times[(m * 99) / 100 < m ? (m * 99) / 100 : m - 1] : 0), (long long)(m ? times[m - 1] : 0));
  fflush(stdout);
  if (hold) {
    char line[64];
    while (fgets(line, sizeof line, stdin)) {}
  }
  for (int i = 0; i < n; i++) if (conns[i].fd > 0) close(conns[i].fd);
  return 0;
}
