/**
 * A lockstep load run against a real server over HTTP: C long-poll clients follow K channels
 * by their cursors while a paced publisher sends round after round, one message to every
 * channel per round, so after each round every channel stands at the same seq. A round goes
 * out as one batch (every channel woken in one flush), as two concurrent half batches, or as
 * K concurrent single publishes. Every answer is checked against the Ledger.
 *
 *   round r:  [ch0 seq r+1] [ch1 seq r+1] … [chK-1 seq r+1]   (next round once acknowledged,
 *             no earlier than r × K / rate seconds after the start)
 */

import http from 'node:http';
import { setTimeout as delay } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import calculateSlot from 'cluster-key-slot';
import { SignJWT } from 'jose';
import { ClientLedger, type Counters, Ledger, type Payload, type PollAnswerBody } from './ledger.js';

export interface LockstepOptions {
  base: string;
  clients: number;
  channels: readonly string[];
  /** Messages per channel: seqs 1 … rounds. */
  rounds: number;
  /** Messages per second, over all channels. */
  ratePerSec: number;
  /** Every `multiEvery`-th client follows 2–4 channels in one poll. */
  multiEvery: number;
  /** With the server's LP_JWT_SECRET, each client sends an HS256 token granting exactly its channels. */
  tokenSecret?: string;
  /** How long clients may take to catch up once the last round is acknowledged. */
  settleMs: number;
  /** Bound on waiting for every client's first poll to park. */
  parkMs: number;
}

export interface LockstepResult {
  counters: Counters;
  /** A few examples per non-zero counter. */
  examples: Record<string, string[]>;
  clients: number;
  follows: number;
  complete: number;
  published: number;
  /** Acknowledged seqs that differ from the plan (the channel was not fresh, or a bug). */
  misnumbered: number;
  publishSeconds: number;
  publishRate: number;
  deliveryRate: number;
  p50Ms: number;
  p99Ms: number;
  caughtUpInTime: boolean;
  wallMs: number;
}

/**
 * `groups × perGroup` channel names, each group in one Redis Cluster slot: a channel never
 * published to starts in its slot's epoch (memory: the store's), so slot mates start out
 * identical but for their name — the case a shared structure keyed without the channel mixes up.
 * Slot mates are neighbours, so clients that follow several channels follow slot mates.
 */
export function slotMates(prefix: string, groups: number, perGroup: number): string[] {
  const names: string[] = [];
  for (let g = 0; g < groups; g++) {
    const first = `${prefix}${g}`;
    const slot = calculateSlot(first);
    names.push(first);
    for (let i = 0, found = 1; found < perGroup; i++) {
      const name = `${first}.${i}`;
      if (calculateSlot(name) === slot) {
        names.push(name);
        found++;
      }
    }
  }
  return names;
}

/** Client i follows channel i % K, and every `every`-th client 1–3 neighbours too. */
export function channelsOf(i: number, channels: readonly string[], every: number): string[] {
  const extra = every > 0 && i % every === every - 1 ? 1 + (Math.floor(i / every) % 3) : 0;
  const out: string[] = [];
  for (let k = 0; k <= Math.min(extra, channels.length - 1); k++) out.push(channels[(i + k) % channels.length]!);
  return out;
}

/** The server's parked-poll gauge, from /metrics (the contract's name, whatever the internals). */
export async function parkedPolls(base: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('holdfast_parked_polls '));
  return line ? Number(line.split(' ')[1]) : NaN;
}

/**
 * Runs the clients and the publisher on a worker thread, so a server in this process has the
 * main thread to itself (on 2 cores, sharing one thread starves both sides).
 */
