/**
 * fast-check commands: each is one step a user of Holdfast could take, generated with its
 * parameters, shrunk by fast-check, and printed in readable form in a failure's history.
 * Indices (client, channel, clientId, server) are taken modulo what the run has, so any
 * shrunk or hand-written list is valid.
 */

import fc from 'fast-check';
import * as act from './actions.js';
import type { BatchItemSpec, BatchSpec, DenyHow, IdemChoice, PollMode, PublishSpec } from './actions.js';
import type { AnswerFormat, BodyKind } from './driver.js';
import type { Shape } from './model.js';
import type { ClientSpec, Run, RunSpec } from './run.js';
import { SHORT_NAMES, SHORT_SEED_IDS } from './names.js';
import * as seeds from './seeds.js';
import { type StreamSpec, type StreamTransport, type TokenPlace, closeStream } from './streams.js';

export type Cmd = fc.AsyncCommand<Run, Run>;

const UNIVERSE = SHORT_NAMES.length;
const client = (m: Run, i: number) => m.clients[i % m.clients.length]!;
/** Neither a poll nor a stream outstanding: the client may start either. */
const idle = (m: Run, i: number) => client(m, i).poll === undefined && client(m, i).stream === undefined;
/** Channel `i` and seed clientId `i` by short name, for the printed history. */
const chName = (i: number) => SHORT_NAMES[i % UNIVERSE];
const idName = (i: number) => `id:${SHORT_SEED_IDS[i % SHORT_SEED_IDS.length]}`;
const short = (v: unknown) => JSON.stringify(v).slice(0, 24);
/** `a a a b` → `a×3 b`. */
const runs = (xs: string[]) => xs.reduce<[string, number][]>((acc, x) => {
  const last = acc[acc.length - 1];
  if (last && last[0] === x) last[1]++;
  else acc.push([x, 1]);
  return acc;
}, []).map(([x, n]) => (n > 1 ? `${x}×${n}` : x)).join(' ');
const seedOutstanding = (m: Run, i: number) => {
  const id = m.names.seedIds[i % m.names.seedIds.length];
  return [...m.seedPolls].filter((p) => p.id === id && !p.pending.done).length;
};

/** A command on one client: remembers which client index `i` resolved to, for the history. */
abstract class OnClient {
  protected who: string | undefined;
  constructor(readonly client: number) {}
  protected pick(m: Run) {
    const c = client(m, this.client);
    this.who = c.label;
    return c;
  }
  protected get name(): string {
    return this.who ?? `c${this.client}`;
  }
}

export class PublishCmd implements Cmd {
  constructor(readonly p: PublishSpec) {}
  check = () => true;
  run = (m: Run) => act.publish(m, this.p);
  toString = () => `publish(${chName(this.p.ch)} ${this.p.kind} ${this.p.shape}${this.p.idem === 'none' ? '' : ` ${this.p.idem}#${this.p.pick}`}${this.p.server ? ' @s1' : ''} ${short(this.p.content)})`;
}

export class BatchCmd implements Cmd {
  constructor(readonly b: BatchSpec) {}
  check = () => true;
  run = (m: Run) => act.batch(m, this.b);
  toString = () => `batch(${this.b.format}${this.b.server ? ' @s1' : ''} [${runs(this.b.items.map((i) => `${chName(i.ch)}${i.idem === 'none' ? '' : `/${i.idem}`}`))}])`;
}

export class PollCmd extends OnClient implements Cmd {
  constructor(
    client: number,
    readonly mode: PollMode,
    readonly max: number | undefined,
    readonly timeout: 'long' | 'short' | 'clamp',
    readonly server: number,
  ) {
    super(client);
  }
  check = (m: Readonly<Run>) => idle(m as Run, this.client);
  run = (m: Run) => act.poll(m, this.pick(m), this.mode, this.max, this.timeout, this.server);
  override toString = () => `poll(${this.name} ${this.mode}${this.max === undefined ? '' : ` max=${this.max}`} ${this.timeout}${this.server ? ' @s1' : ''})`;
}

export class AbortCmd extends OnClient implements Cmd {
  check = (m: Readonly<Run>) => client(m as Run, this.client).poll !== undefined;
  run = async (m: Run) => {
    m.abortV1(this.pick(m));
    await m.settle('after an abort');
  };
  override toString = () => `abort(${this.name})`;
}

