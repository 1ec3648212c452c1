/**
 * The lost-writes pieces that need no Redis: what a cursor means when the store fell behind it
 * or moved the channel to a new epoch without renumbering (planRead, mirrored by read.lua and
 * checked against Redis in test/ha/aof-power-loss.test.ts), the acknowledgement log the audit
 * works from, and what each kind of Redis failure means to a client.
 */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { planRead } from '../../src/broker/broker.js';
import { AckLog } from '../../src/broker/redis/ack-log.js';
import { commandFailure, failureKind, RedisScriptError } from '../../src/broker/redis/failures.js';
import { HoldfastError } from '../../src/errors.js';

/** lastSeq 10, retained 6..10, fingerprint seq*10; the channel moved from epoch P to E. */
const moved = { epoch: 'E', previousEpoch: 'P', lastSeq: 10, firstSeq: 6, fingerprintAt: (seq: number) => seq * 10 };

describe('planRead when the store lost acknowledged writes', () => {
  it('a cursor ahead of the store gets a gap and continues after the head, never re-sending what it saw', () => {
    const head = { epoch: 'E', lastSeq: 10, firstSeq: 6, fingerprintAt: (seq: number) => seq * 10 };
    assert.deepEqual(planRead({ epoch: 'E', seq: 14, fp: 140 }, head, false), { afterSeq: 10, gap: true });
  });

  it('a cursor of the epoch an audit moved the channel away from keeps its place, with a gap', () => {
    assert.deepEqual(planRead({ epoch: 'P', seq: 8, fp: 80 }, moved, false), { afterSeq: 8, gap: true });
    assert.deepEqual(planRead({ epoch: 'P', seq: 8, fp: 81 }, moved, false), { afterSeq: 8, gap: true });
    assert.deepEqual(planRead({ epoch: 'P', seq: 12, fp: 1 }, moved, false), { afterSeq: 10, gap: true });
    assert.deepEqual(planRead({ epoch: 'P', seq: 2, fp: 20 }, moved, false), { afterSeq: 5, gap: true });
    // …even on a conflated channel: the epoch moved because a message was lost.
    assert.deepEqual(planRead({ epoch: 'P', seq: 2, fp: 20 }, moved, true), { afterSeq: 5, gap: true });
  });

  it('a cursor of any other epoch starts over from the oldest retained message', () => {
    assert.deepEqual(planRead({ epoch: 'X', seq: 8, fp: 80 }, moved, false), { afterSeq: 5, gap: true });
  });

  it('cursors of the new epoch read as usual', () => {
    assert.deepEqual(planRead({ epoch: 'E', seq: 8, fp: 80 }, moved, false), { afterSeq: 8, gap: false });
  });
});

describe('AckLog', () => {
  it('keeps the newest acknowledgement per channel and forgets it after the window', () => {
    let now = 1000;
    const log = new AckLog(30_000, () => now);
    log.record('a', 'E', 5, '1.000');
    log.record('a', 'E', 4, '0.900'); // settled late: older, ignored
    log.record('b', 'E', 1, '1.100');
    assert.deepEqual(log.entries().map(([ch, a]) => [ch, a.seq, a.time]), [['a', 5, '1.000'], ['b', 1, '1.100']]);
    now += 20_000;
    log.record('b', 'F', 1, '2.000'); // a new epoch replaces whatever was there
    now += 15_000;
    log.prune();
    assert.deepEqual(log.entries().map(([ch, a]) => [ch, a.epoch]), [['b', 'F']]);
  });

  it('a window of 0 records nothing', () => {
    const log = new AckLog(0);
    log.record('a', 'E', 1, '1.000');
    assert.equal(log.size, 0);
    assert.equal(log.enabled, false);
  });
});

describe('what a Redis failure means', () => {
  const reply = (message: string) => Object.assign(new Error(message), { name: 'ReplyError' });

  it('a timeout: 503, and a write may have been stored', () => {
    const err = new Error('Command timed out');
    assert.equal(failureKind(err), 'timeout');
    const out = commandFailure(err, 'hfPublish', 'k', true, 500) as HoldfastError;
    assert.equal(out.status, 503);
    assert.match(out.message, /within LP_REDIS_COMMAND_TIMEOUT_MS \(500 ms\); the message may have been stored: retry with the same Idempotency-Key/);
    assert.doesNotMatch((commandFailure(err, 'hfRead', 'k', false, 500) as HoldfastError).message, /stored/);
  });

  it('outages (failover, loading, resharding, memory) are 503; a write not sent was not stored', () => {
    for (const m of ['READONLY You can\'t write against a read only replica.', 'LOADING Redis is loading', 'CLUSTERDOWN The cluster is down', 'TRYAGAIN Multiple keys request during rehashing of slot', 'OOM command not allowed', 'NOREPLICAS Not enough good replicas to write.', 'BUSY Redis is busy running a script']) {
      assert.equal(failureKind(reply(m)), 'outage', m);
      assert.equal((commandFailure(reply(m), 'hfPublish', 'k', true, 500) as HoldfastError).status, 503);
    }
    const notSent = new Error("Stream isn't writeable and enableOfflineQueue options is false");
    assert.doesNotMatch((commandFailure(notSent, 'hfPublish', 'k', true, 500) as HoldfastError).message, /may have been stored/);
    assert.match((commandFailure(new Error('Connection is closed.'), 'hfPublish', 'k', true, 500) as HoldfastError).message, /may have been stored/);
  });

  it('a permission the Redis user lacks is 503 naming the ACL; any other reply error is a bug (500)', () => {
    const acl = reply("ERR The user executing the script can't publish to the channel mentioned in the command");
    assert.equal(failureKind(acl), 'refused');
    assert.match((commandFailure(acl, 'hfPublish', 'k', true, 500) as HoldfastError).message, /check the ACL/);
    const bug = reply('WRONGTYPE Operation against a key holding the wrong kind of value');
    assert.equal(failureKind(bug), 'bug');
    const out = commandFailure(bug, 'hfRead', 'hf:c{x}:m', false, 500);
    assert.ok(out instanceof RedisScriptError && !(out instanceof HoldfastError));
    assert.equal(out.script, 'hfRead');
    assert.equal(out.key, 'hf:c{x}:m');
  });
});
