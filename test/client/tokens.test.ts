import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { decodeProtectedHeader } from 'jose';
import { MciasClient, type ActiveToken, type TokenValidation } from '../../packages/client/src/index.ts';
import { USER_PASSWORD } from '../support/harness.ts';
import { startServerProcess, type ServerProcess } from '../support/server-process.ts';
import { apiError } from '../support/client.ts';


function assertActive(result: TokenValidation): asserts result is ActiveToken {
  assert.equal(result.active, true, 'expected an active token');
}

const JWT = /^[\w-]+\.[\w-]+\.[\w-]+$/;
const RFC3339 = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/;

describe('MciasClient token methods against a real mciassrv', () => {
  let server: ServerProcess;
  let anonymous: MciasClient;
  let admin: MciasClient;

  /** A new human account (optionally with roles) and a client logged in as it. */
  async function person(username: string, roles: readonly string[] = []): Promise<MciasClient> {
    await admin.createAccount({ username, kind: 'human', password: USER_PASSWORD, temporary: false });
    for (const role of roles) await admin.grantRole(username, role);
    return anonymous.withToken((await anonymous.login(username, USER_PASSWORD)).token);
  }

  before(async () => {
    server = await startServerProcess();
    anonymous = new MciasClient({ server: server.url, caCert: readFileSync(server.caCertFile) });
    admin = anonymous.withToken((await anonymous.login('admin', server.adminPassword)).token);
  });
  after(async () => {
    anonymous?.close();
    await server?.dispose();
  });

  test('validate: an active token comes with its account, current roles, permissions and times', async () => {
    const login = await anonymous.login('admin', server.adminPassword);
    const result = await anonymous.validate(login.token);
    assertActive(result);
    assert.deepEqual(Object.keys(result).sort(), ['active', 'exp', 'iat', 'jti', 'kind', 'permissions', 'roles', 'sub', 'username'].sort());
    assert.equal(result.sub, login.account.id);
    assert.equal(result.username, 'admin');
    assert.equal(result.kind, 'human');
    assert.deepEqual(result.roles, ['admin']);
    assert.ok(Array.isArray(result.permissions));
    assert.ok(Number.isInteger(result.exp) && Number.isInteger(result.iat) && result.exp > result.iat);
    assert.equal(result.exp, Math.floor(Date.parse(login.expires_at) / 1000));
    assert.match(result.jti, /^[0-9a-f-]{36}$/);
  });

  test('validate: garbage, a forged signature and an empty string are just {active: false}', async () => {
    const good = (await anonymous.login('admin', server.adminPassword)).token;
    const [header, payload] = good.split('.');
    for (const token of ['garbage', '', 'a.b.c', `${header}.${payload}.${'A'.repeat(86)}`]) {
      assert.deepEqual(await anonymous.validate(token), { active: false }, token);
    }
    // The validating client's own token is not needed and not involved.
    assert.deepEqual(await admin.validate('garbage'), { active: false });
  });

  test('renew gives a new token with a new jti; the old one is then inactive and refused', async () => {
    const first = await anonymous.login('admin', server.adminPassword);
    const old = anonymous.withToken(first.token);
    const oldJti = (await anonymous.validate(first.token)) as ActiveToken;
    const renewed = await old.renew();
    assert.equal(renewed.token_type, 'Bearer');
    assert.match(renewed.token, JWT);
    assert.match(renewed.expires_at, RFC3339);
    assert.notEqual(renewed.token, first.token);

    assert.deepEqual(await anonymous.validate(first.token), { active: false });
    const now = await anonymous.validate(renewed.token);
    assertActive(now);
    assert.notEqual(now.jti, oldJti.jti);
    assert.equal((await anonymous.withToken(renewed.token).me()).username, 'admin');

    // Renewing the old token again fails, and the token is nowhere in the error.
    const error = await apiError(old.renew(), 401, 'unauthenticated');
    assert.ok(!`${error.message} ${error.stack} ${JSON.stringify(error)}`.includes(first.token));
  });

  test('listMyTokens and revokeMyToken; someone else\'s token is not found', async () => {
    const gina = await person('gina');
    const second = anonymous.withToken((await anonymous.login('gina', USER_PASSWORD)).token);
    const mine = await gina.listMyTokens();
    assert.equal(mine.length, 2);
    for (const info of mine) {
      assert.deepEqual(Object.keys(info).sort(), ['account', 'expires_at', 'issued_at', 'issued_by', 'jti', 'kind'].sort());
      assert.equal(info.account, 'gina');
      assert.equal(info.kind, 'session');
      assert.match(info.issued_at, RFC3339);
      assert.match(info.expires_at, RFC3339);
      assert.ok(!JSON.stringify(info).includes('eyJ'), 'no token value in a listing');
    }
    const me = await gina.me();
    const other = await anonymous.login('gina', USER_PASSWORD);
    const otherJti = ((await anonymous.validate(other.token)) as ActiveToken).jti;
    await gina.revokeMyToken(otherJti);
    assert.deepEqual(await anonymous.validate(other.token), { active: false });
    assert.equal((await second.me()).id, me.id);
    assert.ok(!(await gina.listMyTokens()).some((t) => t.jti === otherJti));

    const adminJti = ((await anonymous.validate((await anonymous.login('admin', server.adminPassword)).token)) as ActiveToken).jti;
    await apiError(gina.revokeMyToken(adminJti), 404, 'not_found');
    await apiError(gina.revokeMyToken('not-a-uuid'), 400, 'invalid_request');
  });

  test('service tokens: issue, re-issue replaces, list, revoke; validate sees a system account', async () => {
    await admin.createAccount({ username: 'wiki', kind: 'system' });
    const first = await admin.issueServiceToken('wiki');
    assert.equal(first.token_type, 'Bearer');
    assert.match(first.token, JWT);
    assert.match(first.expires_at, RFC3339);
    const active = await anonymous.validate(first.token);
    assertActive(active);
    assert.equal(active.username, 'wiki');
    assert.equal(active.kind, 'system');
    assert.equal((await anonymous.withToken(first.token).me()).username, 'wiki');

    const second = await admin.issueServiceToken('wiki');
    assert.deepEqual(await anonymous.validate(first.token), { active: false });
    const current = await anonymous.validate(second.token);
    assertActive(current);

    const listed = await admin.listTokens('wiki');
    assert.equal(listed.length, 1, 'a system account has one live token');
    assert.equal(listed[0]?.jti, current.jti);
    assert.equal(listed[0]?.kind, 'service');
    assert.equal(listed[0]?.account, 'wiki');
    assert.equal(listed[0]?.issued_by, 'admin');

    await admin.revokeServiceToken('wiki');
    assert.deepEqual(await anonymous.validate(second.token), { active: false });
    assert.deepEqual(await admin.listTokens('wiki'), []);
    await apiError(admin.revokeServiceToken('wiki'), 404, 'not_found');
    await apiError(admin.issueServiceToken('nosuchservice'), 404, 'not_found');
    await apiError(admin.listTokens('nosuchaccount'), 404, 'not_found');
  });

  test('a delegate (a person holding the role named after the service) may issue, but not revoke; others may not', async () => {
    await admin.createAccount({ username: 'chat', kind: 'system' });
    await admin.createRole('chat');
    const delegate = await person('hank', ['chat']);
    const stranger = await person('ivy');

    const issued = await delegate.issueServiceToken('chat');
    assertActive(await anonymous.validate(issued.token));
    assert.equal((await admin.listTokens('chat'))[0]?.issued_by, 'hank');

    await apiError(stranger.issueServiceToken('chat'), 403, 'forbidden');
    await apiError(delegate.revokeServiceToken('chat'), 403, 'forbidden');
    await apiError(delegate.listTokens('chat'), 403, 'forbidden');
    await apiError(delegate.rotateKeys(), 403, 'forbidden');
    // A service token cannot issue service tokens, not even its own.
    await apiError(anonymous.withToken(issued.token).issueServiceToken('chat'), 403, 'forbidden');
    assertActive(await anonymous.validate(issued.token));
  });

  test('revokeToken revokes any token by jti (admin only)', async () => {
    const jack = await person('jack');
    const token = (await anonymous.login('jack', USER_PASSWORD)).token;
    const jti = ((await anonymous.validate(token)) as ActiveToken).jti;
    assert.ok((await admin.listTokens('jack')).some((t) => t.jti === jti));
    await apiError(jack.revokeToken(jti), 403, 'forbidden');
    await admin.revokeToken(jti);
    assert.deepEqual(await anonymous.validate(token), { active: false });
    assert.ok(!(await admin.listTokens('jack')).some((t) => t.jti === jti));
    await apiError(admin.revokeToken('00000000-0000-4000-8000-000000000000'), 404, 'not_found');
  });

  test('rotateKeys returns a new kid that the JWKS serves and new tokens are signed with; old tokens still work', async () => {
    const before = (await anonymous.jwks()).keys.map((k) => k.kid);
    const oldToken = (await anonymous.login('admin', server.adminPassword)).token;
    const oldKid = decodeProtectedHeader(oldToken).kid;
    assert.ok(before.includes(String(oldKid)));

    const { kid } = await admin.rotateKeys();
    assert.equal(typeof kid, 'string');
    assert.ok(!before.includes(kid), 'a new kid');
    const after = (await anonymous.jwks()).keys.map((k) => k.kid);
    assert.ok(after.includes(kid), 'the new key is served');
    assert.ok(after.includes(String(oldKid)), 'the old key stays while tokens it signed live');

    const newToken = (await anonymous.login('admin', server.adminPassword)).token;
    assert.equal(decodeProtectedHeader(newToken).kid, kid);
    assertActive(await anonymous.validate(oldToken));
    assertActive(await anonymous.validate(newToken));
  });
});
