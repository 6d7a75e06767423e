import assert from 'node:assert/strict';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import { isMciasError } from '../../src/domain/errors.ts';
import { FairScheduler } from '../../src/domain/fair-scheduler.ts';
import { PasswordHasher } from '../../src/domain/password.ts';
import { DIALECTS } from '../support/databases.ts';
import { ADMIN_PASSWORD, USER_PASSWORD, createHarness, type Harness } from '../support/harness.ts';
import { enrollTotp } from '../support/totp-codes.ts';

/**
 * SECURITY.md §37: every password hash done for a request runs under the client's address (an IPv6 address by its
 * /64), so the fair scheduler can share the hash slots between clients; work without a request has keys of its own.
 * The keys are recorded at the scheduler, whatever route or service asked for the hash.
 */

const keys: string[] = [];
const originalRun = FairScheduler.prototype.run;
function recordKeys(): void {
  FairScheduler.prototype.run = function <T>(this: FairScheduler, key: string, task: () => Promise<T>): Promise<T> {
    keys.push(key);
    return originalRun.call(this, key, task) as Promise<T>;
  };
}
function stopRecording(): void {
  FairScheduler.prototype.run = originalRun;
}

const V4 = '192.0.2.7';
const V6 = '2001:db8:5:6:aaaa:bbbb:cccc:dddd';
const V6_KEY = '2001:db8:5:6::/64';

for (const dialect of DIALECTS) {
  describe(`password hashes run under the client's address [${dialect}]`, () => {
    let h: Harness;
    before(async () => {
      recordKeys();
      // Above the ln=4 of the seeded legacy hash, so that one is rehashed.
      h = await createHarness(dialect, { config: { passwords: { scrypt_ln: 5 } } });
    });
    after(async () => {
      stopRecording();
      await h.close();
    });
    beforeEach(() => {
      keys.length = 0;
    });
    afterEach(() => {
      keys.length = 0;
    });

    const call = async (remoteAddress: string, method: 'POST' | 'PUT' | 'DELETE', url: string, body: object, token?: string) => {
      const response = await h.app.inject({
        method,
        url,
        remoteAddress,
        payload: body,
        headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
      });
      return response.statusCode;
    };

    test('the bootstrap hashes under a key of its own, which no address has', async () => {
      // Refused (accounts exist) only after the password is hashed.
      await assert.rejects(h.runtime.services.accounts.bootstrapAdmin('second', ADMIN_PASSWORD, { temporary: false }), (e) => isMciasError(e, 'conflict'));
      assert.deepEqual(keys, ['internal:bootstrap']);
    });

    test('login: right, wrong and unknown-user logins, and the rehash of a weaker stored hash', async () => {
      assert.equal(await call(V4, 'POST', '/v1/auth/login', { username: 'admin', password: ADMIN_PASSWORD }), 200);
      assert.equal(await call(V6, 'POST', '/v1/auth/login', { username: 'admin', password: 'not the right password' }), 401);
      assert.equal(await call(V4, 'POST', '/v1/auth/login', { username: 'nobody', password: 'not the right password' }), 401);
      assert.deepEqual(keys, [V4, V6_KEY, V4]);

      await h.createAccount('legacy');
      const weak = await new PasswordHasher({ ln: 4, r: 8, p: 1 }, { maxConcurrent: 1, maxQueued: 1, maxPerClient: 1 }).hash(USER_PASSWORD, 'test');
      await h.runtime.database.db.updateTable('accounts').set({ password_hash: weak }).where('username', '=', 'legacy').execute();
      keys.length = 0;
      assert.equal(await call(V6, 'POST', '/v1/auth/login', { username: 'legacy', password: USER_PASSWORD }), 200);
      assert.deepEqual(keys, [V6_KEY, V6_KEY], 'the verification and the rehash');
    });

    test('an administrator creating an account and resetting its password', async () => {
      assert.equal(await call(V6, 'POST', '/v1/accounts', { username: 'keyed', kind: 'human', password: USER_PASSWORD }, h.adminToken), 201);
      assert.equal(await call(V4, 'PUT', '/v1/accounts/keyed/password', { password: 'a fresh and rather long password' }, h.adminToken), 204);
      assert.deepEqual(keys, [V6_KEY, V4]);
    });

    test('changing your own password: the current one checked, the new one hashed', async () => {
      await h.createAccount('changer');
      const token = await h.login('changer', USER_PASSWORD);
      keys.length = 0;
      const body = { current_password: USER_PASSWORD, new_password: 'a brand new long password here' };
      assert.equal(await call(V6, 'PUT', '/v1/me/password', body, token), 204);
      assert.deepEqual(keys, [V6_KEY, V6_KEY]);
    });

    test('removing TOTP checks the password under the address', async () => {
      await h.createAccount('remover');
      const token = await h.login('remover', USER_PASSWORD);
      await enrollTotp(h, token);
      keys.length = 0;
      assert.equal(await call(V4, 'DELETE', '/v1/me/totp', { password: USER_PASSWORD, code: '000000' }, token), 401);
      assert.deepEqual(keys, [V4]);
    });
  });
}
