/*
 * steady — N clients loop poll → answer → re-poll with the answer's cursor on K Holdfast
 * channels while a publisher (pub -L CH_FMT -K K) sends at a fixed rate, every channel at the
 * same seq after each round. Checks every delivery, not just its seq: the envelope's channel
 * must be one the client asked for, and the payload {"c":<channel>,"s":<seq>,"t":<µs>} must
 * name the envelope's channel and seq. Measures publish→delivery latency from "t".
 *
 * usage: steady -p PORT -n N -E EXPECTED [-c CH_FMT] [-K CHANNELS] [-M EVERY] [-H 127.0.0.1]
 *               [-s SOURCES] [-r RATE] [-w WAIT_S] [-i IDLE_S]
 *
 *   -c CH_FMT    channel names, printf with one %d (0 … CHANNELS-1)       (default "steady%d"),
 *                or @FILE with one name per line (as pub -L takes them)
 *   -K CHANNELS  client i follows channel i % CHANNELS                     (default 1)
 *   -M EVERY     every EVERY-th client follows 2–4 channels in one poll    (default 0: none)
 *   -E EXPECTED  messages per channel (seq 1 … EXPECTED); a client is complete when it stands
 *                at EXPECTED on each of its channels
 *   -w WAIT_S    give up this long after all clients parked                (default 120)
 *   -i IDLE_S    give up when nothing was delivered for IDLE_S after the first delivery
 *                (default 0: never; a client whose cursor was lost otherwise waits WAIT_S)
 *
 * Counters, per client and channel it follows:
 *   lost           seqs 1 … EXPECTED it never got (whether or not a gap said so)
 *   duplicates     seqs it got twice;  reordered: a seq below one it already got
 *   cross_channel  a message on a channel it did not ask for, or whose payload names another
 *                  channel or seq than its envelope (neither counts as a delivery)
 *   gaps           answers with "gap":true;  errors: failed sockets, non-200 answers, bad JSON
 *
 * Prints "parked <n>" on stderr once every client's first poll is written, then one JSON line:
 *   {"clients":…,"channels":…,"follows":…,"complete":…,"deliveries":…,"lost":…,"duplicates":…,
 *    "reordered":…,"cross_channel":…,"gaps":…,"errors":…,"first_us":…,"last_us":…,
 *    "p50_us":…,"p99_us":…,"max_us":…}
 * Exits 1 when any of lost, duplicates, reordered, cross_channel or errors is non-zero.
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
#define MAX_FOLLOW 4
#define NAME_MAX_LEN CHANNEL_NAME_MAX

/* One channel a client follows: where it stands and which seqs it has had. */
typedef struct {
  int index;          /* channel number, 0 … K-1 */
  long last_seq;      /* highest seq delivered */
  long got;           /* distinct seqs delivered */
  uint8_t *seen;      /* bit per seq 1 … expected */
} follow_t;

typedef struct {
  int fd;
  int connected;
  int nfollow;
  follow_t follow[MAX_FOLLOW];
  char query[MAX_FOLLOW * (NAME_MAX_LEN + 4)];
  char cursor[4096];
  char *in;
  size_t in_len, in_cap;
} client_t;

static const char *ch_fmt = "steady%d";
static int nchannels = 1;
static char (*names)[NAME_MAX_LEN];
static char host_hdr[] = "bench";
static long expected;
static long deliveries, duplicates, reordered, cross_channel, gaps, errors;
static int64_t *samples;
static long nsamples;
static int64_t first_us, last_us;

static int send_poll(client_t *c) {
  char req[8192];
  int len = snprintf(req, sizeof req, "GET /v1/poll?%s&cursor=%s&timeout=60000&max=1000 HTTP/1.1\r\nHost: %s\r\n\r\n",
                     c->query, c->cursor[0] ? c->cursor : "earliest", host_hdr);
  return len < (int)sizeof req && write(c->fd, req, (size_t)len) == len ? 0 : -1;
}

/* ---- a small reader for the server's JSON answers ---- */

/* Expects the literal `lit` at *p; advances past it. */
static int expect(const char **p, const char *end, const char *lit) {
  size_t n = strlen(lit);
  if ((size_t)(end - *p) < n || memcmp(*p, lit, n) != 0) return 0;
  *p += n;
  return 1;
}

/* A JSON string without escapes (channel names have none) into out; advances past it. */
static int read_name(const char **p, const char *end, char *out, size_t cap) {
  if (*p >= end || **p != '"') return 0;
  const char *q = memchr(*p + 1, '"', (size_t)(end - *p - 1));
  if (!q || (size_t)(q - *p - 1) >= cap || memchr(*p + 1, '\\', (size_t)(q - *p - 1))) return 0;
  memcpy(out, *p + 1, (size_t)(q - *p - 1));
  out[q - *p - 1] = 0;
  *p = q + 1;
  return 1;
}

