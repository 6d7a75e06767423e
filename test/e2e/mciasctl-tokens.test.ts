import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { MciasClient, type ActiveToken } from '@mcias/client';
import { apiError } from '../support/client.ts';
import { USER_PASSWORD } from '../support/harness.ts';
import { assertOk, assertOneLineError, ctl, useMciasctlFixture, type CtlEnv } from '../support/mciasctl.ts';

/** mciasctl's token, renew and keys commands, driven through the shipped binary against a real server. */

const JWT = /^[\w-]+\.[\w-]+\.[\w-]+$/;
const RFC3339 = '\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ';
const mode = (file: string) => statSync(file).mode & 0o777;

describe('mciasctl token, renew and keys against a real mciassrv', () => {
  const fx = useMciasctlFixture({ admin: true });
  const { freshEnv, loggedIn, sessionPath, storedToken } = fx;
  let anonymous: MciasClient;
  let admin: CtlEnv;
  const validate = (token: string) => anonymous.validate(token);
  const jtiOf = async (token: string) => {
    const result = await validate(token);
    assert.equal(result.active, true);
    return (result as ActiveToken).jti;
  };
  let outputs = 0;
  const outFile = () => path.join(fx.scratch, `token-${(outputs += 1)}`);

  before(async () => {
    anonymous = new MciasClient({ server: fx.server.url, caCert: readFileSync(fx.server.caCertFile) });
    admin = fx.admin;
    for (const args of [
      ['account', 'create', 'wiki', '--system'],
      ['role', 'create', 'wiki'],
      ['account', 'create', 'delegate', '--password-file', fx.userPasswordFile, '--no-temporary'],
      ['role', 'grant', 'wiki', 'delegate'],
      ['account', 'create', 'stranger', '--password-file', fx.userPasswordFile, '--no-temporary'],
    ]) {
      const result = await ctl(admin, ...args);
      assert.equal(result.code, 0, result.stderr);
    }
  });
  after(() => {
    anonymous?.close();
  });

  test('token issue --out writes the token to a new 0600 file and prints where and until when, never the token', async () => {
    const file = outFile();
    const result = await ctl(admin, 'token', 'issue', 'wiki', '--out', file);
    assertOk(result);
    assert.match(result.stdout, new RegExp(`^wrote the token of wiki to ${file}; it expires at ${RFC3339}\\n$`));
    assert.equal(mode(file), 0o600);
    const token = readFileSync(file, 'utf8').trim();
    assert.match(token, JWT);
    assert.ok(!result.stdout.includes(token));
    const validated = await validate(token);
    assert.equal(validated.active, true);
    assert.equal((validated as ActiveToken).username, 'wiki');
    assert.equal((validated as ActiveToken).kind, 'system');

    // An existing file is never overwritten, and no token is issued (so the one in the file stays valid).
    const again = await ctl(admin, 'token', 'issue', 'wiki', '--out', file);
    assertOneLineError(again, 'usage', 2);
    assert.match(again.stderr, /exists; refusing to overwrite/);
    assert.equal(readFileSync(file, 'utf8').trim(), token);
    assert.equal((await validate(token)).active, true);
    const nowhere = await ctl(admin, 'token', 'issue', 'wiki', '--out', path.join(fx.scratch, 'no-such-dir', 'token'));
    assertOneLineError(nowhere, 'usage', 2);
    assert.equal((await validate(token)).active, true);

    // Nor does a failed issue leave a file behind.
    const failed = outFile();
    assertOneLineError(await ctl(admin, 'token', 'issue', 'no-such-service', '--out', failed), 'not_found');
    assert.throws(() => statSync(failed), { code: 'ENOENT' });
  });

  test('token issue without --out prints exactly one line, the token; issuing again invalidates the previous one', async () => {
    const first = await ctl(admin, 'token', 'issue', 'wiki');
    assertOk(first);
    const lines = first.stdout.split('\n');
    assert.equal(lines.length, 2, first.stdout);
    assert.equal(lines[1], '');
    const token = lines[0] as string;
    assert.match(token, JWT);
    assert.equal((await validate(token)).active, true);

    const second = await ctl(admin, 'token', 'issue', 'wiki');
    assertOk(second);
    const replacement = second.stdout.trim();
    assert.match(replacement, JWT);
    assert.deepEqual(await validate(token), { active: false });
    assert.equal((await validate(replacement)).active, true);
  });

  test('token issue --json shows the token only without --out', async () => {
    const printed = JSON.parse((await ctl(admin, '--json', 'token', 'issue', 'wiki')).stdout) as Record<string, string>;
    assert.deepEqual(Object.keys(printed).sort(), ['expires_at', 'token', 'token_type']);
    assert.match(printed['token'] ?? '', JWT);
    assert.equal(printed['token_type'], 'Bearer');

    const file = outFile();
    const result = await ctl(admin, '--json', 'token', 'issue', 'wiki', '--out', file);
    assertOk(result);
    const written = JSON.parse(result.stdout) as Record<string, string>;
    assert.deepEqual(Object.keys(written).sort(), ['expires_at', 'token_type']);
    assert.match(written['expires_at'] ?? '', new RegExp(`^${RFC3339}$`));
    assert.deepEqual(await validate(printed['token'] ?? ''), { active: false });
    assert.equal((await validate(readFileSync(file, 'utf8').trim())).active, true);
  });

  test('token list shows the live token without its value; token revoke makes it inactive', async () => {
    const token = (await ctl(admin, 'token', 'issue', 'wiki')).stdout.trim();
    const jti = await jtiOf(token);

    const listed = await ctl(admin, 'token', 'list', 'wiki');
    assertOk(listed);
    const lines = listed.stdout.trimEnd().split('\n');
    assert.match(lines[0] ?? '', /^JTI\s+KIND\s+ISSUED\s+EXPIRES\s+ISSUED BY$/);
    assert.equal(lines.length, 2, listed.stdout);
    assert.match(lines[1] ?? '', new RegExp(`^${jti}\\s+service\\s+${RFC3339}\\s+${RFC3339}\\s+admin$`));
    assert.ok(!listed.stdout.includes(token));
    const json = JSON.parse((await ctl(admin, 'token', 'list', 'wiki', '--json')).stdout) as { jti: string; kind: string; issued_by: string }[];
    assert.deepEqual(json.map((t) => [t.jti, t.kind, t.issued_by]), [[jti, 'service', 'admin']]);

    const revoked = await ctl(admin, 'token', 'revoke', 'wiki');
    assertOk(revoked);
    assert.equal(revoked.stdout, 'revoked the token of wiki\n');
    assert.deepEqual(await validate(token), { active: false });
    assert.deepEqual((await ctl(admin, 'token', 'list', 'wiki')).stdout.trimEnd().split('\n').slice(1), []);
    assertOneLineError(await ctl(admin, 'token', 'revoke', 'wiki'), 'not_found');
    assertOneLineError(await ctl(admin, 'token', 'list', 'nobody'), 'not_found');
  });

  test('token revoke-id revokes one token by its jti', async () => {
    const login = await anonymous.login('stranger', USER_PASSWORD);
    const jti = await jtiOf(login.token);
    const listed = (await ctl(admin, 'token', 'list', 'stranger')).stdout;
    assert.match(listed, new RegExp(`^${jti}\\s+session\\s`, 'm'));
    const result = await ctl(admin, 'token', 'revoke-id', jti);
    assertOk(result);
    assert.equal(result.stdout, `revoked token ${jti}\n`);
    assert.deepEqual(await validate(login.token), { active: false });
    assertOneLineError(await ctl(admin, 'token', 'revoke-id', '00000000-0000-4000-8000-000000000000'), 'not_found');
    assertOneLineError(await ctl(admin, 'token', 'revoke-id', 'not-a-jti'), 'invalid_request');
  });

  test('a delegate (a person with the role wiki) can issue the wiki token; another person gets one line of forbidden', async () => {
    const delegate = await loggedIn('delegate', fx.userPasswordFile);
    const file = outFile();
    const result = await ctl(delegate, 'token', 'issue', 'wiki', '--out', file);
    assertOk(result);
    assert.equal((await validate(readFileSync(file, 'utf8').trim())).active, true);
    assert.match((await ctl(admin, 'token', 'list', 'wiki')).stdout, /\sdelegate\n$/);
    assertOneLineError(await ctl(delegate, 'token', 'revoke', 'wiki'), 'forbidden');

    const stranger = await loggedIn('stranger', fx.userPasswordFile);
    const refused = await ctl(stranger, 'token', 'issue', 'wiki');
    assertOneLineError(refused, 'forbidden');
    assert.equal(refused.stdout, '');
    const refusedToFile = outFile();
    assertOneLineError(await ctl(stranger, 'token', 'issue', 'wiki', '--out', refusedToFile), 'forbidden');
    assert.throws(() => statSync(refusedToFile), { code: 'ENOENT' });
    assert.equal((await validate(readFileSync(file, 'utf8').trim())).active, true, "the refused call revoked nothing");
  });

  test('SECURITY.md §38: a delegate cannot issue the token of a service holding admin, through mciasctl or the SDK', async () => {
    for (const args of [['account', 'create', 'opsbot', '--system'], ['role', 'create', 'opsbot'], ['role', 'grant', 'opsbot', 'delegate'], ['role', 'grant', 'admin', 'opsbot']]) {
      assertOk(await ctl(admin, ...args));
    }
    const delegate = await loggedIn('delegate', fx.userPasswordFile);
    const refused = await ctl(delegate, 'token', 'issue', 'opsbot');
    assertOneLineError(refused, 'forbidden');
    assert.match(refused.stderr, /opsbot holds roles you do not hold/);
    assert.equal(refused.stdout, '');

    const sdk = anonymous.withToken((await anonymous.login('delegate', USER_PASSWORD)).token);
    const error = await apiError(sdk.issueServiceToken('opsbot'), 403, 'forbidden');
    assert.equal(error.reason, 'delegation_exceeds_roles');

    assertOk(await ctl(admin, 'role', 'revoke', 'admin', 'opsbot'));
    assert.equal((await validate((await sdk.issueServiceToken('opsbot')).token)).active, true);
    assertOk(await ctl(delegate, 'token', 'issue', 'opsbot', '--out', outFile()));
  });

  test('renew replaces the stored token (0600) and prints the new expiry; the old token is then inactive', async () => {
    const env = await loggedIn();
    const old = storedToken(env);
    const result = await ctl(env, 'renew');
    assertOk(result);
    assert.match(result.stdout, new RegExp(`^renewed; the session now expires at ${RFC3339}\\n$`));
    const renewed = storedToken(env);
    assert.notEqual(renewed, old);
    assert.ok(!result.stdout.includes(renewed));
    assert.equal(mode(sessionPath(env)), 0o600);
    const session = JSON.parse(readFileSync(sessionPath(env), 'utf8')) as Record<string, string>;
    assert.equal(session['expiresAt'], /at (\S+)\n$/.exec(result.stdout)?.[1]);
    assert.equal(session['username'], 'admin');
    assert.equal(session['server'], fx.server.url);
    assert.deepEqual(await validate(old), { active: false });
    assert.equal((await validate(renewed)).active, true);
    assert.equal((await ctl(env, 'whoami')).stdout, 'admin (human, active; roles: admin)\n');

    const json = JSON.parse((await ctl(env, '--json', 'renew')).stdout) as Record<string, string>;
    assert.deepEqual(Object.keys(json), ['expires_at']);

    // A token from MCIAS_TOKEN would be revoked with nowhere to keep its replacement: refused before any call.
    const token = storedToken(env);
    assertOneLineError(await ctl({ ...freshEnv(), MCIAS_TOKEN: token }, 'renew'), 'usage', 2);
    assert.equal((await validate(token)).active, true);
  });

  test('keys rotate prints a new kid that the JWKS serves; it needs admin', async () => {
    const result = await ctl(admin, 'keys', 'rotate');
    assertOk(result);
    const kid = /^new signing key (\S+)\n$/.exec(result.stdout)?.[1];
    assert.ok(kid !== undefined, result.stdout);
    assert.ok((await anonymous.jwks()).keys.some((k) => k.kid === kid));

    const json = JSON.parse((await ctl(admin, '--json', 'keys', 'rotate')).stdout) as { kid: string };
    assert.notEqual(json.kid, kid);
    assert.ok((await anonymous.jwks()).keys.some((k) => k.kid === json.kid));

    assertOneLineError(await ctl(await loggedIn('stranger', fx.userPasswordFile), 'keys', 'rotate'), 'forbidden');
  });
});
