import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DIALECTS, createTestDatabase, type TestDatabase } from '../support/databases.ts';
import { login } from '../support/process-tools.ts';
import { startServerProcess } from '../support/server-process.ts';

/**
 * Issue 12 (idle RSS ≤ 90 MB): what a serving mciassrv never needs, it never loads, since nothing loaded is ever
 * unloaded. A real server (the spawn helper's, as installed) records every file it loads and Node's list of its own
 * modules when it exits; it has started, logged a person in and been stopped.
 */

/** Preloaded through NODE_OPTIONS: records the files loaded (import and require alike) and writes them at exit. */
const RECORDER = `
import { registerHooks } from 'node:module';
import { writeFileSync } from 'node:fs';
const files = new Set();
registerHooks({ load(url, context, next) { if (url.startsWith('file:')) files.add(url); return next(url, context); } });
process.on('exit', () => writeFileSync(process.env.MCIAS_TEST_LOADED_FILE, JSON.stringify({ files: [...files], builtins: process.moduleLoadList })));
`;

interface Loaded {
  readonly files: string[];
  readonly builtins: string[];
}

async function loadedByServe(testDb: TestDatabase): Promise<Loaded> {
  const dir = mkdtempSync(path.join(tmpdir(), 'mcias-loaded-'));
  try {
    const out = path.join(dir, 'loaded.json');
    const server = await startServerProcess({
      ...(testDb.dialect === 'postgres' ? { storageUrl: testDb.location } : {}),
      env: { NODE_OPTIONS: `--import=data:text/javascript,${encodeURIComponent(RECORDER)}`, MCIAS_TEST_LOADED_FILE: out },
    });
    try {
      assert.equal((await login(server, 'admin', server.adminPassword)).status, 200);
    } finally {
      assert.equal(await server.stop(), 0);
      await server.dispose();
    }
    return JSON.parse(readFileSync(out, 'utf8')) as Loaded;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const packageOf = (file: string) => /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(file)?.[1];

for (const dialect of DIALECTS) {
  describe(`mciassrv serve on ${dialect} loads only what serving needs`, () => {
    let testDb: TestDatabase;
    let loaded: Loaded;
    let packages: Set<string>;
    before(async () => {
      testDb = await createTestDatabase(dialect);
      loaded = await loadedByServe(testDb);
      packages = new Set(loaded.files.map(packageOf).filter((p) => p !== undefined));
    });
    after(async () => testDb.drop());

    test('the recorder saw the server load its code', () => {
      // Guards the other tests: an empty list would pass them all.
      for (const expected of ['fastify', 'kysely', dialect === 'sqlite' ? 'better-sqlite3' : 'pg']) assert.ok(packages.has(expected), expected);
      assert.ok(loaded.builtins.includes('NativeModule tls'));
    });

    if (dialect === 'sqlite') {
      test('no PostgreSQL driver', () => assert.ok(!packages.has('pg'), 'pg loaded by a server on SQLite'));
    }

    test('no certificate-making code (init) and no common-password list (loaded on the first new password)', () => {
      for (const unneeded of ['@peculiar/x509', '@zxcvbn-ts/language-common']) assert.ok(!packages.has(unneeded), unneeded);
    });

    test("not TypeBox's Value module (the configuration is checked with Ajv, which Fastify loads anyway)", () => {
      assert.deepEqual(loaded.files.filter((f) => f.includes('/node_modules/typebox/build/value/')), []);
    });

    test("not jose's root module, which loads every JOSE feature (JWE, remote JWKS, ...)", () => {
      assert.deepEqual(loaded.files.filter((f) => f.endsWith('/node_modules/jose/dist/webapi/index.js')), []);
    });

    test("not Node's bundled undici (fetch, WebSocket), which an ES import of node:http loads", () => {
      assert.deepEqual(loaded.builtins.filter((m) => m.includes('undici')), []);
    });
  });
}
