import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { getPriority } from 'node:os';
import { after, before, describe, test } from 'node:test';
import { THREAD_POOL_NICE_INCREMENT } from '../../src/server.ts';
import { login } from '../support/process-tools.ts';
import { startServerProcess, type ServerProcess } from '../support/server-process.ts';

/**
 * SECURITY.md §56 against a real mciassrv process: the threads that hash passwords (libuv's pool) run at a lower
 * priority than the event loop, which answers token checks. Read from /proc, as the scheduler sees them.
 */

/** Each thread of `pid` by name, with its nice value (field 19 of /proc/PID/task/TID/stat). */
function threadNices(pid: number): { name: string; nice: number }[] {
  return readdirSync(`/proc/${pid}/task`).map((tid) => {
    const name = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    // The fields after the name, which is in parentheses and may hold spaces: state is field 3, nice field 19.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { name, nice: Number(fields[19 - 3]) };
  });
}

describe('password hashes run below the event loop (SECURITY.md §56)', { skip: process.platform !== 'linux', timeout: 60_000 }, () => {
  let server: ServerProcess;
  before(async () => {
    server = await startServerProcess();
  });
  after(async () => {
    await server.dispose();
  });

  test('the pool threads are niced, the event loop is not, and a login still hashes', async () => {
    const pid = server.child.pid as number;
    // A login runs a hash on the pool: the threads keep their priority while they work.
    assert.equal((await login(server, 'admin', server.adminPassword)).status, 200);
    const threads = threadNices(pid);
    const pool = threads.filter((t) => t.name === 'libuv-worker');
    assert.ok(pool.length > 0, `no libuv-worker thread among ${threads.map((t) => t.name).join(', ')}`);
    // The event loop keeps the nice value the server was started with (the test runner's, 0 unless run under nice).
    const loop = threads.find((t) => t.name === 'MainThread')?.nice;
    assert.equal(loop, getPriority(), 'the event loop runs at the priority it was started with');
    for (const thread of pool) assert.equal(thread.nice, Math.min(19, loop + THREAD_POOL_NICE_INCREMENT));
  });
});
