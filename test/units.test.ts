/** The small structures under the hot path: cursor codec, ring, timer wheel, reclaim filter. */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UNKNOWN_POSITION, channelHash, decodeCursor, encodeCursor, fingerprint } from '../src/cursor.js';
import { Ring } from '../src/ring.js';
import { TimerWheel, type WheelEntry } from '../src/timer-wheel.js';
import { ReclaimFilter } from '../src/broker/reclaim-filter.js';
import { planRead } from '../src/broker/broker.js';
import { contiguous } from '../src/poll/positions.js';
import { Message } from '../src/message.js';

describe('cursor', () => {
  it('round-trips 32 channels within ~2 KiB', () => {
    const names = Array.from({ length: 32 }, (_, i) => `${'x'.repeat(190)}-${i}`);
    const positions = names.map((_, i) => ({ epoch: 'Oy6nZABFCsk', seq: i * 1_000_003, fp: 0xfffffff0 + (i % 16) }));
    const cursor = encodeCursor(names, positions);
    assert.ok(cursor.length < 2100, `${cursor.length} chars`);
    assert.deepEqual(decodeCursor(cursor).positionsFor(names), positions);
    assert.equal(new Set(names.map(channelHash)).size, 32);
    // Another order of the same channels finds the same positions; an unknown channel none.
    assert.deepEqual(decodeCursor(cursor).positionsFor([names[5]!, 'other', names[0]!]), [positions[5], undefined, positions[0]]);
  });

  // Two names whose 48-bit hashes are equal (found by a birthday search over c + base36 ints).
  const TWINS = ['c2h8q3', 'cimmwd'] as const;

  it('two channels of one poll with the same hash keep their own positions', () => {
    assert.equal(channelHash(TWINS[0]), channelHash(TWINS[1]));
    const positions = [{ epoch: 'E', seq: 3, fp: 7 }, { epoch: 'E', seq: 9, fp: 8 }];
    const cursor = encodeCursor([...TWINS], positions);
    assert.deepEqual(decodeCursor(cursor).positionsFor([...TWINS]), positions);
    assert.deepEqual(decodeCursor(cursor).positionsFor([TWINS[1], TWINS[0]]), [positions[1], positions[0]]);
  });

  it('a hash entry that two channels of a poll share reads as unknown (a gap), never as the other channel', () => {
    const cursor = encodeCursor([TWINS[0]], [{ epoch: 'E', seq: 3, fp: 7 }]);
    assert.deepEqual(decodeCursor(cursor).positionsFor([TWINS[0]]), [{ epoch: 'E', seq: 3, fp: 7 }]);
    assert.deepEqual(decodeCursor(cursor).positionsFor([...TWINS]), [UNKNOWN_POSITION, UNKNOWN_POSITION]);
    assert.equal(planRead(UNKNOWN_POSITION, state(10, 6), false).gap, true);
  });

  it('still reads version 1 cursors (fingerprint unknown)', () => {
    // v1: version | count | hash:u48 | seq:u48 | epochLength | epoch | check:u16
    const buf = Buffer.alloc(2 + 13 + 1 + 2);
    buf[0] = 1;
    buf[1] = 1;
    buf.writeUIntBE(channelHash('news'), 2, 6);
    buf.writeUIntBE(42, 8, 6);
    buf[14] = 1;
    buf.write('E', 15, 'latin1');
    let h = 0x811c9dc5;
    for (let i = 0; i < 16; i++) h = Math.imul(h ^ buf[i]!, 0x01000193);
    buf.writeUInt16BE((h ^ (h >>> 16)) & 0xffff, 16);
    assert.deepEqual(decodeCursor(buf.toString('base64url')).positionsFor(['news']), [{ epoch: 'E', seq: 42, fp: 0 }]);
  });

  it('rejects every single-character change', () => {
    const cursor = encodeCursor(['a'], [{ epoch: 'e1', seq: 5, fp: 1 }]);
    let rejected = 0;
    for (let i = 0; i < cursor.length; i++) {
      const c = cursor[i] === 'A' ? 'B' : 'A';
      try {
        decodeCursor(cursor.slice(0, i) + c + cursor.slice(i + 1));
      } catch {
        rejected++;
      }
    }
    assert.ok(rejected >= cursor.length - 1, `${rejected}/${cursor.length}`); // the last char may carry only padding bits
  });

  it('fingerprints are never 0 and differ for times a microsecond apart', () => {
    assert.notEqual(fingerprint(0), 0);
    assert.notEqual(fingerprint(1732712345678.123), fingerprint(1732712345678.124));
    assert.equal(fingerprint(1732712345678.123), fingerprint(Number('1732712345678.123')));
  });
});

/** A channel state for planRead: lastSeq, firstSeq, and fingerprint seq * 10 for every seq. */
function state(lastSeq: number, firstSeq: number, fingerprintAt = (seq: number) => seq * 10) {
  return { epoch: 'E', lastSeq, firstSeq, fingerprintAt };
}

