import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { syncBuiltinESMExports } from 'node:module';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import { isMciasError } from '../../src/domain/errors.ts';
import { DEFAULT_SCRYPT, PasswordHasher, checkNewPassword, parsePhc, type HashLimits, type ScryptParams } from '../../src/domain/password.ts';
import { DIALECTS } from '../support/databases.ts';
import { createHarness, type Harness } from '../support/harness.ts';
import { assertProblem } from '../support/inspect.ts';

/** SECURITY.md §1-§7: scrypt storage, rehash, NFKC and no truncation, new-password rules, bounded hashing. */

const CHEAP: ScryptParams = { ln: 4, r: 8, p: 1 };
/** The key hashes run under in these tests (a client address in the server). */
const K = 'test';
const hasher = (params: ScryptParams = CHEAP, limits: Partial<HashLimits> = {}) =>
  new PasswordHasher(params, { maxConcurrent: 4, maxQueued: 100, maxPerClient: 100, ...limits });

/**
 * Counts calls of `crypto.scrypt` and how many run at once. The domain imports `scrypt` by name from node:crypto;
 * `syncBuiltinESMExports` makes that binding see the wrapper.
 */
const scryptProbe = {
  calls: 0,
  active: 0,
  maxActive: 0,
  reset() {
    this.calls = 0;
    this.active = 0;
    this.maxActive = 0;
  },
};
const originalScrypt = crypto.scrypt;
function installScryptProbe(): void {
  (crypto as { scrypt: unknown }).scrypt = (...args: unknown[]) => {
    scryptProbe.calls++;
    scryptProbe.active++;
    scryptProbe.maxActive = Math.max(scryptProbe.maxActive, scryptProbe.active);
    const callback = args.at(-1) as (error: Error | null, key: Buffer) => void;
    (originalScrypt as (...a: unknown[]) => void)(...args.slice(0, -1), (error: Error | null, key: Buffer) => {
      scryptProbe.active--;
      callback(error, key);
    });
  };
  syncBuiltinESMExports();
}
function removeScryptProbe(): void {
  (crypto as { scrypt: unknown }).scrypt = originalScrypt;
  syncBuiltinESMExports();
}

function reasonOf(work: () => void): string | undefined {
  try {
    work();
  } catch (error) {
    assert.ok(isMciasError(error, 'invalid_request'), String(error));
    return error.reason;
  }
  return undefined;
}

