import { existsSync } from 'node:fs';
import path from 'node:path';
import { Command, Option } from 'commander';
import { pino } from 'pino';
import { generateMasterKeyFile } from '../config/files.ts';
import { CONFIG_FILE_NAME, ConfigError, loadConfig, type Config } from '../config/load.ts';
import { AuditTrail } from '../domain/audit-trail.ts';
import { systemClock } from '../domain/clock.ts';
import { logSerializers } from '../http/log.ts';
import { createRuntime, startServer } from '../server.ts';
import { openDatabase, openMigratedDatabase } from '../store/database.ts';
import { VERSION } from '../version.ts';
// Every command but serve imports its code when it runs: init's certificate code (@peculiar/x509) alone is several
// megabytes that a running server never needs.
import type { InitResult } from './init.ts';

/**
 * The server daemon's own CLI: set up a data directory, serve, migrate, check the configuration, rotate keys, back up.
 * Administration of accounts goes through the API (mciasctl), not through here.
 */
interface Location {
  dataDir?: string;
  config?: string;
}

const dataDirOption = () => new Option('-d, --data-dir <dir>', 'data directory (holds mcias.toml)').env('MCIAS_DATA_DIR');
const configOption = () => new Option('-c, --config <file>', 'config file (default: <data-dir>/mcias.toml)').env('MCIAS_CONFIG');

function configFileOf(options: Location): string {
  if (options.config) return path.resolve(options.config);
  return path.resolve(options.dataDir ?? 'data', CONFIG_FILE_NAME);
}

