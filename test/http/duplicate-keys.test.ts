import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { duplicateKey } from '../../src/http/json-body.ts';
import { DIALECTS } from '../support/databases.ts';
import { ADMIN_PASSWORD, USER_PASSWORD, createHarness, type Harness } from '../support/harness.ts';
import { assertDatabaseUnchanged, assertProblem, snapshotDatabase } from '../support/inspect.ts';

/**
 * A JSON body that names a key twice in one object is refused with 400 (SECURITY.md §22, §33): JSON.parse would keep
 * the last value while a proxy or the sending app may have acted on the first.
 */

describe('duplicateKey: finds a key repeated in one object, at any depth, and nothing else', () => {
  const cases: readonly (readonly [string, string | undefined])[] = [
    ['{"kind":"human","kind":"system"}', 'kind'],
    ['{"a":1,"b":{"x":1,"y":2,"x":3}}', 'x'],
    ['{"a":[{"x":1},{"y":2,"y":3}]}', 'y'],
    ['[{"a":1},[[{"b":{"c":1,"c":1}}]]]', 'c'],
    // The same key, spelt with an escape.
    ['{"kind":"human","\\u006bind":"system"}', 'kind'],
    ['{"k\\"q":1,"k\\u0022q":2}', 'k"q'],
    // Whitespace around the colon (still JSON).
    ['{ "a" : 1 ,\n "a"\t:\r\n2 }', 'a'],
    // Same-named keys in different objects, or in an object and a nested one, are fine.
    ['{"a":{"a":{"a":1}},"b":[{"a":1},{"a":2}]}', undefined],
    ['{"x":{"k":1},"y":{"k":2}}', undefined],
    // Text that looks like keys inside string values is not a key.
    ['{"password":"\\"a\\":1,\\"a\\":2","a":"{\\"a\\":1}"}', undefined],
    ['{"a":"x\\\\","b":"\\\\\\"a\\":","c":"]}{["}', undefined],
    ['{"a":"value","b":"value"}', undefined],
    ['["a","a",{"a":1}]', undefined],
    ['"kind"', undefined],
    ['{}', undefined],
    ['[]', undefined],
    ['{"":1,"":2}', ''],
  ];
  for (const [text, expected] of cases) {
    test(`${text} -> ${expected === undefined ? 'none' : JSON.stringify(expected)}`, () => {
      JSON.parse(text); // every case is valid JSON, as the parser guarantees before the scan runs
      assert.equal(duplicateKey(text), expected);
    });
  }

  test('deep nesting that JSON.parse accepts is scanned without overflowing the stack', () => {
    const depth = 30_000;
    const deep = `${'['.repeat(depth)}{"a":1,"a":2}${']'.repeat(depth)}`;
    JSON.parse(deep);
    assert.equal(duplicateKey(deep), 'a');
    assert.equal(duplicateKey(`${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`), undefined);
  });

  test('a long string value (1 MiB) is scanned quickly', () => {
    const text = JSON.stringify({ a: 'x'.repeat(1024 * 1024), b: '\\"'.repeat(100_000), c: 1 });
    const started = performance.now();
    assert.equal(duplicateKey(text), undefined);
    assert.ok(performance.now() - started < 1_000);
  });
});