export class RaceCmd extends OnClient implements Cmd {
  constructor(
    client: number,
    readonly chPick: number,
    readonly p: PublishSpec,
  ) {
    super(client);
  }
  check = (m: Readonly<Run>) => idle(m as Run, this.client);
  run = (m: Run) => act.race(m, this.pick(m), this.chPick, this.p);
  override toString = () => `race(${this.name} polls while its channel #${this.chPick} gets a ${this.p.kind} publish)`;
}

export class DeleteCmd implements Cmd {
  constructor(
    readonly ch: number,
    readonly server: number,
  ) {}
  check = () => true;
  run = (m: Run) => act.deleteChannel(m, this.ch, this.server);
  toString = () => `delete(${chName(this.ch)}${this.server ? ' @s1' : ''})`;
}

export class InfoCmd implements Cmd {
  constructor(
    readonly ch: number,
    readonly server: number,
  ) {}
  check = () => true;
  run = (m: Run) => act.channelInfo(m, this.ch, this.server);
  toString = () => `info(${chName(this.ch)}${this.server ? ' @s1' : ''})`;
}

export class DeniedCmd extends OnClient implements Cmd {
  constructor(
    client: number,
    readonly how: DenyHow,
    readonly extra: number,
    readonly server: number,
  ) {
    super(client);
  }
  check = () => true;
  run = (m: Run) => act.deniedPoll(m, this.pick(m), this.how, this.extra, this.server);
  override toString = () => `denied(${this.name} ${this.how})`;
}

export class RewindCmd extends OnClient implements Cmd {
  constructor(
    client: number,
    readonly k: number,
  ) {
    super(client);
  }
  check = (m: Readonly<Run>) => {
    const c = client(m as Run, this.client);
    return c.poll === undefined && c.stream === undefined && c.history.length > 0;
  };
  run = async (m: Run) => act.rewind(m, this.pick(m), this.k);
  override toString = () => `rewind(${this.name} to an earlier cursor)`;
}

export class PushCmd implements Cmd {
  constructor(
    readonly id: number,
    readonly content: unknown,
    readonly server: number,
  ) {}
  check = () => true;
  run = (m: Run) => seeds.push(m, this.id, this.content, this.server);
  toString = () => `push(${idName(this.id)}${this.server ? ' @s1' : ''} ${short(this.content)})`;
}

export class SeedPollCmd implements Cmd {
  constructor(
    readonly id: number,
    readonly long: boolean,
    readonly server: number,
  ) {}
  check = (m: Readonly<Run>) => seedOutstanding(m as Run, this.id) < 2;
  run = (m: Run) => seeds.seedPoll(m, this.id, this.long, this.server);
  toString = () => `seedPoll(${idName(this.id)} ${this.long ? 'long' : 'short'}${this.server ? ' @s1' : ''})`;
}

export class DeniedSeedCmd implements Cmd {
  constructor(
    readonly id: number,
    readonly server: number,
  ) {}
  check = () => true;
  run = (m: Run) => seeds.deniedSeedPoll(m, this.id, this.server);
  toString = () => `deniedSeedPoll(${idName(this.id)})`;
}

export class DisconnectCmd implements Cmd {
  constructor(
    readonly id: number,
    readonly server: number,
  ) {}
  check = () => true;
  run = (m: Run) => seeds.disconnect(m, this.id, this.server);
  toString = () => `disconnect(${idName(this.id)}${this.server ? ' @s1' : ''})`;
}

export class SeedAbortCmd implements Cmd {
  constructor(readonly id: number) {}
  check = (m: Readonly<Run>) => seedOutstanding(m as Run, this.id) > 0;
  run = (m: Run) => seeds.abortSeedPoll(m, this.id);
  toString = () => `seedAbort(${idName(this.id)})`;
}

/**
 * One message to every channel a poll is parked on or a stream follows, in one batch: every
 * parked poll and stream is woken in the same flush, many of them at the same seq (the collision class of issue 8).
 */
