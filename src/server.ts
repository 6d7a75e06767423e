import type { Server as HttpsServer } from 'node:https';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { loadMasterKey } from './config/files.ts';
import type { Config } from './config/load.ts';
import { AccountService } from './domain/accounts.ts';
import { AuditTrail } from './domain/audit-trail.ts';
import { LoginService } from './domain/auth.ts';
import { systemClock, type Clock } from './domain/clock.ts';
import { KeyRing } from './domain/keys.ts';
import { TokenLifecycle } from './domain/lifecycle.ts';
import { PasswordHasher } from './domain/password.ts';
import { RoleService } from './domain/roles.ts';
import { Sealer } from './domain/sealing.ts';
import { TokenService } from './domain/tokens.ts';
import { TotpService } from './domain/totp.ts';
import { buildApp } from './http/app.ts';
import { logAuditEvent } from './http/log.ts';
import type { AppServices } from './http/services.ts';
import { tlsServerOptions } from './config/tls.ts';
import { openMigratedDatabase, type Database } from './store/database.ts';

export interface Runtime {
  readonly services: AppServices;
  readonly database: Database;
  /** Waits for password hashes still running, then closes the database. */
  close(): Promise<void>;
}

/**
 * The composition root: opens the database (migrating it), unseals the signing keys, and wires the services. With a
 * `logger`, every audit event is also logged as one structured line once its transaction has committed.
 */
export async function createRuntime(config: Config, options: { clock?: Clock; masterKey?: Buffer; logger?: Logger } = {}): Promise<Runtime> {
  const clock = options.clock ?? systemClock;
  const sealer = new Sealer(options.masterKey ?? loadMasterKey(config));
  const database = await openMigratedDatabase(config.storage);
  const logger = options.logger;
  if (logger !== undefined) database.store.onAuditCommitted((records) => records.forEach((record) => logAuditEvent(logger, record)));
  const hasher = new PasswordHasher(config.passwords.scrypt, {
    maxConcurrent: config.passwords.maxConcurrentHashes,
    maxQueued: config.passwords.maxQueuedHashes,
    maxPerClient: config.passwords.maxHashesPerClient,
  });
  // Hashes first: a caller that is still hashing goes on to use the database afterwards.
  const close = async () => {
    await hasher.close();
    await database.close();
  };
  try {
    const store = database.store;
    const keys = new KeyRing({ store, sealer, clock });
    // Both finish, even when one fails, before anything is closed.
    const started = await Promise.allSettled([keys.load(), hasher.warmUp()]);
    for (const result of started) if (result.status === 'rejected') throw result.reason;
    const tokens = new TokenService({ store, keys, clock, settings: config.tokens });
    const accounts = new AccountService({
      store,
      hasher,
      clock,
      minPasswordLength: config.passwords.minLength,
      minPasswordLengthWithTotp: config.passwords.minLengthWithTotp,
    });
    const totp = new TotpService({
      store,
      sealer,
      hasher,
      accounts,
      clock,
      settings: { issuer: config.auth.totpIssuer, requireForAdmins: config.auth.requireTotpForAdmins },
      minPasswordLength: config.passwords.minLength,
    });
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
        minPasswordLength: { withoutTotp: config.passwords.minLength, withTotp: config.passwords.minLengthWithTotp },
      }),
      lifecycle: new TokenLifecycle({ store, tokens, accounts, clock }),
      audit: new AuditTrail({ store, clock, retentionMs: config.audit.retentionMs }),
      ready: () => database.ping(),
    };
    return { services, database, close };
  } catch (error) {
    await close();
    throw error;
  }
}

export interface RunningServer {
  readonly app: FastifyInstance;
  readonly url: string;
  /** Stops accepting connections, lets in-flight requests finish (up to the shutdown timeout), closes the database. */
  close(): Promise<void>;
  /** Re-reads the certificate and key; the old ones stay in use if the new ones cannot be loaded. */
  reloadTls(): void;
}

/** Serves HTTPS only (SECURITY.md §27): there is no plain-HTTP listener, not even for redirects. */
export async function startServer(config: Config, logger: Logger, options: { clock?: Clock } = {}): Promise<RunningServer> {
  const https = tlsServerOptions(config.tls);
  const runtime = await createRuntime(config, { ...options, logger });
  const app = await buildApp(runtime.services, {
    https,
    logger,
    bodyLimit: config.server.bodyLimit,
    trustedProxies: config.server.trustedProxies,
    connections: config.server.connections,
  }).catch(async (error: unknown) => {
    await runtime.close();
    throw error;
  });
  try {
    await app.listen({ host: config.server.host, port: config.server.port });
  } catch (error) {
    await app.close();
    await runtime.close();
    throw error;
  }
  const address = app.server.address();
  const port = typeof address === 'object' && address !== null ? address.port : config.server.port;
  const host = config.server.host.includes(':') ? `[${config.server.host}]` : config.server.host;

  const pruning = schedulePruning(runtime.services.audit, config.audit.retentionMs, logger);
  let closing: Promise<void> | undefined;
  return {
    app,
    url: `https://${host}:${port}`,
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
          await app.close();
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
