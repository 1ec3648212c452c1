/*
 * reqloop — closed-loop requests: C keep-alive connections each send one request, wait for
 * its answer, and send the next, for a fixed time. Measures requests/s a server sustains
 * (the fast path: a poll that finds its message waiting; publishes/s).
 *
 * usage: reqloop -p PORT -u PATH [-H 127.0.0.1] [-c CONNS] [-t SECONDS] [-w WARMUP_S]
 *                [-m METHOD] [-b BODY] [-T CONTENT_TYPE] [-h "Name: value"]…
 *
 *   -u PATH      request path (the same for every request)
 *   -c CONNS     connections, one request in flight each                    (default 50)
 *   -t SECONDS   measured time                                              (default 5)
 *   -w WARMUP_S  requests before the measured time, not counted             (default 1)
 *   -m METHOD    GET (default) or POST; -b BODY the POST body; -T its type (application/json)
 *   -h HEADER    an extra header line (repeatable, at most 8)
 *
 * One request in flight per connection: uWS v20.30 closes a connection that pipelines a
 * request behind an unanswered one. Answers are delimited by Content-Length (every server
 * measured sends it). A server that closes a keep-alive connection between answers (nginx
 * after keepalive_requests) is reconnected to, as a browser would. Prints one JSON line:
 *   {"connections":…,"seconds":…,"requests":…,"ok":…,"non2xx":…,"errors":…,"reconnects":…,
 *    "per_sec":…,"bytes_per_answer":…}
 * Exits 1 when any answer was not 2xx or any connection failed.
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
#include <unistd.h>

#include "common.h"

#define MAX_HEADERS 8

typedef struct {
  int fd;
  int failed;
  long answered_since_open;
  char *in;
  size_t in_len, in_cap;
} conn_t;

static char *req;
static int req_len;

static int send_request(conn_t *c) {
  return write(c->fd, req, (size_t)req_len) == req_len ? 0 : -1;
}

/* Connects c (blocking), registers it as index i and sends its first request. */
static int open_conn(conn_t *c, int i, int ep, const struct sockaddr_in *dst) {
  c->fd = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(c->fd, (const struct sockaddr *)dst, sizeof *dst) < 0) return -1;
  c->in_len = 0;
  struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
  epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
  return send_request(c);
}

