import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { MciasClient, MciasClientError, MciasConnectionError, certificatePins, type VerifiedToken } from '@mcias/client';
import { SignJWT, decodeJwt } from 'jose';
import { generateSelfSignedCertificate } from '../../src/cli/certificate.ts';
import { isMciasError } from '../../src/domain/errors.ts';
import { DIALECTS } from '../support/databases.ts';
import { forgedTokens } from '../support/forged-tokens.ts';
import { USER_PASSWORD, createHarness, type Harness } from '../support/harness.ts';
import { serveOverTls, type TlsApp } from '../support/tls-app.ts';

/**
 * SECURITY.md §53: the SDK's offline verify applies the server's own rules (the shared module
 * @mcias/client/token-rules), against the server's JWKS fetched over verified TLS. The server here is the in-process
 * app of a harness (whose signing key the forgeries need) served over real TLS.
 */

const JWKS = 'GET /.well-known/jwks.json';

for (const dialect of DIALECTS) {
  describe(`SDK offline verify [${dialect}]`, () => {
    let h: Harness;
    let front: TlsApp;
    let offset = 0;
    const clientOptions = () => ({ server: front.url, caCert: front.certPem, issuer: h.config.tokens.issuer, now: () => Date.now() + offset });
    const serverSigned = async (payload: Record<string, unknown>, header: Record<string, unknown> = {}) => {
      const { kid, privateKey } = await h.runtime.services.keys.signingKey();
      return new SignJWT(payload).setProtectedHeader({ alg: 'EdDSA', typ: 'JWT', kid, ...header }).sign(privateKey);
    };
    const jwksFetches = () => front.requests.filter((r) => r === JWKS).length;

    before(async () => {
      h = await createHarness(dialect);
      await h.createAccount('vera');
      front = await serveOverTls(h.app);
    });
    after(async () => {
      await front.close();
      await h.close();
    });

    test('a genuine token verifies offline, with the claims validate reports', async () => {
      const client = new MciasClient(clientOptions());
      const token = await h.login('vera', USER_PASSWORD);
      const verified = await client.verify(token);
      assert.equal(verified.active, true);
      const online = await client.validate(token);
      assert.ok(online.active);
      const { sub, username, kind, roles, jti, exp, iat } = online;
      assert.deepEqual(verified, { active: true, sub, username, kind, roles, jti, exp, iat } satisfies VerifiedToken);
    });

    test('offline verify rejects every token of the shared forged-token corpus, each of which the server rejects too', async () => {
      const client = new MciasClient({ ...clientOptions(), jwksRefetchFloorMs: 0 });
      const token = await h.login('vera', USER_PASSWORD);
      const kid = (await h.runtime.services.keys.signingKey()).kid;
      const publicKey = await h.runtime.services.keys.verificationKey(kid);
      assert.ok(publicKey);
      const corpus = await forgedTokens({ token, publicKey, sign: serverSigned, now: Date.now() });
      assert.ok(corpus.length > 60);
      // Control: the genuine token and its claims re-signed by the server's key pass both.
      assert.equal((await client.verify(token)).active, true);
      assert.equal((await client.verify(await serverSigned(decodeJwt(token)))).active, true, 'genuine claims re-signed');
      for (const { what, token: forged } of corpus) {
        await assert.rejects(h.principal(forged), (e) => isMciasError(e, 'unauthenticated'), `server accepts ${what}`);
        const verdict = await client.verify(forged);
        assert.equal(verdict.active, false, `offline verify accepts ${what}`);
      }
    });

    test('the JWKS is fetched once and cached; an unknown kid refetches it, at most once per floor', async () => {
      offset = 0;
      const client = new MciasClient({ ...clientOptions(), jwksRefetchFloorMs: 30_000 });
      const token = await h.login('vera', USER_PASSWORD);
      const before = jwksFetches();
      for (let i = 0; i < 20; i++) assert.equal((await client.verify(token)).active, true);
      assert.equal((await client.withToken('another').verify(token)).active, true);
      assert.equal(jwksFetches() - before, 1, 'one fetch for twenty verifications, and clients from withToken share it');
      // A burst of tokens naming unknown kids within the floor costs no fetch at all.
      const publicKey = await h.runtime.services.keys.verificationKey((await h.runtime.services.keys.signingKey()).kid);
      assert.ok(publicKey);
      const forged = (await forgedTokens({ token, publicKey, sign: serverSigned, now: Date.now() })).find((f) => f.what === 'an unknown kid');
      assert.ok(forged);
      for (let i = 0; i < 10; i++) assert.deepEqual(await client.verify(forged.token), { active: false, reason: 'unknown_key' });
      assert.equal(jwksFetches() - before, 1, 'unknown kids within the floor fetch nothing');
      // The server rotates: a token under the new kid is unknown until the floor has passed, then fetched once.
      await h.runtime.services.keys.rotate(undefined, undefined);
      const rotated = await h.login('vera', USER_PASSWORD);
      assert.deepEqual(await client.verify(rotated), { active: false, reason: 'unknown_key' });
      assert.equal(jwksFetches() - before, 1);
      offset = 30_001;
      assert.equal((await client.verify(rotated)).active, true, 'the new key is fetched after the floor');
      assert.equal((await client.verify(token)).active, true, 'the retired key still verifies its tokens');
      assert.equal(jwksFetches() - before, 2);
      // Concurrent verifications of an unknown kid share one fetch.
      offset = 60_002;
      await Promise.all(Array.from({ length: 10 }, () => client.verify(forged.token)));
      assert.equal(jwksFetches() - before, 3);
      offset = 0;
    });

    test('offline verify does not see revocation (until expiry); validate does', async () => {
      const client = new MciasClient(clientOptions());
      const token = await h.login('vera', USER_PASSWORD);
      await client.withToken(token).logout();
      assert.equal((await client.verify(token)).active, true, 'documented: offline sees revocation only at expiry');
      assert.deepEqual(await client.validate(token), { active: false });
    });

    test('verify checks expiry against its clock, and needs the issuer option', async () => {
      const token = await h.login('vera', USER_PASSWORD);
      const exp = (await new MciasClient(clientOptions()).verify(token)) as VerifiedToken;
      const late = new MciasClient({ ...clientOptions(), now: () => exp.exp * 1000 + 6_000 });
      assert.deepEqual(await late.verify(token), { active: false, reason: 'expired' });
      const noIssuer = new MciasClient({ server: front.url, caCert: front.certPem });
      await assert.rejects(noIssuer.verify(token), (e) => e instanceof MciasClientError && e.code === 'invalid_argument');
      const foreignAudience = new MciasClient({ ...clientOptions(), audience: 'another-app' });
      assert.deepEqual(await foreignAudience.verify(token), { active: false, reason: 'invalid_claims' });
    });
  });
}

