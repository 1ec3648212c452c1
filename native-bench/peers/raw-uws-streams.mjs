// The ceiling for streams: a minimal uWebSockets.js WebSocket and SSE server, Map<channel,
// Set<socket>> and nothing else (as raw-uws.mjs is for long polls).
//   GET /ws?ch=X (WebSocket) and GET /sse?ch=X subscribe; POST /pub/X sends the body to every
//   subscriber of X: one WebSocket frame shaped like a Holdfast answer, or one SSE event with a
//   cursor-sized id, so the bytes per delivery match Holdfast's.
// RAW_FANOUT=topic uses uWS's own pub/sub (ws.subscribe + app.publish, the fan-out in C++)
// for WebSockets instead of a JavaScript loop. Delivery runs on the next loop turn, where each
// cork() is real (packages.md).
import uWS from 'uWebSockets.js';

const port = Number(process.env.PORT ?? 3000);
const topic = process.env.RAW_FANOUT === 'topic';
const sockets = new Map();
const streams = new Map();
const setOf = (map, ch) => {
  let set = map.get(ch);
  if (!set) map.set(ch, (set = new Set()));
  return set;
};
const app = uWS.App();
app.ws('/ws', {
  idleTimeout: 120,
  maxBackpressure: 1 << 20,
  sendPingsAutomatically: true,
  upgrade(res, req, context) {
    const ch = new URLSearchParams(req.getQuery() ?? '').get('ch');
    res.upgrade({ ch }, req.getHeader('sec-websocket-key'), req.getHeader('sec-websocket-protocol'), req.getHeader('sec-websocket-extensions'), context);
  },
  open(ws) {
    const { ch } = ws.getUserData();
    if (topic) ws.subscribe(ch);
    else setOf(sockets, ch).add(ws);
  },
  close(ws) {
    sockets.get(ws.getUserData().ch)?.delete(ws);
  },
});
app.get('/sse', (res, req) => {
  const ch = new URLSearchParams(req.getQuery() ?? '').get('ch');
  const set = setOf(streams, ch);
  res.onAborted(() => set.delete(res));
  res.cork(() => {
    res.writeHeader('Content-Type', 'text/event-stream');
    res.writeHeader('Cache-Control', 'no-store');
    res.write('retry: 3000\n\n');
  });
  set.add(res);
});
let seq = 0;
app.post('/pub/*', (res, req) => {
  const ch = req.getUrl().slice('/pub/'.length);
  let body = Buffer.alloc(0);
  res.onAborted(() => {});
  res.onData((chunk, last) => {
    body = Buffer.concat([body, Buffer.from(chunk)]);
    if (!last) return;
    res.cork(() => res.end('{"ok":true}'));
    const cursor = String(++seq).padStart(48, 'c');
    const message = `{"ch":"${ch}","seq":${seq},"data":${body}}`;
    const frame = `{"messages":[${message}],"cursor":"${cursor}","gap":false}\n`;
    const event = `id: ${cursor}\ndata: ${message}\n\n`;
    setImmediate(() => {
      if (topic) app.publish(ch, frame);
      else for (const ws of sockets.get(ch) ?? []) ws.cork(() => ws.send(frame));
      for (const r of streams.get(ch) ?? []) r.cork(() => r.write(event));
    });
  });
});
app.listen('127.0.0.1', port, (s) => {
  if (!s) process.exit(1);
  console.log(JSON.stringify({ msg: 'holdfast listening', pid: process.pid, port }));
});
