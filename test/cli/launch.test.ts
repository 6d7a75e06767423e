import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { ADMIN_PASSWORD } from '../support/harness.ts';
import { parseScrape, valueOf, type Sample } from '../support/metrics.ts';
import { MCIASSRV, ROOT, TEST_PROCESS_ENV, run, shebangNodeOptions, startServerProcess, type ServerProcess } from '../support/server-process.ts';

/**
 * Issue 12 (idle RSS ≤ 90 MB): mciassrv runs with a small young generation and collects start-up's garbage once it
 * serves, with the Node.js options set once, on bin/mciassrv.js's shebang line
 * (`#!/usr/bin/env -S node --max-semi-space-size=N --expose-gc`). Every launch path must carry them: the bin run
 * directly (npx, a global install, the systemd unit), `npm start`, and the spawn helper the tests and the bench use.
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

/** A scrape of the server's own metrics listener (V8's heap figures among them). */
async function scrape(metricsUrl: string): Promise<Sample[]> {
  const body = await new Promise<string>((resolve, reject) => {
    get(metricsUrl, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve(text));
    }).on('error', reject);
  });
  return parseScrape(body);
}

/**
 * Starts `mciassrv serve` on an initialised data directory with the given command (not the spawn helper) and waits
 * until it serves; returns the process's command line and a scrape of its metrics, then stops it.
 */
async function serveWith(dataDir: string, command: string, args: readonly string[]): Promise<{ argv: string[]; samples: Sample[] }> {
  // env finds `node` on the PATH: the Node 24 running the tests, as node_modules/.bin provides it under npm.
  const child = spawn(command, [...args, 'serve', '--data-dir', dataDir], {
    cwd: ROOT,
    env: { ...process.env, ...TEST_PROCESS_ENV, PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env['PATH'] ?? ''}` },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = once(child, 'exit');
  try {
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const metricsUrl = await new Promise<string>((resolve, reject) => {
      createInterface({ input: child.stdout }).on('line', (line) => {
        const entry = JSON.parse(line) as { msg?: string; metrics?: string };
        if (entry.msg === 'mciassrv is serving' && entry.metrics) resolve(entry.metrics);
      });
      void exited.then(() => reject(new Error(`mciassrv serve exited: ${stderr}`)));
    });
    return { argv: cmdline(child.pid!), samples: await scrape(metricsUrl) };
  } finally {
    child.kill('SIGTERM');
    await exited;
  }
}

describe('mciassrv is launched with the Node.js options on its shebang line', () => {
  const semiSpaceMb = shebangSemiSpaceMb();
  const servers: ServerProcess[] = [];
  let dataDir: string;
  before(async () => {
    dataDir = mkdtempSync(path.join(tmpdir(), 'mcias-launch-'));
    const passwordFile = path.join(dataDir, 'admin-password');
    writeFileSync(passwordFile, `${ADMIN_PASSWORD}\n`, { mode: 0o600 });
    const init = await run(MCIASSRV, ['init', '--data-dir', dataDir, '--admin-password-file', passwordFile, '--listen', '127.0.0.1:0']);
    assert.equal(init.code, 0, init.stderr);
  });
  after(async () => {
    for (const server of servers) await server.dispose();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('the shebang runs node through env -S with the options, and the file is executable', () => {
    assert.ok(semiSpaceMb >= 1 && semiSpaceMb <= 4, `a semi-space of ${semiSpaceMb} MB`);
    assert.ok(shebangNodeOptions(MCIASSRV).includes('--expose-gc'), 'the start-up collection needs --expose-gc');
    assert.match(readFileSync(MCIASSRV, 'utf8').split('\n', 1)[0]!, /^#!\/usr\/bin\/env -S node /);
    assert.notEqual(statSync(MCIASSRV).mode & 0o111, 0, 'bin/mciassrv.js is executable');
  });

  test('npm start runs bin/mciassrv.js itself, so through the shebang', () => {
    const scripts = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;
    assert.match(scripts['start'] ?? '', /^bin\/mciassrv\.js serve /);
  });

  test("the spawn helper's server runs with the options", async () => {
    const server = await startServerProcess();
    servers.push(server);
    const argv = cmdline(server.child.pid!);
    assert.deepEqual(argv.slice(1, argv.indexOf(MCIASSRV)), shebangNodeOptions(MCIASSRV), argv.join(' '));
    assert.ok(argv.includes(`--max-semi-space-size=${semiSpaceMb}`), argv.join(' '));
  });

  test('the bin run directly (as npx, a global install and the systemd unit run it) has the options', async () => {
    const { argv } = await serveWith(dataDir, MCIASSRV, []);
    // env replaced itself with node: the process is node, with the shebang's options before the script.
    assert.equal(path.basename(argv[0]!), 'node', argv.join(' '));
    assert.deepEqual(argv.slice(1, argv.indexOf(MCIASSRV)), shebangNodeOptions(MCIASSRV), argv.join(' '));
  });

  test("serve collects start-up's garbage before it reports serving, which --expose-gc makes possible", async () => {
    // The heap V8 holds, used or pooled for reuse: what the collection gives back is mostly pages grown for start-up's
    // garbage and kept (the heap in use differs by about 1 MB, since the server runs from a bundle).
    const heapTotal = (samples: Sample[]) => valueOf(samples, 'nodejs_heap_size_total_bytes');
    const collected = heapTotal((await serveWith(dataDir, MCIASSRV, [])).samples);
    const withoutGc = shebangNodeOptions(MCIASSRV).filter((o) => o !== '--expose-gc');
    const uncollected = heapTotal((await serveWith(dataDir, process.execPath, [...withoutGc, MCIASSRV])).samples);
    // About 22 MB against 31 MB at the time of writing.
    assert.ok(collected > 0 && collected < uncollected - 4 * 1024 * 1024, `heap ${collected} bytes collected, ${uncollected} not`);
  });
});
