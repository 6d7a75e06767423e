import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before } from 'node:test';
import { MciasApiError, MciasClient } from '@mcias/client';
import { USER_PASSWORD } from './harness.ts';
import { startServerProcess, type ServerProcess } from './server-process.ts';
import { required } from './fixture.ts';

/** Asserts that `promise` rejects with an MciasApiError of this status and code, and returns it. */
export async function apiError(promise: Promise<unknown>, status: number, code: string): Promise<MciasApiError> {
  const error = await promise.then(
    () => assert.fail(`expected ${status} ${code}, got success`),
    (e: unknown) => e,
  );
  assert.ok(error instanceof MciasApiError, `expected MciasApiError, got ${String(error)}`);
  assert.equal(error.status, status);
  assert.equal(error.code, code);
  return error;
}

/** The client tests' one setup; each part is there from the fixture's `before` on. */
export interface ClientFixture {
  /** A real mciassrv over TLS, started for this describe block. */
  readonly server: ServerProcess;
  /** The server's self-signed certificate, which the clients trust. */
  readonly caCert: Buffer;
  /** A client without a token; the others share its connections. */
  readonly anonymous: MciasClient;
  /** The bootstrap administrator, logged in for the whole block, and the token it holds. */
  readonly admin: MciasClient;
  readonly adminToken: string;
  /** A new human account with USER_PASSWORD (final, not temporary), granted `roles`, and a client logged in as it. */
  person(username: string, roles?: readonly string[]): Promise<MciasClient>;
}

/** Registers `before`/`after` hooks in the calling describe block: a server, and clients of it. */
export function useClientFixture(): ClientFixture {
  let server: ServerProcess | undefined;
  let caCert: Buffer | undefined;
  let anonymous: MciasClient | undefined;
  let adminToken: string | undefined;
  let admin: MciasClient | undefined;
  const ready = <T>(value: T | undefined, what: string): T => required(value, 'client', what);
  const fixture: ClientFixture = {
    get server() {
      return ready(server, 'server');
    },
    get caCert() {
      return ready(caCert, 'CA certificate');
    },
    get anonymous() {
      return ready(anonymous, 'client');
    },
    get adminToken() {
      return ready(adminToken, 'admin token');
    },
    get admin() {
      return ready(admin, 'admin client');
    },
    async person(username, roles = []) {
      await fixture.admin.createAccount({ username, kind: 'human', password: USER_PASSWORD, temporary: false });
      for (const role of roles) await fixture.admin.grantRole(username, role);
      return fixture.anonymous.withToken((await fixture.anonymous.login(username, USER_PASSWORD)).token);
    },
  };
  before(async () => {
    server = await startServerProcess();
    caCert = readFileSync(server.caCertFile);
    anonymous = new MciasClient({ server: server.url, caCert });
    adminToken = (await anonymous.login('admin', server.adminPassword)).token;
    admin = anonymous.withToken(adminToken);
  });
  after(async () => {
    anonymous?.close();
    await server?.dispose();
  });
  return fixture;
}
