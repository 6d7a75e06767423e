import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { addressKey } from '../../src/domain/address.ts';
import { isMciasError } from '../../src/domain/errors.ts';
import { FairScheduler, type FairSchedulerOptions } from '../../src/domain/fair-scheduler.ts';

/** SECURITY.md §37: the hash slots are shared fairly between client addresses. */

/** A task that runs until the test finishes it; `started` tells whether the scheduler has started it. */
interface Gate {
  readonly name: string;
  started: boolean;
  finish(): void;
  fail(error: Error): void;
  readonly task: () => Promise<string>;
}

function gate(name: string, log: string[]): Gate {
  let resolve!: (value: string) => void;
  let reject!: (error: Error) => void;
  const done = new Promise<string>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  const g: Gate = {
    name,
    started: false,
    finish: () => resolve(name),
    fail: (error) => reject(error),
    task: () => {
      g.started = true;
      log.push(name);
      return done;
    },
  };
  return g;
}

/** Lets the scheduler's settle handlers (promise callbacks) run. */
const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

function scheduler(options: Partial<FairSchedulerOptions> = {}): FairScheduler {
  return new FairScheduler({ concurrency: 1, maxQueued: 100, maxPerKey: 100, ...options });
}

async function refused(promise: Promise<unknown>): Promise<void> {
  await assert.rejects(promise, (error) => isMciasError(error, 'rate_limited') && (error.retryAfter ?? 0) > 0);
}

/** Finishes the running tasks one at a time, in start order, until every task has run. */
async function drain(gates: Gate[], log: string[]): Promise<void> {
  for (let finished = 0; finished < gates.length; finished++) {
    const name = log[finished];
    assert.ok(name !== undefined, `only ${log.length} of ${gates.length} tasks started: ${log.join(',')}`);
    gates.find((g) => g.name === name)?.finish();
    await tick();
  }
}

