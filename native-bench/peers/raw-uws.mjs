// The ceiling: a minimal uWebSockets.js long-poll server, Map<channel, Set<res>> and nothing else.
//   GET /v1/poll?ch=X parks; POST /v1/publish/X answers everything parked on X with the body.
//   GET /v1/poll?ch=X&cursor=… answers at once with X's newest message when there is one
//   (the fast path: a poll whose message is waiting), a poll-sized JSON answer built when it
//   was published. GET /parked says how many polls are parked (for the benchmark to wait on).
// Delivery runs on the next loop turn, where each res.cork() is real (packages.md).
import uWS from 'uWebSockets.js';

const port = Number(process.env.PORT ?? 3000);
const parked = new Map();
const newest = new Map();
let parkedCount = 0;
const app = uWS.App();
app.get('/v1/poll', (res, req) => {
  const query = new URLSearchParams(req.getQuery() ?? '');
  const ch = query.get('ch');
  const waiting = query.has('cursor') ? newest.get(ch) : undefined;
  if (waiting !== undefined) {
    res.cork(() => res.writeHeader('Content-Type', 'application/json').end(waiting));
    return;
  }
  let set = parked.get(ch);
  if (!set) parked.set(ch, (set = new Set()));
  set.add(res);
  parkedCount++;
  res.onAborted(() => {
    if (set.delete(res)) parkedCount--;
  });
});
app.get('/parked', (res) => {
  res.end(String(parkedCount));
});
let seq = 0;
app.post('/v1/publish/*', (res, req) => {
  const ch = req.getUrl().slice('/v1/publish/'.length);
  let body = Buffer.alloc(0);
  res.onAborted(() => {});
  res.onData((chunk, last) => {
    body = Buffer.concat([body, Buffer.from(chunk)]);
    if (!last) return;
    res.cork(() => res.end('{"ok":true}'));
    // The same shape and size as a Holdfast answer (a 48-character cursor).
    const msg = `{"messages":[{"ch":"${ch}","seq":${++seq},"data":${body}}],"cursor":"${String(seq).padStart(48, 'c')}","gap":false}\n`;
    newest.set(ch, msg);
    const set = parked.get(ch);
    if (!set) return;
    parked.delete(ch);
    parkedCount -= set.size;
    setImmediate(() => {
      for (const r of set) r.cork(() => r.writeHeader('Content-Type', 'application/json').end(msg));
    });
  });
});
app.listen('127.0.0.1', port, (s) => {
  if (!s) process.exit(1);
  console.log(JSON.stringify({ msg: 'holdfast listening', pid: process.pid, port }));
});
