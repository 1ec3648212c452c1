// The classic tutorial design: Express + ioredis. GET /poll?clientId=X LPOPs X's queue or parks a
// resolver in a Map (with its own setTimeout); POST /push RPUSHes and PUBLISHes the client id;
// the subscriber wakes the parked resolver, which LPOPs.
import express from 'express';
import { Redis } from 'ioredis';

const port = Number(process.env.PORT ?? 3000);
const redis = new Redis(process.env.REDIS_URL);
const sub = new Redis(process.env.REDIS_URL);
const waiting = new Map();
const app = express();
app.use(express.json());

app.get('/poll', async (req, res) => {
  const id = String(req.query.clientId);
  const msg = await redis.lpop(`queue:${id}`);
  if (msg) return res.json({ data: JSON.parse(msg) });
  const timer = setTimeout(() => {
    waiting.delete(id);
    res.json({ status: 'timeout' });
  }, Number(req.query.timeout ?? 30000));
  waiting.set(id, async () => {
    clearTimeout(timer);
    waiting.delete(id);
    const m = await redis.lpop(`queue:${id}`);
    res.json(m ? { data: JSON.parse(m) } : { status: 'timeout' });
  });
});

app.post('/push', async (req, res) => {
  const { clientId, message } = req.body;
  await redis.rpush(`queue:${clientId}`, JSON.stringify(message));
  await redis.publish('push', String(clientId));
  res.json({ status: 'ok' });
});

sub.subscribe('push');
sub.on('message', (_channel, id) => waiting.get(id)?.());
app.listen(port, '127.0.0.1', () => console.log(JSON.stringify({ msg: 'holdfast listening', pid: process.pid, port })));