export class FanoutParkedCmd implements Cmd {
  constructor(
    readonly shape: Shape,
    readonly content: unknown,
    readonly server: number,
  ) {}
  check = (m: Readonly<Run>) => [...(m as Run).v1].some((p) => !p.pending.done) || (m as Run).streams.size > 0;
  run = (m: Run) => {
    const parked = new Set([...m.v1].filter((p) => !p.pending.done).flatMap((p) => p.view.channels).concat([...m.streams].flatMap((s) => s.channels)));
    const items = [...parked].map((name): BatchItemSpec => ({ ch: m.names.channels.indexOf(name), shape: this.shape, content: this.content, idem: 'none', pick: 0 }));
    return act.batch(m, { items, format: 'json', server: this.server });
  };
  toString = () => `fanoutToParked(${this.shape}${this.server ? ' @s1' : ''})`;
}

/** Opens an SSE or WebSocket stream for a client, from its cursor (a resume), from now or earliest. */
export class OpenStreamCmd extends OnClient implements Cmd {
  constructor(
    client: number,
    readonly spec: StreamSpec,
    /** A publish to one of its channels sent while the stream opens. */
    readonly race: PublishSpec | undefined,
  ) {
    super(client);
  }
  check = (m: Readonly<Run>) => idle(m as Run, this.client);
  run = (m: Run) => act.stream(m, this.pick(m), this.spec, this.race);
  override toString = () => {
    const s = this.spec;
    const resume = s.transport === 'sse' && s.mode === 'cursor' && s.lastEventId ? ' last-event-id' : '';
    return `openStream(${this.name} ${s.transport} ${s.mode}${resume} token:${s.token}${s.server ? ' @s1' : ''}${this.race ? ` racing a ${this.race.kind} publish` : ''})`;
  };
}

/** The k-th client (mod their number) of those with an open stream. */
const streaming = (m: Run, k: number) => {
  const open = m.clients.filter((c) => c.stream !== undefined);
  return open[k % open.length]!;
};

export class CloseStreamCmd implements Cmd {
  private who: string | undefined;
  constructor(readonly k: number) {}
  check = (m: Readonly<Run>) => (m as Run).streams.size > 0;
  run = async (m: Run) => {
    const c = streaming(m, this.k);
    this.who = c.label;
    closeStream(m, c);
    await m.settle('after a stream was closed');
  };
  toString = () => `closeStream(${this.who ?? `streaming client #${this.k}`})`;
}

/**
 * A client leaves its stream and at once follows on from its cursor elsewhere: another stream
 * (another transport or server) or a long poll. Nothing may be doubled or skipped across it.
 */
export class SwitchCmd implements Cmd {
  private who: string | undefined;
  constructor(
    readonly k: number,
    /** The next stream, or undefined for a long poll. */
    readonly to: StreamSpec | undefined,
    readonly server: number,
  ) {}
  check = (m: Readonly<Run>) => (m as Run).streams.size > 0;
  run = async (m: Run) => {
    const c = streaming(m, this.k);
    this.who = c.label;
    closeStream(m, c);
    if (this.to) await act.stream(m, c, { ...this.to, mode: 'cursor' }, undefined);
    else await act.poll(m, c, 'cursor', undefined, 'long', this.server);
  };
  toString = () => {
    const to = this.to ? `${this.to.transport}${this.to.transport === 'sse' && this.to.lastEventId ? ' last-event-id' : ''} token:${this.to.token}${this.to.server ? ' @s1' : ''}` : `poll${this.server ? ' @s1' : ''}`;
    return `switch(${this.who ?? `streaming client #${this.k}`} → ${to})`;
  };
}

export class DeniedStreamCmd extends OnClient implements Cmd {
  constructor(
    client: number,
    readonly transport: StreamTransport,
    readonly how: DenyHow,
    readonly extra: number,
    readonly server: number,
  ) {
    super(client);
  }
  check = () => true;
  run = (m: Run) => act.deniedStreamOf(m, this.pick(m), this.transport, this.how, this.extra, this.server);
  override toString = () => `deniedStream(${this.name} ${this.transport} ${this.how})`;
}

/** Lets the polls with a 1 s timeout time out (a normal answer: empty, cursor still covering). */
export class WaitTimeoutsCmd implements Cmd {
  check = (m: Readonly<Run>) => [...(m as Run).v1].some((p) => !p.view.long && !p.pending.done);
  run = (m: Run) => m.awaitShortPolls();
  toString = () => 'waitForTimeouts()';
}

// ---- arbitraries ---------------------------------------------------------------------

