import { readFileSync, readdirSync } from 'node:fs';
import type { Server as HttpsServer } from 'node:https';
import { getPriority, setPriority } from 'node:os';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { loadMasterKey } from './config/files.ts';
import type { Config } from './config/load.ts';
import { AccountService } from './domain/accounts.ts';
import { AuditTrail } from './domain/audit-trail.ts';
import { LoginService } from './domain/auth.ts';
import { unlock } from './domain/master-key.ts';
import { systemClock, type Clock } from './domain/clock.ts';
import { KeyRing } from './domain/keys.ts';
import { TokenLifecycle } from './domain/lifecycle.ts';
import { PasswordHasher } from './domain/password.ts';
import { PgCredentialsService } from './domain/pgcreds.ts';
import { PermissionService } from './domain/permissions.ts';
import { PgRotationService } from './domain/pgcreds-rotation.ts';
import { RegistrationService } from './domain/registrations.ts';
import { RoleService } from './domain/roles.ts';
import { TokenService } from './domain/tokens.ts';
import { LoginThrottle } from './domain/throttle.ts';
import { FailureSummaries } from './domain/summaries.ts';
import { TotpService } from './domain/totp.ts';
import { buildApp } from './http/app.ts';
import { logAuditEvent } from './http/log.ts';
import { Metrics, serveMetrics, type HashLoad, type MetricsListener } from './http/metrics.ts';
import type { AppServices } from './http/services.ts';
import { webSettings } from './http/web/policy.ts';
import { tlsServerOptions } from './config/tls.ts';
import type { Observer, PgAdmin } from './domain/ports.ts';
import { PostgresAdmin } from './pgadmin/admin.ts';
import { openMigratedDatabase, type Database } from './store/database.ts';

export interface Runtime {
  readonly services: AppServices;
  readonly database: Database;
  /** Changes roles on services' PostgreSQL servers through the `[pg_admin.NAME]` connections (for rotation). */
  readonly pgAdmin: PgAdmin;
  /** Password hashes waiting and running now. */
  hashLoad(): HashLoad;
  /** Waits for password hashes still running, then closes the database. */
  close(): Promise<void>;
}

/**
 * The composition root: opens the database (migrating it), checks the master key against it (refusing a wrong one
 * before anything is served), unseals the signing keys, and wires the services. With a `logger`, every audit event
 * is also logged as one structured line once its transaction has committed.
 */
