import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { STATUS_BY_CODE } from '../../src/http/problem.ts';
import { DIALECTS } from '../support/databases.ts';
import { createHarness, type Harness } from '../support/harness.ts';
import { routeKey } from '../support/inspect.ts';

/**
 * docs/api.md is the project's HTTP contract; GET /openapi.json is what the server says about itself. They must
 * agree: every route in one is in the other, with the same access level, request-body fields and success status,
 * and the error-code table is the server's own status map (src/http/problem.ts).
 */

const API_MD = new URL('../../docs/api.md', import.meta.url);

/** One Markdown table: its header cells and its rows, each cell trimmed. */
interface Table {
  readonly header: readonly string[];
  readonly rows: readonly (readonly string[])[];
}

/** Splits a table row on `|`, except inside backticks (`"session"|"service"` is one cell). */
function cells(line: string): string[] {
  const out: string[] = [];
  let cell = '';
  let code = false;
  for (const char of line.trim().replace(/^\||\|$/g, '')) {
    if (char === '`') code = !code;
    if (char === '|' && !code) {
      out.push(cell.trim());
      cell = '';
    } else {
      cell += char;
    }
  }
  out.push(cell.trim());
  return out;
}

function markdownTables(markdown: string): Table[] {
  const tables: Table[] = [];
  const lines = markdown.split('\n').map((l) => l.trim());
  for (let i = 0; i + 1 < lines.length; i++) {
    if (!lines[i]!.startsWith('|') || !/^\|(\s*:?-+:?\s*\|)+$/.test(lines[i + 1]!)) continue;
    const header = cells(lines[i]!);
    const rows: string[][] = [];
    let j = i + 2;
    for (; j < lines.length && lines[j]!.startsWith('|'); j++) rows.push(cells(lines[j]!));
    tables.push({ header, rows });
    i = j - 1;
  }
  return tables;
}

interface DocumentedRoute {
  readonly key: string;
  readonly access: string | undefined;
  /** Field names, `?` marking an optional one; empty when the route takes no body. */
  readonly body: readonly string[];
  readonly status: number | undefined;
}

const ROUTE_CELL = /^(GET|HEAD|POST|PUT|PATCH|DELETE) `(\/[^`\s]*)`$/;

/** The routes of every table whose first column is `route`: METHOD `path` | `access` | body | status ... */
function documentedRoutes(markdown: string): Map<string, DocumentedRoute> {
  const routes = new Map<string, DocumentedRoute>();
  for (const table of markdownTables(markdown).filter((t) => t.header[0] === 'route')) {
    assert.deepEqual(table.header.slice(0, 4), ['route', 'access', 'body', 'success'], `a route table's columns: ${table.header.join(' | ')}`);
    for (const row of table.rows) {
      const match = ROUTE_CELL.exec(row[0] ?? '');
      assert.ok(match !== null, `docs/api.md: "${row[0]}" is not METHOD \`/path\``);
      const key = routeKey(match[1]!, match[2]!);
      assert.ok(!routes.has(key), `docs/api.md lists ${key} twice`);
      routes.set(key, {
        key,
        access: /^`([a-z]+)`/.exec(row[1] ?? '')?.[1],
        body: [...(row[2] ?? '').matchAll(/"([a-z_]+)"(\?)?/g)].map((m) => `${m[1]}${m[2] ?? ''}`).sort(),
        status: /^(\d{3})\b/.test(row[3] ?? '') ? Number(row[3]!.slice(0, 3)) : undefined,
      });
    }
  }
  return routes;
}

interface ServedOperation {
  readonly access: unknown;
  readonly body: readonly string[];
  readonly statuses: readonly number[];
}

async function servedOperations(h: Harness): Promise<Map<string, ServedOperation>> {
  const response = await h.request({ method: 'GET', url: '/openapi.json' });
  assert.equal(response.statusCode, 200);
  const paths = (response.json() as { paths: Record<string, Record<string, Record<string, unknown>>> }).paths;
  const operations = new Map<string, ServedOperation>();
  for (const [path, methods] of Object.entries(paths)) {
    for (const [method, operation] of Object.entries(methods)) {
      const requestBody = operation['requestBody'] as { content?: Record<string, { schema?: { properties?: object; required?: string[] } }> } | undefined;
      const schema = requestBody?.content?.['application/json']?.schema;
      const required = new Set(schema?.required ?? []);
      operations.set(routeKey(method, path), {
        access: operation['x-mcias-access'],
        body: Object.keys(schema?.properties ?? {}).map((field) => (required.has(field) ? field : `${field}?`)).sort(),
        statuses: Object.keys((operation['responses'] as object | undefined) ?? {})
          .filter((s) => /^2\d\d$/.test(s))
          .map(Number),
      });
    }
  }
  return operations;
}

