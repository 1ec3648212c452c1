/*
 * pub — publishes N messages over a few keep-alive connections with HTTP pipelining.
 *
 * usage: pub -p PORT -n N -u PATH_FMT [-H 127.0.0.1] [-b BODY_FMT] [-t CONTENT_TYPE]
 *            [-c CONNS] [-d DEPTH] [-R RATE] [-O FILE] [-k BEARER]
 *
 *   -u PATH_FMT  request path for message i, printf with one %d, e.g. "/v1/publish/inbox%d",
 *                or no %d for one channel ("/v1/publish/fan")
 *   -b BODY_FMT  body, printf with %d (i) and %lld (send time, µs)   (default {"i":%d,"t":%lld})
 *   -c CONNS     connections (default 4); -d DEPTH requests in flight per connection (default 32)
 *   -R RATE      messages per second in total (default: as fast as the server answers)
 *   -O FILE      write "<i> <send_us>" per message (for per-message latency)
 *
 * Responses are delimited by Content-Length (every server measured sends it). Prints one JSON
 * line: {"sent":…,"ok":…,"failed":…,"start_us":…,"end_us":…}
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

typedef struct {
  int fd;
  int inflight;
  char *in;        /* unparsed response bytes */
  size_t in_len, in_cap;
} conn_t;

/* Consumes complete responses from c->in; returns how many, counting 2xx into *ok. */
static int parse_responses(conn_t *c, int *ok, int *failed) {
  int done = 0;
  size_t off = 0;
  for (;;) {
    char *start = c->in + off;
    size_t avail = c->in_len - off;
    char *end = memmem(start, avail, "\r\n\r\n", 4);
    if (!end) break;
    size_t head = (size_t)(end - start) + 4;
    long clen = 0;
    char *cl = strcasestr(start, "\r\ncontent-length:");
    if (cl && cl < end) clen = strtol(cl + 17, NULL, 10);
    if (avail < head + (size_t)clen) break;
    int status = atoi(start + 9);
    if (status >= 200 && status < 300) (*ok)++; else (*failed)++;
    off += head + (size_t)clen;
    done++;
  }
  memmove(c->in, c->in + off, c->in_len - off);
  c->in_len -= off;
  return done;
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1", *path_fmt = NULL, *body_fmt = "{\"i\":%d,\"t\":%lld}";
  const char *ctype = "application/json", *dump = NULL, *bearer = NULL;
  int port = 0, n = 0, nconns = 4, depth = 32, rate = 0, opt;
  while ((opt = getopt(argc, argv, "H:p:n:u:b:t:c:d:R:O:k:")) != -1) {
    switch (opt) {
      case 'H': host = optarg; break;
      case 'p': port = atoi(optarg); break;
      case 'n': n = atoi(optarg); break;
      case 'u': path_fmt = optarg; break;
      case 'b': body_fmt = optarg; break;
      case 't': ctype = optarg; break;
      case 'c': nconns = atoi(optarg); break;
      case 'd': depth = atoi(optarg); break;
      case 'R': rate = atoi(optarg); break;
      case 'O': dump = optarg; break;
      case 'k': bearer = optarg; break;
      default:
        fprintf(stderr, "usage: pub -p PORT -n N -u PATH_FMT [-b BODY_FMT] [-t TYPE] [-c CONNS] [-d DEPTH] [-R RATE] [-O FILE] [-k BEARER]\n");
        return 2;
    }
  }
  if (port <= 0 || n <= 0 || !path_fmt || nconns < 1 || depth < 1) {
    fprintf(stderr, "pub: -p, -n and -u are required\n");
    return 2;
  }
  int per_channel = strstr(path_fmt, "%d") != NULL;

  struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, host, &dst.sin_addr);
  conn_t *conns = calloc((size_t)nconns, sizeof(conn_t));
  int ep = epoll_create1(0);
  for (int i = 0; i < nconns; i++) {
    conns[i].fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(conns[i].fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(conns[i].fd, (struct sockaddr *)&dst, sizeof dst) < 0) { perror("pub: connect"); return 1; }
    conns[i].in_cap = 1 << 16;
    conns[i].in = malloc(conns[i].in_cap);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
    epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev);
  }

  int64_t *sent_at = calloc((size_t)n, sizeof(int64_t));
  int sent = 0, ok = 0, failed = 0, answered = 0;
  int64_t t0 = mono_us(), start_us = now_us();
  char req[4096], path[512], body[2048], auth[512] = "";
  if (bearer) snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", bearer);
  struct epoll_event evs[64];

  while (answered < n) {
    /* Send on every connection with room, within the rate. */
    int64_t allowed = rate > 0 ? (mono_us() - t0) * rate / 1000000 + 1 : n;
    for (int k = 0; k < nconns && sent < n && sent < allowed; k++) {
      conn_t *c = &conns[k];
      while (c->inflight < depth && sent < n && sent < allowed) {
        int64_t t = now_us();
        if (per_channel) snprintf(path, sizeof path, path_fmt, sent); else snprintf(path, sizeof path, "%s", path_fmt);
        int blen = snprintf(body, sizeof body, body_fmt, sent, (long long)t);
        int len = snprintf(req, sizeof req, "POST %s HTTP/1.1\r\nHost: bench\r\nContent-Type: %s\r\n%sContent-Length: %d\r\n\r\n%s", path, ctype, auth, blen, body);
        if (write(c->fd, req, (size_t)len) != len) { perror("pub: write"); return 1; }
        sent_at[sent++] = t;
        c->inflight++;
      }
    }
    int timeout = (rate > 0 && sent < n) ? 1 : 100;
    int k = epoll_wait(ep, evs, 64, timeout);
    for (int i = 0; i < k; i++) {
      conn_t *c = &conns[evs[i].data.u32];
      if (c->in_cap - c->in_len < 16384) { c->in_cap *= 2; c->in = realloc(c->in, c->in_cap); }
      ssize_t r = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len - 1);
      if (r <= 0) { fprintf(stderr, "pub: connection closed by server after %d answers\n", answered); goto out; }
      c->in_len += (size_t)r;
      c->in[c->in_len] = 0;
      int got = parse_responses(c, &ok, &failed);
      c->inflight -= got;
      answered += got;
    }
  }
out:;
  int64_t end_us = now_us();
  if (dump) {
    FILE *f = fopen(dump, "w");
    if (f) {
      for (int i = 0; i < sent; i++) fprintf(f, "%d %lld\n", i, (long long)sent_at[i]);
      fclose(f);
    }
  }
  printf("{\"sent\":%d,\"ok\":%d,\"failed\":%d,\"start_us\":%lld,\"end_us\":%lld}\n", sent, ok, failed, (long long)start_us, (long long)end_us);
  return failed > 0 || answered < n ? 1 : 0;
}
