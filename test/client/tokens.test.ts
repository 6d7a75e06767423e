import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { decodeProtectedHeader } from 'jose';
import type { ActiveToken, TokenValidation } from '@mcias/client';
import { USER_PASSWORD } from '../support/harness.ts';
import { apiError, useClientFixture } from '../support/client.ts';


function assertActive(result: TokenValidation): asserts result is ActiveToken {
  assert.equal(result.active, true, 'expected an active token');
}

const JWT = /^[\w-]+\.[\w-]+\.[\w-]+$/;
const RFC3339 = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/;

describe('MciasClient token methods against a real mciassrv', () => {
  const fx = useClientFixture();

  test('validate: an active token comes with its account, current roles, permissions and times', async () => {
    const login = await fx.anonymous.login('admin', fx.server.adminPassword);
    const result = await fx.anonymous.validate(login.token);
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
    const good = (await fx.anonymous.login('admin', fx.server.adminPassword)).token;
    const [header, payload] = good.split('.');
    for (const token of ['garbage', '', 'a.b.c', `${header}.${payload}.${'A'.repeat(86)}`]) {
      assert.deepEqual(await fx.anonymous.validate(token), { active: false }, token);
    }
    // The validating client's own token is not needed and not involved.
    assert.deepEqual(await fx.admin.validate('garbage'), { active: false });
  });

  test('renew gives a new token with a new jti; the old one is then inactive and refused', async () => {
    const first = await fx.anonymous.login('admin', fx.server.adminPassword);
    const old = fx.anonymous.withToken(first.token);
    const oldJti = (await fx.anonymous.validate(first.token)) as ActiveToken;
    const renewed = await old.renew();
    assert.equal(renewed.token_type, 'Bearer');
    assert.match(renewed.token, JWT);
    assert.match(renewed.expires_at, RFC3339);
    assert.notEqual(renewed.token, first.token);

    assert.deepEqual(await fx.anonymous.validate(first.token), { active: false });
    const now = await fx.anonymous.validate(renewed.token);
    assertActive(now);
    assert.notEqual(now.jti, oldJti.jti);
    assert.equal((await fx.anonymous.withToken(renewed.token).me()).username, 'admin');

    // Renewing the old token again fails, and the token is nowhere in the error.
    const error = await apiError(old.renew(), 401, 'unauthenticated');
    assert.ok(!`${error.message} ${error.stack} ${JSON.stringify(error)}`.includes(first.token));
  });

  test('listMyTokens and revokeMyToken; someone else\'s token is not found', async () => {
    const gina = await fx.person('gina');
    const second = fx.anonymous.withToken((await fx.anonymous.login('gina', USER_PASSWORD)).token);
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
    const other = await fx.anonymous.login('gina', USER_PASSWORD);
    const otherJti = ((await fx.anonymous.validate(other.token)) as ActiveToken).jti;
    await gina.revokeMyToken(otherJti);
    assert.deepEqual(await fx.anonymous.validate(other.token), { active: false });
    assert.equal((await second.me()).id, me.id);
    assert.ok(!(await gina.listMyTokens()).some((t) => t.jti === otherJti));

    const adminJti = ((await fx.anonymous.validate((await fx.anonymous.login('admin', fx.server.adminPassword)).token)) as ActiveToken).jti;
    await apiError(gina.revokeMyToken(adminJti), 404, 'not_found');
    await apiError(gina.revokeMyToken('not-a-uuid'), 400, 'invalid_request');
  });

  test('service tokens: issue, re-issue replaces, list, revoke; validate sees a system account', async () => {
    await fx.admin.createAccount({ username: 'wiki', kind: 'system' });
    const first = await fx.admin.issueServiceToken('wiki');
    assert.equal(first.token_type, 'Bearer');
    assert.match(first.token, JWT);
    assert.match(first.expires_at, RFC3339);
    const active = await fx.anonymous.validate(first.token);
    assertActive(active);
    assert.equal(active.username, 'wiki');
    assert.equal(active.kind, 'system');
    assert.equal((await fx.anonymous.withToken(first.token).me()).username, 'wiki');

    const second = await fx.admin.issueServiceToken('wiki');
    assert.deepEqual(await fx.anonymous.validate(first.token), { active: false });
    const current = await fx.anonymous.validate(second.token);
    assertActive(current);

    const listed = await fx.admin.listTokens('wiki');
    assert.equal(listed.length, 1, 'a system account has one live token');
    assert.equal(listed[0]?.jti, current.jti);
    assert.equal(listed[0]?.kind, 'service');
    assert.equal(listed[0]?.account, 'wiki');
    assert.equal(listed[0]?.issued_by, 'admin');

    await fx.admin.revokeServiceToken('wiki');
    assert.deepEqual(await fx.anonymous.validate(second.token), { active: false });
    assert.deepEqual(await fx.admin.listTokens('wiki'), []);
    await apiError(fx.admin.revokeServiceToken('wiki'), 404, 'not_found');
    await apiError(fx.admin.issueServiceToken('nosuchservice'), 404, 'not_found');
    await apiError(fx.admin.listTokens('nosuchaccount'), 404, 'not_found');
  });

  test('a delegate (a person holding the role named after the service) may issue, but not revoke; others may not', async () => {
    await fx.admin.createAccount({ username: 'chat', kind: 'system' });
    await fx.admin.createRole('chat');
    const delegate = await fx.person('hank', ['chat']);
    const stranger = await fx.person('ivy');

    const issued = await delegate.issueServiceToken('chat');
    assertActive(await fx.anonymous.validate(issued.token));
    assert.equal((await fx.admin.listTokens('chat'))[0]?.issued_by, 'hank');

    await apiError(stranger.issueServiceToken('chat'), 403, 'forbidden');
    await apiError(delegate.revokeServiceToken('chat'), 403, 'forbidden');
    await apiError(delegate.listTokens('chat'), 403, 'forbidden');
    await apiError(delegate.rotateKeys(), 403, 'forbidden');
    // A service token cannot issue service tokens, not even its own.
    await apiError(fx.anonymous.withToken(issued.token).issueServiceToken('chat'), 403, 'forbidden');
    assertActive(await fx.anonymous.validate(issued.token));
  });

  test('revokeToken revokes any token by jti (admin only)', async () => {
    const jack = await fx.person('jack');
    const token = (await fx.anonymous.login('jack', USER_PASSWORD)).token;
    const jti = ((await fx.anonymous.validate(token)) as ActiveToken).jti;
    assert.ok((await fx.admin.listTokens('jack')).some((t) => t.jti === jti));
    await apiError(jack.revokeToken(jti), 403, 'forbidden');
    await fx.admin.revokeToken(jti);
    assert.deepEqual(await fx.anonymous.validate(token), { active: false });
    assert.ok(!(await fx.admin.listTokens('jack')).some((t) => t.jti === jti));
    await apiError(fx.admin.revokeToken('00000000-0000-4000-8000-000000000000'), 404, 'not_found');
  });

  test('rotateKeys returns a new kid that the JWKS serves and new tokens are signed with; old tokens still work', async () => {
    const before = (await fx.anonymous.jwks()).keys.map((k) => k.kid);
    const oldToken = (await fx.anonymous.login('admin', fx.server.adminPassword)).token;
    const oldKid = decodeProtectedHeader(oldToken).kid;
    assert.ok(before.includes(String(oldKid)));

    const { kid } = await fx.admin.rotateKeys();
    assert.equal(typeof kid, 'string');
    assert.ok(!before.includes(kid), 'a new kid');
    const after = (await fx.anonymous.jwks()).keys.map((k) => k.kid);
    assert.ok(after.includes(kid), 'the new key is served');
    assert.ok(after.includes(String(oldKid)), 'the old key stays while tokens it signed live');

    const newToken = (await fx.anonymous.login('admin', fx.server.adminPassword)).token;
    assert.equal(decodeProtectedHeader(newToken).kid, kid);
    assertActive(await fx.anonymous.validate(oldToken));
    assertActive(await fx.anonymous.validate(newToken));
  });
});
