/*
 * pub — publishes N messages over a few keep-alive connections with HTTP pipelining.
 *
 * usage: pub -p PORT -n N -u PATH_FMT [-H 127.0.0.1] [-b BODY_FMT] [-t CONTENT_TYPE]
 *            [-c CONNS] [-d DEPTH] [-R RATE] [-O FILE] [-k BEARER]
 *        pub -p PORT -n N -L CH_FMT -K CHANNELS [-B BATCH] [-c CONNS] [-d DEPTH] [-R RATE] …
 *
 *   -u PATH_FMT  request path for message i, printf with one %d, e.g. "/v1/publish/inbox%d",
 *                or no %d for one channel ("/v1/publish/fan")
 *   -b BODY_FMT  body, printf with %d (i) and %lld (send time, µs)   (default {"i":%d,"t":%lld})
 *   -c CONNS     connections (default 4); -d DEPTH requests in flight per connection (default 32)
 *   -R RATE      messages per second in total (default: as fast as the server answers)
 *   -O FILE      write "<i> <send_us>" per message (for per-message latency)
 *
 * Lockstep mode (Holdfast's /v1/publish; for steady's isolation checks):
 *   -L CH_FMT    channel names, printf with one %d (0 … CHANNELS-1), e.g. "steady%d", or
 *                @FILE with one name per line
 *   -K CHANNELS  message i goes to channel i % CHANNELS as its seq i / CHANNELS + 1, so every
 *                channel stands at the same seq after each round; the body names both:
 *                {"c":"<channel>","s":<seq>,"t":<send µs>}. The channels must be fresh.
 *   -B BATCH     messages per request (default 1: POST /v1/publish/<ch>; more: one batch
 *                POST /v1/publish, so a whole round is stored and woken together)
 *   Requests in flight (CONNS × DEPTH) may not exceed CHANNELS / BATCH, so one channel's
 *   messages can never overtake each other. Each answer's seqs are checked against the plan.
 *
 * Responses are delimited by Content-Length (every server measured sends it). Prints one JSON
 * line: {"sent":…,"ok":…,"failed":…,"start_us":…,"end_us":…}; lockstep mode adds
 * "misnumbered" (acknowledged seqs that differ from the plan). "sent" and "ok" count messages.
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

#define MAX_DEPTH 256

typedef struct {
  int fd;
  int inflight;
  char *in;        /* unparsed response bytes */
  size_t in_len, in_cap;
  /* In flight, oldest first (answers come back in order): first message index and count. */
  int first[MAX_DEPTH], count[MAX_DEPTH];
  int head;
} conn_t;

/* Lockstep mode: channel format, names and count (0: off). */
static const char *lock_fmt;
static char (*lock_names)[CHANNEL_NAME_MAX];
static int lock_k;
static long misnumbered;

/* Counts acknowledged seqs in an answer body that differ from the plan for messages first…. */
static void check_seqs(const char *body, size_t len, int first, int count) {
  const char *p = body, *end = body + len;
  int k = 0;
  while (k < count && (p = memmem(p, (size_t)(end - p), "\"seq\":", 6)) != NULL) {
    p += 6;
    long seq = strtol(p, NULL, 10);
    if (seq != (first + k) / lock_k + 1) misnumbered++;
    k++;
  }
  misnumbered += count - k; /* an answer without the seqs it should carry */
}

/* Consumes complete responses from c->in; returns how many requests, counting messages of 2xx
 * answers into *ok and of the others into *failed. */
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
    int first = c->first[c->head], count = c->count[c->head];
    c->head = (c->head + 1) % MAX_DEPTH;
    if (status >= 200 && status < 300) {
      *ok += count;
      if (lock_k) check_seqs(start + head, (size_t)clen, first, count);
    } else *failed += count;
    off += head + (size_t)clen;
    done++;
  }
  memmove(c->in, c->in + off, c->in_len - off);
  c->in_len -= off;
  return done;
}

