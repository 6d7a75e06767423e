import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { after, describe, test } from 'node:test';
import { ADMIN_PASSWORD } from '../support/harness.ts';
import { parseScrape, valueOf } from '../support/metrics.ts';
import { MCIASSRV, ROOT, TEST_PROCESS_ENV, run, shebangNodeOptions, startServerProcess, type ServerProcess } from '../support/server-process.ts';

/**
 * Issue 12 (idle RSS ≤ 90 MB): mciassrv runs with a small young generation, set once, on bin/mciassrv.js's shebang
 * line (`#!/usr/bin/env -S node --max-semi-space-size=N`). Every launch path must carry it: the bin run directly
 * (npx, a global install, the systemd unit), `npm start`, and the spawn helper the tests and the bench use.
 */

const SEMI_SPACE = /^--max-semi-space-size=(\d+)$/;

/** The semi-space size (MB) the shebang sets; fails if the line no longer sets one. */
function shebangSemiSpaceMb(): number {
  const options = shebangNodeOptions(MCIASSRV).map((o) => SEMI_SPACE.exec(o)).filter((m) => m !== null);
  assert.equal(options.length, 1, `bin/mciassrv.js's shebang sets --max-semi-space-size once: ${shebangNodeOptions(MCIASSRV).join(' ')}`);
  return Number(options[0]![1]);
}

/** The command line of a running process, as the kernel has it. */
function cmdline(pid: number): string[] {
  return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((a) => a !== '');
}

/** V8's young generation (new space) size from the server's own metrics listener. */
async function newSpaceBytes(metricsUrl: string): Promise<number> {
  const body = await new Promise<string>((resolve, reject) => {
    get(metricsUrl, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve(text));
    }).on('error', reject);
  });
  return valueOf(parseScrape(body), 'nodejs_heap_space_size_total_bytes', { space: 'new' });
}

describe('mciassrv is launched with the young-generation size on its shebang line', () => {
  const semiSpaceMb = shebangSemiSpaceMb();
  const servers: ServerProcess[] = [];
  const dirs: string[] = [];
  after(async () => {
    for (const server of servers) await server.dispose();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  test('the shebang runs node through env -S with the option, and the file is executable', () => {
    assert.ok(semiSpaceMb >= 1 && semiSpaceMb <= 4, `a semi-space of ${semiSpaceMb} MB`);
    assert.match(readFileSync(MCIASSRV, 'utf8').split('\n', 1)[0]!, /^#!\/usr\/bin\/env -S node /);
    assert.notEqual(statSync(MCIASSRV).mode & 0o111, 0, 'bin/mciassrv.js is executable');
  });

  test('npm start runs bin/mciassrv.js itself, so through the shebang', () => {
    const scripts = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;
    assert.match(scripts['start'] ?? '', /^bin\/mciassrv\.js serve /);
  });

  test("the spawn helper's server runs with the option, and its young generation stays that small", async () => {
    const server = await startServerProcess();
    servers.push(server);
    assert.ok(cmdline(server.child.pid!).includes(`--max-semi-space-size=${semiSpaceMb}`), cmdline(server.child.pid!).join(' '));
    // Start-up alone grows an unlimited young generation to 16 MB semi-spaces; two semi-spaces of N MB at most here.
    assert.ok(server.metricsUrl);
    const newSpace = await newSpaceBytes(server.metricsUrl);
    assert.ok(newSpace > 0 && newSpace <= 2 * semiSpaceMb * 1024 * 1024, `new space ${newSpace} bytes`);
  });

  test('the bin run directly (as npx, a global install and the systemd unit run it) has the option', async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'mcias-launch-'));
    dirs.push(dataDir);
    const passwordFile = path.join(dataDir, 'admin-password');
    writeFileSync(passwordFile, `${ADMIN_PASSWORD}\n`, { mode: 0o600 });
    const init = await run(MCIASSRV, ['init', '--data-dir', dataDir, '--admin-password-file', passwordFile, '--listen', '127.0.0.1:0']);
    assert.equal(init.code, 0, init.stderr);
    // env finds `node` on the PATH: the Node 24 running the tests, as node_modules/.bin provides it under npm.
    const child = spawn(MCIASSRV, ['serve', '--data-dir', dataDir], {
      cwd: ROOT,
      env: { ...process.env, ...TEST_PROCESS_ENV, PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env['PATH'] ?? ''}` },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = once(child, 'exit');
    try {
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      await new Promise<void>((resolve, reject) => {
        createInterface({ input: child.stdout }).on('line', (line) => {
          if (line.includes('"msg":"mciassrv is serving"')) resolve();
        });
        void exited.then(() => reject(new Error(`mciassrv serve exited: ${stderr}`)));
      });
      const argv = cmdline(child.pid!);
      // env replaced itself with node: the process is node, with the shebang's options before the script.
      assert.equal(path.basename(argv[0]!), 'node', argv.join(' '));
      assert.deepEqual(argv.slice(1, argv.indexOf(MCIASSRV)), shebangNodeOptions(MCIASSRV), argv.join(' '));
    } finally {
      child.kill('SIGTERM');
      await exited;
    }
  });
});