describe('the password hasher', () => {
  before(installScryptProbe);
  after(removeScryptProbe);
  beforeEach(() => scryptProbe.reset());

  test('the default cost is N=2^17, r=8, p=1 (OWASP)', () => {
    assert.deepEqual(DEFAULT_SCRYPT, { ln: 17, r: 8, p: 1 });
  });

  test('a hash at the default N=2^17 succeeds, so maxmem is set above 128·N·r', async () => {
    const phc = await hasher(DEFAULT_SCRYPT, { maxConcurrent: 1, maxQueued: 1 }).hash('a password at full production cost', K);
    assert.deepEqual(parsePhc(phc)?.params, DEFAULT_SCRYPT);
  });

  test('a hash is a PHC string with the configured parameters, a 16-byte salt and a 32-byte hash', async () => {
    const params = { ln: 5, r: 4, p: 2 };
    const phc = await hasher(params).hash('some password or other', K);
    assert.match(phc, /^\$scrypt\$ln=5,r=4,p=2\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$/);
    const parsed = parsePhc(phc);
    assert.deepEqual(parsed?.params, params);
    assert.ok((parsed?.salt.length ?? 0) >= 16);
    assert.equal(parsed?.hash.length, 32);
    // The PHC string encodes the salt and hash; scrypt over them gives the same bytes.
    const again = crypto.scryptSync(Buffer.from('some password or other'), parsed?.salt as Buffer, 32, { N: 2 ** 5, r: 4, p: 2 });
    assert.deepEqual(again, parsed?.hash);
  });

  test('two hashes of one password differ (fresh salt) and both verify', async () => {
    const h = hasher();
    const [a, b] = await Promise.all([h.hash('same password twice', K), h.hash('same password twice', K)]);
    assert.notEqual(a, b);
    assert.notDeepEqual(parsePhc(a)?.salt, parsePhc(b)?.salt);
    assert.equal((await h.verify('same password twice', a, K)).ok, true);
    assert.equal((await h.verify('same password twice', b, K)).ok, true);
    assert.equal((await h.verify('same password twice!', a, K)).ok, false);
  });

  test('salts do not repeat across many hashes', async () => {
    const h = hasher();
    const salts = new Set<string>();
    for (let i = 0; i < 50; i++) salts.add(parsePhc(await h.hash('x', K))?.salt.toString('hex') ?? '');
    assert.equal(salts.size, 50);
  });

  test('verifying against no stored hash (unknown user) still runs scrypt at the configured cost, and fails', async () => {
    const h = hasher({ ln: 6, r: 8, p: 1 });
    await h.warmUp();
    scryptProbe.reset();
    assert.deepEqual(await h.verify('anything', undefined, K), { ok: false, needsRehash: false });
    assert.deepEqual(await h.verify('anything', null, K), { ok: false, needsRehash: false });
    assert.deepEqual(await h.verify('anything', 'not a phc string', K), { ok: false, needsRehash: false });
    assert.equal(scryptProbe.calls, 3);
  });

  test('a stored hash weaker than the configured parameters asks for a rehash; an equal one does not', async () => {
    const weak = await hasher({ ln: 4, r: 8, p: 1 }).hash('pw', K);
    const strong = hasher({ ln: 6, r: 8, p: 1 });
    assert.deepEqual(await strong.verify('pw', weak, K), { ok: true, needsRehash: true });
    assert.deepEqual(await strong.verify('wrong', weak, K), { ok: false, needsRehash: false });
    assert.deepEqual(await strong.verify('pw', await strong.hash('pw', K), K), { ok: true, needsRehash: false });
    assert.equal((await strong.verify('pw', await hasher({ ln: 6, r: 4, p: 1 }).hash('pw', K), K)).needsRehash, true);
  });

  test('a stored hash of fewer than 16 bytes verifies nothing (a zero-byte hash would match every password)', async () => {
    const h = hasher();
    const salt = Buffer.alloc(16, 7).toString('base64').replace(/=+$/, '');
    for (const hash of ['A', 'AAA', Buffer.alloc(15).toString('base64').replace(/=+$/, '')]) {
      const stored = `$scrypt$ln=4,r=8,p=1$${salt}$${hash}`;
      assert.equal(parsePhc(stored), undefined, hash);
      assert.deepEqual(await h.verify('any password at all', stored, K), { ok: false, needsRehash: false }, hash);
    }
    const sixteen = `$scrypt$ln=4,r=8,p=1$${salt}$${crypto.scryptSync('pw', Buffer.alloc(16, 7), 16, { N: 16, r: 8, p: 1 }).toString('base64').replace(/=+$/, '')}`;
    assert.equal((await h.verify('pw', sixteen, K)).ok, true, 'a 16-byte hash from another tool still verifies');
  });

  test('a dummy hash refused while the queue was full is computed on a later unknown-user login, not kept as a failure', async () => {
    const h = hasher({ ln: 8, r: 8, p: 1 }, { maxConcurrent: 1, maxQueued: 0 });
    const busy = h.hash('holds the only slot', 'other');
    await assert.rejects(h.verify('guess', undefined, K), (e) => isMciasError(e, 'rate_limited'));
    await busy;
    assert.deepEqual(await h.verify('guess', undefined, K), { ok: false, needsRehash: false });
  });

  test('passwords are NFKC-normalised: a compatibility form verifies against the canonical one', async () => {
    const h = hasher();
    const phc = await h.hash('ﬁne ﬁsh and ①②③ in ＦＵＬＬＷＩＤＴＨ', K);
    assert.equal((await h.verify('fine fish and 123 in FULLWIDTH', phc, K)).ok, true);
    const composed = await h.hash('caf\u00e9 au lait et cr\u00e8me', K);
    assert.equal((await h.verify('cafe\u0301 au lait et cre\u0300me', composed, K)).ok, true);
  });

  test('passwords are never truncated: two 80-character passwords differing in the last character differ', async () => {
    const h = hasher();
    const base = 'x'.repeat(79);
    const phc = await h.hash(`${base}a`, K);
    assert.equal((await h.verify(`${base}a`, phc, K)).ok, true);
    assert.equal((await h.verify(`${base}b`, phc, K)).ok, false);
    // Beyond any 64- or 72-byte boundary, in multi-byte characters too.
    const emoji = '🔐'.repeat(40);
    const phc2 = await h.hash(`${emoji}1`, K);
    assert.equal((await h.verify(`${emoji}2`, phc2, K)).ok, false);
  });

  test('with maxConcurrent 1, many concurrent hashes never run more than one scrypt at a time', async () => {
    const h = hasher({ ln: 8, r: 8, p: 1 }, { maxConcurrent: 1, maxQueued: 100 });
    await Promise.all(Array.from({ length: 12 }, (_, i) => h.hash(`password ${i}`, K)));
    assert.equal(scryptProbe.calls, 12);
    assert.equal(scryptProbe.maxActive, 1);
  });

  test('the concurrency bound is the configured one (the probe sees parallel hashes when allowed)', async () => {
    const h = hasher({ ln: 8, r: 8, p: 1 }, { maxConcurrent: 3, maxQueued: 100 });
    await Promise.all(Array.from({ length: 12 }, (_, i) => h.hash(`password ${i}`, K)));
    assert.equal(scryptProbe.maxActive, 3);
  });

  test('beyond the queue limit a hash is refused with rate_limited and a Retry-After, without running scrypt', async () => {
    const h = hasher({ ln: 8, r: 8, p: 1 }, { maxConcurrent: 1, maxQueued: 2 });
    const results = await Promise.allSettled(Array.from({ length: 6 }, () => h.hash('busy', K)));
    const refused = results.filter((r) => r.status === 'rejected');
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 3);
    assert.equal(refused.length, 3);
    for (const r of refused) {
      assert.ok(isMciasError(r.reason, 'rate_limited'));
      assert.ok((r.reason.retryAfter ?? 0) > 0);
    }
    assert.equal(scryptProbe.calls, 3);
  });
});

