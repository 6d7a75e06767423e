import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { before, describe, test } from 'node:test';
import { login, waitFor } from '../support/process-tools.ts';
import { assertOk, assertOneLineError, ctl, useMciasctlFixture, type CtlEnv } from '../support/mciasctl.ts';
import { TEST_PROCESS_ENV, MCIASCTL, ROOT } from '../support/server-process.ts';
import { USER_PASSWORD } from '../support/harness.ts';

/** mciasctl audit list and audit tail --follow, through the shipped binary against a real mciassrv over TLS. */

interface Event {
  seq: number;
  type: string;
  outcome: string;
  subject: { username: string } | null;
  details: Record<string, unknown>;
}

describe('mciasctl audit against a real mciassrv', () => {
  const fx = useMciasctlFixture({ admin: true });
  let admin: CtlEnv;

  before(async () => {
    admin = fx.admin;
    assertOk(await ctl(admin, 'account', 'create', 'dana', '--password-file', fx.userPasswordFile, '--no-temporary'));
    assert.equal((await login(fx.server, 'dana', 'not the right password at all')).status, 401);
    assert.equal((await login(fx.server, 'dana', USER_PASSWORD)).status, 200);
  });

  test('audit list --json filters by type and account and prints the page', async () => {
    const result = await ctl(admin, '--json', 'audit', 'list', '--type', 'login_failed', '--account', 'dana', '--since', '1h');
    assertOk(result);
    const page = JSON.parse(result.stdout) as { events: Event[]; next_cursor: string; more: boolean };
    assert.equal(page.events.length, 1);
    assert.deepEqual([page.events[0]!.type, page.events[0]!.outcome, page.events[0]!.subject?.username, page.events[0]!.details['reason']], ['login_failed', 'failure', 'dana', 'wrong_password']);
    assert.equal(page.more, false);
  });

  test('audit list prints a table, and the cursor for the next page when there is one', async () => {
    const seen: number[] = [];
    let cursor: string | undefined;
    for (let pages = 0; pages < 50; pages++) {
      const result = await ctl(admin, 'audit', 'list', '--limit', '2', ...(cursor === undefined ? [] : ['--cursor', cursor]));
      assertOk(result);
      const lines = result.stdout.trimEnd().split('\n');
      assert.match(lines[0]!, /^SEQ\s+TIME\s+TYPE\s+OUTCOME\s+ACTOR\s+SUBJECT\s+ADDRESS\s+DETAILS$/);
      seen.push(...lines.slice(1).filter((l) => /^\d+ /.test(l)).map((l) => Number(l.split(' ')[0])));
      const more = /^more events: --cursor (\S+)$/.exec(lines.at(-1)!);
      if (more === null) break;
      cursor = more[1];
    }
    assert.ok(seen.length >= 5, `only ${seen.length} events`);
    assert.deepEqual(seen, Array.from({ length: seen.length }, (_, i) => i + 1), 'every event once, in order');
  });

  test('a person without the admin role is refused in one line', async () => {
    const dana = await fx.loggedIn('dana');
    assertOneLineError(await ctl(dana, 'audit', 'list'), 'forbidden');
  });

  test('audit tail --follow prints new events as they happen and exits cleanly on Ctrl-C', async () => {
    const child = spawn(process.execPath, [MCIASCTL, '--json', 'audit', 'tail', '--follow', '--interval', '1', '--since', '1h'], {
      cwd: ROOT,
      env: { ...process.env, ...TEST_PROCESS_ENV, ...admin },
    });
    const events: Event[] = [];
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    createInterface({ input: child.stdout }).on('line', (line) => events.push(JSON.parse(line) as Event));
    const exited = once(child, 'exit') as Promise<[number | null, string | null]>;
    try {
      await waitFor(() => events.some((e) => e.type === 'login_failed'), 'the events already there', 10_000);
      const before = events.length;
      assert.equal((await login(fx.server, 'dana', 'wrong again, on purpose')).status, 401);
      await waitFor(() => events.length > before, 'the new event', 10_000);
      assert.deepEqual(events.slice(before).map((e) => e.type), ['login_failed']);
      const seqs = events.map((e) => e.seq);
      assert.deepEqual(seqs, [...new Set(seqs)].sort((a, b) => a - b), 'no event twice, in order');
    } finally {
      child.kill('SIGINT');
    }
    const [code, signal] = await exited;
    assert.deepEqual([code, signal, stderr], [0, null, '']);
  });
});