static int read_long(const char **p, const char *end, long long *out) {
  char *e;
  if (*p >= end) return 0;
  *out = strtoll(*p, &e, 10);
  if (e == *p || e > end) return 0;
  *p = e;
  return 1;
}

/* Skips any JSON value (objects, arrays, strings with escapes, literals); advances past it. */
static int skip_value(const char **p, const char *end) {
  int depth = 0;
  const char *s = *p;
  while (s < end) {
    char ch = *s;
    if (ch == '"') {
      for (s++; s < end && *s != '"'; s++) if (*s == '\\') s++;
      if (s >= end) return 0;
      s++;
      if (depth == 0) break;
      continue;
    }
    if (ch == '{' || ch == '[') depth++;
    else if (ch == '}' || ch == ']') {
      if (depth == 0) break;
      if (--depth == 0) { s++; break; }
    } else if (ch == ',' && depth == 0) break;
    s++;
  }
  if (depth != 0 || s == *p) return 0;
  *p = s;
  return 1;
}

/* The payload {"c":"<ch>","s":<seq>,"t":<µs>} as pub -L sends it; 0 when it is anything else. */
static int read_payload(const char **p, const char *end, char *c, long long *s, long long *t) {
  const char *q = *p;
  if (!expect(&q, end, "{\"c\":") || !read_name(&q, end, c, NAME_MAX_LEN) || !expect(&q, end, ",\"s\":") ||
      !read_long(&q, end, s) || !expect(&q, end, ",\"t\":") || !read_long(&q, end, t) || !expect(&q, end, "}"))
    return 0;
  *p = q;
  return 1;
}

/* ---- checking one answer ---- */

static follow_t *followed(client_t *c, const char *ch) {
  for (int k = 0; k < c->nfollow; k++)
    if (strcmp(names[c->follow[k].index], ch) == 0) return &c->follow[k];
  return NULL;
}

static void deliver(follow_t *f, long seq, int64_t sent_us, int64_t t_now) {
  uint8_t bit = (uint8_t)(1u << ((seq - 1) & 7));
  if (f->seen[(seq - 1) >> 3] & bit) { duplicates++; return; }
  f->seen[(seq - 1) >> 3] |= bit;
  f->got++;
  if (seq < f->last_seq) reordered++;
  else f->last_seq = seq;
  deliveries++;
  if (nsamples < MAX_SAMPLES) samples[nsamples++] = t_now - sent_us;
  if (!first_us) first_us = t_now;
  last_us = t_now;
}

/* Checks every message of one answer body and takes its cursor; 0 when the body is malformed. */
static int on_answer(client_t *c, const char *body, size_t len) {
  int64_t t_now = now_us();
  const char *p = body, *end = body + len;
  if (!expect(&p, end, "{\"messages\":[")) return 0;
  while (p < end && *p != ']') {
    char ch[NAME_MAX_LEN], pc[NAME_MAX_LEN];
    long long seq, ps = 0, pt = 0;
    if (!expect(&p, end, "{\"ch\":") || !read_name(&p, end, ch, sizeof ch) || !expect(&p, end, ",\"seq\":") ||
        !read_long(&p, end, &seq) || !expect(&p, end, ",\"data\":"))
      return 0;
    int ours = read_payload(&p, end, pc, &ps, &pt);
    if (!ours && !skip_value(&p, end)) return 0;
    if (!expect(&p, end, "}")) return 0;
    if (p < end && *p == ',') p++;
    follow_t *f = followed(c, ch);
    if (!f || !ours || strcmp(pc, ch) != 0 || ps != seq) cross_channel++;
    else if (seq < 1 || seq > expected) errors++; /* not in the plan: the channel was not fresh */
    else deliver(f, (long)seq, pt, t_now);
  }
  if (!expect(&p, end, "],\"cursor\":\"")) return 0;
  const char *q = memchr(p, '"', (size_t)(end - p));
  if (!q || (size_t)(q - p) >= sizeof c->cursor) return 0;
  memcpy(c->cursor, p, (size_t)(q - p));
  c->cursor[q - p] = 0;
  if (memmem(q, (size_t)(end - q), "\"gap\":true", 10)) gaps++;
  return 1;
}

static int client_complete(const client_t *c) {
  for (int k = 0; k < c->nfollow; k++) if (c->follow[k].last_seq < expected) return 0;
  return 1;
}