describe('new-password rules (NIST SP 800-63B)', () => {
  const check = (password: string, username = 'someone', minLength = 15) => reasonOf(() => checkNewPassword(password, { username, minLength }));

  test('the minimum length is counted in characters after NFKC, and 15 characters pass', () => {
    assert.equal(check('fourteen chars'), 'password_too_short');
    assert.equal(check('fifteen chars!!'), undefined);
    assert.equal(check('ééééééééééééééé'), undefined, 'fifteen two-byte characters are fifteen characters');
    assert.equal(check('🔐'.repeat(14)), 'password_too_short');
  });

  test('the minimum length follows the configuration (8 with TOTP)', () => {
    assert.equal(check('eight ch', 'someone', 8), undefined);
    assert.equal(check('seven c', 'someone', 8), 'password_too_short');
  });

  test('no composition rules: a long lower-case passphrase is fine', () => {
    assert.equal(check('correct horse battery staple'), undefined);
  });

  test('a password of at least 64 characters is allowed, and an absurd one refused with its reason', () => {
    assert.equal(check('w'.repeat(64) + ' and more words'), undefined);
    assert.equal(check('w'.repeat(1_024)), undefined);
    assert.equal(check('w'.repeat(1_025)), 'password_too_long');
  });

  test('the length rules count characters after NFKC: ligatures expand, and 1,024 four-byte characters are allowed', () => {
    // Five characters as typed, fifteen after NFKC (each ﬃ is "ffi").
    assert.equal(check('ﬃ'.repeat(5)), undefined);
    assert.equal(check('ﬃ'.repeat(4)), 'password_too_short');
    assert.equal(check('🔐'.repeat(1_024)), undefined, '1,024 characters, 2,048 UTF-16 units');
    assert.equal(check('🔐'.repeat(1_025)), 'password_too_long');
  });

  test('the username check sees through compatibility forms (NFKC) and case', () => {
    assert.equal(check('ＭＡＲＧＡＲＥＴ is my name and long', 'margaret'), 'password_contains_username');
    assert.equal(check('ﬁona loves long passwords', 'fiona'), 'password_contains_username');
  });

  test('a commonly used password is refused, also with digits or symbols appended', () => {
    assert.equal(check('password1234567890'), 'password_common');
    assert.equal(check('PASSWORD!!!!!!!!!!!'), 'password_common');
    assert.equal(check('qwertyuiop123456'), 'password_common');
  });

  test('a password containing the username is refused, in any case', () => {
    assert.equal(check('my name is margaret, hello', 'margaret'), 'password_contains_username');
    assert.equal(check('MARGARET-long-enough-pass', 'margaret'), 'password_contains_username');
    assert.equal(check('nothing to do with her at all', 'margaret'), undefined);
  });
});

