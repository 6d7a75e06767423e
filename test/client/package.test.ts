import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { ROOT } from '../support/server-process.ts';

/**
 * @mcias/client as a package: what `npm pack` would publish, and which files an import resolves to. Tests and dev
 * run the TypeScript source through the `mcias-source` export condition; an installed package, and the server's own
 * compiled dist/, run the built JavaScript (packages/client/dist, made by `npm run build`).
 */

const CLIENT = path.join(ROOT, 'packages', 'client');
const SUBPATHS = ['', '/fastify', '/express'] as const;

function resolved(specifier: string, conditions: readonly string[]): string {
  const script = `process.stdout.write(import.meta.resolve(${JSON.stringify(specifier)}))`;
  const url = execFileSync(process.execPath, [...conditions.map((c) => `--conditions=${c}`), '--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8' });
  return path.relative(ROOT, new URL(url).pathname);
}

describe('@mcias/client as a package', () => {
  test('npm pack publishes the built JavaScript, its types and the README, and no source or tests', () => {
    const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts', '-w', '@mcias/client'], { cwd: ROOT, encoding: 'utf8' });
    const files = (JSON.parse(out) as [{ name: string; files: { path: string }[] }])[0].files.map((f) => f.path).sort();
    for (const entry of ['index', 'fastify', 'express', 'token-rules', 'permits']) {
      assert.ok(files.includes(`dist/${entry}.js`), `dist/${entry}.js`);
      assert.ok(files.includes(`dist/${entry}.d.ts`), `dist/${entry}.d.ts`);
    }
    assert.ok(files.includes('README.md') && files.includes('package.json'));
    assert.deepEqual(files.filter((f) => !f.startsWith('dist/') && f !== 'README.md' && f !== 'package.json'), [], 'nothing else');
    assert.deepEqual(files.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts')), [], 'no TypeScript source');
  });

  test('an import by name runs the built JavaScript; with the mcias-source condition, the source', () => {
    for (const subpath of SUBPATHS) {
      const name = subpath === '' ? 'index' : subpath.slice(1);
      assert.equal(resolved(`@mcias/client${subpath}`, []), `packages/client/dist/${name}.js`);
      assert.equal(resolved(`@mcias/client${subpath}`, ['mcias-source']), `packages/client/src/${name}.ts`);
    }
  });

  test("the server's compiled dist imports the package by name (so it runs the built client), never its source", () => {
    const tokens = readFileSync(path.join(ROOT, 'dist', 'src', 'domain', 'tokens.js'), 'utf8');
    assert.match(tokens, /from '@mcias\/client\/token-rules'/);
    assert.doesNotMatch(tokens, /packages\/client\/src/);
  });

  test('at run time the package needs only Node, jose and fastify-plugin: not express, not fastify', () => {
    const dist = path.join(CLIENT, 'dist');
    // jose by its root or a narrow entry point (jose/jwt/verify, ...).
    const allowed = /^(node:|\.\/|jose(\/[a-z_/]+)?$|fastify-plugin$)/;
    for (const file of readdirSync(dist).filter((f) => f.endsWith('.js'))) {
      const source = readFileSync(path.join(dist, file), 'utf8');
      for (const [, specifier] of source.matchAll(/^(?:import|export)\b[^'"]*?from '([^']+)'|^import '([^']+)'/gm)) {
        if (specifier !== undefined) assert.match(specifier, allowed, `${file} imports ${specifier}`);
      }
    }
    const manifest = JSON.parse(readFileSync(path.join(CLIENT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
    assert.deepEqual(Object.keys(manifest.dependencies).sort(), ['fastify-plugin', 'jose']);
  });
});
