import { createHmac, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { SignJWT, decodeJwt, decodeProtectedHeader, exportJWK, type JWTPayload } from 'jose';

/**
 * The shared forged-token corpus (SECURITY.md §16, §40, §53): every token here must be refused by the server's
 * validation (test/domain/tokens.test.ts) AND by the SDK's offline `verify` (test/client/verify.test.ts), so the
 * two cannot drift apart. It holds what a verifier can see without the database: signature, algorithm, key id,
 * claims, spelling. Revocation and account state are the server's alone (and are tested there).
 */

export interface ForgeryKit {
  /** A genuine token the server issued (and still accepts). */
  readonly token: string;
  /** The server's verification key for that token's kid. */
  readonly publicKey: KeyObject;
  /** Signs a payload with the server's own current key (header: alg EdDSA, typ JWT, its kid, then `header`). */
  sign(payload: JWTPayload, header?: Record<string, unknown>): Promise<string>;
  /** The verifier's clock, ms since the epoch. */
  readonly now: number;
}

export interface Forgery {
  readonly what: string;
  readonly token: string;
}

const b64url = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
const compact = (header: object, payload: object, signature: string | Buffer = '') =>
  `${b64url(header)}.${b64url(payload)}.${typeof signature === 'string' ? signature : signature.toString('base64url')}`;
const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

export async function forgedTokens(kit: ForgeryKit): Promise<Forgery[]> {
  const { token } = kit;
  const header = decodeProtectedHeader(token) as Record<string, unknown>;
  const claims = decodeJwt(token) as JWTPayload & Record<string, unknown>;
  const [h64, p64, s64] = token.split('.') as [string, string, string];
  const now = Math.floor(kit.now / 1000);
  const out: Forgery[] = [];
  const add = (what: string, forged: string) => out.push({ what, token: forged });

  // Algorithm confusion.
  for (const alg of ['none', 'noNE', 'None', 'NONE']) {
    add(`alg ${alg}, no signature`, compact({ ...header, alg }, claims));
    add(`alg ${alg} with the real signature`, compact({ ...header, alg }, claims, s64));
  }
  const jwk = kit.publicKey.export({ format: 'jwk' }) as { x: string };
  const secrets: [string, Buffer | string][] = [
    ['raw public key bytes', Buffer.from(jwk.x, 'base64url')],
    ['SPKI PEM', kit.publicKey.export({ format: 'pem', type: 'spki' }) as string],
    ['SPKI DER', kit.publicKey.export({ format: 'der', type: 'spki' }) as Buffer],
    ['JWK JSON', JSON.stringify(jwk)],
    ['x as text', jwk.x],
  ];
  for (const [what, secret] of secrets) {
    for (const alg of ['HS256', 'HS512']) {
      const signingInput = `${b64url({ ...header, alg })}.${b64url(claims)}`;
      const mac = createHmac(alg === 'HS256' ? 'sha256' : 'sha512', secret).update(signingInput).digest();
      add(`${alg} keyed with the ${what}`, `${signingInput}.${mac.toString('base64url')}`);
    }
  }
  add('alg Ed25519 (the newer spelling) signed with the server key', await kit.sign(claims, { alg: 'Ed25519' }));
  add('typ at+jwt', await kit.sign(claims, { typ: 'at+jwt' }));

  // Tampering.
  const json = Buffer.from(p64, 'base64url').toString('utf8');
  for (const [from, to] of [
    [`"${String(claims['username'])}"`, `"${String(claims['username'])}x"`],
    ['"roles":[', '"roles":["admin",'],
  ] as const) {
    if (!json.includes(from)) throw new Error(`the genuine payload has no ${from}`);
    add(`payload ${from} → ${to}`, `${h64}.${Buffer.from(json.replace(from, to)).toString('base64url')}.${s64}`);
  }
  const flipped = Buffer.from(s64, 'base64url');
  flipped[5] = (flipped[5] as number) ^ 0x01;
  add('a flipped signature bit', `${h64}.${p64}.${flipped.toString('base64url')}`);

  // Claims the server refuses under a genuine signature.
  add('foreign aud', await kit.sign({ ...claims, aud: 'another-service' }));
  add('foreign aud array', await kit.sign({ ...claims, aud: ['another-service'] }));
  add('foreign iss', await kit.sign({ ...claims, iss: 'https://evil.example' }));
  for (const claim of ['exp', 'iat', 'jti', 'sub', 'aud', 'iss']) {
    const { [claim]: _dropped, ...rest } = claims;
    add(`missing ${claim}`, await kit.sign(rest));
  }
  add('expired a minute ago', await kit.sign({ ...claims, exp: now - 60 }));
  add('not valid for an hour (nbf)', await kit.sign({ ...claims, nbf: now + 3600 }));
  // Well past the minute allowed (the boundary itself, 59 s against 61 s, is test/http/token-spelling.test.ts's): the
  // corpus is made in whole seconds a moment before it is checked.
  add('iat two minutes ahead', await kit.sign({ ...claims, iat: now + 120 }));

  // Keys the verifier does not hold.
  const attacker = generateKeyPairSync('ed25519');
  const attackerJwk = { ...(await exportJWK(attacker.publicKey)), kid: 'attacker' };
  const signedBy = (extra: Record<string, unknown>) =>
    new SignJWT(claims).setProtectedHeader({ alg: 'EdDSA', typ: 'JWT', ...extra } as never).sign(attacker.privateKey);
  add('another Ed25519 key under the server kid', await signedBy({ kid: header['kid'] }));
  add('an unknown kid', await signedBy({ kid: 'unknown-kid' }));
  add('no kid', await signedBy({}));
  add('embedded jwk with the server kid', await signedBy({ kid: header['kid'], jwk: attackerJwk }));
  add('embedded jwk with its own kid', await signedBy({ kid: 'attacker', jwk: attackerJwk }));
  add('embedded jwk without a kid', await signedBy({ jwk: attackerJwk }));
  add('jku to another host', await signedBy({ kid: header['kid'], jku: 'https://evil.example/jwks.json' }));
  add('x5u to another host', await signedBy({ kid: header['kid'], x5u: 'https://evil.example/cert.pem' }));
  add('a kid that is not a string', await kit.sign(claims, { kid: 7 }));

  // Spellings (SECURITY.md §40): the same signature in every non-canonical form.
  const last = ALPHABET.indexOf(token.at(-1) as string);
  for (let bits = 1; bits < 16; bits++) add(`signature spelling with unused bits ${bits}`, `${token.slice(0, -1)}${ALPHABET[last | bits]}`);
  add('padded signature', `${token}==`);
  add('standard base64 alphabet', `${h64}.${p64}.${Buffer.from(s64, 'base64url').toString('base64')}`);
  add('a trailing space', `${token} `);
  add('a signature one character short', token.slice(0, -1));

  // Not a compact JWS at all.
  add('two segments', `${h64}.${p64}`);
  add('five segments', `${token}.extra.part`);
  add('empty payload', `${h64}..${s64}`);
  add('dots only', '..');
  add('empty objects', 'e30.e30.');
  return out;
}