describe('planRead', () => {
  it('covers now, earliest, in-range, behind, other epoch, ahead, conflated', () => {
    const head = state(10, 6);
    const at = (seq: number, epoch = 'E') => ({ epoch, seq, fp: 0 });
    assert.deepEqual(planRead('now', head, false), { afterSeq: 10, gap: false });
    assert.deepEqual(planRead('earliest', head, false), { afterSeq: 5, gap: false });
    assert.deepEqual(planRead(at(7), head, false), { afterSeq: 7, gap: false });
    assert.deepEqual(planRead(at(5), head, false), { afterSeq: 5, gap: false });
    assert.deepEqual(planRead(at(3), head, false), { afterSeq: 5, gap: true });
    assert.deepEqual(planRead(at(7, 'F'), head, false), { afterSeq: 5, gap: true });
    // A cursor ahead of the store (it lost acknowledged writes): a gap, and nothing at or before it again.
    assert.deepEqual(planRead(at(11), head, false), { afterSeq: 10, gap: true });
    assert.deepEqual(planRead(at(3), state(10, 10), true), { afterSeq: 9, gap: false });
  });

  it('a cursor whose message the store replaced (lost writes, seq reused) is a gap, and nothing at or before it is re-sent', () => {
    const head = state(10, 6);
    assert.deepEqual(planRead({ epoch: 'E', seq: 7, fp: 70 }, head, false), { afterSeq: 7, gap: false });
    assert.deepEqual(planRead({ epoch: 'E', seq: 7, fp: 71 }, head, false), { afterSeq: 7, gap: true });
    assert.deepEqual(planRead({ epoch: 'E', seq: 10, fp: 99 }, head, false), { afterSeq: 10, gap: true });
    assert.deepEqual(planRead({ epoch: 'E', seq: 5, fp: 49 }, head, false), { afterSeq: 5, gap: true });
    // Unknown on either side: not compared.
    assert.deepEqual(planRead({ epoch: 'E', seq: 7, fp: 0 }, head, false), { afterSeq: 7, gap: false });
    assert.deepEqual(planRead({ epoch: 'E', seq: 7, fp: 71 }, state(10, 6, () => 0), false), { afterSeq: 7, gap: false });
  });
});

describe('contiguous (a parked waiter served from notifications)', () => {
  const m = (seq: number, time: number) => new Message('a', seq, 'E', time, `"${seq}"`);
  const at10 = { epoch: 'E', seq: 10, fp: fingerprint(1000.5) };

  it('takes the messages after the position, skipping duplicates of what the waiter saw', () => {
    assert.deepEqual(contiguous('a', [m(10, 1000.5), m(11, 1001), m(12, 1002)], at10, [])?.map((x) => x.seq), [11, 12]);
    assert.equal(contiguous('a', [m(12, 1002)], at10, []), undefined, 'a hole: re-read');
  });

  it('a message at the position with another fingerprint is not a duplicate: the store reused the seq (lost writes), so re-read', () => {
    assert.equal(contiguous('a', [m(10, 1000.7), m(11, 1001)], at10, []), undefined);
  });
});

describe('Ring', () => {
  it('keeps the newest `capacity` items and supports unshift', () => {
    const r = new Ring<number>(3);
    for (let i = 1; i <= 5; i++) r.push(i);
    assert.deepEqual([r.at(0), r.at(1), r.at(2)], [3, 4, 5]);
    assert.equal(r.unshift(2), 5, 'unshift into a full ring drops the newest');
    assert.deepEqual([r.shift(), r.shift(), r.shift(), r.shift()], [2, 3, 4, undefined]);
  });
});

describe('TimerWheel', () => {
  interface E extends WheelEntry { id: number }
  const entry = (id: number, deadline: number): E => ({ id, deadline, wheelSlot: -1, wheelPrev: null, wheelNext: null });

  it('expires entries at their deadline, not before, and removes in O(1)', () => {
    let now = 1_000_000;
    const expired: number[] = [];
    const wheel = new TimerWheel<E>((e) => expired.push(e.id), 100, 64, () => now);
    const a = entry(1, now + 250);
    const b = entry(2, now + 1000);
    const c = entry(3, now + 250);
    wheel.add(a);
    wheel.add(b);
    wheel.add(c);
    wheel.remove(c);
    now += 200;
    wheel.advance();
    assert.deepEqual(expired, []);
    now += 100;
    wheel.advance();
    assert.deepEqual(expired, [1]);
    now += 5000; // far behind: a full turn at most
    wheel.advance();
    assert.deepEqual(expired, [1, 2]);
    assert.equal(wheel.size, 0);
  });
});

describe('ReclaimFilter', () => {
  it('has no false negatives and few false positives', () => {
    const f = new ReclaimFilter();
    for (let i = 0; i < 10_000; i++) f.add(`ch-${i}`);
    for (let i = 0; i < 10_000; i++) assert.ok(f.has(`ch-${i}`));
    let fp = 0;
    for (let i = 0; i < 10_000; i++) if (f.has(`other-${i}`)) fp++;
    assert.ok(fp < 5, `${fp} false positives`);
  });
});
