/*
 * wsub — opens N stream subscribers (WebSocket or Server-Sent Events) and reports when each
 * message reaches each of them; or, with -k, checks that streams cut at random and resumed
 * from their cursor see every message once.
 *
 * usage: wsub -p PORT -n N -m ws|sse -u PATH_FMT [-H 127.0.0.1] [-c CHANNEL | -C PREFIX [-o OFFSET]]
 *             [-S OP_FMT] [-R ROUNDS] [-w WAIT_S] [-s SOURCES] [-r RATE] [-k KILL_EVERY -E LAST_SEQ]
 *
 *   -m ws|sse    WebSocket (RFC 6455 handshake, masked client frames, pongs) or an event stream
 *                (Accept: text/event-stream, chunked bodies decoded)
 *   -u PATH_FMT  request path, printf format with one %s (the channel): "/v1/ws", "/v1/sse?ch=%s",
 *                "/sub/%s" (Nchan)
 *   -S OP_FMT    WebSocket text frame sent once the socket is open, %s the channel (Holdfast:
 *                '{"op":"subscribe","ch":["%s"]}')
 *   -c CHANNEL   every subscriber follows CHANNEL (fan-out)            (default "bench")
 *   -C PREFIX    subscriber i follows PREFIX<i + OFFSET>
 *   -R ROUNDS    messages expected; a message's round is the number after "r": in its payload
 *   -w WAIT_S    after every subscriber is open, wait up to WAIT_S for the rounds  (default 60)
 *   -s SOURCES   client addresses 127.0.0.2 … (see common.h)  -r RATE connects per second
 *   -k KILL_EVERY  resume check (Holdfast): after each message, a subscriber closes its
 *                connection with probability 1/KILL_EVERY and reconnects from its cursor (the
 *                last frame's "cursor", or the last SSE id as Last-Event-ID); each message's
 *                "seq" must follow the last one seen, or it counts as doubled or skipped
 *   -E LAST_SEQ  resume check: done when every subscriber has seen seq LAST_SEQ
 *   -x           done when stdin closes (the orchestrator decides how many rounds), or at WAIT_S
 *
 * Prints "open <n>" on stderr once every subscriber's stream is open (101, or 200 and its
 * headers), "got <r>" when every open subscriber has round r, then one JSON line on stdout:
 *   {"subscribers":N,"open":…,"errors":…,"closed":…,"reconnects":…,"doubled":…,"skipped":…,
 *    "complete":…,"rounds":[{"received":…,"first_us":…,"p50_us":…,"p99_us":…,"last_us":…},…]}
 * with times in microseconds of CLOCK_REALTIME (compare with the publish time).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <sys/epoll.h>

#include "common.h"

enum { S_IDLE, S_CONNECTING, S_HEAD, S_OPEN, S_FAILED };

typedef struct {
  int fd;
  int state;
  /* Bytes not parsed yet: a partial head, WebSocket frame or SSE line. */
  char *tail;
  int tail_len, tail_cap;
  /* Chunked decoding (SSE): bytes left in the current chunk, the size being read, CRLF to skip. */
  long chunk_left, size_acc;
  int crlf_due;
  bool chunked, in_ext;
  /* Resume check. */
  long last_seq;
  char cursor[160];
  int rounds_seen;
  bool ever_open;
} conn_t;

static int n, mode_ws, rounds = 0, kill_every = 0, sources = 8, offset = 0;
static long expect_seq = 0;
static const char *host = "127.0.0.1", *channel = "bench", *prefix = NULL, *path_fmt = NULL, *op_fmt = NULL;
static conn_t *conns;
static int64_t *times; /* n × rounds receive times, 0 = not yet */
static int *round_count; /* subscribers that have each round */
static int ep, errors, closed_count, reconnects, open_count, complete;
static long doubled, skipped;
static struct sockaddr_in dst;

static void usage(void) {
  fprintf(stderr, "usage: wsub -p PORT -n N -m ws|sse -u PATH_FMT [-H host] [-c CHANNEL | -C PREFIX [-o OFFSET]] [-S OP_FMT] [-R ROUNDS] [-w WAIT_S] [-s SOURCES] [-r RATE] [-k KILL_EVERY -E LAST_SEQ] [-x]\n");
  exit(2);
}