describe('certificate pinning', () => {
  let h: Harness;
  let front: TlsApp;
  before(async () => {
    h = await createHarness('sqlite');
    front = await serveOverTls(h.app);
  });
  after(async () => {
    await front.close();
    await h.close();
  });

  test('a pin of the public key (SPKI) or of the certificate verifies a self-signed server without a CA', async () => {
    const pins = certificatePins(front.certPem);
    assert.match(pins.spki, /^sha256\/[A-Za-z0-9+/]{43}=$/);
    for (const pin of [pins.spki, pins.certificate, pins.certificate.replace(/:/g, '').toLowerCase(), [pins.spki, 'sha256/' + 'A'.repeat(43) + '=']]) {
      const client = new MciasClient({ server: front.url, pin });
      assert.deepEqual(await client.health(), { status: 'ok' }, String(pin));
      client.close();
    }
  });

  test('a server that matches no pin gets no request (not even with the right CA); with a CA, the right pin needs the chain too; no CA and no pin fails', async () => {
    const wrong = 'sha256/' + Buffer.alloc(32, 7).toString('base64');
    const { certPem: otherCa } = await generateSelfSignedCertificate(['127.0.0.1']);
    const seen = front.requests.length;
    const right = certificatePins(front.certPem).spki;
    for (const options of [{ pin: wrong }, { pin: wrong, caCert: front.certPem }, { pin: right, caCert: otherCa }, {}]) {
      const client = new MciasClient({ server: front.url, ...options, token: 'a-bearer-token-that-must-not-leak' });
      await assert.rejects(client.me(), (e) => e instanceof MciasConnectionError && e.code === 'tls_verification_failed', JSON.stringify(Object.keys(options)));
      client.close();
    }
    assert.equal(front.requests.length, seen, 'no request reached the server');
  });

  test('a malformed pin is refused when the client is made', () => {
    for (const pin of ['', 'sha1/abc', 'sha256/short', 'zz'.repeat(32), []]) {
      assert.throws(() => new MciasClient({ server: front.url, pin }), (e) => e instanceof MciasClientError && e.code === 'invalid_argument', JSON.stringify(pin));
    }
  });
});