/* One complete answer at the start of c->in: its total length and status, or 0 when incomplete. */
static size_t answer_length(conn_t *c, int *status) {
  char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
  if (!end) return 0;
  size_t head = (size_t)(end - c->in) + 4;
  *end = 0; /* bound the header search */
  char *cl = strcasestr(c->in, "\r\ncontent-length:");
  long clen = cl ? strtol(cl + 17, NULL, 10) : -1;
  *end = '\r';
  if (clen < 0) return (size_t)-1; /* no length: not a server this tool can measure */
  if (c->in_len < head + (size_t)clen) return 0;
  *status = atoi(c->in + 9);
  return head + (size_t)clen;
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1", *path = NULL, *method = "GET", *body = "", *ctype = "application/json";
  const char *headers[MAX_HEADERS];
  int nheaders = 0, port = 0, nconns = 50, opt;
  double seconds = 5, warmup = 1;
  while ((opt = getopt(argc, argv, "H:p:u:c:t:w:m:b:T:h:")) != -1) {
    switch (opt) {
      case 'H': host = optarg; break;
      case 'p': port = atoi(optarg); break;
      case 'u': path = optarg; break;
      case 'c': nconns = atoi(optarg); break;
      case 't': seconds = atof(optarg); break;
      case 'w': warmup = atof(optarg); break;
      case 'm': method = optarg; break;
      case 'b': body = optarg; break;
      case 'T': ctype = optarg; break;
      case 'h':
        if (nheaders == MAX_HEADERS) { fprintf(stderr, "reqloop: at most %d -h headers\n", MAX_HEADERS); return 2; }
        headers[nheaders++] = optarg;
        break;
      default:
        fprintf(stderr, "usage: reqloop -p PORT -u PATH [-H host] [-c CONNS] [-t SECONDS] [-w WARMUP_S] [-m METHOD] [-b BODY] [-T TYPE] [-h 'Name: value']...\n");
        return 2;
    }
  }
  if (port <= 0 || !path || nconns < 1 || seconds <= 0 || warmup < 0) {
    fprintf(stderr, "reqloop: -p and -u are required; -c ≥ 1, -t > 0, -w ≥ 0\n");
    return 2;
  }

  size_t cap = 8192 + strlen(path) + strlen(body);
  req = malloc(cap);
  int post = strcasecmp(method, "GET") != 0;
  req_len = snprintf(req, cap, "%s %s HTTP/1.1\r\nHost: bench\r\n", method, path);
  for (int i = 0; i < nheaders; i++) req_len += snprintf(req + req_len, cap - (size_t)req_len, "%s\r\n", headers[i]);
  if (post) req_len += snprintf(req + req_len, cap - (size_t)req_len, "Content-Type: %s\r\nContent-Length: %zu\r\n\r\n%s", ctype, strlen(body), body);
  else req_len += snprintf(req + req_len, cap - (size_t)req_len, "\r\n");

  struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, host, &dst.sin_addr);
  conn_t *conns = calloc((size_t)nconns, sizeof(conn_t));
  int ep = epoll_create1(0);
  for (int i = 0; i < nconns; i++) {
    conn_t *c = &conns[i];
    c->in_cap = 1 << 16;
    c->in = malloc(c->in_cap);
    if (open_conn(c, i, ep, &dst) < 0) { perror("reqloop: connect"); return 1; }
  }

  long requests = 0, ok = 0, non2xx = 0, errors = 0, reconnects = 0;
  unsigned long long bytes = 0;
  int64_t t0 = mono_us();
  int64_t measure_from = t0 + (int64_t)(warmup * 1e6), measure_to = measure_from + (int64_t)(seconds * 1e6);
  int measuring = warmup == 0, open = nconns;
  struct epoll_event evs[256];
  while (open > 0) {
    int64_t now = mono_us();
    if (!measuring && now >= measure_from) measuring = 1;
    if (now >= measure_to) break;
    int k = epoll_wait(ep, evs, 256, 10);
    for (int i = 0; i < k; i++) {
      conn_t *c = &conns[evs[i].data.u32];
      if (c->in_cap - c->in_len < 16384) { c->in_cap *= 2; c->in = realloc(c->in, c->in_cap); }
      ssize_t r = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len - 1);
      if (r <= 0) {
        if (r < 0 && errno == EAGAIN) continue;
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        /* Closed between answers (a keep-alive limit): connect again; anything else fails. */
        if (r == 0 && c->in_len == 0 && c->answered_since_open > 0 && open_conn(c, (int)evs[i].data.u32, ep, &dst) == 0) {
          reconnects++;
          c->answered_since_open = 0;
          continue;
        }
        errors++;
        c->failed = 1;
        open--;
        continue;
      }
      c->in_len += (size_t)r;
      int status = 0;
      size_t len = answer_length(c, &status);
      if (len == (size_t)-1) { fprintf(stderr, "reqloop: an answer without Content-Length\n"); return 1; }
      if (len == 0) continue;
      memmove(c->in, c->in + len, c->in_len - len);
      c->in_len -= len;
      c->answered_since_open++;
      if (measuring && mono_us() < measure_to) {
        requests++;
        bytes += len;
        if (status >= 200 && status < 300) ok++;
        else non2xx++;
      }
      if (send_request(c) < 0) { errors++; c->failed = 1; }
    }
  }
  double took = (double)(measure_to - measure_from) / 1e6;
  printf("{\"connections\":%d,\"seconds\":%.3f,\"requests\":%ld,\"ok\":%ld,\"non2xx\":%ld,\"errors\":%ld,\"reconnects\":%ld,\"per_sec\":%.0f,\"bytes_per_answer\":%.0f}\n",
         nconns, took, requests, ok, non2xx, errors, reconnects, (double)ok / took, requests ? (double)bytes / (double)requests : 0.0);
  return non2xx > 0 || errors > 0 ? 1 : 0;
}
