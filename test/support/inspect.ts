import assert from 'node:assert/strict';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import type { Kysely } from 'kysely';
import type { DB } from '../../src/store/schema.ts';
import type { Harness } from './harness.ts';
import { ERROR_CODES } from '../../src/domain/errors.ts';

/**
 * Helpers that look at the application and the database from outside: the routes the app really serves, the
 * full contents of every table, tokens for any account, and checks that an error answer is a clean problem.
 */

export type HttpMethod = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** `METHOD /path/{param}`, the OpenAPI spelling, so the router's and the document's routes compare directly. */
export function routeKey(method: string, path: string): string {
  return `${method.toUpperCase()} ${path.replace(/:([A-Za-z0-9_]+)/g, '{$1}')}`;
}

/**
 * Every method and path the router serves, read from `printRoutes` (Fastify keeps no public route list).
 * HEAD routes Fastify adds for GET routes are included.
 */
export function appRoutes(app: FastifyInstance): Set<string> {
  const routes = new Set<string>();
  const prefixes: string[] = [];
  for (const line of app.printRoutes({ commonPrefix: false }).split('\n')) {
    const match = /^((?:[│ ] {3})*)[├└]── (\S+)(?: \(([^)]*)\))?/.exec(line);
    if (match === null) continue;
    const depth = (match[1] ?? '').length / 4;
    const path = (prefixes[depth - 1] ?? '') + (match[2] ?? '');
    prefixes[depth] = path;
    prefixes.length = depth + 1;
    for (const method of (match[3] ?? '').split(',').map((m) => m.trim()).filter((m) => m !== '')) {
      routes.add(routeKey(method, path));
    }
  }
  return routes;
}

export interface OpenApiOperation {
  readonly key: string;
  readonly access: string | undefined;
  readonly hasBody: boolean;
  readonly parameters: readonly string[];
}

/** The operations `GET /openapi.json` documents, with their declared access level. */
export async function openApiOperations(h: Harness): Promise<Map<string, OpenApiOperation>> {
  const response = await h.request({ method: 'GET', url: '/openapi.json' });
  assert.equal(response.statusCode, 200);
  const document = response.json() as { paths: Record<string, Record<string, Record<string, unknown>>> };
  const operations = new Map<string, OpenApiOperation>();
  for (const [path, methods] of Object.entries(document.paths)) {
    for (const [method, operation] of Object.entries(methods)) {
      const key = routeKey(method, path);
      const parameters = ((operation['parameters'] as { name: string; in: string }[] | undefined) ?? [])
        .filter((p) => p.in === 'path')
        .map((p) => p.name);
      operations.set(key, {
        key,
        access: operation['x-mcias-access'] as string | undefined,
        hasBody: operation['requestBody'] !== undefined,
        parameters,
      });
    }
  }
  return operations;
}

/** The routes a test covers must be exactly the routes the app serves and documents. */
export async function assertCoversEveryRoute(h: Harness, covered: Iterable<string>): Promise<void> {
  const served = appRoutes(h.app);
  const withoutHead = new Set([...served].filter((r) => !r.startsWith('HEAD ')));
  for (const head of [...served].filter((r) => r.startsWith('HEAD '))) {
    assert.ok(served.has(head.replace(/^HEAD /, 'GET ')), `${head} is served without a GET route`);
  }
  const documented = new Set((await openApiOperations(h)).keys());
  const mine = new Set(covered);
  assert.ok(withoutHead.size > 10, 'the route list could not be read from the app');
  assert.deepEqual([...withoutHead].sort(), [...documented].sort(), 'the app serves routes the OpenAPI document lacks, or the reverse');
  assert.deepEqual([...mine].sort(), [...withoutHead].sort(), 'the test table and the routes the app serves differ');
}

/** Replaces `{name}` placeholders in a route path. */
export function fillPath(path: string, params: Readonly<Record<string, string>>): string {
  return path.replace(/\{([A-Za-z0-9_]+)\}/g, (_whole, name: string) => {
    const value = params[name];
    if (value === undefined) throw new Error(`no value for {${name}} in ${path}`);
    return value;
  });
}

type Row = Record<string, unknown>;

function canonicalRow(row: Row): string {
  const entries = Object.keys(row)
    .sort()
    .map((k) => {
      const v = row[k];
      return [k, v instanceof Uint8Array ? `hex:${Buffer.from(v).toString('hex')}` : typeof v === 'bigint' ? Number(v) : v];
    });
  return JSON.stringify(entries);
}

/** Every row of every table (Kysely's own bookkeeping excluded), in a canonical order. */
export type DatabaseSnapshot = ReadonlyMap<string, readonly string[]>;

export async function snapshotDatabase(db: Kysely<DB>): Promise<DatabaseSnapshot> {
  const any = db as unknown as Kysely<Record<string, Row>>;
  const tables = (await db.introspection.getTables()).map((t) => t.name).sort();
  const snapshot = new Map<string, string[]>();
  for (const table of tables) {
    const rows = await any.selectFrom(table).selectAll().execute();
    snapshot.set(table, rows.map(canonicalRow).sort());
  }
  return snapshot;
}

/** The tables the snapshot must see; a snapshot without them would prove nothing. */
export const EXPECTED_TABLES = ['accounts', 'roles', 'account_roles', 'tokens', 'audit_events', 'signing_keys', 'permissions', 'role_permissions', 'pg_credentials', 'registrations'] as const;

