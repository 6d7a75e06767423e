// The server as it ships: `mciassrv` (bin/mciassrv.js) runs dist/mciassrv/mciassrv.js, one minified ES module with its
// dependencies bundled in, rather than the ~1,500 files of dist/src and node_modules that it would otherwise load.
// Each loaded module keeps its source text, loader records and package.json lookups for the life of the process;
// bundled and minified, an idle server is about 10 MB smaller (issue 12: idle RSS ≤ 90 MB; docs/operations.md,
// "Memory and in-process caches").
//
// - The commands serve never runs (init, check, backup, rotate-master-key) are dynamic imports in
//   src/cli/mciassrv.ts and stay separate chunks, loaded only by the command that needs them.
// - Left out and loaded from node_modules at run time: better-sqlite3 (a native addon) and pg (loaded only on
//   PostgreSQL); the common-password list, which src/domain/password.ts requires on first use.
// - A linked source map sits beside each file: `NODE_OPTIONS=--enable-source-maps` turns stack traces back into
//   src/ lines when an operator needs them.
// - The metafile records which source and package files went into which chunk: test/cli/serve-modules.test.ts maps
//   the chunks a serving process loads back to them.
import { rm, writeFile } from 'node:fs/promises';
import { build } from 'esbuild';

// Chunk names carry a content hash: a stale chunk from an earlier build would otherwise stay beside the new ones.
await rm('dist/mciassrv', { recursive: true, force: true });
const { metafile } = await build({
  entryPoints: ['src/cli/mciassrv.ts'],
  outdir: 'dist/mciassrv',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node24',
  minify: true,
  sourcemap: 'linked',
  metafile: true,
  external: ['better-sqlite3', 'pg', '@zxcvbn-ts/language-common'],
  // The CommonJS packages bundled into ES modules call require() for Node's built-ins.
  banner: { js: "import { createRequire as __mciasRequire } from 'node:module'; const require = __mciasRequire(import.meta.url);" },
  logLevel: 'warning',
});
await writeFile('dist/mciassrv/meta.json', JSON.stringify(metafile));
