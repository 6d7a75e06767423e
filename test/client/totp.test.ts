import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { URI } from 'otpauth';
import { MciasClient, isMciasApiError } from '@mcias/client';
import { USER_PASSWORD } from '../support/harness.ts';
import { Authenticator } from '../support/totp.ts';
import { apiError, useClientFixture } from '../support/client.ts';


const RECOVERY_CODE = /^[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}$/;

describe('MciasClient TOTP methods against a real mciassrv', () => {
  const fx = useClientFixture();

  /** Enrolls `client`'s account; returns its authenticator and recovery codes. */
  async function enroll(client: MciasClient): Promise<{ app: Authenticator; recoveryCodes: readonly string[] }> {
    const { secret } = await client.beginTotp(USER_PASSWORD);
    const app = new Authenticator(secret);
    const { recovery_codes: recoveryCodes } = await client.confirmTotp(await app.next());
    return { app, recoveryCodes };
  }

  test('enroll, confirm, log in with a code once, a recovery code once, disable', async () => {
    const alice = await fx.person('alice');

    // Re-authentication: a wrong password starts nothing.
    await apiError(alice.beginTotp('not the password at all, no'), 401, 'invalid_credentials');
    const enrollment = await alice.beginTotp(USER_PASSWORD);
    assert.deepEqual(Object.keys(enrollment).sort(), ['otpauth_uri', 'secret']);
    assert.match(enrollment.secret, /^[A-Z2-7]{32}$/);
    const uri = URI.parse(enrollment.otpauth_uri);
    assert.equal(uri.label, 'alice');
    assert.equal(uri.issuer, 'MCIAS');
    assert.equal(uri.secret.base32, enrollment.secret);
    // Not active until confirmed.
    assert.equal((await alice.me()).totp_enabled, false);
    assert.equal((await fx.anonymous.login('alice', USER_PASSWORD)).account.username, 'alice');

    const app = new Authenticator(enrollment.secret);
    await apiError(alice.confirmTotp(app.wrong()), 401, 'invalid_credentials');
    const { recovery_codes: recoveryCodes } = await alice.confirmTotp(await app.next());
    assert.equal(recoveryCodes.length, 10);
    assert.equal(new Set(recoveryCodes).size, 10);
    for (const code of recoveryCodes) assert.match(code, RECOVERY_CODE);
    assert.equal((await alice.me()).totp_enabled, true);
    assert.equal((await fx.admin.getAccount('alice')).totp_enabled, true);
    await apiError(alice.beginTotp(USER_PASSWORD), 409, 'conflict');

    // The password alone is now `totp_required`, distinguishable from a wrong password.
    const required = await apiError(fx.anonymous.login('alice', USER_PASSWORD), 401, 'totp_required');
    assert.ok(isMciasApiError(required, 'totp_required'));
    await apiError(fx.anonymous.login('alice', 'not the password at all, no'), 401, 'invalid_credentials');
    // A wrong password with a good-looking code says nothing about the code.
    await apiError(fx.anonymous.login('alice', 'not the password at all, no', app.wrong()), 401, 'invalid_credentials');

    const code = await app.next();
    // Typed as apps show it, with a space.
    const result = await fx.anonymous.login('alice', USER_PASSWORD, `${code.slice(0, 3)} ${code.slice(3)}`);
    assert.equal(result.account.username, 'alice');
    assert.equal(result.account.totp_enabled, true);
    assert.equal(result.totp_enrollment_required, undefined);
    assert.equal((await fx.anonymous.validate(result.token)).active, true);
    // The same code again is a replay.
    await apiError(fx.anonymous.login('alice', USER_PASSWORD, code), 401, 'invalid_credentials');
    await apiError(fx.anonymous.login('alice', USER_PASSWORD, app.wrong()), 401, 'invalid_credentials');

    // A recovery code works once, typed in any case and with or without dashes.
    const recovery = recoveryCodes[0] as string;
    assert.equal((await fx.anonymous.login('alice', USER_PASSWORD, recovery.toLowerCase())).account.username, 'alice');
    await apiError(fx.anonymous.login('alice', USER_PASSWORD, recovery), 401, 'invalid_credentials');
    const second = (recoveryCodes[1] as string).replaceAll('-', '');
    assert.equal((await fx.anonymous.login('alice', USER_PASSWORD, second)).account.username, 'alice');

    // Removal needs the password and a current code; a wrong password does not use the code up.
    await apiError(alice.disableTotp(USER_PASSWORD, app.wrong()), 401, 'invalid_credentials');
    const last = await app.next();
    await apiError(alice.disableTotp('not the password at all, no', last), 401, 'invalid_credentials');
    await alice.disableTotp(USER_PASSWORD, last);
    assert.equal((await alice.me()).totp_enabled, false);
    assert.equal((await fx.anonymous.login('alice', USER_PASSWORD)).account.totp_enabled, false);
    // The old recovery codes went with it.
    await apiError(alice.disableTotp(USER_PASSWORD, recoveryCodes[2] as string), 409, 'conflict');
  });

  test('resetTotp by an administrator: the person logs in with the password alone, and can enroll again', async () => {
    const bob = await fx.person('bob');
    const { recoveryCodes } = await enroll(bob);
    await apiError(fx.anonymous.login('bob', USER_PASSWORD), 401, 'totp_required');

    // Not for the person themselves, nor for a system account.
    await apiError(bob.resetTotp('bob'), 403, 'forbidden');
    await fx.admin.createAccount({ username: 'backup-bot', kind: 'system' });
    await apiError(fx.admin.resetTotp('backup-bot'), 400, 'invalid_request');
    await apiError(fx.admin.resetTotp('nobody'), 404, 'not_found');

    await fx.admin.resetTotp('bob');
    assert.equal((await fx.admin.getAccount('bob')).totp_enabled, false);
    // A credential reset ends the sessions that the lost authenticator opened.
    await apiError(bob.me(), 401, 'unauthenticated');
    const again = fx.anonymous.withToken((await fx.anonymous.login('bob', USER_PASSWORD)).token);
    await enroll(again);
    assert.equal((await again.me()).totp_enabled, true);
    // The recovery codes of the lost authenticator went with it.
    await apiError(fx.anonymous.login('bob', USER_PASSWORD, recoveryCodes[0]), 401, 'invalid_credentials');
  });

  test('a system account has no TOTP; the code format is checked before anything else', async () => {
    await fx.admin.createAccount({ username: 'ci-bot', kind: 'system' });
    const bot = fx.anonymous.withToken((await fx.admin.issueServiceToken('ci-bot')).token);
    await apiError(bot.beginTotp(USER_PASSWORD), 403, 'forbidden');
    const carol = await fx.person('carol');
    await apiError(carol.confirmTotp('123456'), 409, 'conflict');
    await carol.beginTotp(USER_PASSWORD);
    await apiError(carol.confirmTotp('12345'), 400, 'invalid_request');
    await apiError(carol.disableTotp(USER_PASSWORD, '123456'), 409, 'conflict');
  });
});
