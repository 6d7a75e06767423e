import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Secret, TOTP } from 'otpauth';
import { matchTotpStep, normalizeRecoveryCode } from '../../src/domain/totp.ts';
import { DIALECTS } from '../support/databases.ts';
import { createHarness, type Harness } from '../support/harness.ts';
import { issueToken } from '../support/inspect.ts';
import { enrollTotp, stepOf } from '../support/totp-codes.ts';

/** SECURITY.md §12 and §13: RFC 6238 as fixed there (SHA-1, 6 digits, 30 s, ±1 step), and each step accepted once. */

/** RFC 6238 Appendix B, SHA-1: the seed is the ASCII string "12345678901234567890"; values are 8 digits. */
const RFC_SECRET = new Uint8Array(Buffer.from('12345678901234567890', 'ascii'));
const RFC_VECTORS: readonly (readonly [seconds: number, code: string])[] = [
  [59, '94287082'],
  [1111111109, '07081804'],
  [1111111111, '14050471'],
  [1234567890, '89005924'],
  [2000000000, '69279037'],
  [20000000000, '65353130'],
];

const secretOf = (bytes: Uint8Array) => new Secret({ buffer: new Uint8Array(bytes).buffer });

describe('RFC 6238 Appendix B test vectors (SHA-1)', () => {
  test('otpauth, configured as the server configures it but with 8 digits, reproduces every vector', () => {
    const totp = new TOTP({ secret: secretOf(RFC_SECRET), algorithm: 'SHA1', digits: 8, period: 30 });
    for (const [seconds, code] of RFC_VECTORS) assert.equal(totp.generate({ timestamp: seconds * 1000 }), code, `T = ${seconds}`);
  });

  test('the 6-digit code is the last 6 digits of each vector, and matchTotpStep accepts it with step floor(T/30)', () => {
    const sixDigits = new TOTP({ secret: secretOf(RFC_SECRET), algorithm: 'SHA1', digits: 6, period: 30 });
    for (const [seconds, code] of RFC_VECTORS) {
      const six = code.slice(-6);
      assert.equal(sixDigits.generate({ timestamp: seconds * 1000 }), six, `T = ${seconds}`);
      assert.equal(matchTotpStep(RFC_SECRET, six, seconds * 1000), Math.floor(seconds / 30), `T = ${seconds}`);
    }
  });

  test('a vector code is accepted one step either side of its time, with its own step; two steps away it is refused', () => {
    for (const [seconds, code] of RFC_VECTORS) {
      const six = code.slice(-6);
      const step = Math.floor(seconds / 30);
      const stepStart = step * 30_000;
      // The server one step behind and one step ahead (anywhere inside that step) still takes the code, as step `step`.
      for (const at of [stepStart - 30_000, stepStart - 1, stepStart + 30_000, stepStart + 59_999]) {
        if (at < 0) continue;
        assert.equal(matchTotpStep(RFC_SECRET, six, at), step, `T = ${seconds}, now = ${at}`);
      }
      for (const at of [stepStart - 30_001, stepStart - 60_000, stepStart + 60_000, stepStart + 89_999]) {
        if (at < 0) continue;
        assert.equal(matchTotpStep(RFC_SECRET, six, at), undefined, `T = ${seconds}, now = ${at}`);
      }
    }
  });

  test('the 8-digit value itself, a wrong digit, or anything but six ASCII digits is refused', () => {
    const [seconds, code] = RFC_VECTORS[3] as readonly [number, string];
    const six = code.slice(-6);
    const at = seconds * 1000;
    const wrongDigit = `${six.slice(0, 5)}${(Number(six[5]) + 1) % 10}`;
    for (const candidate of [code, wrongDigit, ` ${six}`, `${six} `, `${six}\n`, six.slice(1), '', '١٢٣٤٥٦', `+${six.slice(1)}`]) {
      assert.equal(matchTotpStep(RFC_SECRET, candidate, at), undefined, JSON.stringify(candidate));
    }
    // A different secret's code at the same moment is refused too.
    const other = new Uint8Array(Buffer.from('09876543210987654321', 'ascii'));
    assert.equal(matchTotpStep(other, six, at), undefined);
  });
});

describe('recovery code normalisation', () => {
  test('case, dashes and spaces do not matter', () => {
    assert.equal(normalizeRecoveryCode('abcd-efgh-ijkl-mnop'), 'ABCDEFGHIJKLMNOP');
    assert.equal(normalizeRecoveryCode('ABCD EFGH IJKL MNOP'), 'ABCDEFGHIJKLMNOP');
    assert.equal(normalizeRecoveryCode('AbCdEfGhIjKlMnOp'), 'ABCDEFGHIJKLMNOP');
  });
});

for (const dialect of DIALECTS) {
  describe(`the last accepted step is kept in the database [${dialect}]`, () => {
    let h: Harness;
    before(async () => {
      h = await createHarness(dialect);
    });
    after(() => h.close());

    test('acceptTotpStep takes a step only if it is later than the last one, and only while TOTP is confirmed', async () => {
      const { store } = h.runtime.database;
      await h.createAccount('stepper');
      const account = await h.runtime.services.accounts.get('stepper');
      // Not enrolled: nothing is accepted.
      assert.equal(await store.credentials.acceptTotpStep(account.id, 1_000), false);

      await enrollTotp(h, await issueToken(h, 'stepper'));
      const confirmed = stepOf(h.clock.now());
      // The confirming code's step counts as used.
      assert.equal((await store.credentials.findTotp(account.id))?.lastStep, confirmed);
      assert.equal(await store.credentials.acceptTotpStep(account.id, confirmed), false);
      assert.equal(await store.credentials.acceptTotpStep(account.id, confirmed - 1), false);
      assert.equal(await store.credentials.acceptTotpStep(account.id, confirmed + 1), true);
      assert.equal(await store.credentials.acceptTotpStep(account.id, confirmed + 1), false);
      assert.equal(await store.credentials.acceptTotpStep(account.id, confirmed), false);
      assert.equal(await store.credentials.acceptTotpStep(account.id, confirmed + 5), true);
      assert.equal(await store.credentials.acceptTotpStep(account.id, confirmed + 3), false);
      assert.equal((await store.credentials.findTotp(account.id))?.lastStep, confirmed + 5);
    });

    test('of many concurrent acceptances of one step, exactly one wins', async () => {
      const { store } = h.runtime.database;
      await h.createAccount('racer');
      const account = await h.runtime.services.accounts.get('racer');
      await enrollTotp(h, await issueToken(h, 'racer'));
      const base = stepOf(h.clock.now());
      for (let round = 1; round <= 5; round += 1) {
        const results = await Promise.all(Array.from({ length: 8 }, () => store.credentials.acceptTotpStep(account.id, base + round)));
        assert.equal(results.filter(Boolean).length, 1, `round ${round}: ${results.join(',')}`);
      }
    });
  });
}