export async function createRuntime(
  config: Config,
  options: {
    clock?: Clock;
    masterKey?: Buffer;
    observer?: Observer;
    pgAdmin?: PgAdmin;
    logger?: Logger;
    onError?: (error: unknown) => void;
  } = {},
): Promise<Runtime> {
  const clock = options.clock ?? systemClock;
  const masterKey = options.masterKey ?? loadMasterKey(config);
  // Before the database opens: an admin URL or CA file it cannot honour stops the start, naming the entry.
  const pgAdmin = options.pgAdmin ?? new PostgresAdmin(config.pgAdmin);
  const database = await openMigratedDatabase(config.storage, { tokenCheckCacheMs: config.tokens.checkCacheMs });
  const logger = options.logger;
  if (logger !== undefined) database.store.onAuditCommitted((records) => records.forEach((record) => logAuditEvent(logger, record)));
  const hasher = new PasswordHasher(config.passwords.scrypt, {
    maxConcurrent: config.passwords.maxConcurrentHashes,
    maxQueued: config.passwords.maxQueuedHashes,
    maxPerClient: config.passwords.maxHashesPerClient,
  });
  const summaries = new FailureSummaries({
    store: database.store,
    clock,
    settings: { intervalMs: config.rateLimit.summaryIntervalMs, maxAddresses: config.rateLimit.summaryMaxAddresses },
    onError: options.onError ?? ((error) => process.emitWarning(`could not write the failure summaries: ${String(error)}`)),
  });
  // Hashes first: a caller that is still hashing goes on to use the database afterwards. The summaries of the last
  // interval are written before the database closes.
  const close = async () => {
    await hasher.close();
    await summaries.close();
    await database.close();
  };
  try {
    const store = database.store;
    const { sealer, digests } = await unlock(store, masterKey, clock);
    const keys = new KeyRing({ store, sealer, clock });
    // Both finish, even when one fails, before anything is closed.
    const started = await Promise.allSettled([keys.load(), hasher.warmUp()]);
    for (const result of started) if (result.status === 'rejected') throw result.reason;
    const tokens = new TokenService({ store, keys, clock, settings: config.tokens });
    const throttle = new LoginThrottle({ store, clock, settings: config.loginThrottle, observer: options.observer });
    const accounts = new AccountService({
      store,
      hasher,
      clock,
      throttle,
      minPasswordLength: config.passwords.minLength,
      minPasswordLengthWithTotp: config.passwords.minLengthWithTotp,
    });
    const totp = new TotpService({
      store,
      sealer,
      digests,
      hasher,
      accounts,
      clock,
      throttle,
      settings: { issuer: config.auth.totpIssuer, requireForAdmins: config.auth.requireTotpForAdmins },
      minPasswordLength: config.passwords.minLength,
    });
    const pgcreds = new PgCredentialsService({ store, sealer, accounts, clock, adminNames: config.pgAdmin.map((entry) => entry.name) });
    const services: AppServices = {
      keys,
      tokens,
      accounts,
      roles: new RoleService({ store, accounts, clock }),
      totp,
      login: new LoginService({
        store,
        hasher,
        tokens,
        totp,
        clock,
        throttle,
        observer: options.observer,
        minPasswordLength: { withoutTotp: config.passwords.minLength, withTotp: config.passwords.minLengthWithTotp },
      }),
      lifecycle: new TokenLifecycle({ store, tokens, accounts, clock, summaries, observer: options.observer }),
      audit: new AuditTrail({ store, clock, retentionMs: config.audit.retentionMs }),
      summaries,
      pgcreds,
      pgRotation: new PgRotationService({ store, sealer, pgAdmin, clock, credentials: pgcreds, leaseMs: config.pgcreds.leaseMs }),
      registrations: new RegistrationService({ store, accounts, digests, throttle, clock }),
      permissions: new PermissionService({ store, tokens, clock }),
      ready: () => database.ping(),
    };
    summaries.start();
    return { services, database, pgAdmin, hashLoad: () => hasher.load, close };
  } catch (error) {
    await close();
    throw error;
  }
}

export interface RunningServer {
  readonly app: FastifyInstance;
  readonly url: string;
  /** Where Prometheus scrapes (`[metrics] listen`); undefined when the metrics are off. */
  readonly metricsUrl: string | undefined;
  /**
   * Stops accepting connections, lets in-flight requests finish (up to the shutdown timeout), closes the metrics
   * listener and the database.
   */
  close(): Promise<void>;
  /** Re-reads the certificate and key; the old ones stay in use if the new ones cannot be loaded. */
  reloadTls(): void;
}

/**
 * How much nicer than the event loop libuv's thread pool runs, where every password hash runs (SECURITY.md §56): on a
 * busy machine the scheduler gives the event loop, which answers token checks and health probes, the CPU before a
 * hash. Hashes still get every cycle nothing else wants, so an idle server logs people in as fast as before.
 */
export const THREAD_POOL_NICE_INCREMENT = 10;
/** The largest nice value Linux has. */
const NICEST = 19;

/**
 * Lowers the pool threads' priority, once they exist (the start-up dummy hash has created them). Linux only: there
 * `setpriority` on a thread id applies to that thread alone. Elsewhere, or where it is refused, the server runs as
 * before and says so.
 */
function deprioritizeThreadPool(logger: Logger): void {
  if (process.platform !== 'linux') return;
  try {
    for (const tid of readdirSync('/proc/self/task')) {
      if (readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim() !== 'libuv-worker') continue;
      // Relative to what the service was started with (a unit's `Nice=`): raising a priority would need privileges.
      setPriority(Number(tid), Math.min(NICEST, getPriority(Number(tid)) + THREAD_POOL_NICE_INCREMENT));
    }
  } catch (error) {
    logger.warn({ err: error }, 'could not lower the priority of the password-hash threads');
  }
}

/**
 * Serves the API over HTTPS only (SECURITY.md §27): there is no plain-HTTP listener for it, not even for redirects.
 * The metrics, unless off, have a listener of their own on a loopback address (SECURITY.md §48).
 */