static void name_of(int i, char *out, size_t size) {
  if (prefix) snprintf(out, size, "%s%d", prefix, i + offset);
  else snprintf(out, size, "%s", channel);
}

static void append_tail(conn_t *c, const char *data, int len) {
  if (c->tail_len + len > c->tail_cap) {
    c->tail_cap = (c->tail_len + len) * 2 + 256;
    c->tail = realloc(c->tail, (size_t)c->tail_cap);
  }
  memcpy(c->tail + c->tail_len, data, (size_t)len);
  c->tail_len += len;
}

static void consume(conn_t *c, int used) {
  memmove(c->tail, c->tail + used, (size_t)(c->tail_len - used));
  c->tail_len -= used;
}

static void start_conn(int i) {
  conn_t *c = &conns[i];
  c->fd = connect_from_loopback(&dst, i, sources);
  c->tail_len = 0;
  c->chunk_left = c->size_acc = 0;
  c->crlf_due = 0;
  c->chunked = c->in_ext = false;
  if (c->fd < 0) { c->state = S_FAILED; errors++; return; }
  struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.u32 = (uint32_t)i};
  epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
  c->state = S_CONNECTING;
}

static void drop(conn_t *c) {
  if (c->fd >= 0) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
  }
  c->fd = -1;
}

/* A masked client frame (text 0x1 or pong 0xA). */
static void send_frame(conn_t *c, int opcode, const char *payload, size_t len) {
  unsigned char frame[4096];
  size_t at = 0;
  if (len > sizeof frame - 16) return;
  frame[at++] = (unsigned char)(0x80 | opcode);
  if (len < 126) frame[at++] = (unsigned char)(0x80 | len);
  else { frame[at++] = 0x80 | 126; frame[at++] = (unsigned char)(len >> 8); frame[at++] = (unsigned char)len; }
  unsigned char mask[4] = {0x12, 0x34, 0x56, 0x78};
  memcpy(frame + at, mask, 4);
  at += 4;
  for (size_t i = 0; i < len; i++) frame[at + i] = (unsigned char)payload[i] ^ mask[i % 4];
  at += len;
  if (write(c->fd, frame, at) != (ssize_t)at) { /* the close shows up as a read error */ }
}