/**
 * Asserts that nothing changed between two snapshots, except new audit rows of the listed types (a failed login
 * is recorded, by design). Existing audit rows must be untouched.
 */
export function assertDatabaseUnchanged(
  before: DatabaseSnapshot,
  after: DatabaseSnapshot,
  options: { allowNewAudit?: readonly string[]; what?: string } = {},
): void {
  const what = options.what === undefined ? '' : ` (${options.what})`;
  for (const table of EXPECTED_TABLES) assert.ok(before.has(table), `the snapshot has no ${table} table`);
  assert.deepEqual([...after.keys()], [...before.keys()], `tables appeared or vanished${what}`);
  for (const [table, rows] of before) {
    const now = after.get(table) ?? [];
    if (table !== 'audit_events') {
      assert.deepEqual(now, rows, `table ${table} changed${what}`);
      continue;
    }
    const old = new Set(rows);
    for (const row of rows) assert.ok(now.includes(row), `an audit row changed or vanished${what}`);
    for (const row of now.filter((r) => !old.has(r))) {
      const type = (JSON.parse(row) as [string, unknown][]).find(([k]) => k === 'type')?.[1];
      assert.ok(options.allowNewAudit?.includes(type as string), `an unexpected audit row of type ${String(type)} was written${what}`);
    }
  }
}

/** Row counts per table, for tests that only need sizes. */
export async function rowCount(db: Kysely<DB>, table: keyof DB): Promise<number> {
  const row = await (db as Kysely<any>).selectFrom(table).select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow();
  return Number((row as { n: unknown }).n);
}

/**
 * A token for any account, issued directly through the token service (as the server would), the way a system
 * account's token will be issued by the admin route once it exists. A system account holds one live token, so its
 * previous ones are revoked first.
 */
export async function issueToken(h: Harness, username: string): Promise<string> {
  const { services } = h.runtime;
  const account = await services.accounts.get(username);
  // Minted outside the transaction, as the server does: minting may reload the signing keys through the store, which
  // on SQLite (one connection) would wait forever for the open transaction.
  const issued = await services.tokens.mint(account, {
    kind: account.kind === 'system' ? 'service' : 'session',
    issuedBy: account.id,
  });
  return h.runtime.database.store.transaction(async (tx) => {
    if (account.kind === 'system') await tx.tokens.revokeAllOf(account.id, h.clock.now(), 'test_reissue');
    await tx.tokens.insert(issued.record);
    return issued.token;
  });
}


/** Text that would betray internals: a stack frame, a source path, SQL, a driver's name. */
const INTERNALS = [/\bat [\w.<>]+ \(/, /\.ts:\d+/, /node_modules/, /\bselect\b.+\bfrom\b/i, /\binsert into\b/i, /\bupdate \w+ set\b/i, /sqlite/i, /\bpg\b|postgres/i, /kysely/i, /\$scrypt\$/, /stack/i];

/**
 * An error answer is RFC 9457 problem details: the right status, `application/problem+json`, a stable `code`, the
 * request id (the same as the X-Request-Id header), and nothing from the inside.
 */
export function assertProblem(response: LightMyRequestResponse, expected: { status?: number; code?: string } = {}): Record<string, unknown> {
  const context = `${response.statusCode} ${response.body.slice(0, 300)}`;
  if (expected.status !== undefined) assert.equal(response.statusCode, expected.status, context);
  assert.ok(response.statusCode >= 400 && response.statusCode < 600, context);
  assert.match(String(response.headers['content-type']), /^application\/problem\+json/, context);
  const body = response.json() as Record<string, unknown>;
  assert.equal(body['type'], 'about:blank', context);
  assert.equal(typeof body['title'], 'string', context);
  assert.equal(body['status'], response.statusCode, context);
  assert.ok((ERROR_CODES as readonly unknown[]).includes(body['code']), context);
  if (expected.code !== undefined) assert.equal(body['code'], expected.code, context);
  assert.equal(typeof body['request_id'], 'string', context);
  assert.equal(body['request_id'], response.headers['x-request-id'], context);
  const allowed = new Set(['type', 'title', 'status', 'code', 'detail', 'reason', 'request_id']);
  for (const key of Object.keys(body)) assert.ok(allowed.has(key), `unexpected problem member ${key}: ${context}`);
  for (const pattern of INTERNALS) assert.doesNotMatch(response.body, pattern, context);
  return body;
}

/** Records every response a test file sees, so it can check them all at the end (e.g. for password hashes). */
export function recordingRequests(h: Harness): { request: Harness['request']; responses: LightMyRequestResponse[] } {
  const responses: LightMyRequestResponse[] = [];
  return {
    responses,
    request: async (options) => {
      const response = await h.request(options);
      responses.push(response);
      return response;
    },
  };
}

/** SECURITY.md §22: no response carries a password hash, a hash column or any of the given passwords. */
export function assertNoSecrets(responses: readonly LightMyRequestResponse[], passwords: readonly string[]): void {
  assert.ok(responses.length > 0, 'no responses were recorded');
  for (const response of responses) {
    assert.ok(!response.body.includes('$scrypt$'), `a response carried a password hash: ${response.body.slice(0, 200)}`);
    assert.doesNotMatch(response.body, /password_hash|passwordHash|totp_secret|private_key/);
    for (const password of passwords) assert.ok(!response.body.includes(password), 'a response carried a password');
  }
}
