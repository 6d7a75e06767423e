import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

/**
 * SECURITY.md numbers the controls that code and tests cite (`SECURITY.md §N`). The numbers run 1, 2, 3, ... with
 * each control once, every citation names one that exists, and nothing cites a contract outside the repository.
 */

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const SKIP = new Set(['node_modules', 'dist', 'build', 'coverage']);

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    if (SKIP.has(name) || name.startsWith('.')) return [];
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) return files(full);
    return /\.(ts|mts|js|mjs|md)$/.test(name) ? [full] : [];
  });
}

/** `### §N Title` headings, in order. */
function controlNumbers(markdown: string): number[] {
  return [...markdown.matchAll(/^### §(\d+) \S/gm)].map((m) => Number(m[1]));
}

/** "SECURITY.md §12–§15", "SECURITY.md §16, §17, §21", "SECURITY.md §9 and §30": every number each one names. */
const CITATION = /SECURITY\.md (§?\d+(?:(?:, | and |\s?[-–]\s?)§?\d+)*)/g;

function citedNumbers(text: string): number[] {
  return [...text.matchAll(CITATION)].flatMap((m) =>
    m[1]!.split(/, | and /).flatMap((part) => {
      const [from, to] = part.split(/\s?[-–]\s?/).map((n) => Number(n.replace('§', '')));
      return to === undefined ? [from!] : Array.from({ length: to - from! + 1 }, (_, i) => from! + i);
    }),
  );
}

const security = readFileSync(path.join(ROOT, 'SECURITY.md'), 'utf8');

test('SECURITY.md numbers its controls 1 to N, in order, each once', () => {
  const numbers = controlNumbers(security);
  assert.ok(numbers.length >= 42, `only ${numbers.length} numbered controls were found`);
  assert.deepEqual(numbers, Array.from({ length: numbers.length }, (_, i) => i + 1));
});

test('every citation in src/, test/, packages/ and docs/ names a control SECURITY.md has', () => {
  const known = new Set(controlNumbers(security));
  // This file's own examples below cite a control that does not exist, on purpose.
  const sources = ['src', 'test', 'packages', 'docs'].flatMap((dir) => files(path.join(ROOT, dir))).filter((f) => f !== import.meta.filename);
  const bad: string[] = [];
  let citations = 0;
  for (const file of [...sources, path.join(ROOT, 'README.md')]) {
    for (const n of citedNumbers(readFileSync(file, 'utf8'))) {
      citations++;
      if (!known.has(n)) bad.push(`${path.relative(ROOT, file)} cites §${n}`);
    }
  }
  assert.ok(citations > 20, `only ${citations} citations were found: is the pattern right?`);
  assert.deepEqual(bad, [], 'citations of controls SECURITY.md does not have');
});

test('the citation reader understands every form in use', () => {
  assert.deepEqual(citedNumbers('SECURITY.md §1-§7'), [1, 2, 3, 4, 5, 6, 7]);
  assert.deepEqual(citedNumbers('SECURITY.md §12–§15 and'), [12, 13, 14, 15]);
  assert.deepEqual(citedNumbers('(SECURITY.md §16, §17, §21)'), [16, 17, 21]);
  assert.deepEqual(citedNumbers('SECURITY.md §12 and §13'), [12, 13]);
  assert.deepEqual(citedNumbers('SECURITY.md §9 and §30, SECURITY.md §43'), [9, 30, 43]);
});

test('code, tests and docs cite the contract in this repository, never a copy outside it', () => {
  const sources = ['src', 'test', 'packages', 'docs', 'bench', 'scripts'].flatMap((dir) => files(path.join(ROOT, dir)));
  // The lower-case spelling, a bare api.md outside docs/, or a path out of the repository name a file that is not here.
  const outside = [/(?<!\w)security\.md \d/, /(?<![\w/.(\[])api\.md/, /\.\.\/shared\//];
  const bad = [...sources, path.join(ROOT, 'README.md'), path.join(ROOT, 'SECURITY.md')]
    .filter((f) => f !== import.meta.filename)
    .flatMap((file) => {
      const inDocs = path.relative(ROOT, file).startsWith('docs' + path.sep);
      return readFileSync(file, 'utf8')
        .split('\n')
        .map((line, i) => ({ line, at: `${path.relative(ROOT, file)}:${i + 1}` }))
        .filter(({ line }) => outside.some((re, k) => re.test(line) && !(k === 1 && inDocs)))
        .map(({ at, line }) => `${at}: ${line.trim()}`);
    });
  assert.deepEqual(bad, []);
});