describe('the fair scheduler', { timeout: 10_000 }, () => {
  test('when a slot frees, the next task comes from the next key in turn, not from the key with the most waiting', async () => {
    const s = scheduler();
    const log: string[] = [];
    const gates = ['a1', 'a2', 'a3', 'a4', 'b1', 'b2', 'c1'].map((n) => gate(n, log));
    const results = gates.map((g) => s.run(g.name[0] as string, g.task));
    assert.deepEqual(log, ['a1'], 'one slot: only the first task runs');
    await drain(gates, log);
    // b1 and c1 arrived after three more of a's, yet each waits behind at most one of them.
    assert.deepEqual(log, ['a1', 'a2', 'b1', 'c1', 'a3', 'b2', 'a4']);
    assert.deepEqual(await Promise.all(results), gates.map((g) => g.name));
  });

  test('within one key, tasks run in the order they came', async () => {
    const s = scheduler();
    const log: string[] = [];
    const gates = ['x1', 'x2', 'x3', 'x4'].map((n) => gate(n, log));
    for (const g of gates) void s.run('x', g.task);
    await drain(gates, log);
    assert.deepEqual(log, ['x1', 'x2', 'x3', 'x4']);
  });

  test('never runs more than `concurrency` tasks at once, and fills every slot', async () => {
    const s = scheduler({ concurrency: 3 });
    const log: string[] = [];
    const gates = Array.from({ length: 9 }, (_, i) => gate(`k${i % 4}-${i}`, log));
    for (const g of gates) void s.run(g.name.slice(0, 2), g.task);
    assert.equal(log.length, 3);
    assert.deepEqual(s.stats, { queued: 6, running: 3, keys: 4 });
    await drain(gates, log);
    assert.equal(log.length, 9);
  });

  test('a key may hold at most maxPerKey tasks, waiting plus running; the rest are refused without running', async () => {
    const s = scheduler({ maxPerKey: 3 });
    const log: string[] = [];
    const gates = Array.from({ length: 5 }, (_, i) => gate(`a${i}`, log));
    const results = gates.map((g) => s.run('a', g.task));
    await refused(results[3] as Promise<unknown>);
    await refused(results[4] as Promise<unknown>);
    const other = gate('b0', log);
    const admitted = s.run('b', other.task);
    assert.deepEqual(s.stats, { queued: 3, running: 1, keys: 2 });
    await drain([...gates.slice(0, 3), other], log);
    assert.deepEqual(log, ['a0', 'a1', 'b0', 'a2']);
    assert.equal(gates[3]?.started, false);
    assert.equal(gates[4]?.started, false);
    assert.equal(await admitted, 'b0');
  });

  test('a finished task frees its place in the key\'s share', async () => {
    const s = scheduler({ maxPerKey: 1 });
    const log: string[] = [];
    const first = gate('first', log);
    const running = s.run('a', first.task);
    await refused(s.run('a', async () => 'no'));
    first.finish();
    await running;
    await tick();
    const second = gate('second', log);
    const again = s.run('a', second.task);
    second.finish();
    assert.equal(await again, 'second');
  });

  test('past maxQueued waiting over all keys, any key is refused; a free slot admits even with a full queue limit of 0', async () => {
    const s = scheduler({ maxQueued: 2 });
    const log: string[] = [];
    const gates = ['a', 'b', 'c'].map((n) => gate(n, log));
    const results = gates.map((g) => s.run(g.name, g.task));
    await refused(s.run('d', async () => 'no'));
    await drain(gates, log);
    await Promise.all(results);

    const none = scheduler({ maxQueued: 0, concurrency: 1 });
    const only = gate('only', log);
    const ran = none.run('a', only.task);
    await refused(none.run('b', async () => 'no'));
    only.finish();
    assert.equal(await ran, 'only');
  });

  test('a flood from one key is refused while every other key is admitted and served early', async () => {
    const s = scheduler({ concurrency: 1, maxQueued: 16, maxPerKey: 4 });
    const log: string[] = [];
    const flood = Array.from({ length: 100 }, (_, i) => gate(`f${i}`, log));
    const floodResults = flood.map((g) => s.run('flooder', g.task));
    const others = Array.from({ length: 10 }, (_, i) => gate(`o${i}`, log));
    const otherResults = others.map((g) => s.run(g.name, g.task));
    const settled = await Promise.allSettled(floodResults.slice(4));
    assert.ok(settled.every((r) => r.status === 'rejected' && isMciasError(r.reason, 'rate_limited')));
    await drain([...flood.slice(0, 4), ...others], log);
    assert.deepEqual(await Promise.all(otherResults), others.map((g) => g.name));
    // f0 was running; f1 had the first turn; then every other key once before the flooder's next.
    assert.deepEqual(log.slice(0, 13), ['f0', 'f1', ...others.map((g) => g.name), 'f2']);
    assert.equal(flood.filter((g) => g.started).length, 4);
  });

  test('a task that fails, or throws before returning a promise, rejects with its error and frees its slot', async () => {
    const s = scheduler({ maxPerKey: 1 });
    const log: string[] = [];
    const failing = gate('failing', log);
    const failed = s.run('a', failing.task);
    const next = gate('next', log);
    const queued = s.run('b', next.task);
    failing.fail(new Error('scrypt failed'));
    await assert.rejects(failed, /scrypt failed/);
    await tick();
    assert.equal(next.started, true);
    next.finish();
    await queued;

    await assert.rejects(
      s.run('a', () => {
        throw new Error('thrown at once');
      }),
      /thrown at once/,
    );
    const after = gate('after', log);
    const ran = s.run('a', after.task);
    assert.equal(after.started, true, 'the slot and the key\'s share were given back');
    after.finish();
    await ran;
    await tick();
    assert.deepEqual(s.stats, { queued: 0, running: 0, keys: 0 });
  });

  test('no key stays in memory once its tasks are done, refused or failed', async () => {
    const s = scheduler({ concurrency: 2, maxQueued: 50, maxPerKey: 3 });
    const results: Promise<unknown>[] = [];
    for (let i = 0; i < 200; i++) {
      const key = `client-${i % 40}`;
      results.push(s.run(key, async () => (i % 7 === 0 ? Promise.reject(new Error('boom')) : i)));
    }
    await Promise.allSettled(results);
    await tick();
    assert.deepEqual(s.stats, { queued: 0, running: 0, keys: 0 });
  });

  test('limits below one slot or one task per key are refused at construction', () => {
    assert.throws(() => scheduler({ concurrency: 0 }), RangeError);
    assert.throws(() => scheduler({ maxPerKey: 0 }), RangeError);
    assert.throws(() => scheduler({ maxQueued: -1 }), RangeError);
  });
});

describe('client address keys', () => {
  test('an IPv4 address is its own key, also when it arrives IPv4-mapped', () => {
    assert.equal(addressKey('192.0.2.7'), '192.0.2.7');
    assert.equal(addressKey('::ffff:192.0.2.7'), '192.0.2.7');
    assert.notEqual(addressKey('192.0.2.7'), addressKey('192.0.2.8'));
  });

  test('IPv6 addresses share a key by /64, however they are written', () => {
    const key = addressKey('2001:db8:1:2::1');
    assert.equal(key, '2001:db8:1:2::/64');
    for (const same of ['2001:db8:1:2:ffff:ffff:ffff:ffff', '2001:DB8:0001:0002:0:0:0:9', '2001:db8:1:2::abcd']) {
      assert.equal(addressKey(same), key, same);
    }
    assert.notEqual(addressKey('2001:db8:1:3::1'), key);
    assert.notEqual(addressKey('2001:db9:1:2::1'), key);
  });

  test('no address, and a value that is no address, get keys that no address has', () => {
    assert.equal(addressKey(null), 'unknown');
    assert.equal(addressKey('not an address'), 'other:not an address');
  });
});