export function runLockstepInWorker(o: LockstepOptions): Promise<LockstepResult> {
  // The worker is TypeScript, and on Node 20 a worker does not run the parent's --import
  // hooks before loading its entry: register tsx in the worker first, then load it.
  const tsx = JSON.stringify(import.meta.resolve('tsx/esm/api'));
  const entry = JSON.stringify(new URL('./lockstep-worker.ts', import.meta.url).href);
  const boot = `import(${tsx}).then((api) => { api.register(); return import(${entry}); })`;
  const worker = new Worker(boot, { eval: true, workerData: o });
  const outcome = new Promise<LockstepResult>((resolve, reject) => {
    worker.once('message', (m: { result?: LockstepResult; error?: string }) => (m.result ? resolve(m.result) : reject(new Error(m.error))));
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`the load worker exited (${code}) without a result`)));
  });
  // Whatever happened, the worker holds no sockets once the run is over.
  return outcome.finally(() => worker.terminate());
}

export async function runLockstep(o: LockstepOptions): Promise<LockstepResult> {
  const started = performance.now();
  const ledger = new Ledger(o.rounds);
  const clients = Array.from({ length: o.clients }, (_, i) => new ClientLedger(i, channelsOf(i, o.channels, o.multiEvery), ledger));
  const key = o.tokenSecret === undefined ? undefined : new TextEncoder().encode(o.tokenSecret);
  const headers = await Promise.all(clients.map(async (c): Promise<Record<string, string>> => {
    if (!key) return {};
    const token = await new SignJWT({ channels: [...c.channels] }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('10m').sign(key);
    return { authorization: `Bearer ${token}` };
  }));
  const net = new Http();
  const loops = clients.map((c, i) => follow(o.base, c, headers[i]!, ledger, net));
  let publish: { seconds: number; misnumbered: number } | undefined;
  let caughtUpInTime = false;
  let publishStart = 0;
  let lastDelivery = 0;
  try {
    await waitParked(o.base, o.clients, o.parkMs);
    publishStart = performance.now();
    publish = await publishRounds(o, ledger, net);
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), o.settleMs)));
    caughtUpInTime = await Promise.race([Promise.all(loops).then(() => true), deadline]);
    clearTimeout(timer);
    lastDelivery = performance.now();
  } finally {
    net.stop();
    await Promise.all(loops);
  }
  const counters = ledger.settle(clients);
  const deliverSeconds = (lastDelivery - publishStart) / 1000;
  return {
    counters,
    examples: Object.fromEntries(ledger.examples),
    clients: o.clients,
    follows: clients.reduce((n, c) => n + c.channels.length, 0),
    complete: clients.filter((c) => c.complete).length,
    published: o.rounds * o.channels.length,
    misnumbered: publish.misnumbered,
    publishSeconds: publish.seconds,
    publishRate: Math.round((o.rounds * o.channels.length) / publish.seconds),
    deliveryRate: Math.round(counters.deliveries / deliverSeconds),
    p50Ms: ledger.percentile(0.5),
    p99Ms: ledger.percentile(0.99),
    caughtUpInTime,
    wallMs: Math.round(performance.now() - started),
  };
}

/**
 * The clients' HTTP: Node's own client on keep-alive sockets. fetch costs ~5× its CPU per
 * request (measured here: ~250 µs against ~50 µs), and 400 clients re-polling at up to 25
 * answers/s each would starve the server of the second core.
 */
class Http {
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
  private readonly inFlight = new Set<http.ClientRequest>();
  stopped = false;

  /** One request; resolves with the status and the body text. */
  request(url: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<{ status: number; text: string }> {
    return new Promise((resolve, reject) => {
      const req = http.request(url, { method: init.method ?? 'GET', headers: init.headers, agent: this.agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          this.inFlight.delete(req);
          resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') });
        });
        res.on('error', reject);
        res.on('close', () => {
          this.inFlight.delete(req);
          if (!res.complete) reject(new Error('the answer was cut off'));
        });
      });
      req.on('error', (err) => {
        this.inFlight.delete(req);
        reject(err);
      });
      this.inFlight.add(req);
      req.end(init.body);
    });
  }

  /** Ends the run: aborts every request in flight and closes the sockets. */
  stop(): void {
    this.stopped = true;
    for (const req of this.inFlight) req.destroy();
    this.agent.destroy();
  }
}

