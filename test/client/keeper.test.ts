import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { MciasClient, MciasConnectionError, ServiceTokenKeeper, writeTokenFile, type KeeperClock } from '@mcias/client';
import { decodeJwt } from 'jose';
import { startServerProcess, serveDataDir, type ServerProcess } from '../support/server-process.ts';

/** The service-token keeper (SECURITY.md §53) against a real mciassrv: renewal by an injected clock, a server restart, the file's mode. */

/** A clock the test moves: timers fire only when the test advances past them. */
class ManualTimers implements KeeperClock {
  #now: number;
  #timers = new Map<number, { at: number; callback: () => void }>();
  #next = 0;
  constructor(now: number) {
    this.#now = now;
  }
  now(): number {
    return this.#now;
  }
  setTimeout(callback: () => void, ms: number): unknown {
    const id = ++this.#next;
    this.#timers.set(id, { at: this.#now + ms, callback });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.#timers.delete(handle as number);
  }
  /** When the one pending timer fires. */
  get pending(): number {
    assert.equal(this.#timers.size, 1, 'one timer pending');
    return [...this.#timers.values()][0]!.at;
  }
  /** Moves the clock to `at`, firing the timers due by then. */
  advanceTo(at: number): void {
    this.#now = at;
    for (const [id, timer] of [...this.#timers]) {
      if (timer.at <= at) {
        this.#timers.delete(id);
        timer.callback();
      }
    }
  }
}

const mode = (file: string) => statSync(file).mode & 0o777;

describe('service-token keeper', () => {
  let server: ServerProcess;
  let dir: string;
  let file: string;
  let client: MciasClient;
  let admin: MciasClient;

  before(async () => {
    server = await startServerProcess();
    dir = mkdtempSync(path.join(tmpdir(), 'mcias-keeper-'));
    file = path.join(dir, 'svc.token');
    client = new MciasClient({ server: server.url, caCert: readFileSync(server.caCertFile) });
    admin = client.withToken((await client.login('admin', server.adminPassword)).token);
    await admin.createAccount({ username: 'svc', kind: 'system' });
    // As an operator might leave it: readable by others. The keeper's own writes are 0600.
    writeFileSync(file, `${(await admin.issueServiceToken('svc')).token}\n`, { mode: 0o644 });
  });
  after(async () => {
    client.close();
    await server.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  test('renews at two thirds of the life with an injected clock, writing the file atomically with mode 0600', async () => {
    const first = readFileSync(file, 'utf8').trim();
    const { iat, exp } = decodeJwt(first) as { iat: number; exp: number };
    const clock = new ManualTimers(Date.now());
    const renewed: string[] = [];
    const keeper = new ServiceTokenKeeper({ client, file, clock, onRenew: (t) => renewed.push(t) });
    await keeper.start();
    assert.equal(keeper.token, first);
    const due = (iat + ((exp - iat) * 2) / 3) * 1000;
    assert.ok(Math.abs(clock.pending - due) < 1, `renewal scheduled at two thirds (${clock.pending} vs ${due})`);

    clock.advanceTo(due - 1000);
    await keeper.settled();
    assert.equal(readFileSync(file, 'utf8').trim(), first, 'nothing happens before two thirds');
    assert.deepEqual(renewed, []);

    clock.advanceTo(due);
    await keeper.settled();
    const second = readFileSync(file, 'utf8').trim();
    assert.notEqual(second, first);
    assert.deepEqual(renewed, [second]);
    assert.equal(keeper.token, second);
    assert.equal(mode(file), 0o600);
    assert.deepEqual(readdirSync(dir), ['svc.token'], 'no temporary file is left');
    assert.deepEqual(await client.validate(first), { active: false }, 'the old token is revoked by the renewal');
    assert.equal((await keeper.client.me()).username, 'svc');
    const next = decodeJwt(second) as { iat: number; exp: number };
    assert.ok(Math.abs(clock.pending - (next.iat + ((next.exp - next.iat) * 2) / 3) * 1000) < 1, 'the next renewal is scheduled');
    keeper.stop();
  });

  test('survives a server restart: keeps the old token, retries with backoff, and renews once the server is back', async () => {
    const old = readFileSync(file, 'utf8').trim();
    const clock = new ManualTimers(Date.now());
    const errors: unknown[] = [];
    const keeper = new ServiceTokenKeeper({ client, file, clock, minRetryMs: 1_000, onError: (e) => errors.push(e) });
    await keeper.start();
    const port = new URL(server.url).port;
    await server.stop();

    clock.advanceTo(clock.pending);
    await keeper.settled();
    assert.ok(errors[0] instanceof MciasConnectionError, String(errors[0]));
    assert.equal(keeper.token, old, 'the old token stays in use');
    assert.equal(readFileSync(file, 'utf8').trim(), old, 'the file is untouched');
    assert.equal(clock.pending, clock.now() + 1_000, 'first retry after 1 s');
    clock.advanceTo(clock.pending);
    await keeper.settled();
    assert.equal(errors.length, 2);
    assert.equal(clock.pending, clock.now() + 2_000, 'then 2 s: exponential backoff');

    server = await serveDataDir(server.dataDir, {}, ['--listen', `127.0.0.1:${port}`]);
    clock.advanceTo(clock.pending);
    await keeper.settled();
    assert.equal(errors.length, 2, 'the retry after the restart succeeded');
    const renewed = readFileSync(file, 'utf8').trim();
    assert.notEqual(renewed, old);
    assert.equal(keeper.token, renewed);
    assert.equal(mode(file), 0o600);
    assert.equal((await client.validate(renewed)).active, true);
    keeper.stop();
  });

  test('writeTokenFile replaces the file (a new inode: renamed over it, not rewritten in place) with a 0600 one, even under umask 000', async () => {
    const target = path.join(dir, 'other.token');
    writeFileSync(target, 'old\n', { mode: 0o666 });
    const before = statSync(target).ino;
    const saved = process.umask(0o000);
    try {
      await writeTokenFile(target, 'new-token');
    } finally {
      process.umask(saved);
    }
    assert.equal(readFileSync(target, 'utf8'), 'new-token\n');
    assert.equal(mode(target), 0o600);
    assert.notEqual(statSync(target).ino, before, 'a new file was renamed into place');
    assert.deepEqual(readdirSync(dir).filter((f) => f.endsWith('.tmp')), [], 'no temporary file is left');
  });
});
