import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { DIALECTS, createTestDatabase, type TestDatabase } from '../support/databases.ts';
import { login } from '../support/process-tools.ts';
import { ROOT, startServerProcess } from '../support/server-process.ts';

/**
 * Issue 12 (idle RSS ≤ 90 MB): what a serving mciassrv never needs, it never loads, since nothing loaded is ever
 * unloaded. A real server (the spawn helper's, as installed: the bundle scripts/bundle.mjs writes to dist/mciassrv/)
 * records every file it loads and Node's list of its own modules when it exits; it has started, logged a person in
 * and been stopped. The bundle's chunks are mapped back to the source and package files in them through the build's
 * metafile, so "loaded" means "in a chunk the server loaded" (or loaded from node_modules, for what is not bundled).
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

const packageOf = (file: string) => /(?:^|\/)node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(file)?.[1];

/**
 * The bundle's output files and the inputs whose code each holds, as scripts/bundle.mjs's metafile records them (an
 * input the bundler shook out entirely left no code behind, and costs a serving process nothing).
 */
function bundleInputs(): Map<string, string[]> {
  const meta = JSON.parse(readFileSync(path.join(ROOT, 'dist', 'mciassrv', 'meta.json'), 'utf8')) as {
    outputs: Record<string, { inputs: Record<string, { bytesInOutput: number }> }>;
  };
  return new Map(
    Object.entries(meta.outputs).map(([output, { inputs }]) => [
      path.join(ROOT, output),
      Object.entries(inputs)
        .filter(([, { bytesInOutput }]) => bytesInOutput > 0)
        .map(([input]) => input),
    ]),
  );
}

/** Every file a server loaded, with each bundle chunk replaced by the files in it (paths relative to the repository). */
function filesIn(loaded: Loaded): string[] {
  const chunks = bundleInputs();
  return loaded.files.flatMap((url) => {
    const file = fileURLToPath(url);
    return chunks.get(file) ?? [path.relative(ROOT, file)];
  });
}

for (const dialect of DIALECTS) {
  describe(`mciassrv serve on ${dialect} loads only what serving needs`, () => {
    let testDb: TestDatabase;
    let loaded: Loaded;
    let files: string[];
    let packages: Set<string>;
    before(async () => {
      testDb = await createTestDatabase(dialect);
      loaded = await loadedByServe(testDb);
      files = filesIn(loaded);
      packages = new Set(files.map(packageOf).filter((p) => p !== undefined));
    });
    after(async () => testDb.drop());

    test('the recorder saw the server load its code, from the bundle', () => {
      // Guards the other tests: an empty list would pass them all.
      for (const expected of ['fastify', 'kysely', dialect === 'sqlite' ? 'better-sqlite3' : 'pg']) assert.ok(packages.has(expected), expected);
      assert.ok(files.includes('src/server.ts'));
      assert.ok(loaded.builtins.includes('NativeModule tls'));
      // Nothing of the project's own comes from dist/src (the tsc output mciasctl runs) or node_modules' copies of what
      // is bundled: the bundle is what runs (scripts/bundle.mjs).
      assert.deepEqual(loaded.files.filter((url) => url.includes('/dist/src/') || url.includes('/node_modules/fastify/')), []);
    });

    if (dialect === 'sqlite') {
      test('no PostgreSQL driver', () => assert.ok(!packages.has('pg'), 'pg loaded by a server on SQLite'));
    }

    test('no certificate-making code (init) and no common-password list (loaded on the first new password)', () => {
      for (const unneeded of ['@peculiar/x509', '@zxcvbn-ts/language-common']) assert.ok(!packages.has(unneeded), unneeded);
    });

    test("not TypeBox's Value module (the configuration is checked with Ajv, which Fastify loads anyway)", () => {
      assert.deepEqual(files.filter((f) => f.includes('node_modules/typebox/build/value/')), []);
    });

    test("of jose, only signing and verifying: none of its encryption (JWE) or remote-JWKS code", () => {
      assert.deepEqual(files.filter((f) => /node_modules\/jose\/.*(?:jwe|encrypt|decrypt|remote)/.test(f)), []);
    });

    test("not Node's bundled undici (fetch, WebSocket), which an ES import of node:http loads", () => {
      assert.deepEqual(loaded.builtins.filter((m) => m.includes('undici')), []);
    });
  });
}
