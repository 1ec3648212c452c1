/** The small structures under the hot path: cursor codec, ring, timer wheel, reclaim filter. */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { channelHash, decodeCursor, encodeCursor } from '../src/cursor.js';
import { Ring } from '../src/ring.js';
import { TimerWheel, type WheelEntry } from '../src/timer-wheel.js';
import { ReclaimFilter } from '../src/broker/reclaim-filter.js';
import { planRead } from '../src/broker/broker.js';

describe('cursor', () => {
  it('round-trips 32 channels within ~2 KiB', () => {
    const names = Array.from({ length: 32 }, (_, i) => `${'x'.repeat(190)}-${i}`);
    const hashes = names.map(channelHash);
    const positions = names.map((_, i) => ({ epoch: 'Oy6nZABFCsk', seq: i * 1_000_003 }));
    const cursor = encodeCursor(names, positions);
    assert.ok(cursor.length < 2100, `${cursor.length} chars`);
    const decoded = decodeCursor(cursor);
    for (let i = 0; i < 32; i++) assert.deepEqual(decoded.get(hashes[i]!), positions[i]);
    assert.equal(new Set(hashes).size, 32);
  });

  it('rejects every single-character change', () => {
    const cursor = encodeCursor(['a'], [{ epoch: 'e1', seq: 5 }]);
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
});

describe('planRead', () => {
  const head = { epoch: 'E', lastSeq: 10 };
  it('covers now, earliest, in-range, behind, other epoch, ahead, conflated', () => {
    assert.deepEqual(planRead('now', head, 6, false), { afterSeq: 10, gap: false });
    assert.deepEqual(planRead('earliest', head, 6, false), { afterSeq: 5, gap: false });
    assert.deepEqual(planRead({ epoch: 'E', seq: 7 }, head, 6, false), { afterSeq: 7, gap: false });
    assert.deepEqual(planRead({ epoch: 'E', seq: 5 }, head, 6, false), { afterSeq: 5, gap: false });
    assert.deepEqual(planRead({ epoch: 'E', seq: 3 }, head, 6, false), { afterSeq: 5, gap: true });
    assert.deepEqual(planRead({ epoch: 'F', seq: 7 }, head, 6, false), { afterSeq: 5, gap: true });
    assert.deepEqual(planRead({ epoch: 'E', seq: 11 }, head, 6, false), { afterSeq: 5, gap: true });
    assert.deepEqual(planRead({ epoch: 'E', seq: 3 }, head, 10, true), { afterSeq: 9, gap: false });
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
