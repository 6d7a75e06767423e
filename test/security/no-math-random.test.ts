import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
const ROOT = path.resolve(import.meta.dirname, '..', '..');

/**
 * SECURITY.md §25 (secret randomness only from node:crypto) and 7 (no synchronous scrypt where it would block the
 * event loop), checked over the shipped source: src/ and packages/ (dependencies and build output excluded).
 */

const SOURCE = /\.(ts|mts|cts|js|mjs|cjs)$/;
const SKIP = new Set(['node_modules', 'dist', 'build', 'coverage']);

function sourceFiles(dir: string): string[] {
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return [];
  }
  return entries.flatMap((name) => {
    if (SKIP.has(name) || name.startsWith('.')) return [];
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) return sourceFiles(full);
    return SOURCE.test(name) ? [full] : [];
  });
}

const files = [...sourceFiles(path.join(ROOT, 'src')), ...sourceFiles(path.join(ROOT, 'packages')), ...sourceFiles(path.join(ROOT, 'bin'))];

/** Every place a pattern occurs, as `file:line`. */
function occurrences(pattern: RegExp): string[] {
  return files.flatMap((file) =>
    readFileSync(file, 'utf8')
      .split('\n')
      .flatMap((line, i) => (pattern.test(line) ? [`${path.relative(ROOT, file)}:${i + 1}: ${line.trim()}`] : [])),
  );
}

test('the scan sees the source tree', () => {
  const relative = files.map((f) => path.relative(ROOT, f));
  for (const expected of ['src/domain/password.ts', 'src/domain/tokens.ts', 'src/domain/sealing.ts', 'src/http/app.ts']) {
    assert.ok(relative.includes(expected), `${expected} was not scanned`);
  }
});

test('Math.random appears nowhere in src/ or packages/', () => {
  // Also catches `Math['random']` and a destructured `{ random } = Math`.
  assert.deepEqual(occurrences(/Math\s*(\.\s*random|\[\s*['"`]random['"`]\s*\])|\{[^}]*\brandom\b[^}]*\}\s*=\s*Math\b/), []);
});

test('the scan would find Math.random if it were there', () => {
  const pattern = /Math\s*(\.\s*random|\[\s*['"`]random['"`]\s*\])|\{[^}]*\brandom\b[^}]*\}\s*=\s*Math\b/;
  for (const line of ['const x = Math.random();', "Math['random']()", 'const { random } = Math;', 'Math . random()']) assert.ok(pattern.test(line), line);
});

test('no synchronous scrypt anywhere in the server source (it would block the event loop)', () => {
  assert.deepEqual(occurrences(/scryptSync/), []);
});

test('password hashes are compared with timingSafeEqual, not with == or Buffer#equals', () => {
  const password = readFileSync(path.join(ROOT, 'src', 'domain', 'password.ts'), 'utf8');
  assert.match(password, /timingSafeEqual\(/);
  assert.deepEqual(occurrences(/\.equals\(|Buffer\.compare\(/), []);
});
