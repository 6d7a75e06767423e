import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import Fastify from 'fastify';
import { MciasClient } from '@mcias/client';
import { ROOT } from '../support/server-process.ts';
import { serveOverTls, type TlsApp } from '../support/tls-app.ts';

/**
 * The SDK has a typed method for every route of the HTTP contract (docs/api.md): each method is called here against
 * a recorder over TLS, and the routes they reach must cover every route the document's tables list, and nothing else.
 * A route added to docs/api.md without a client method fails this test.
 */

/** `METHOD /path/{param}` of every row of docs/api.md's route tables. */
function documentedRoutes(): string[] {
  const text = readFileSync(path.join(ROOT, 'docs/api.md'), 'utf8');
  return [...text.matchAll(/^\| (GET|POST|PUT|PATCH|DELETE) `([^`]+)` \|/gm)].map((m) => `${m[1]} ${(m[2] as string).replace(/\?.*$/, '')}`);
}

function matches(template: string, request: string): boolean {
  const pattern = template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{[^}]+\}/g, '[^/?]+');
  return new RegExp(`^${pattern}(\\?.*)?$`).test(request);
}

const TOKEN = 'eyJhbGciOiJFZERTQSJ9.e30.sig';

/** One call of every client method that talks to the server. */
const CALLS: Record<string, (c: MciasClient) => Promise<unknown>> = {
  health: (c) => c.health(),
  ready: (c) => c.ready(),
  jwks: (c) => c.jwks(),
  openapi: (c) => c.openapi(),
  login: (c) => c.login('u', 'p'),
  validate: (c) => c.validate(TOKEN),
  verify: (c) => c.verify(`${Buffer.from('{"alg":"EdDSA","kid":"k"}').toString('base64url')}.e30.${'A'.repeat(86)}`),
  renew: (c) => c.renew(),
  logout: (c) => c.logout(),
  me: (c) => c.me(),
  changePassword: (c) => c.changePassword('a', 'b'),
  beginTotp: (c) => c.beginTotp('p'),
  confirmTotp: (c) => c.confirmTotp('123456'),
  disableTotp: (c) => c.disableTotp('p', '123456'),
  listMyTokens: (c) => c.listMyTokens(),
  revokeMyToken: (c) => c.revokeMyToken('j'),
  issueServiceToken: (c) => c.issueServiceToken('svc'),
  revokeServiceToken: (c) => c.revokeServiceToken('svc'),
  pgcreds: (c) => c.pgcreds('svc'),
  getPgCredentials: (c) => c.getPgCredentials('svc'),
  setPgCredentials: (c) => c.setPgCredentials('svc', { host: 'h', database: 'd', username: 'u', password: 'p' }),
  rotatePgCredentials: (c) => c.rotatePgCredentials('svc'),
  provisionPgCredentials: (c) => c.provisionPgCredentials('svc', { host: 'h', database: 'd', username: 'u' }),
  deletePgCredentials: (c) => c.deletePgCredentials('svc'),
  listTokens: (c) => c.listTokens('u'),
  revokeToken: (c) => c.revokeToken('j'),
  rotateKeys: (c) => c.rotateKeys(),
  listAccounts: (c) => c.listAccounts(),
  createAccount: (c) => c.createAccount({ username: 'u', kind: 'system' }),
  getAccount: (c) => c.getAccount('u'),
  setAccountStatus: (c) => c.setAccountStatus('u', 'disabled'),
  deleteAccount: (c) => c.deleteAccount('u'),
  resetPassword: (c) => c.resetPassword('u', 'p'),
  resetTotp: (c) => c.resetTotp('u'),
  unlockAccount: (c) => c.unlockAccount('u'),
  grantRole: (c) => c.grantRole('u', 'r'),
  revokeRole: (c) => c.revokeRole('u', 'r'),
  listRoles: (c) => c.listRoles(),
  createRole: (c) => c.createRole('r'),
  deleteRole: (c) => c.deleteRole('r'),
  listAudit: (c) => c.listAudit({ limit: 1 }),
  getRole: (c) => c.getRole('r'),
  register: (c) => c.register('code', 'u', 'p'),
  listRegistrations: (c) => c.listRegistrations(),
  createRegistration: (c) => c.createRegistration(),
  deleteRegistration: (c) => c.deleteRegistration('id'),
  listPermissions: (c) => c.listPermissions(),
  createPermission: (c) => c.createPermission({ resource: 'r', action: 'a', description: 'd' }),
  deletePermission: (c) => c.deletePermission('id'),
  grantPermission: (c) => c.grantPermission('r', 'id'),
  revokePermission: (c) => c.revokePermission('r', 'id'),
  checkPermission: (c) => c.checkPermission(TOKEN, 'r', 'a'),
};

/**
 * Routes for reverse proxies, not API clients: forward-auth is asked by nginx `auth_request`, Caddy `forward_auth`
 * and Traefik `forwardAuth` (docs/integration.md), never by an app, which has `verify` and `validate`.
 */
const PROXY_ONLY = new Set(['GET /v1/auth/forward']);

/** The login page's HTML forms (docs/api.md "The login page"): for browsers arriving from a proxy, not for the SDK. */
const BROWSER_PAGES = new Set(['GET /login', 'POST /login', 'POST /login/password', 'POST /logout']);

/** Methods that send nothing. */
const LOCAL = new Set(['constructor', 'withToken', 'close', 'server']);

describe('a client method for every documented route', () => {
  let front: TlsApp;
  const app = Fastify();
  app.all('/*', async (_request, reply) => reply.send({ keys: [] }));

  before(async () => {
    front = await serveOverTls(app);
  });
  after(async () => {
    await front.close();
    await app.close();
  });

  test('docs/api.md lists the routes (the parser works)', () => {
    const routes = documentedRoutes();
    assert.ok(routes.length > 40, `only ${routes.length} routes read`);
    assert.ok(routes.includes('POST /v1/token/validate'));
  });

  test('every method of MciasClient is called here', () => {
    const methods = Object.getOwnPropertyNames(MciasClient.prototype).filter((name) => !LOCAL.has(name));
    assert.deepEqual(methods.filter((m) => !(m in CALLS)), [], 'methods missing from CALLS');
  });

  test('the methods reach every documented route, and only documented routes', async () => {
    const client = new MciasClient({ server: front.url, caCert: front.certPem, token: TOKEN, issuer: 'https://issuer.example' });
    const reached = new Set<string>();
    for (const [name, call] of Object.entries(CALLS)) {
      const from = front.requests.length;
      await call(client).catch(() => undefined);
      const requests = front.requests.slice(from);
      assert.ok(requests.length > 0, `${name} sent nothing`);
      for (const request of requests) {
        const route = documentedRoutes().find((r) => matches(r, request));
        assert.ok(route !== undefined, `${name} sent ${request}, which docs/api.md does not list`);
        reached.add(route);
      }
    }
    client.close();
    assert.deepEqual(documentedRoutes().filter((r) => !reached.has(r) && !PROXY_ONLY.has(r) && !BROWSER_PAGES.has(r)), [], 'documented routes without a client method');
  });
});
