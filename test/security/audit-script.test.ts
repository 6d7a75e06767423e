import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { ROOT } from '../support/server-process.ts';

/** SECURITY.md §35: scripts/audit.mjs (run by .ci/run) fails the build on high or critical production advisories. */
describe('the CI audit gate', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'mcias-audit-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** Runs the gate with a stand-in `npm` that prints the given `npm audit --json` report and exits 1. */
  function gate(report: unknown): { status: number | null; output: string } {
    const fake = path.join(dir, 'npm');
    writeFileSync(fake, `#!/bin/sh\ncat <<'JSON'\n${JSON.stringify(report)}\nJSON\nexit 1\n`);
    chmodSync(fake, 0o755);
    const run = spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'audit.mjs')], {
      encoding: 'utf8',
      env: { ...process.env, PATH: `${dir}:${process.env['PATH'] ?? ''}` },
    });
    return { status: run.status, output: run.stdout + run.stderr };
  }

  const counts = (high: number, critical: number) => ({ metadata: { vulnerabilities: { info: 0, low: 3, moderate: 2, high, critical, total: 5 + high + critical } } });

  test('a high-severity advisory fails the build', () => {
    assert.equal(gate(counts(1, 0)).status, 1);
  });

  test('a critical advisory fails the build', () => {
    assert.equal(gate(counts(0, 2)).status, 1);
  });

  test('low and moderate advisories alone pass', () => {
    assert.equal(gate(counts(0, 0)).status, 0);
  });

  test('an unreachable advisory service passes with a warning that no audit was performed', () => {
    const { status, output } = gate({ statusCode: 405, uri: 'https://registry.example/-/npm/v1/security/advisories/bulk' });
    assert.equal(status, 0);
    assert.match(output, /NOT PERFORMED/);
  });

  test('output that is not an audit report fails the build', () => {
    assert.equal(gate({ something: 'else' }).status, 1);
  });
});