for (const dialect of DIALECTS) {
  describe(`duplicate JSON keys are refused on real routes, and change nothing [${dialect}]`, () => {
    let h: Harness;
    before(async () => {
      h = await createHarness(dialect);
      await h.createAccount('dora');
    });
    after(() => h.close());

    /** Sends the raw body and checks: 400 invalid_request naming the key, and no table changed at all. */
    async function refused(method: 'POST' | 'PATCH' | 'PUT', url: string, body: string, key: string, token: string | undefined = h.adminToken) {
      const before = await snapshotDatabase(h.runtime.database.db);
      const response = await h.request({ method, url, token, body });
      const problem = assertProblem(response, { status: 400, code: 'invalid_request' });
      assert.equal(problem['detail'], `the JSON body names the key "${key}" more than once in one object`);
      assertDatabaseUnchanged(before, await snapshotDatabase(h.runtime.database.db), { what: `${method} ${url} ${body}` });
    }

    test('an account kind given twice: refused, no account created; the single-key body then works', async () => {
      await refused('POST', '/v1/accounts', '{"username":"dupe","kind":"human","kind":"system"}', 'kind');
      await refused('POST', '/v1/accounts', '{"username":"dupe","kind":"system","\\u006bind":"human"}', 'kind');
      await refused('POST', '/v1/accounts', '{"username":"dupe","username":"dupe","kind":"system"}', 'username');
      const created = await h.request({ method: 'POST', url: '/v1/accounts', token: h.adminToken, body: '{"username":"dupe","kind":"system"}' });
      assert.equal(created.statusCode, 201, created.body);
      assert.equal(created.json().kind, 'system');
    });

    test('a password given twice at login: refused before any password is checked (no audit row, no token)', async () => {
      await refused('POST', '/v1/auth/login', JSON.stringify({ username: 'admin', password: 'wrong guess at it' }).replace('}', `,"password":${JSON.stringify(ADMIN_PASSWORD)}}`), 'password', undefined);
      await refused('POST', '/v1/auth/login', `{"username":"mallory","username":"admin","password":${JSON.stringify(ADMIN_PASSWORD)}}`, 'username', undefined);
      const login = await h.request({ method: 'POST', url: '/v1/auth/login', body: `{"username":"admin","password":${JSON.stringify(ADMIN_PASSWORD)}}` });
      assert.equal(login.statusCode, 200, login.body);
    });

    test('a status given twice in a PATCH, and a password twice in a reset: refused, the account unchanged', async () => {
      await refused('PATCH', '/v1/accounts/dora', '{"status":"active","status":"disabled"}', 'status');
      await refused('PUT', '/v1/accounts/dora/password', `{"password":"another fine password","password":"yet another password"}`, 'password');
      assert.equal((await h.request({ method: 'GET', url: '/v1/accounts/dora', token: h.adminToken })).json().status, 'active');
      assert.ok(await h.login('dora', USER_PASSWORD));
    });

    test('a key repeated in a nested object is refused as a duplicate, before the schema sees the body', async () => {
      // Without the duplicate check, these would be refused as unknown fields (a different detail).
      await refused('POST', '/v1/roles', '{"name":"nested","extra":{"a":1,"a":2}}', 'a');
      await refused('POST', '/v1/roles', '{"name":"nested","extra":[{"b":1},{"c":1,"c":2}]}', 'c');
      const created = await h.request({ method: 'POST', url: '/v1/roles', token: h.adminToken, body: '{"name":"nested"}' });
      assert.equal(created.statusCode, 201, created.body);
    });

    test('an odd or long repeated key is not echoed back', async () => {
      for (const key of ['k'.repeat(65), 'line\r\nbreak', '<script>', 'ünïcode']) {
        const before = await snapshotDatabase(h.runtime.database.db);
        const body = `{"name":"odd",${JSON.stringify(key)}:1,${JSON.stringify(key)}:2}`;
        const response = await h.request({ method: 'POST', url: '/v1/roles', token: h.adminToken, body });
        const problem = assertProblem(response, { status: 400, code: 'invalid_request' });
        assert.equal(problem['detail'], 'the JSON body names a key more than once in one object');
        assertDatabaseUnchanged(before, await snapshotDatabase(h.runtime.database.db));
      }
    });

    test('prototype poisoning is still refused (SECURITY.md §33), also when the poisoned key is repeated', async () => {
      for (const body of [
        '{"name":"proto","__proto__":{"admin":true}}',
        '{"name":"proto","constructor":{"prototype":{"admin":true}}}',
        '{"__proto__":{"a":1},"__proto__":{"a":1}}',
      ]) {
        const before = await snapshotDatabase(h.runtime.database.db);
        const response = await h.request({ method: 'POST', url: '/v1/roles', token: h.adminToken, body });
        const problem = assertProblem(response, { status: 400, code: 'invalid_request' });
        assert.equal(problem['detail'], 'the request body is not valid JSON', body);
        assertDatabaseUnchanged(before, await snapshotDatabase(h.runtime.database.db));
      }
    });

    test('ordinary bodies still work, with any spacing and a charset in the content type', async () => {
      const spaced = `{\n  "username" : "spacey",\n  "kind" : "human",\n  "password" : ${JSON.stringify(USER_PASSWORD)}\n}`;
      const response = await h.request({
        method: 'POST',
        url: '/v1/accounts',
        token: h.adminToken,
        body: spaced,
        headers: { 'content-type': 'application/json; charset=utf-8' },
      });
      assert.equal(response.statusCode, 201, response.body);
      assert.ok(await h.login('spacey', USER_PASSWORD));
    });
  });
}