export async function startServer(config: Config, logger: Logger, options: { clock?: Clock } = {}): Promise<RunningServer> {
  const https = tlsServerOptions(config.tls);
  const metricsListen = config.metrics.listen;
  const metrics = metricsListen === undefined ? undefined : new Metrics();
  const runtime = await createRuntime(config, {
    ...options,
    observer: metrics,
    logger,
    onError: (error) => logger.error({ err: error }, 'could not write the failure summaries'),
  });
  metrics?.watchHashing(runtime.hashLoad);
  deprioritizeThreadPool(logger);
  const app = await buildApp(runtime.services, {
    https,
    logger,
    bodyLimit: config.server.bodyLimit,
    trustedProxies: config.server.trustedProxies,
    rateLimit: config.rateLimit,
    connections: config.server.connections,
    metrics,
    web: webSettings(config),
  }).catch(async (error: unknown) => {
    await runtime.close();
    throw error;
  });
  let scrapes: MetricsListener | undefined;
  try {
    await app.listen({ host: config.server.host, port: config.server.port });
    if (metrics !== undefined && metricsListen !== undefined) scrapes = await serveMetrics(metrics, metricsListen, logger);
  } catch (error) {
    await app.close();
    await runtime.close();
    throw error;
  }
  const rotations = startRotationTimer(runtime.services.pgRotation, config.pgcreds.checkIntervalMs, logger);
  const address = app.server.address();
  const port = typeof address === 'object' && address !== null ? address.port : config.server.port;
  const host = config.server.host.includes(':') ? `[${config.server.host}]` : config.server.host;

  const pruning = schedulePruning(runtime.services.audit, config.audit.retentionMs, logger);
  let closing: Promise<void> | undefined;
  return {
    app,
    url: `https://${host}:${port}`,
    metricsUrl: scrapes?.url,
    reloadTls() {
      try {
        (app.server as HttpsServer).setSecureContext(tlsServerOptions(config.tls));
        logger.info({ cert: config.tls.certFile }, 'TLS certificate and key reloaded');
      } catch (error) {
        logger.error({ err: error }, 'TLS reload failed; still serving the previous certificate');
      }
    },
    close() {
      closing ??= (async () => {
        const timer = setTimeout(() => {
          logger.warn('shutdown timeout reached; closing remaining connections');
          app.server.closeAllConnections();
        }, config.server.shutdownTimeoutMs);
        timer.unref();
        try {
          await Promise.all([app.close(), scrapes?.close(), rotations.stop()]);
        } finally {
          clearTimeout(timer);
          await pruning.stop();
          await runtime.close();
        }
      })();
      return closing;
    },
  };
}

/** How often a server with a retention prunes the audit trail (every instance may; the anchor only moves forward). */
const PRUNE_EVERY_MS = 3_600_000;

/** Prunes the audit trail at start and then hourly, when `[audit] retention` is set; `stop` waits for a running prune. */
function schedulePruning(audit: AuditTrail, retentionMs: number | null, logger: Logger): { stop(): Promise<void> } {
  if (retentionMs === null) return { stop: async () => {} };
  let running: Promise<void> = Promise.resolve();
  const run = () => {
    running = audit.prune().then(
      (pruned) => {
        if (pruned !== undefined) logger.info({ through_seq: pruned.throughSeq, deleted: pruned.deleted }, 'audit trail pruned');
      },
      (error: unknown) => logger.error({ err: error }, 'audit pruning failed'),
    );
  };
  run();
  const timer = setInterval(run, PRUNE_EVERY_MS);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}

/**
 * The rotation scheduler (docs/pgcreds.md, Rotation): at start-up, then every `check_interval`, finishes rotations a
 * crash or an unknown outcome left pending and rotates the services that are due. Runs never overlap; an error is
 * logged (never a password: the adapter's messages hold none) and the next tick tries again; `stop` waits for a run
 * in progress, so the database is not closed under it.
 */
function startRotationTimer(rotation: PgRotationService, intervalMs: number, logger: Logger): { stop(): Promise<void> } {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> = Promise.resolve();
  const tick = () => {
    running = (async () => {
      try {
        const { rotated, failed } = await rotation.runDue();
        if (rotated.length > 0) logger.info({ services: rotated }, 'PostgreSQL passwords rotated');
        if (failed.length > 0) logger.warn({ services: failed }, 'PostgreSQL password rotation failed; see last_rotation_error and the audit trail');
      } catch (error) {
        logger.error({ err: error instanceof Error ? { type: error.name, message: error.message } : String(error) }, 'the rotation check failed');
      }
      if (!stopped) timer = setTimeout(tick, intervalMs);
    })();
  };
  tick();
  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}