const leaf = fc.oneof(
  fc.string({ maxLength: 10 }),
  fc.string({ unit: 'grapheme', maxLength: 4 }),
  fc.integer({ min: -1_000_000, max: 1_000_000 }),
  fc.constantFrom(0.5, -2.25, 1e-7, 123456.789, 2 ** 40),
  fc.boolean(),
  fc.constant(null),
);
export const contentArb: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 3, arbitrary: leaf },
  { weight: 1, arbitrary: fc.array(leaf, { maxLength: 3 }) },
  { weight: 1, arbitrary: fc.dictionary(fc.string({ maxLength: 5 }), leaf, { maxKeys: 3, noNullPrototype: true }) },
);

const ch = fc.nat({ max: UNIVERSE - 1 });
/** Single-channel clients lean on the slot group {0, 6, 7}: channels at the same seq and epoch. */
const leaningCh = fc.oneof({ weight: 3, arbitrary: fc.constantFrom(0, 6, 7) }, { weight: 2, arbitrary: ch });
const server = fc.oneof({ weight: 3, arbitrary: fc.constant(0) }, { weight: 2, arbitrary: fc.constant(1) });
const shape = fc.constantFrom<Shape>('object', 'string', 'array', 'number');
const idem = fc.constantFrom<IdemChoice>('none', 'none', 'none', 'none', 'new', 'retry', 'cross');
const pick = fc.nat({ max: 15 });

const clientArb: fc.Arbitrary<ClientSpec> = fc.record({
  channels: fc.oneof(
    { weight: 6, arbitrary: leaningCh.map((c) => [c]) },
    { weight: 3, arbitrary: fc.uniqueArray(ch, { minLength: 2, maxLength: 4 }) },
    // Both hash twins in one poll (their cursor entries share a hash), maybe with another.
    { weight: 1, arbitrary: fc.uniqueArray(ch, { maxLength: 1 }).map((more) => [8, 9, ...more.filter((c) => c < 8)]) },
  ),
  format: fc.constantFrom<AnswerFormat>('json', 'json', 'json', 'msgpack'),
  token: fc.constantFrom<'exact' | 'pattern'>('exact', 'exact', 'pattern'),
  tokenInQuery: fc.boolean(),
});

export const runSpecArb: fc.Arbitrary<RunSpec> = fc.record({ clients: fc.array(clientArb, { minLength: 2, maxLength: 6 }) });

export const publishArb: fc.Arbitrary<PublishSpec> = fc.record({
  ch,
  kind: fc.constantFrom<BodyKind>('json', 'json', 'text', 'msgpack'),
  shape,
  content: contentArb,
  idem,
  pick,
  server,
});

const itemArb: fc.Arbitrary<BatchItemSpec> = fc.record({
  ch,
  shape,
  content: contentArb,
  idem: fc.constantFrom<IdemChoice | 'repeat'>('none', 'none', 'none', 'new', 'retry', 'repeat'),
  pick,
});
/** One item per channel: channels that stood at the same seq are woken in one flush. */
const fanoutArb = fc
  .record({
    chans: fc.oneof(fc.constantFrom<number[]>([0, 6, 7], [0, 1, 2], [3, 0], [6, 7], [8, 9], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]), fc.uniqueArray(ch, { minLength: 2, maxLength: 5 })),
    shape,
    content: contentArb,
  })
  .map(({ chans, shape, content }) => chans.map((c): BatchItemSpec => ({ ch: c, shape, content, idem: 'none', pick: 0 })));
/** Many messages to one channel at once: histories overflow (trimming gaps) and answers fill `max`. */
const burstArb = fc
  .record({ ch, count: fc.integer({ min: 5, max: 30 }), shape, content: contentArb })
  .map(({ ch, count, shape, content }) => Array.from({ length: count }, (): BatchItemSpec => ({ ch, shape, content, idem: 'none', pick: 0 })));
const batchArb: fc.Arbitrary<BatchSpec> = fc.record({
  items: fc.oneof({ weight: 3, arbitrary: fc.array(itemArb, { minLength: 1, maxLength: 5 }) }, { weight: 3, arbitrary: fanoutArb }, { weight: 1, arbitrary: burstArb }),
  format: fc.constantFrom<'json' | 'msgpack'>('json', 'json', 'msgpack'),
  server,
});

