import { randomBytes } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import type { Logger } from 'pino';
import { resolveConfig, type Config } from '../../src/config/load.ts';
import { ManualClock, type Clock } from '../../src/domain/clock.ts';
import type { Principal } from '../../src/domain/model.ts';
import type { PgAdmin } from '../../src/domain/ports.ts';
import { buildApp } from '../../src/http/app.ts';
import { Metrics } from '../../src/http/metrics.ts';
import { webSettings } from '../../src/http/web/policy.ts';
import { createRuntime, type Runtime } from '../../src/server.ts';
import { createTestDatabase, type TestDatabase, type TestDialect } from './databases.ts';

/** Cheap scrypt for tests (ln=4, about 0.1 ms); production keeps its default of ln=17, set in the config schema. */
export const TEST_SCRYPT = { scrypt_ln: 4, scrypt_r: 8, scrypt_p: 1 } as const;
/**
 * Every injected request comes from 127.0.0.1 and the harness clock stands still, so the failed-login throttle's
 * production defaults (SECURITY.md §9) would throttle tests that are about something else after five failures. Tests
 * of the throttle pass their own `login_throttle` (test/http/login-throttle.test.ts); the defaults stay in the schema.
 */
export const TEST_THROTTLE = { free_failures: 1_000_000, address_lockout_failures: 1_000_000 } as const;
export const ADMIN_PASSWORD = 'correct horse battery staple for tests';
export const USER_PASSWORD = 'a sufficiently long test password';

/** The default `[tokens] check_cache`: how long after a change another instance may still answer as before (SECURITY.md §51). */
export const DEFAULT_CHECK_CACHE_MS = (() => {
  const { config, problems } = resolveConfig({}, { baseDir: '/nonexistent', env: {} });
  if (config === undefined) throw new Error(problems.join('; '));
  return config.tokens.checkCacheMs;
})();
/** Late timers on a loaded machine, and one database read in flight when the change committed. */
const CHECK_CACHE_MARGIN_MS = 250;

/** Waits until a change made through another instance must show on this one: the token-check cache's TTL and a margin. */
export async function waitOutCheckCache(ttlMs = DEFAULT_CHECK_CACHE_MS): Promise<void> {
  await delay(ttlMs + CHECK_CACHE_MARGIN_MS);
}

export function testConfig(db: TestDatabase, raw: Record<string, unknown> = {}): Config {
  const passwords = { ...TEST_SCRYPT, ...((raw['passwords'] as object | undefined) ?? {}) };
  const throttle = raw['login_throttle'] ?? TEST_THROTTLE;
  const result = resolveConfig({ ...raw, passwords, login_throttle: throttle }, { baseDir: '/nonexistent', env: {} });
  if (result.config === undefined) throw new Error(result.problems.join('; '));
  return { ...result.config, storage: db.storage };
}

export interface Harness {
  readonly db: TestDatabase;
  readonly config: Config;
  readonly clock: ManualClock;
  readonly runtime: Runtime;
  readonly app: FastifyInstance;
  readonly masterKey: Buffer;
  /** The app's metrics, with `metrics: true` (the in-process app serves no metrics listener: scrape `metrics.scrape()`). */
  readonly metrics: Metrics | undefined;
  /** The bootstrap administrator's token. */
  readonly adminToken: string;
  request(options: {
    method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
    url: string;
    token?: string | undefined;
    body?: unknown;
    headers?: Record<string, string>;
  }): Promise<LightMyRequestResponse>;
  /** Creates a human (with password) or system account as the admin; returns its username. */
  createAccount(username: string, kind?: 'human' | 'system', password?: string): Promise<string>;
  login(username: string, password: string): Promise<string>;
  principal(token: string): Promise<Principal>;
  close(): Promise<void>;
}

/**
 * A migrated database of one dialect, the services, an injectable app, and a logged-in bootstrap admin. With a
 * `logger`, the runtime logs each audit event to it (the app itself logs nothing).
 */
export async function createHarness(
  dialect: TestDialect,
  options: { config?: Record<string, unknown>; clock?: ManualClock; logger?: Logger; metrics?: boolean; pgAdmin?: PgAdmin } = {},
): Promise<Harness> {
  const db = await createTestDatabase(dialect);
  const config = testConfig(db, options.config);
  const clock = options.clock ?? new ManualClock(Date.now());
  const masterKey = randomBytes(32);
  const metrics = options.metrics === true ? new Metrics() : undefined;
  const runtime = await createRuntime(config, {
    clock: clock as Clock,
    masterKey,
    observer: metrics,
    ...(options.pgAdmin === undefined ? {} : { pgAdmin: options.pgAdmin }),
    ...(options.logger === undefined ? {} : { logger: options.logger }),
  });
  metrics?.watchHashing(runtime.hashLoad);
  const app = await buildApp(runtime.services, {
    bodyLimit: config.server.bodyLimit,
    trustedProxies: config.server.trustedProxies,
    rateLimit: config.rateLimit,
    logger: false,
    metrics,
    web: webSettings(config),
  });
  await runtime.services.accounts.bootstrapAdmin('admin', ADMIN_PASSWORD, { temporary: false });

  const request: Harness['request'] = ({ method, url, token, body, headers = {} }) => {
    const all: Record<string, string> = { ...headers };
    if (token !== undefined) all['authorization'] = `Bearer ${token}`;
    // A string body is sent as-is (malformed JSON tests); anything else is serialised by inject.
    if (typeof body === 'string' && all['content-type'] === undefined) all['content-type'] = 'application/json';
    return app.inject({ method, url, headers: all, ...(body === undefined ? {} : { payload: body as string | object }) });
  };
  const login = async (username: string, password: string) => {
    const response = await request({ method: 'POST', url: '/v1/auth/login', body: { username, password } });
    if (response.statusCode !== 200) throw new Error(`login of ${username} failed: ${response.body}`);
    return (response.json() as { token: string }).token;
  };
  const adminToken = await login('admin', ADMIN_PASSWORD);

  return {
    db,
    config,
    clock,
    runtime,
    app,
    masterKey,
    metrics,
    adminToken,
    request,
    login,
    async createAccount(username, kind = 'human', password = USER_PASSWORD) {
      const response = await request({
        method: 'POST',
        url: '/v1/accounts',
        token: adminToken,
        // Automation: the password is final (temporary passwords have their own tests).
        body: kind === 'human' ? { username, kind, password, temporary: false } : { username, kind },
      });
      if (response.statusCode !== 201) throw new Error(`creating ${username} failed: ${response.body}`);
      return username;
    },
    principal: (token) => runtime.services.tokens.authenticate(token),
    async close() {
      await app.close();
      await runtime.close();
      await db.drop();
    },
  };
}
