/**
 * `node --conditions=mcias-source bench/verify.ts`: in-process ops/s of the SDK's offline `verify` (the shared token
 * rules: canonical spelling, key by kid from the cached JWKS, jose's jwtVerify with every claim pinned, the iat
 * limit) next to a bare jose `jwtVerify` with the key already in hand: the same token, the same key. CPU only; the
 * JWKS is fetched once over TLS before timing starts. `benchVerify` is exported for `npm run bench` to show as a row.
 */
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { MciasClient } from '@mcias/client';
import Fastify from 'fastify';
import { SignJWT, exportJWK, jwtVerify } from 'jose';
import { serveOverTls } from '../test/support/tls-app.ts';

export interface VerifyBench {
  /** The SDK's `verify`, per second. */
  readonly sdkPerSecond: number;
  /** jose `jwtVerify` with a cached key, per second. */
  readonly josePerSecond: number;
  /** sdk / jose: the target is at least 0.9. */
  readonly ratio: number;
}

/**
 * Ops/s of each way, measured in alternating slices of 100 ms so that a neighbour's load (a shared machine) falls on
 * both alike rather than on whichever ran second.
 */
async function perSecond(seconds: number, ways: readonly (() => Promise<unknown>)[]): Promise<number[]> {
  for (const once of ways) for (let i = 0; i < 500; i++) await once(); // warm up
  const counts = ways.map(() => 0);
  const spent = ways.map(() => 0);
  const deadline = performance.now() + seconds * 1000 * ways.length;
  while (performance.now() < deadline) {
    for (const [k, once] of ways.entries()) {
      const started = performance.now();
      const until = started + 100;
      while (performance.now() < until) {
        for (let i = 0; i < 20; i++) await once();
        counts[k] = (counts[k] as number) + 20;
      }
      spent[k] = (spent[k] as number) + performance.now() - started;
    }
  }
  return counts.map((count, k) => count / ((spent[k] as number) / 1000));
}

export async function benchVerify(seconds = Number(process.env['BENCH_SECONDS'] ?? 3)): Promise<VerifyBench> {
  const issuer = 'https://mcias.bench.example';
  const audience = 'mcias';
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const kid = 'bench-key';
  const now = Math.floor(Date.now() / 1000);
  const token = await new SignJWT({ username: 'bench', kind: 'human', roles: ['reader'] })
    .setProtectedHeader({ alg: 'EdDSA', typ: 'JWT', kid })
    .setIssuer(issuer)
    .setSubject(randomUUID())
    .setAudience(audience)
    .setIssuedAt(now)
    .setNotBefore(now)
    .setExpirationTime(now + 3600)
    .setJti(randomUUID())
    .sign(privateKey);
  const app = Fastify();
  const jwk = { ...(await exportJWK(publicKey)), kid, alg: 'EdDSA', use: 'sig' };
  app.get('/.well-known/jwks.json', async () => ({ keys: [jwk] }));
  const front = await serveOverTls(app);
  try {
    const client = new MciasClient({ server: front.url, caCert: front.certPem, issuer, audience });
    if (!(await client.verify(token)).active) throw new Error('the bench token does not verify');
    const options = { algorithms: ['EdDSA'], issuer, audience, requiredClaims: ['exp', 'iat', 'jti', 'sub'], typ: 'JWT' };
    const [josePerSecond = 0, sdkPerSecond = 0] = await perSecond(seconds, [() => jwtVerify(token, publicKey, options), () => client.verify(token)]);
    client.close();
    return { sdkPerSecond, josePerSecond, ratio: sdkPerSecond / josePerSecond };
  } finally {
    await front.close();
    await app.close();
  }
}

if (import.meta.main) {
  const result = await benchVerify();
  console.log(
    `verify (SDK, offline)  ${result.sdkPerSecond.toFixed(0)}/s\njwtVerify (jose)       ${result.josePerSecond.toFixed(0)}/s\nratio                  ${result.ratio.toFixed(2)}`,
  );
}
