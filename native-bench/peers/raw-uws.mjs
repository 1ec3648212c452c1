// The ceiling: a minimal uWebSockets.js long-poll server, Map<channel, Set<res>> and nothing else.
//   GET /v1/poll?ch=X parks; POST /v1/publish/X answers everything parked on X with the body.
// Delivery runs on the next loop turn, where each res.cork() is real (packages.md).
import uWS from 'uWebSockets.js';

const port = Number(process.env.PORT ?? 3000);
const parked = new Map();
const app = uWS.App();
app.get('/v1/poll', (res, req) => {
  const ch = new URLSearchParams(req.getQuery() ?? '').get('ch');
  let set = parked.get(ch);
  if (!set) parked.set(ch, (set = new Set()));
  set.add(res);
  res.onAborted(() => set.delete(res));
});
app.post('/v1/publish/*', (res, req) => {
  const ch = req.getUrl().slice('/v1/publish/'.length);
  let body = Buffer.alloc(0);
  res.onAborted(() => {});
  res.onData((chunk, last) => {
    body = Buffer.concat([body, Buffer.from(chunk)]);
    if (!last) return;
    res.cork(() => res.end('{"ok":true}'));
    const set = parked.get(ch);
    if (!set) return;
    parked.delete(ch);
    const msg = `{"messages":[{"ch":"${ch}","data":${body}}]}`;
    setImmediate(() => {
      for (const r of set) r.cork(() => r.writeHeader('Content-Type', 'application/json').end(msg));
    });
  });
});
app.listen('127.0.0.1', port, (s) => {
  if (!s) process.exit(1);
  console.log(JSON.stringify({ msg: 'holdfast listening', pid: process.pid, port }));
});