/** What is in one set and not the other, both ways, as a message that says where to fix it. */
function difference(documented: Iterable<string>, served: Iterable<string>, where = '/openapi.json'): string {
  const doc = new Set(documented);
  const srv = new Set(served);
  const missingFromDocs = [...srv].filter((k) => !doc.has(k)).sort();
  const missingFromServer = [...doc].filter((k) => !srv.has(k)).sort();
  const lines: string[] = [];
  if (missingFromDocs.length > 0) lines.push(`in ${where} but not in docs/api.md:\n  ${missingFromDocs.join('\n  ')}`);
  if (missingFromServer.length > 0) lines.push(`in docs/api.md but not in ${where}:\n  ${missingFromServer.join('\n  ')}`);
  return lines.join('\n');
}

for (const dialect of DIALECTS) {
  describe(`docs/api.md agrees with /openapi.json (${dialect})`, () => {
    let h: Harness;
    let documented: Map<string, DocumentedRoute>;
    let served: Map<string, ServedOperation>;

    before(async () => {
      h = await createHarness(dialect);
      documented = documentedRoutes(readFileSync(API_MD, 'utf8'));
      served = await servedOperations(h);
    });
    after(() => h.close());

    test('every route in one is in the other', () => {
      assert.ok(documented.size > 10, 'no route tables could be read from docs/api.md');
      assert.ok(served.size > 10, 'no operations could be read from /openapi.json');
      // Fastify serves HEAD for every GET route by itself; neither side lists those.
      const servedKeys = [...served.keys()].filter((k) => !k.startsWith('HEAD '));
      const diff = difference(documented.keys(), servedKeys);
      assert.equal(diff, '', `\n${diff}`);
    });

    test('each route has the documented access level, body fields and success status', () => {
      const problems: string[] = [];
      for (const [key, doc] of documented) {
        const op = served.get(key);
        if (op === undefined) continue; // reported by the test above
        if (doc.access !== op.access) problems.push(`${key}: docs/api.md says access ${String(doc.access)}, the server declares ${String(op.access)}`);
        if (doc.body.join() !== op.body.join()) {
          problems.push(`${key}: docs/api.md has body {${doc.body.join(', ')}}, the server takes {${op.body.join(', ')}}`);
        }
        // Every route but /openapi.json itself documents exactly one success status.
        if (op.statuses.length > 0 && (op.statuses.length !== 1 || doc.status !== op.statuses[0])) {
          problems.push(`${key}: docs/api.md says ${String(doc.status)} on success, the server documents ${op.statuses.join(', ')}`);
        }
      }
      assert.equal(problems.length, 0, `\n${problems.join('\n')}`);
    });
  });
}

describe('docs/api.md error codes', () => {
  test('the error-code table is the server\'s status map', () => {
    const table = markdownTables(readFileSync(API_MD, 'utf8')).find((t) => t.header.join() === 'code,status,meaning');
    assert.ok(table !== undefined, 'docs/api.md has no | code | status | meaning | table');
    const documented = new Map(
      table.rows.map((row) => {
        const code = /^`([a-z_]+)`$/.exec(row[0] ?? '')?.[1];
        assert.ok(code !== undefined, `docs/api.md: "${row[0]}" is not a \`code\``);
        return [code, Number(/^\d{3}/.exec(row[1] ?? '')?.[0])] as const;
      }),
    );
    const diff = difference(documented.keys(), Object.keys(STATUS_BY_CODE), 'the status map of src/http/problem.ts');
    assert.equal(diff, '', `\n${diff}`);
    for (const [code, status] of Object.entries(STATUS_BY_CODE)) {
      assert.equal(documented.get(code), status, `docs/api.md gives ${code} the status ${String(documented.get(code))}, the server ${status}`);
    }
  });
});