/* Client i follows channel i % K, and every EVERY-th client 1–3 neighbours too. */
static void assign_channels(client_t *c, int i, int every) {
  int extra = every > 0 && i % every == every - 1 ? 1 + (i / every) % 3 : 0;
  if (extra > nchannels - 1) extra = nchannels - 1;
  c->nfollow = 1 + extra;
  size_t bytes = (size_t)(expected + 8) / 8, qlen = 0;
  for (int k = 0; k < c->nfollow; k++) {
    follow_t *f = &c->follow[k];
    f->index = (i + k) % nchannels;
    f->seen = calloc(bytes, 1);
    qlen += (size_t)snprintf(c->query + qlen, sizeof c->query - qlen, "%sch=%s", k ? "&" : "", names[f->index]);
  }
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1";
  int port = 0, n = 0, sources = 16, rate = 10000, wait_s = 120, idle_s = 0, every = 0, opt;
  while ((opt = getopt(argc, argv, "H:p:n:c:K:M:E:s:r:w:i:")) != -1) {
    switch (opt) {
      case 'H': host = optarg; break;
      case 'p': port = atoi(optarg); break;
      case 'n': n = atoi(optarg); break;
      case 'c': ch_fmt = optarg; break;
      case 'K': nchannels = atoi(optarg); break;
      case 'M': every = atoi(optarg); break;
      case 'E': expected = atol(optarg); break;
      case 's': sources = atoi(optarg); break;
      case 'r': rate = atoi(optarg); break;
      case 'w': wait_s = atoi(optarg); break;
      case 'i': idle_s = atoi(optarg); break;
      default:
        fprintf(stderr, "usage: steady -p PORT -n N -E EXPECTED [-c CH_FMT] [-K CHANNELS] [-M EVERY] [-s SOURCES] [-r RATE] [-w WAIT_S] [-i IDLE_S]\n");
        return 2;
    }
  }
  if (port <= 0 || n <= 0 || expected <= 0 || nchannels <= 0 || every < 0) {
    fprintf(stderr, "steady: -p, -n and -E are required; -K ≥ 1\n");
    return 2;
  }
  if (!(names = channel_names(ch_fmt, nchannels))) return 2;
  samples = malloc(sizeof(int64_t) * MAX_SAMPLES);
  client_t *cl = calloc((size_t)n, sizeof(client_t));
  long follows = 0;
  for (int i = 0; i < n; i++) {
    assign_channels(&cl[i], i, every);
    follows += cl[i].nfollow;
  }
  int ep = epoll_create1(0);
  struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, host, &dst.sin_addr);

  int opened = 0, started = 0, complete = 0;
  int64_t t0 = mono_us(), parked_at = 0, last_delivery = 0;
  long delivered_before = 0;
  struct epoll_event evs[1024];
  for (;;) {
    int64_t now = mono_us(), el = now - t0;
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
      parked_at = now;
      fprintf(stderr, "parked %d\n", started);
    }
    if (deliveries != delivered_before) { delivered_before = deliveries; last_delivery = now; }
    if (parked_at && (complete + errors >= n || now - parked_at > (int64_t)wait_s * 1000000)) break;
    if (idle_s > 0 && last_delivery && now - last_delivery > (int64_t)idle_s * 1000000) break;

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
      if (atoi(c->in + 9) != 200 || !on_answer(c, c->in + head, (size_t)clen)) errors++;
      memmove(c->in, c->in + head + clen, c->in_len - head - (size_t)clen);
      c->in_len -= head + (size_t)clen;
      if (client_complete(c)) { complete++; epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL); close(c->fd); continue; }
      if (send_poll(c) < 0) errors++;
    }
  }
  /* Whatever a client never got on a channel it follows is lost, reported by a gap or not. */
  long lost = 0;
  for (int i = 0; i < n; i++)
    if (cl[i].connected)
      for (int k = 0; k < cl[i].nfollow; k++) lost += expected - cl[i].follow[k].got;
  qsort(samples, (size_t)nsamples, sizeof(int64_t), cmp64);
  printf("{\"clients\":%d,\"channels\":%d,\"follows\":%ld,\"complete\":%d,\"deliveries\":%ld,\"lost\":%ld,\"duplicates\":%ld,"
         "\"reordered\":%ld,\"cross_channel\":%ld,\"gaps\":%ld,\"errors\":%ld,"
         "\"first_us\":%lld,\"last_us\":%lld,\"p50_us\":%lld,\"p99_us\":%lld,\"max_us\":%lld}\n",
         n, nchannels, follows, complete, deliveries, lost, duplicates, reordered, cross_channel, gaps, errors,
         (long long)first_us, (long long)last_us,
         (long long)(nsamples ? samples[nsamples / 2] : 0), (long long)(nsamples ? samples[(nsamples * 99) / 100] : 0),
         (long long)(nsamples ? samples[nsamples - 1] : 0));
  int violated = lost || duplicates || reordered || cross_channel || errors;
  if (violated)
    fprintf(stderr, "steady: DELIVERY CHECK FAILED: lost %ld, duplicates %ld, reordered %ld, cross-channel %ld, errors %ld\n",
            lost, duplicates, reordered, cross_channel, errors);
  return violated ? 1 : 0;
}