/** One client: poll, check, re-poll with the answer's cursor, until it has every seq. */
async function follow(base: string, client: ClientLedger, headers: Record<string, string>, ledger: Ledger, net: Http): Promise<void> {
  const query = client.channels.map((ch) => `ch=${encodeURIComponent(ch)}`).join('&') + '&timeout=10000&max=1000';
  let cursor = 'earliest';
  while (!client.complete && !net.stopped) {
    let body: PollAnswerBody;
    try {
      const res = await net.request(`${base}/v1/poll?${query}&cursor=${encodeURIComponent(cursor)}`, { headers });
      if (res.status !== 200) {
        ledger.error(`client ${client.id}: ${res.status} ${res.text}`);
        return;
      }
      body = JSON.parse(res.text) as PollAnswerBody;
    } catch (err) {
      if (!net.stopped) ledger.error(`client ${client.id}: ${(err as Error).message}`);
      return;
    }
    const next = client.take(body);
    if (next === undefined) return;
    cursor = next;
  }
}

async function waitParked(base: string, n: number, limitMs: number): Promise<void> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    const parked = await parkedPolls(base);
    if (parked >= n) return;
    if (Date.now() > deadline) throw new Error(`only ${parked} of ${n} polls parked within ${limitMs} ms`);
    await new Promise((r) => setImmediate(r));
  }
}

interface PublishAck {
  ch: string;
  seq: number;
}

/** Publishes every round on schedule; the next round leaves once this one is acknowledged. */
async function publishRounds(o: LockstepOptions, ledger: Ledger, net: Http): Promise<{ seconds: number; misnumbered: number }> {
  const roundMs = (o.channels.length * 1000) / o.ratePerSec;
  const t0 = performance.now();
  let misnumbered = 0;
  for (let r = 0; r < o.rounds; r++) {
    const wait = t0 + r * roundMs - performance.now();
    if (wait > 0) await delay(wait);
    const seq = r + 1;
    const t = Date.now();
    const items = o.channels.map((ch) => ({ ch, data: { c: ch, s: seq, t } satisfies Payload }));
    for (const item of items) ledger.publishing(item.ch, seq, item.data);
    const acks = await publishRound(net, o.base, items, r % 4);
    acks.forEach((ack, i) => {
      if (ack.ch !== items[i]!.ch || ack.seq !== seq) {
        misnumbered++;
        ledger.example('misnumbered', `published ${items[i]!.ch} as seq ${seq}, the server answered ${JSON.stringify(ack)}`);
      }
    });
  }
  return { seconds: (performance.now() - t0) / 1000, misnumbered };
}

/** One round: mode 1 as two concurrent half batches, mode 2 as single publishes, else one batch. */
async function publishRound(net: Http, base: string, items: { ch: string; data: Payload }[], mode: number): Promise<PublishAck[]> {
  const post = async (url: string, json: unknown) => {
    const res = await net.request(url, { method: 'POST', body: JSON.stringify(json), headers: { 'content-type': 'application/json' } });
    if (res.status !== 200) throw new Error(`publish to ${url} answered ${res.status}: ${res.text}`);
    return JSON.parse(res.text) as unknown;
  };
  if (mode === 2) return Promise.all(items.map(async (item) => (await post(`${base}/v1/publish/${encodeURIComponent(item.ch)}`, item.data)) as PublishAck));
  const batch = async (part: typeof items) => ((await post(`${base}/v1/publish`, { messages: part })) as { results: PublishAck[] }).results;
  if (mode === 1) {
    const half = Math.ceil(items.length / 2);
    return (await Promise.all([batch(items.slice(0, half)), batch(items.slice(half))])).flat();
  }
  return batch(items);
}