for (const dialect of DIALECTS) {
  describe(`passwords through the API [${dialect}]`, () => {
    let h: Harness;
    before(async () => {
      // Configured at N=2^6, above the harness's N=2^4, so a hash's parameters show where they came from.
      h = await createHarness(dialect, { config: { passwords: { scrypt_ln: 6 } } });
      installScryptProbe();
    });
    after(async () => {
      removeScryptProbe();
      await h.close();
    });
    afterEach(() => scryptProbe.reset());

    const storedHash = async (username: string) =>
      (await h.runtime.database.db.selectFrom('accounts').select('password_hash').where('username', '=', username).executeTakeFirstOrThrow())
        .password_hash ?? '';
    const login = (username: string, password: string) => h.request({ method: 'POST', url: '/v1/auth/login', body: { username, password } });
    const create = (username: string, password: string) =>
      h.request({ method: 'POST', url: '/v1/accounts', token: h.adminToken, body: { username, kind: 'human', password } });

    test('a stored hash parses to the configured parameters', async () => {
      assert.equal((await create('stella', 'a sparkling long passphrase')).statusCode, 201);
      const parsed = parsePhc(await storedHash('stella'));
      assert.deepEqual(parsed?.params, { ln: 6, r: 8, p: 1 });
      assert.ok((parsed?.salt.length ?? 0) >= 16);
    });

    test('a login with a hash weaker than configured stores a fresh hash at the configured cost', async () => {
      await h.createAccount('legacy');
      const id = (await h.runtime.services.accounts.get('legacy')).id;
      const weak = await hasher({ ln: 4, r: 8, p: 1 }).hash('an old but long password', K);
      await h.runtime.database.db.updateTable('accounts').set({ password_hash: weak }).where('id', '=', id).execute();

      assert.equal((await login('legacy', 'an old but long password')).statusCode, 200);
      const stored = await storedHash('legacy');
      assert.notEqual(stored, weak);
      assert.equal(parsePhc(stored)?.params.ln, 6);
      assert.equal((await login('legacy', 'an old but long password')).statusCode, 200);
      assert.equal(await storedHash('legacy'), stored, 'an up-to-date hash is not rewritten');
      const audit = await h.runtime.database.db
        .selectFrom('audit_events')
        .select('details')
        .where('type', '=', 'login_succeeded')
        .where('subject_id', '=', id)
        .orderBy('seq')
        .execute();
      assert.deepEqual(
        audit.map((r) => JSON.parse(r.details).rehashed),
        [true, false],
      );
    });

    test('a failed login does not rehash a weak stored hash', async () => {
      await h.createAccount('legacy2');
      const weak = await hasher({ ln: 4, r: 8, p: 1 }).hash('another old long password', K);
      await h.runtime.database.db.updateTable('accounts').set({ password_hash: weak }).where('username', '=', 'legacy2').execute();
      assert.equal((await login('legacy2', 'not the right password')).statusCode, 401);
      assert.equal(await storedHash('legacy2'), weak);
    });

    test('a password typed in a compatibility form logs in (NFKC), both ways round', async () => {
      assert.equal((await create('fiona', 'ﬁnancial ﬁgures are ﬁne')).statusCode, 201);
      assert.equal((await login('fiona', 'financial figures are fine')).statusCode, 200);
      assert.equal((await create('fred', 'financial figures are fine')).statusCode, 201);
      assert.equal((await login('fred', 'ﬁnancial ﬁgures are ﬁne')).statusCode, 200);
    });

    test('two 80-character passwords differing only in the last character do not both work', async () => {
      const base = 'p'.repeat(40) + 'q'.repeat(39);
      assert.equal((await create('eighty', `${base}1`)).statusCode, 201);
      assert.equal((await login('eighty', `${base}1`)).statusCode, 200);
      assertProblem(await login('eighty', `${base}2`), { status: 401, code: 'invalid_credentials' });
    });

    test('a 1 MB password is refused at once (413 over the body limit) and never hashed', async () => {
      const started = performance.now();
      const response = await login('admin', 'x'.repeat(1_000_000));
      const elapsed = performance.now() - started;
      assertProblem(response, { status: 413, code: 'payload_too_large' });
      assert.ok(elapsed < 1_000, `${elapsed} ms`);
      const created = await create('huge', 'x'.repeat(1_000_000));
      assertProblem(created, { status: 413, code: 'payload_too_large' });
      assert.equal(scryptProbe.calls, 0);
    });

    test('each refused new password answers 400 with its reason, and nothing is hashed or stored', async () => {
      const cases: [string, string, string][] = [
        ['shorty', 'only 14 chars!', 'password_too_short'],
        ['commoner', 'password1234567890', 'password_common'],
        ['harriet', 'harriet-likes-long-passwords', 'password_contains_username'],
      ];
      for (const [username, password, reason] of cases) {
        const body = assertProblem(await create(username, password), { status: 400, code: 'invalid_request' });
        assert.equal(body['reason'], reason);
      }
      assert.equal(scryptProbe.calls, 0);
      const names = (await h.runtime.database.db.selectFrom('accounts').select('username').execute()).map((r) => r.username);
      for (const [username] of cases) assert.ok(!names.includes(username));
    });
  });

  describe(`rehash at login, parameter by parameter (SECURITY.md §2) [${dialect}]`, () => {
    const CONFIGURED: ScryptParams = { ln: 6, r: 4, p: 2 };
    let h: Harness;
    before(async () => {
      h = await createHarness(dialect, { config: { passwords: { scrypt_ln: CONFIGURED.ln, scrypt_r: CONFIGURED.r, scrypt_p: CONFIGURED.p } } });
    });
    after(() => h.close());

    const password = 'an old but quite long password';
    const cases: [string, ScryptParams, boolean][] = [
      ['ln weaker alone', { ln: 5, r: 4, p: 2 }, true],
      ['r weaker alone', { ln: 6, r: 2, p: 2 }, true],
      ['p weaker alone', { ln: 6, r: 4, p: 1 }, true],
      ['equal', CONFIGURED, false],
      ['ln stronger', { ln: 7, r: 4, p: 2 }, false],
      ['r stronger', { ln: 6, r: 8, p: 2 }, false],
      ['p stronger', { ln: 6, r: 4, p: 3 }, false],
    ];
    for (const [name, params, rehashed] of cases) {
      test(`${name} (${JSON.stringify(params)}): ${rehashed ? 'replaced by a hash at the configured cost' : 'kept as it is'}`, async () => {
        const username = `legacy-${params.ln}-${params.r}-${params.p}`;
        await h.createAccount(username);
        const seeded = await hasher(params).hash(password, K);
        await h.runtime.database.db.updateTable('accounts').set({ password_hash: seeded }).where('username', '=', username).execute();
        await h.login(username, password);
        const stored = (
          await h.runtime.database.db.selectFrom('accounts').select('password_hash').where('username', '=', username).executeTakeFirstOrThrow()
        ).password_hash as string;
        if (rehashed) {
          assert.notEqual(stored, seeded);
          assert.deepEqual(parsePhc(stored)?.params, CONFIGURED);
          await h.login(username, password);
        } else {
          assert.equal(stored, seeded);
        }
      });
    }
  });

  describe(`a 1 MB password under the largest body limit [${dialect}]`, () => {
    let h: Harness;
    before(async () => {
      h = await createHarness(dialect, { config: { server: { body_limit: 1_048_576 } } });
      installScryptProbe();
    });
    after(async () => {
      removeScryptProbe();
      await h.close();
    });

    test('fits the body limit but is refused by the schema (400), quickly, without hashing or an audit row', async () => {
      const auditBefore = await h.runtime.database.db.selectFrom('audit_events').select('seq').execute();
      scryptProbe.reset();
      const started = performance.now();
      const response = await h.request({ method: 'POST', url: '/v1/auth/login', body: { username: 'admin', password: 'x'.repeat(1_000_000) } });
      const elapsed = performance.now() - started;
      assertProblem(response, { status: 400, code: 'invalid_request' });
      assert.ok(elapsed < 1_000, `${elapsed} ms`);
      assert.equal(scryptProbe.calls, 0);
      assert.deepEqual(await h.runtime.database.db.selectFrom('audit_events').select('seq').execute(), auditBefore);
    });
  });

  describe(`a login storm does not stall token checks [${dialect}]`, () => {
    let h: Harness;
    before(async () => {
      // One client may fill the whole queue here, so the global queue limit (not the per-client share) is what refuses.
      h = await createHarness(dialect, {
        config: { passwords: { scrypt_ln: 12, max_concurrent_hashes: 1, max_queued_hashes: 3, max_hashes_per_client: 100 } },
      });
    });
    after(() => h.close());

    test('past the hash queue limit a login gets 429 rate_limited with Retry-After, and GET /v1/me still answers at once', async () => {
      const logins = Array.from({ length: 8 }, () =>
        h.request({ method: 'POST', url: '/v1/auth/login', body: { username: 'admin', password: 'wrong but long enough' } }),
      );
      let settled = 0;
      for (const login of logins) void login.then(() => settled++);
      const me = await h.request({ method: 'GET', url: '/v1/me', token: h.adminToken });
      assert.equal(me.statusCode, 200);
      assert.ok(settled < logins.length, 'token validation waited for the queued password hashes');

      const responses = await Promise.all(logins);
      const limited = responses.filter((r) => r.statusCode === 429);
      assert.ok(limited.length >= 1, responses.map((r) => r.statusCode).join(','));
      for (const response of limited) {
        assertProblem(response, { status: 429, code: 'rate_limited' });
        assert.ok(Number(response.headers['retry-after']) > 0);
      }
      for (const response of responses.filter((r) => r.statusCode !== 429)) assert.equal(response.statusCode, 401);
    });
  });
}
