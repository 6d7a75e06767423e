import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import pg from 'pg';
import { isMciasError } from '../../src/domain/errors.ts';
import { SCRAM_ITERATIONS, scramVerifier } from '../../src/pgadmin/scram.ts';
import { PG_CLUSTER_SKIP, usePgCluster } from '../support/pg-cluster.ts';

/** SECURITY.md §44: the verifier MCIAS computes is the one PostgreSQL computes, byte for byte. */

const VERIFIER = /^SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)$/;

function parse(verifier: string): { iterations: number; salt: Buffer; storedKey: Buffer; serverKey: Buffer } {
  const m = VERIFIER.exec(verifier);
  assert.ok(m, `not a SCRAM-SHA-256 verifier: ${verifier}`);
  return { iterations: Number(m[1]), salt: Buffer.from(m[2]!, 'base64'), storedKey: Buffer.from(m[3]!, 'base64'), serverKey: Buffer.from(m[4]!, 'base64') };
}

describe('SCRAM-SHA-256 verifiers', () => {
  test('have PostgreSQL’s shape: 4096 iterations, a fresh 16-byte salt, 32-byte keys', async () => {
    const a = parse(await scramVerifier('correct horse'));
    const b = parse(await scramVerifier('correct horse'));
    assert.equal(a.iterations, SCRAM_ITERATIONS);
    assert.equal(SCRAM_ITERATIONS, 4096);
    assert.equal(a.salt.length, 16);
    assert.equal(a.storedKey.length, 32);
    assert.equal(a.serverKey.length, 32);
    assert.notDeepEqual(a.salt, b.salt, 'each verifier gets its own salt');
  });

  test('refuse passwords outside printable ASCII (where clients disagree about SASLprep)', async () => {
    for (const password of ['pässword', 'tab\there', '', 'nul\0']) {
      await assert.rejects(scramVerifier(password), (e) => isMciasError(e, 'invalid_request') && e.reason === 'pg_password_unsupported');
    }
  });
});

describe('SCRAM-SHA-256 verifiers against a real PostgreSQL (scram-sha-256 cluster)', { skip: PG_CLUSTER_SKIP }, () => {
  const cluster = usePgCluster();

  test('equal what the server stores for the same password, salt and iterations', async () => {
    const password = 'Tr0ub4dor & 3 "quoted" \\ back';
    await cluster().query(`create role scram_same login password ${pg.Client.prototype.escapeLiteral(password)}`);
    const [row] = await cluster().query<{ rolpassword: string }>(`select rolpassword from pg_authid where rolname = 'scram_same'`);
    const server = parse(row!.rolpassword);
    const ours = await scramVerifier(password, { salt: server.salt, iterations: server.iterations });
    assert.equal(ours, row!.rolpassword);
  });

  test('set with ALTER ROLE, the verifier logs in with its password and nothing else', async () => {
    const password = 'a b~c!d@e#f$g%h^i&j*k(l)m_n+o=p{q}r|s:t;u<v>w?x,y.z/`\'';
    const verifier = await scramVerifier(password);
    await cluster().query('create role scram_login login');
    await cluster().query(`alter role scram_login password ${pg.Client.prototype.escapeLiteral(verifier)}`);
    const [row] = await cluster().query<{ rolpassword: string }>(`select rolpassword from pg_authid where rolname = 'scram_login'`);
    assert.equal(row!.rolpassword, verifier, 'stored as sent, not hashed again');
    assert.equal(await cluster().canConnect('scram_login', password), true);
    assert.equal(await cluster().canConnect('scram_login', `${password}x`), false);
    assert.equal(await cluster().canConnect('scram_login', verifier), false, 'the verifier is not a password');
  });
});