function printInit(result: InitResult): void {
  const lines = [
    `Initialised ${path.dirname(result.configFile)}`,
    `  config:        ${result.configFile}`,
    `  server URL:    ${result.url}`,
    `  administrator: ${result.adminUsername}`,
  ];
  if (result.caCertFile) lines.push(`  certificate:   ${result.caCertFile} (self-signed: give it to clients with --ca-cert)`);
  if (result.generatedPassword !== undefined) {
    lines.push(
      '',
      `  Temporary password for ${result.adminUsername} (shown only now; your first login asks for a new one):`,
      `    ${result.generatedPassword}`,
    );
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

const DEFAULT_LISTEN = '127.0.0.1:8443';
/** How long after the shutdown timeout serve waits for its last resources before it exits regardless. */
const LINGER_MS = 10_000;

export function program(): Command {
  const cli = new Command('mciassrv')
    .description('MCIAS server: serves the HTTPS API and manages its data directory')
    .version(VERSION)
    .showHelpAfterError()
    .configureOutput({ outputError: (text, write) => write(text) });

  cli
    .command('init')
    .description('create a data directory: config, master key, TLS certificate, database and first administrator')
    .addOption(dataDirOption().default('data'))
    .option('--admin-username <name>', 'the first administrator', 'admin')
    .option('--admin-password-file <file>', "read the administrator's password from a file (otherwise one is generated and printed once)")
    .option('--listen <host:port>', 'address to serve on', DEFAULT_LISTEN)
    .option('--storage-url <url>', 'sqlite:PATH (default sqlite:mcias.db) or postgres://...')
    .option('--cert <file>', 'use this TLS certificate instead of generating a self-signed one')
    .option('--key <file>', 'the private key for --cert')
    .option('--issuer <url>', 'token issuer (default: the server URL)')
    .action(async (o) => {
      printInit(
        await (await import('./init.ts')).initDataDir({
          dataDir: o.dataDir,
          adminUsername: o.adminUsername,
          adminPasswordFile: o.adminPasswordFile,
          listen: o.listen,
          storageUrl: o.storageUrl,
          certFile: o.cert,
          keyFile: o.key,
          issuer: o.issuer,
        }),
      );
    });

  cli
    .command('serve')
    .description('serve the API over HTTPS (SIGHUP reloads the certificate; SIGTERM shuts down gracefully)')
    .addOption(dataDirOption())
    .addOption(configOption())
    .option('--listen <host:port>', 'override server.listen')
    .option('--init', 'initialise the data directory first if it has no config (first run)')
    .action(async (o) => {
      const file = configFileOf(o);
      if (o.init && !existsSync(file)) {
        printInit(await (await import('./init.ts')).initDataDir({ dataDir: path.dirname(file), adminUsername: 'admin', listen: o.listen ?? DEFAULT_LISTEN }));
      } else if (!existsSync(file)) {
        throw new Error(`${file}: no such file; create the data directory with "mciassrv init" (or run "mciassrv serve --init")`);
      }
      const env = { ...process.env, ...(o.listen ? { MCIAS_SERVER_LISTEN: o.listen } : {}) };
      const config = loadConfig({ file, env });
      // The same serializers as Fastify's (src/http/log.ts): no query string or raw request bytes in any line.
      const logger = pino({ level: config.log.level, base: { service: 'mciassrv' }, serializers: logSerializers });
      const server = await startServer(config, logger);
      // Start-up's garbage (modules evaluated, schemas compiled) is dead now, but V8 keeps the pages it grew for it
      // pooled for reuse: one memory-reducing collection gives them back (about 10 MB of idle RSS; issue 12). `gc` is
      // there because bin/mciassrv.js's shebang line passes --expose-gc; started another way, there is none to call.
      globalThis.gc?.({ type: 'major', execution: 'sync', flavor: 'last-resort' });
      logger.info({ url: server.url, metrics: server.metricsUrl ?? 'off', version: VERSION }, 'mciassrv is serving');
      const reload = () => server.reloadTls();
      process.on('SIGHUP', reload);
      // No process.exit(): close() lets requests finish, waits for running hashes and closes the database, and
      // the process then ends by itself once nothing is left, with no native work cut off mid-flight.
      const stop = (signal: string) => {
        logger.info({ signal }, 'shutting down');
        process.removeListener('SIGHUP', reload);
        server.close().then(
          () => logger.info('shut down'),
          (error: unknown) => {
            logger.error({ err: error }, 'shutdown failed');
            process.exitCode = 1;
          },
        );
        // Only if something still holds the process long after that: name it, and leave anyway.
        setTimeout(() => {
          logger.error({ resources: process.getActiveResourcesInfo() }, 'still running after shutdown; exiting');
          process.exit(process.exitCode ?? 1);
        }, config.server.shutdownTimeoutMs + LINGER_MS).unref();
      };
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
    });

  cli
    .command('migrate')
    .description('bring the database schema up to date (serve also does this on start)')
    .addOption(dataDirOption())
    .addOption(configOption())
    .action(async (o) => {
      const config = loadConfig({ file: configFileOf(o) });
      const database = openDatabase(config.storage);
      try {
        const { error, results = [] } = await database.migrate();
        for (const r of results) process.stdout.write(`${r.status === 'Success' ? 'applied' : r.status}: ${r.migrationName}\n`);
        if (error !== undefined) throw new Error(`migration failed: ${(error as Error).message}`);
        if (results.length === 0) process.stdout.write('the database schema is up to date\n');
      } finally {
        await database.close();
      }
    });

  cli
    .command('config')
    .description('configuration tools')
    .command('check')
    .description('check the config, master key, TLS files, database and pg_admin connections; report every problem at once')
    .addOption(dataDirOption())
    .addOption(configOption())
    .action(async (o) => {
      const file = configFileOf(o);
      const { problems, notes } = await (await import('./check.ts')).checkConfig(file, process.env);
      for (const note of notes) process.stdout.write(`${note}\n`);
      if (problems.length === 0) {
        process.stdout.write(`${file}: OK\n`);
        return;
      }
      process.stderr.write(`${file}: ${problems.length} problem${problems.length === 1 ? '' : 's'}\n${problems.map((p) => `  - ${p}\n`).join('')}`);
      process.exitCode = 1;
    });

  const keys = cli.command('keys').description('token signing keys and the master key');
  keys
    .command('rotate')
    .description('start signing with a new key (running servers pick it up within 10 s); old keys verify until their tokens expire')
    .addOption(dataDirOption())
    .addOption(configOption())
    .action(async (o) => {
      const runtime = await createRuntime(loadConfig({ file: configFileOf(o) }));
      try {
        const kid = await runtime.services.keys.rotate(undefined, undefined);
        process.stdout.write(`new signing key ${kid}\n`);
      } finally {
        await runtime.close();
      }
    });

  keys
    .command('generate-master')
    .description('write a new random master key to a new 0600 file (for rotate-master); never overwrites')
    .argument('<file>', 'where to write it (must not exist)')
    .action((file: string) => {
      const target = path.resolve(file);
      if (existsSync(target)) throw new Error(`${target} exists; a key file is never overwritten`);
      generateMasterKeyFile(target);
      process.stdout.write(`new master key written to ${target} (mode 0600)\n`);
    });

  keys
    .command('rotate-master')
    .description('re-encrypt every sealed secret under a new master key, in one transaction (stop every server first: docs/operations.md)')
    .requiredOption('--new-key-file <file>', 'the new master key: a 0600 file holding 32 bytes in base64 (see keys generate-master)')
    .addOption(dataDirOption())
    .addOption(configOption())
    .action(async (o) => {
      process.stdout.write(`${await (await import('./master-key.ts')).rotateMasterKeyCommand(loadConfig({ file: configFileOf(o) }), o.newKeyFile)}\n`);
    });

  const audit = cli.command('audit').description('the tamper-evident audit trail (SECURITY.md §31)');
  audit
    .command('verify')
    .description('walk the audit chain from its anchor (or the first row) to its head; name the first bad row and exit 1')
    .addOption(dataDirOption())
    .addOption(configOption())
    .action(async (o) => {
      const result = await withAuditTrail(loadConfig({ file: configFileOf(o) }), (trail) => trail.verify());
      if (!result.ok) throw new Error(`audit chain broken at row ${result.seq} (${result.problem}): ${result.message}; ${result.rows} rows before it verified`);
      const from = result.start.seq === 0 ? 'the first row' : `the anchor after row ${result.start.seq}`;
      process.stdout.write(`audit chain OK: ${result.rows} rows verified from ${from} to row ${result.head.seq}\nhead hash: ${result.head.hash}\n`);
    });
  audit
    .command('prune')
    .description('delete audit events older than [audit] retention; the chain keeps verifying from the anchor this leaves')
    .addOption(dataDirOption())
    .addOption(configOption())
    .action(async (o) => {
      const config = loadConfig({ file: configFileOf(o) });
      if (config.audit.retentionMs === null) {
        process.stdout.write('[audit] retention is forever: nothing is pruned\n');
        return;
      }
      const pruned = await withAuditTrail(config, (trail) => trail.prune());
      if (pruned === undefined) process.stdout.write('no audit event is older than the retention\n');
      else if (pruned.throughSeq === undefined) process.stdout.write(`deleted ${pruned.deleted} audit events left behind the anchor by an earlier prune\n`);
      else process.stdout.write(`pruned ${pruned.deleted} audit events; the chain now starts after row ${pruned.throughSeq}\n`);
    });

  cli
    .command('backup')
    .description('write a consistent copy of the SQLite database, safe while the server runs')
    .argument('<file>', 'where to write the copy (must not exist)')
    .addOption(dataDirOption())
    .addOption(configOption())
    .action(async (file: string, o) => {
      const config = loadConfig({ file: configFileOf(o) });
      const { pages } = await (await import('./backup.ts')).backupSqlite(config, path.resolve(file));
      process.stdout.write(`backed up ${pages} pages to ${path.resolve(file)} (the master key is not in it: back it up separately)\n`);
    });

  return cli;
}

/** The audit trail over the configured database, migrated first (a verify needs the chain's columns). */
async function withAuditTrail<T>(config: Config, work: (trail: AuditTrail) => Promise<T>): Promise<T> {
  const database = await openMigratedDatabase(config.storage);
  try {
    return await work(new AuditTrail({ store: database.store, clock: systemClock, retentionMs: config.audit.retentionMs }));
  } finally {
    await database.close();
  }
}

export async function main(argv: string[]): Promise<void> {
  try {
    await program().parseAsync(argv);
  } catch (error) {
    // One line per error, so it reads well in a terminal and in a service manager's log.
    const message = error instanceof ConfigError ? `invalid configuration: ${error.problems.join('; ')}` : (error as Error).message;
    process.stderr.write(`mciassrv: ${message.replace(/\s*\n\s*/g, ' ')}\n`);
    process.exitCode = 1;
  }
}