/* Writes request `first`…`first+count-1` of lockstep mode into req; returns its length. */
static int lockstep_request(char *req, size_t cap, int first, int count, const char *auth) {
  const char *ch = "";
  char path[300];
  size_t bcap = (size_t)count * 400 + 64;
  char *body = malloc(bcap);
  size_t blen = 0;
  int64_t t = now_us();
  if (count > 1) blen += (size_t)snprintf(body + blen, bcap - blen, "{\"messages\":[");
  for (int k = 0; k < count; k++) {
    int i = first + k;
    ch = lock_names[i % lock_k];
    if (count > 1) blen += (size_t)snprintf(body + blen, bcap - blen, "%s{\"ch\":\"%s\",\"data\":", k ? "," : "", ch);
    blen += (size_t)snprintf(body + blen, bcap - blen, "{\"c\":\"%s\",\"s\":%d,\"t\":%lld}", ch, i / lock_k + 1, (long long)t);
    if (count > 1) body[blen++] = '}';
  }
  if (count > 1) blen += (size_t)snprintf(body + blen, bcap - blen, "]}");
  if (count > 1) snprintf(path, sizeof path, "/v1/publish");
  else snprintf(path, sizeof path, "/v1/publish/%s", ch);
  int len = snprintf(req, cap, "POST %s HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n%sContent-Length: %zu\r\n\r\n%.*s",
                     path, auth, blen, (int)blen, body);
  free(body);
  return len < (int)cap ? len : -1;
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1", *path_fmt = NULL, *body_fmt = "{\"i\":%d,\"t\":%lld}";
  const char *ctype = "application/json", *dump = NULL, *bearer = NULL;
  int port = 0, n = 0, nconns = 4, depth = 32, rate = 0, batch = 1, opt;
  while ((opt = getopt(argc, argv, "H:p:n:u:b:t:c:d:R:O:k:L:K:B:")) != -1) {
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
      case 'L': lock_fmt = optarg; break;
      case 'K': lock_k = atoi(optarg); break;
      case 'B': batch = atoi(optarg); break;
      default:
        fprintf(stderr, "usage: pub -p PORT -n N (-u PATH_FMT [-b BODY_FMT] [-t TYPE] | -L CH_FMT -K CHANNELS [-B BATCH]) [-c CONNS] [-d DEPTH] [-R RATE] [-O FILE] [-k BEARER]\n");
        return 2;
    }
  }
  if (port <= 0 || n <= 0 || !(path_fmt || lock_fmt) || nconns < 1 || depth < 1 || depth > MAX_DEPTH) {
    fprintf(stderr, "pub: -p, -n and -u (or -L) are required; -d is 1…%d\n", MAX_DEPTH);
    return 2;
  }
  if (lock_fmt && (lock_k < 1 || batch < 1)) {
    fprintf(stderr, "pub: -L needs -K CHANNELS ≥ 1; -B is ≥ 1\n");
    return 2;
  }
  if (lock_fmt && !(lock_names = channel_names(lock_fmt, lock_k))) return 2;
  if (lock_fmt && nconns * depth > lock_k / batch) {
    fprintf(stderr, "pub: -c × -d (%d) requests in flight could reorder a channel's messages; at most -K / -B = %d\n", nconns * depth, lock_k / batch);
    return 2;
  }
  if (!lock_fmt) batch = 1;
  int per_channel = path_fmt && strstr(path_fmt, "%d") != NULL;

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
  int sent = 0, ok = 0, failed = 0;
  int64_t t0 = mono_us(), start_us = now_us();
  size_t req_cap = (size_t)batch * 500 + 4096;
  char *req = malloc(req_cap), path[512], body[2048], auth[512] = "";
  if (bearer) snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", bearer);
  struct epoll_event evs[64];

  while (ok + failed < n) {
    /* Send on every connection with room, within the rate (counted in messages). */
    int64_t allowed = rate > 0 ? (mono_us() - t0) * rate / 1000000 + 1 : n;
    for (int k = 0; k < nconns && sent < n && sent < allowed; k++) {
      conn_t *c = &conns[k];
      while (c->inflight < depth && sent < n && sent < allowed) {
        int64_t t = now_us();
        int count = n - sent < batch ? n - sent : batch, len;
        if (lock_fmt) len = lockstep_request(req, req_cap, sent, count, auth);
        else {
          if (per_channel) snprintf(path, sizeof path, path_fmt, sent); else snprintf(path, sizeof path, "%s", path_fmt);
          int blen = snprintf(body, sizeof body, body_fmt, sent, (long long)t);
          len = snprintf(req, req_cap, "POST %s HTTP/1.1\r\nHost: bench\r\nContent-Type: %s\r\n%sContent-Length: %d\r\n\r\n%s", path, ctype, auth, blen, body);
        }
        if (len < 0 || write(c->fd, req, (size_t)len) != len) { perror("pub: write"); return 1; }
        int slot = (c->head + c->inflight) % MAX_DEPTH;
        c->first[slot] = sent;
        c->count[slot] = count;
        for (int j = 0; j < count; j++) sent_at[sent++] = t;
        c->inflight++;
      }
    }
    int timeout = (rate > 0 && sent < n) ? 1 : 100;
    int k = epoll_wait(ep, evs, 64, timeout);
    for (int i = 0; i < k; i++) {
      conn_t *c = &conns[evs[i].data.u32];
      if (c->in_cap - c->in_len < 16384) { c->in_cap *= 2; c->in = realloc(c->in, c->in_cap); }
      ssize_t r = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len - 1);
      if (r <= 0) { fprintf(stderr, "pub: connection closed by server after %d answered messages\n", ok + failed); goto out; }
      c->in_len += (size_t)r;
      c->in[c->in_len] = 0;
      c->inflight -= parse_responses(c, &ok, &failed);
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
  printf("{\"sent\":%d,\"ok\":%d,\"failed\":%d,\"start_us\":%lld,\"end_us\":%lld", sent, ok, failed, (long long)start_us, (long long)end_us);
  if (lock_fmt) printf(",\"misnumbered\":%ld", misnumbered);
  printf("}\n");
  return failed > 0 || ok + failed < n || misnumbered > 0 ? 1 : 0;
}