static void send_request(int i) {
  conn_t *c = &conns[i];
  char name[256], path[1024], req[2048];
  name_of(i, name, sizeof name);
  snprintf(path, sizeof path, path_fmt, name);
  int len;
  if (mode_ws) {
    len = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", path);
  } else if (c->cursor[0]) {
    len = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\nLast-Event-ID: %s\r\n\r\n", path, c->cursor);
  } else {
    len = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n", path);
  }
  if (write(c->fd, req, (size_t)len) != len) { c->state = S_FAILED; errors++; drop(c); return; }
  c->state = S_HEAD;
  struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
  epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void opened(int i) {
  conn_t *c = &conns[i];
  c->state = S_OPEN;
  if (!c->ever_open) open_count++;
  c->ever_open = true;
  if (mode_ws && op_fmt) {
    char name[256], op[1024];
    name_of(i, name, sizeof name);
    int len = snprintf(op, sizeof op, op_fmt, name);
    if (kill_every && c->cursor[0]) {
      /* Resume: the same op with the cursor (Holdfast's subscribe). */
      len = snprintf(op, sizeof op, "{\"op\":\"subscribe\",\"ch\":[\"%s\"],\"cursor\":\"%s\"}", name, c->cursor);
    }
    send_frame(c, 0x1, op, (size_t)len);
  }
}

/* Resume check: cut the connection now and then, and come back from the cursor. */
static bool maybe_cut(int i) {
  if (!kill_every || rand() % kill_every != 0) return false;
  conn_t *c = &conns[i];
  drop(c);
  reconnects++;
  start_conn(i);
  return true;
}

/* One message payload (a WebSocket text frame, or an SSE event's data line). */
static void on_payload(int i, const char *p, int len) {
  conn_t *c = &conns[i];
  int64_t at = now_us();
  for (const char *s = p; (s = memmem(s, (size_t)(p + len - s), "\"r\":", 4)) != NULL; s += 4) {
    int r = atoi(s + 4);
    if (r >= 0 && r < rounds && times[(size_t)i * rounds + r] == 0) {
      times[(size_t)i * rounds + r] = at;
      c->rounds_seen++;
      round_count[r]++;
    }
  }
  if (!kill_every) return;
  for (const char *s = p; (s = memmem(s, (size_t)(p + len - s), "\"seq\":", 6)) != NULL; s += 6) {
    long seq = atol(s + 6);
    if (seq <= c->last_seq) { doubled++; continue; }
    if (seq > c->last_seq + 1) skipped += seq - c->last_seq - 1;
    c->last_seq = seq;
    if (seq == expect_seq) complete++;
  }
  if (mode_ws) {
    const char *k = memmem(p, (size_t)len, "\"cursor\":\"", 10);
    if (k) {
      k += 10;
      const char *e = memchr(k, '"', (size_t)(p + len - k));
      if (e && e - k < (long)sizeof c->cursor) { memcpy(c->cursor, k, (size_t)(e - k)); c->cursor[e - k] = 0; }
    }
  }
}

/* WebSocket frames from the server (never masked, never fragmented here). */
static void parse_ws(int i) {
  conn_t *c = &conns[i];
  int at = 0;
  while (c->tail_len - at >= 2) {
    unsigned char *b = (unsigned char *)c->tail + at;
    int opcode = b[0] & 0x0f;
    uint64_t len = b[1] & 0x7f;
    int head = 2;
    if (len == 126) { if (c->tail_len - at < 4) break; len = (uint64_t)b[2] << 8 | b[3]; head = 4; }
    else if (len == 127) { if (c->tail_len - at < 10) break; len = 0; for (int k = 0; k < 8; k++) len = len << 8 | b[2 + k]; head = 10; }
    if ((uint64_t)(c->tail_len - at - head) < len) break;
    const char *payload = c->tail + at + head;
    at += head + (int)len;
    if (opcode == 0x1 || opcode == 0x2) {
      on_payload(i, payload, (int)len);
      if (maybe_cut(i)) return;
    } else if (opcode == 0x9) {
      send_frame(c, 0xA, payload, (size_t)len);
    } else if (opcode == 0x8) {
      closed_count++;
      drop(c);
      if (kill_every) { reconnects++; start_conn(i); } else c->state = S_FAILED;
      return;
    }
  }
  consume(c, at);
}

/* SSE lines of the decoded body. */
static void parse_sse_lines(int i) {
  conn_t *c = &conns[i];
  int at = 0;
  for (;;) {
    char *nl = memchr(c->tail + at, '\n', (size_t)(c->tail_len - at));
    if (!nl) break;
    char *line = c->tail + at;
    int len = (int)(nl - line);
    at += len + 1;
    if (len > 0 && line[len - 1] == '\r') len--;
    if (len > 6 && memcmp(line, "data: ", 6) == 0) {
      on_payload(i, line + 6, len - 6);
      if (maybe_cut(i)) return; /* a new connection: its tail starts empty */
    } else if (kill_every && len > 4 && memcmp(line, "id: ", 4) == 0 && len - 4 < (int)sizeof c->cursor) {
      memcpy(c->cursor, line + 4, (size_t)(len - 4));
      c->cursor[len - 4] = 0;
    }
  }
  consume(c, at);
}

static int hexval(char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

/* Body bytes of an event stream: chunked (standard or uWS's CRLF-first order) or plain. */
static void sse_body(int i, const char *data, int len) {
  conn_t *c = &conns[i];
  if (!c->chunked) {
    append_tail(c, data, len);
    parse_sse_lines(i);
    return;
  }
  int at = 0;
  while (at < len) {
    if (c->chunk_left > 0) {
      int take = (int)(c->chunk_left < len - at ? c->chunk_left : len - at);
      append_tail(c, data + at, take);
      at += take;
      c->chunk_left -= take;
      if (c->chunk_left == 0) c->crlf_due = 2;
    } else if (c->crlf_due > 0) {
      at++;
      c->crlf_due--;
    } else {
      char ch = data[at++];
      if (ch == '\n') {
        if (c->size_acc == 0) { c->state = S_FAILED; closed_count++; drop(c); return; } /* the last chunk */
        c->chunk_left = c->size_acc;
        c->size_acc = 0;
        c->in_ext = false;
      } else if (ch == ';') {
        c->in_ext = true;
      } else if (!c->in_ext && hexval(ch) >= 0) {
        c->size_acc = c->size_acc * 16 + hexval(ch);
      }
    }
  }
  parse_sse_lines(i);
}

static void on_closed(int i) {
  conn_t *c = &conns[i];
  if (c->state == S_OPEN) closed_count++;
  else errors++;
  drop(c);
  if (kill_every && c->state == S_OPEN) {
    reconnects++;
    start_conn(i);
  } else {
    c->state = S_FAILED;
  }
}

static void on_readable(int i, char *buf, int size) {
  conn_t *c = &conns[i];
  ssize_t r = read(c->fd, buf, (size_t)size);
  if (r == 0 || (r < 0 && errno != EAGAIN)) return on_closed(i);
  if (r < 0) return;
  if (c->state == S_OPEN) {
    if (mode_ws) {
      append_tail(c, buf, (int)r);
      parse_ws(i);
    } else {
      sse_body(i, buf, (int)r);
    }
    return;
  }
  /* S_HEAD: the answer's head, then maybe the first bytes of the stream. */
  append_tail(c, buf, (int)r);
  char *end = memmem(c->tail, (size_t)c->tail_len, "\r\n\r\n", 4);
  if (!end) return;
  int head = (int)(end - c->tail) + 4;
  bool ok = c->tail_len > 12 && memcmp(c->tail + 9, mode_ws ? "101" : "200", 3) == 0;
  if (!ok) {
    if (errors < 3) fprintf(stderr, "wsub: refused: %.*s\n", head < 200 ? head : 200, c->tail);
    errors++;
    c->state = S_FAILED;
    drop(c);
    return;
  }
  c->chunked = memmem(c->tail, (size_t)head, "hunked", 6) != NULL;
  opened(i);
  if (mode_ws) {
    consume(c, head);
    parse_ws(i);
  } else {
    int rest = c->tail_len - head;
    char *copy = malloc((size_t)rest + 1);
    memcpy(copy, c->tail + head, (size_t)rest);
    c->tail_len = 0;
    sse_body(i, copy, rest);
    free(copy);
  }
}

int main(int argc, char **argv) {
  int port = 0, rate = 10000, wait_s = 60, until_stdin = 0;
  const char *mode = NULL;
  int opt;
  while ((opt = getopt(argc, argv, "H:p:n:m:u:S:c:C:o:R:w:s:r:k:E:x")) != -1) {
    switch (opt) {
      case 'H': host = optarg; break;
      case 'p': port = atoi(optarg); break;
      case 'n': n = atoi(optarg); break;
      case 'm': mode = optarg; break;
      case 'u': path_fmt = optarg; break;
      case 'S': op_fmt = optarg; break;
      case 'c': channel = optarg; break;
      case 'C': prefix = optarg; break;
      case 'o': offset = atoi(optarg); break;
      case 'R': rounds = atoi(optarg); break;
      case 'w': wait_s = atoi(optarg); break;
      case 's': sources = atoi(optarg); break;
      case 'r': rate = atoi(optarg); break;
      case 'k': kill_every = atoi(optarg); break;
      case 'E': expect_seq = atol(optarg); break;
      case 'x': until_stdin = 1; break;
      default: usage();
    }
  }
  if (port <= 0 || n <= 0 || !mode || !path_fmt || sources < 1 || sources > 250 || rate <= 0 || rounds < 0) usage();
  if (kill_every && expect_seq <= 0) usage();
  mode_ws = strcmp(mode, "ws") == 0;
  if (!mode_ws && strcmp(mode, "sse") != 0) usage();
  srand((unsigned)getpid());

  conns = calloc((size_t)n, sizeof(conn_t));
  times = calloc((size_t)n * (size_t)(rounds ? rounds : 1), sizeof(int64_t));
  round_count = calloc((size_t)(rounds ? rounds : 1), sizeof(int));
  ep = epoll_create1(0);
  dst = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, host, &dst.sin_addr);

  if (until_stdin) {
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
    epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev);
  }
  bool stdin_closed = false;
  int started = 0, reported_round = 0;
  int64_t start = mono_us(), open_at = 0;
  struct epoll_event evs[1024];
  static char buf[65536];

  for (;;) {
    int64_t due = (mono_us() - start) * rate / 1000000 + 1;
    while (started < n && started < due) start_conn(started++);

    if (!open_at && open_count + errors >= n) {
      open_at = mono_us();
      fprintf(stderr, "open %d\n", open_count);
    }
    if (open_at) {
      /* Rounds every subscriber still open has (in order: "got r" once each). Counted as
         messages arrive: no scan of every connection per wake-up. */
      int live = open_count - closed_count;
      while (reported_round < rounds && live > 0 && round_count[reported_round] >= live) fprintf(stderr, "got %d\n", reported_round++);
      bool done = kill_every ? complete >= open_count : until_stdin ? stdin_closed : reported_round >= rounds && rounds > 0;
      if (done || mono_us() - open_at > (int64_t)wait_s * 1000000) break;
    }
    /* Connects that never complete (a server out of connections) must not stall the run. */
    if (!open_at && started == n && mono_us() - start > (int64_t)(n / rate + 60) * 1000000) {
      for (int i = 0; i < n; i++) if (conns[i].state == S_CONNECTING || conns[i].state == S_HEAD) { conns[i].state = S_FAILED; errors++; drop(&conns[i]); }
    }

    int k = epoll_wait(ep, evs, 1024, started < n ? 1 : 20);
    for (int e = 0; e < k; e++) {
      if (evs[e].data.u32 == UINT32_MAX) {
        char discard[256];
        if (read(0, discard, sizeof discard) <= 0) { stdin_closed = true; epoll_ctl(ep, EPOLL_CTL_DEL, 0, NULL); }
        continue;
      }
      int i = (int)evs[e].data.u32;
      conn_t *c = &conns[i];
      if (c->fd < 0) continue;
      if (c->state == S_CONNECTING) {
        if (!(evs[e].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) continue;
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) { c->state = S_FAILED; errors++; drop(c); continue; }
        send_request(i);
      } else if (evs[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        on_readable(i, buf, sizeof buf);
      }
    }
  }

  printf("{\"subscribers\":%d,\"open\":%d,\"errors\":%d,\"closed\":%d,\"reconnects\":%d,\"doubled\":%ld,\"skipped\":%ld,\"complete\":%d,\"rounds\":[",
         n, open_count, errors, closed_count, reconnects, doubled, skipped, complete);
  int64_t *col = malloc(sizeof(int64_t) * (size_t)n);
  int shown = rounds;
  while (until_stdin && shown > 0 && round_count[shown - 1] == 0) shown--; /* rounds never published */
  for (int r = 0; r < shown; r++) {
    int m = 0;
    for (int i = 0; i < n; i++) if (times[(size_t)i * rounds + r]) col[m++] = times[(size_t)i * rounds + r];
    qsort(col, (size_t)m, sizeof(int64_t), cmp64);
    printf("%s{\"received\":%d,\"first_us\":%lld,\"p50_us\":%lld,\"p99_us\":%lld,\"last_us\":%lld}", r ? "," : "", m,
           (long long)(m ? col[0] : 0), (long long)(m ? col[m / 2] : 0), (long long)(m ? col[(m * 99) / 100] : 0), (long long)(m ? col[m - 1] : 0));
  }
  printf("]}\n");
  fflush(stdout);
  for (int i = 0; i < n; i++) if (conns[i].fd >= 0) close(conns[i].fd);
  return 0;
}