const transportArb = fc.constantFrom<StreamTransport>('sse', 'ws-json', 'ws-msgpack');
const streamSpecArb: fc.Arbitrary<StreamSpec> = fc.record({
  transport: transportArb,
  mode: fc.constantFrom<PollMode>('cursor', 'cursor', 'cursor', 'cursor', 'now', 'earliest'),
  token: fc.constantFrom<TokenPlace>('header', 'query', 'op'),
  server,
  lastEventId: fc.boolean(),
});

const clientIx = fc.nat({ max: 5 });
const seedIx = fc.nat({ max: 1 });

export const commandArbs: fc.Arbitrary<Cmd>[] = [
  fc.oneof(
    { weight: 20, arbitrary: publishArb.map((p) => new PublishCmd(p)) },
    { weight: 12, arbitrary: batchArb.map((b) => new BatchCmd(b)) },
    {
      weight: 28,
      arbitrary: fc
        .tuple(
          clientIx,
          fc.constantFrom<PollMode>('cursor', 'cursor', 'cursor', 'cursor', 'now', 'earliest'),
          fc.oneof({ weight: 4, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.constantFrom(1, 2, 3, 5) }),
          fc.constantFrom<'long' | 'short' | 'clamp'>('long', 'long', 'long', 'long', 'long', 'short', 'clamp'),
          server,
        )
        .map(([c, mode, max, timeout, s]) => new PollCmd(c, mode, max, timeout, s)),
    },
    { weight: 5, arbitrary: clientIx.map((c) => new AbortCmd(c)) },
    { weight: 4, arbitrary: fc.tuple(clientIx, fc.nat({ max: 3 }), publishArb).map(([c, k, p]) => new RaceCmd(c, k, p)) },
    { weight: 2, arbitrary: fc.tuple(ch, server).map(([c, s]) => new DeleteCmd(c, s)) },
    { weight: 2, arbitrary: fc.tuple(ch, server).map(([c, s]) => new InfoCmd(c, s)) },
    { weight: 2, arbitrary: fc.tuple(clientIx, fc.constantFrom<DenyHow>('ungranted', 'ungranted', 'missing', 'forged', 'header-wins'), ch, server).map(([c, h, e, s]) => new DeniedCmd(c, h, e, s)) },
    { weight: 2, arbitrary: fc.tuple(clientIx, fc.nat({ max: 3 })).map(([c, k]) => new RewindCmd(c, k)) },
    { weight: 5, arbitrary: fc.tuple(seedIx, contentArb, server).map(([i, v, s]) => new PushCmd(i, v, s)) },
    { weight: 5, arbitrary: fc.tuple(seedIx, fc.constantFrom(true, true, true, false), server).map(([i, l, s]) => new SeedPollCmd(i, l, s)) },
    { weight: 1, arbitrary: fc.tuple(seedIx, server).map(([i, s]) => new DeniedSeedCmd(i, s)) },
    { weight: 1, arbitrary: fc.tuple(seedIx, server).map(([i, s]) => new DisconnectCmd(i, s)) },
    { weight: 2, arbitrary: seedIx.map((i) => new SeedAbortCmd(i)) },
    { weight: 1, arbitrary: fc.constant(null).map(() => new WaitTimeoutsCmd()) },
    { weight: 10, arbitrary: fc.tuple(clientIx, streamSpecArb, fc.option(publishArb, { freq: 5 })).map(([c, s, r]) => new OpenStreamCmd(c, s, r ?? undefined)) },
    { weight: 4, arbitrary: clientIx.map((k) => new CloseStreamCmd(k)) },
    { weight: 8, arbitrary: fc.tuple(clientIx, fc.option(streamSpecArb, { freq: 3 }), server).map(([k, to, s]) => new SwitchCmd(k, to ?? undefined, s)) },
    { weight: 1, arbitrary: fc.tuple(clientIx, transportArb, fc.constantFrom<DenyHow>('ungranted', 'ungranted', 'missing', 'forged', 'header-wins'), ch, server).map(([c, t, h, e, s]) => new DeniedStreamCmd(c, t, h, e, s)) },
    { weight: 8, arbitrary: fc.tuple(shape, contentArb, server).map(([sh, v, s]) => new FanoutParkedCmd(sh, v, s)) },
  ),
];
