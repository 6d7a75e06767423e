import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import { asSuperuser } from './databases.ts';
import type { Harness } from './harness.ts';

/** A valid PUT /v1/accounts/{username}/pgcreds body: the required fields only (the rest take their defaults). */
export const PG_CREDENTIALS_BODY = {
  host: 'db.internal.example',
  database: 'app',
  username: 'app_user',
  password: 'pg password: \' " @ : / % and spaces',
} as const;

/** Stores credentials for a system account as the harness's admin, asserting success; returns the body sent. */
export async function storePgCredentials(h: Harness, service: string, overrides: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
  const body = { ...PG_CREDENTIALS_BODY, ...overrides };
  const response = await h.request({ method: 'PUT', url: `/v1/accounts/${service}/pgcreds`, token: h.adminToken, body });
  assert.equal(response.statusCode, 200, response.body);
  return body;
}

/**
 * A login role on the local PostgreSQL for the tests of the enclosing describe block: created before them, dropped
 * after. That server trusts every local connection, so the password is stored but not checked there.
 */
export function useLocalLoginRole(role: string, password: string): void {
  before(() => asSuperuser(`create role ${role} login password '${password.replaceAll("'", "''")}'`));
  after(() => asSuperuser(`drop role if exists ${role}`));
}
