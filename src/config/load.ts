import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';
import path from 'node:path';
import { TomlError, parse as parseToml } from 'smol-toml';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import type { ScryptParams } from '../domain/password.ts';
import type { ThrottleSettings } from '../domain/throttle.ts';
import type { TokenSettings } from '../domain/tokens.ts';
import { ConfigFileSchema, type ConfigFile } from './schema.ts';
import { parseDuration } from './duration.ts';
import { applyEnvironment, type Env } from './environment.ts';

export const CONFIG_FILE_NAME = 'mcias.toml';

export type StorageConfig =
  | { readonly kind: 'sqlite'; readonly path: string; readonly busyTimeoutMs: number }
  | { readonly kind: 'postgres'; readonly url: string; readonly caFile: string | undefined; readonly poolSize: number };

/** Bounds on connections (SECURITY.md §36); src/http/connections.ts applies them. */
export interface ConnectionLimits {
  readonly handshakeTimeoutMs: number;
  readonly headersTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly keepAliveTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly maxConnections: number;
  readonly maxConnectionsPerAddress: number;
  readonly maxRequestsPerSocket: number;
}

/** One `[pg_admin.NAME]` entry: an admin connection to a services' PostgreSQL server. */
export interface PgAdminConnection {
  readonly name: string;
  readonly url: string;
  readonly caFile: string | undefined;
}

export interface Config {
  readonly configFile: string | undefined;
  readonly masterKey: { readonly file: string; readonly inline: string | undefined };
  readonly server: {
    readonly host: string;
    readonly port: number;
    readonly trustedProxies: readonly string[];
    readonly bodyLimit: number;
    readonly shutdownTimeoutMs: number;
    readonly connections: ConnectionLimits;
  };
  readonly tls: { readonly certFile: string; readonly keyFile: string; readonly minVersion: 'TLSv1.2' | 'TLSv1.3' };
  readonly storage: StorageConfig;
  /** `checkCacheMs`: how long the token check's read may be reused (SECURITY.md §51); 0: not at all. */
  readonly tokens: TokenSettings & { readonly checkCacheMs: number };
  readonly passwords: {
    readonly scrypt: ScryptParams;
    readonly maxConcurrentHashes: number;
    readonly maxQueuedHashes: number;
    readonly maxHashesPerClient: number;
    readonly minLength: number;
    readonly minLengthWithTotp: number;
  };
  readonly auth: { readonly totpIssuer: string; readonly requireTotpForAdmins: boolean };
  readonly loginThrottle: ThrottleSettings;
  readonly rateLimit: {
    readonly requests: number;
    readonly windowMs: number;
    readonly summaryIntervalMs: number;
    readonly summaryMaxAddresses: number;
  };
  readonly pgAdmin: readonly PgAdminConnection[];
  /** `retentionMs` null: audit events are kept forever. */
  readonly audit: { readonly retentionMs: number | null };
  /** `listen` undefined: `[metrics] listen = "off"`, no metrics listener. */
  readonly metrics: { readonly listen: { readonly host: string; readonly port: number } | undefined };
  /** The rotation scheduler (docs/pgcreds.md): how often it looks for due and unfinished rotations. */
  readonly pgcreds: { readonly checkIntervalMs: number; readonly leaseMs: number };
  /** The login page (SECURITY.md §55); `cookieDomain` undefined: a host-only cookie. */
  readonly web: { readonly enabled: boolean; readonly cookieDomain: string | undefined; readonly allowedRedirectOrigins: readonly string[] };
  readonly log: { readonly level: string };
}

/**
 * `draft` is the best-effort configuration despite the problems (invalid values replaced by their defaults), so
 * `mciassrv config check` can go on to check the files and the database and report everything in one run.
 * It is never served from.
 */
export type ConfigResult =
  | { config: Config; problems: []; draft?: undefined }
  | { config: undefined; problems: string[]; draft?: Config | undefined };

/** Thrown by `loadConfig` with every problem found, so an operator can fix them all in one pass. */
export class ConfigError extends Error {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** Reads the config file (if any), applies `MCIAS_*` overrides, validates, and returns a frozen Config. */
export function loadConfig(options: { file: string; env?: Env; mustExist?: boolean }): Config {
  const result = readConfig(options);
  if (result.config === undefined) throw new ConfigError(result.problems);
  return result.config;
}

export function readConfig(options: { file: string; env?: Env; mustExist?: boolean }): ConfigResult {
  const file = path.resolve(options.file);
  let raw: Record<string, unknown> = {};
  try {
    raw = parseToml(readFileSync(file, 'utf8'));
  } catch (error) {
    const missing = (error as NodeJS.ErrnoException).code === 'ENOENT';
    if (!missing || options.mustExist !== false) {
      return { config: undefined, problems: [`${file}: ${missing ? 'no such file' : unreadable(error)}`] };
    }
  }
  return resolveConfig(raw, { baseDir: path.dirname(file), configFile: file, env: options.env ?? process.env });
}

/**
 * Why the file could not be read. A TOML error's message quotes the offending line, which may hold a secret (a
 * storage URL with its password): name the place instead.
 */
function unreadable(error: unknown): string {
  if (error instanceof TomlError) {
    return `invalid TOML at line ${error.line}, column ${error.column}: ${error.message.split('\n')[0]?.replace(/^Invalid TOML document: /, '')}`;
  }
  return (error as Error).message;
}

/** Validates raw settings (file contents) plus environment overrides; reports every problem at once. */
export function resolveConfig(
  raw: Record<string, unknown>,
  options: { baseDir: string; configFile?: string; env?: Env },
): ConfigResult {
  const problems: string[] = [];
  if ('master_key' in raw) problems.push('master_key: the master key belongs in its own file or MCIAS_MASTER_KEY, not in the config file');
  const merged = structuredClone(raw);
  const fromEnv = applyEnvironment(merged, options.env ?? {}, problems);
  // A bad value is named where the operator set it: the environment variable, else the setting in the file.
  const source = (setting: string) => fromEnv.get(setting) ?? fromEnv.get(setting.replace(/\.\d+$/, '')) ?? setting;
  const problem = (setting: string, message: string) => problems.push(`${source(setting)}: ${message}`);
  const file = checkSchema(merged, problem);
  if (file === undefined) {
    problems.push('the configuration does not have the expected shape');
    return { config: undefined, problems };
  }
  const at = (p: string) => path.resolve(options.baseDir, p);
  const duration = (name: string, text: string) => {
    const ms = parseDuration(text);
    if (ms === undefined) problem(name, `"${text}" is not a duration (examples: 30d, 12h, 15m, 10s)`);
    return ms ?? 0;
  };
  // A window or interval of zero would count nothing (or flush in a busy loop): there is no setting that removes a bound.
  const positive = (name: string, text: string) => {
    const ms = duration(name, text);
    if (parseDuration(text) !== undefined && ms < 1_000) problem(name, 'must be at least 1s');
    return ms;
  };
  const listen = parseListen(file.server.listen);
  if (typeof listen === 'string') problem('server.listen', listen);
  for (const proxy of file.server.trusted_proxies) {
    if (!isAddressOrCidr(proxy)) problem('server.trusted_proxies', `"${proxy}" is not an IP address or CIDR`);
  }
  const metricsListen = resolveMetricsListen(file.metrics.listen, typeof listen === 'string' ? undefined : listen, problem);
  const storage = resolveStorage(file.storage, at, duration, problem);
  if (!/^https:\/\/\S+$/.test(file.tokens.issuer)) problem('tokens.issuer', 'must be an https:// URL');

  const config: Config = {
    configFile: options.configFile,
    masterKey: { file: at(file.master_key_file), inline: file.master_key },
    server: {
      host: typeof listen === 'string' ? '' : listen.host,
      port: typeof listen === 'string' ? 0 : listen.port,
      trustedProxies: file.server.trusted_proxies,
      bodyLimit: file.server.body_limit,
      shutdownTimeoutMs: duration('server.shutdown_timeout', file.server.shutdown_timeout),
      connections: resolveConnectionLimits(file.server, duration, problems),
    },
    tls: {
      certFile: at(file.tls.cert_file),
      keyFile: at(file.tls.key_file),
      minVersion: file.tls.min_version === '1.3' ? 'TLSv1.3' : 'TLSv1.2',
    },
    storage,
    tokens: {
      issuer: file.tokens.issuer,
      audience: file.tokens.audience,
      userTtlMs: duration('tokens.user_ttl', file.tokens.user_ttl),
      serviceTtlMs: duration('tokens.service_ttl', file.tokens.service_ttl),
      maxSessionAgeMs: duration('tokens.max_session_age', file.tokens.max_session_age),
      // The cross-instance bound of revocation and role changes (SECURITY.md §51): short, and never unbounded.
      checkCacheMs: bounded('tokens.check_cache', file.tokens.check_cache, [0, '0s'], [MAX_CHECK_CACHE_MS, '10s'], duration, problem),
    },
    passwords: {
      scrypt: { ln: file.passwords.scrypt_ln, r: file.passwords.scrypt_r, p: file.passwords.scrypt_p },
      maxConcurrentHashes: file.passwords.max_concurrent_hashes || Math.max(1, availableParallelism() - 1),
      maxQueuedHashes: file.passwords.max_queued_hashes,
      // SECURITY.md §37: by default one address may hold an eighth of the queue (8 of the default 64).
      maxHashesPerClient: file.passwords.max_hashes_per_client || Math.max(1, Math.ceil(file.passwords.max_queued_hashes / 8)),
      minLength: file.passwords.min_length,
      minLengthWithTotp: file.passwords.min_length_with_totp,
    },
    auth: { totpIssuer: file.auth.totp_issuer, requireTotpForAdmins: file.auth.require_totp_for_admins },
    loginThrottle: {
      freeFailures: file.login_throttle.free_failures,
      baseDelayMs: duration('login_throttle.base_delay', file.login_throttle.base_delay),
      maxDelayMs: duration('login_throttle.max_delay', file.login_throttle.max_delay),
      account: {
        lockoutFailures: file.login_throttle.account_lockout_failures,
        lockoutMs: positive('login_throttle.account_lockout', file.login_throttle.account_lockout),
      },
      address: {
        lockoutFailures: file.login_throttle.address_lockout_failures,
        lockoutMs: positive('login_throttle.address_lockout', file.login_throttle.address_lockout),
      },
    },
    rateLimit: {
      requests: file.rate_limit.requests,
      windowMs: positive('rate_limit.window', file.rate_limit.window),
      summaryIntervalMs: positive('rate_limit.summary_interval', file.rate_limit.summary_interval),
      summaryMaxAddresses: file.rate_limit.summary_max_addresses,
    },
    pgAdmin: Object.entries(file.pg_admin).map(([name, entry]) => {
      if (!/^[a-z][a-z0-9_-]{0,31}$/.test(name)) problem(`pg_admin.${name}`, 'names are lowercase letters, digits, _ and -, starting with a letter');
      // Never echo the URL: it carries the admin password.
      if (!/^postgres(ql)?:\/\//.test(entry.url)) problem(`pg_admin.${name}.url`, 'must start with postgres://');
      return { name, url: entry.url, caFile: entry.ca_file ? at(entry.ca_file) : undefined };
    }),
    audit: { retentionMs: resolveRetention(file.audit.retention, duration, problem) },
    metrics: { listen: metricsListen },
    pgcreds: {
      checkIntervalMs: bounded('pgcreds.check_interval', file.pgcreds.check_interval, [1_000, '1s'], [86_400_000, '1d'], duration, problem),
      // Longer than the admin connection's worst case (connect, check, ALTER: about 25 s), so a live holder keeps it.
      leaseMs: bounded('pgcreds.lease', file.pgcreds.lease, [30_000, '30s'], [3_600_000, '1h'], duration, problem),
    },
    web: resolveWeb(file.web, problem),
    log: { level: file.log.level },
  };
  if (problems.length > 0) return { config: undefined, problems, draft: deepFreeze(config) };
  return { config: deepFreeze(config), problems: [] };
}

/**
 * `[web]` (SECURITY.md §55): each allowed origin must be exactly an https origin (no path, query or user info), since a
 * browser is sent back only to a URL whose origin equals one of them; the cookie domain must be a plain host name.
 */
function resolveWeb(web: ConfigFile['web'], problem: (setting: string, message: string) => void): Config['web'] {
  const origins: string[] = [];
  for (const text of web.allowed_redirect_origins) {
    let url: URL | undefined;
    try {
      url = new URL(text);
    } catch {
      url = undefined;
    }
    if (url === undefined || url.protocol !== 'https:' || url.origin !== text.replace(/\/$/, '')) {
      problem('web.allowed_redirect_origins', `"${text}" is not an https origin (https://host or https://host:port, nothing after it)`);
    } else {
      origins.push(url.origin);
    }
  }
  const domain = web.cookie_domain.replace(/^\./, '').toLowerCase();
  if (domain !== '' && !/^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(domain)) {
    problem('web.cookie_domain', `"${web.cookie_domain}" is not a host name`);
  }
  return { enabled: web.enabled, cookieDomain: domain === '' ? undefined : domain, allowedRedirectOrigins: origins };
}

/** The longest `tokens.check_cache`: another instance's revocation must not wait longer than a person notices. */
const MAX_CHECK_CACHE_MS = 10_000;

/** The shortest retention: pruning is for keeping the table's size in check, not for erasing recent history. */
const MIN_RETENTION_MS = 86_400_000;

function resolveRetention(text: string, duration: (name: string, text: string) => number, problem: (setting: string, message: string) => void): number | null {
  if (text === 'forever') return null;
  const ms = duration('audit.retention', text);
  if (parseDuration(text) !== undefined && ms < MIN_RETENTION_MS) problem('audit.retention', 'must be at least 1d (or forever)');
  return ms;
}

/**
 * The schema check, compiled on first use: Ajv (Fastify's validator, loaded anyway to serve) applies the defaults as
 * it checks (`useDefaults`) and reports every error of a pass (`allErrors`). Not TypeBox's Value module: that module
 * and the schema engine under it stay resident once loaded, about 2.5 MB of heap for one check at start-up (issue 12).
 */
let configFileValidator: ValidateFunction | undefined;

function validateConfigFile(value: unknown): ErrorObject[] {
  configFileValidator ??= new Ajv({ allErrors: true, useDefaults: true, strict: false }).compile(ConfigFileSchema);
  return configFileValidator(value) ? [] : (configFileValidator.errors ?? []);
}

const escapePointerToken = (token: string) => token.replaceAll('~', '~0').replaceAll('/', '~1');

/** Removes the value at a JSON pointer: an array element is spliced out, an object property deleted. */
function deleteAt(value: Record<string, unknown>, pointer: string): void {
  const tokens = pointer.slice(1).split('/').map((t) => t.replaceAll('~1', '/').replaceAll('~0', '~'));
  const last = tokens.pop() as string;
  let parent: unknown = value;
  for (const token of tokens) parent = (parent as Record<string, unknown> | undefined)?.[token];
  if (Array.isArray(parent) && /^(0|[1-9]\d*)$/.test(last)) parent.splice(Number(last), 1);
  else if (typeof parent === 'object' && parent !== null) delete (parent as Record<string, unknown>)[last];
}

/**
 * Checks the settings against the schema (filling in defaults), reporting each invalid value and then dropping it (so
 * its default applies) and checking again, until nothing is left to drop: the later semantic checks then still run on
 * the valid rest.
 */
function checkSchema(value: Record<string, unknown>, problem: (setting: string, message: string) => void): ConfigFile | undefined {
  const dropped = new Set<string>();
  for (;;) {
    const errors = validateConfigFile(value);
    if (errors.length === 0) return value as ConfigFile;
    const byPointer = new Map<string, string[]>();
    const add = (pointer: string, message: string) => byPointer.set(pointer, [...(byPointer.get(pointer) ?? []), message]);
    for (const error of errors) {
      // A setting the schema does not have (`additionalProperties: false`) is reported at its section: name it.
      if (error.keyword === 'additionalProperties') add(`${error.instancePath}/${escapePointerToken(String(error.params['additionalProperty']))}`, 'unknown setting');
      else add(error.instancePath, error.message ?? 'is not valid');
    }
    // No progress possible (the document itself is wrong, or a dropped value's default is still invalid).
    if ([...byPointer.keys()].some((p) => p === '' || dropped.has(p))) break;
    for (const [pointer, pointerMessages] of byPointer) {
      const where = pointer.slice(1).replaceAll('/', '.');
      const allowed = allowedValues(pointer);
      const messages = pointerMessages.includes('unknown setting')
        ? ['unknown setting']
        : allowed !== undefined
          ? [`must be one of ${allowed.map((v) => JSON.stringify(v)).join(', ')}`]
          : pointerMessages;
      for (const message of new Set(messages)) problem(where, message);
      deleteAt(value, pointer);
      dropped.add(pointer);
    }
  }
  return undefined;
}

/** The values a setting defined as a union of literals accepts (for a readable message). */
function allowedValues(pointer: string): unknown[] | undefined {
  let schema: unknown = ConfigFileSchema;
  for (const key of pointer.split('/').slice(1)) schema = (schema as { properties?: Record<string, unknown> }).properties?.[key];
  const anyOf = (schema as { anyOf?: { const?: unknown }[] } | undefined)?.anyOf;
  return anyOf?.every((s) => 'const' in s) ? anyOf.map((s) => s.const) : undefined;
}

const MIN_CONNECTION_TIMEOUT_MS = 100;
const MAX_CONNECTION_TIMEOUT_MS = 3_600_000;

function resolveConnectionLimits(
  server: ConfigFile['server'],
  duration: (name: string, text: string) => number,
  problems: string[],
): ConnectionLimits {
  // Zero would switch Node's bound off; there is no setting that removes a bound (SECURITY.md §36).
  const bounded = (key: keyof ConfigFile['server'] & `${string}_timeout`) => {
    const ms = duration(`server.${key}`, server[key]);
    const valid = parseDuration(server[key]) !== undefined; // an unparsable one is reported by `duration`
    if (valid && (ms < MIN_CONNECTION_TIMEOUT_MS || ms > MAX_CONNECTION_TIMEOUT_MS)) {
      problems.push(`server.${key}: must be between 100ms and 1h`);
    }
    return ms;
  };
  const limits: ConnectionLimits = {
    handshakeTimeoutMs: bounded('handshake_timeout'),
    headersTimeoutMs: bounded('headers_timeout'),
    requestTimeoutMs: bounded('request_timeout'),
    keepAliveTimeoutMs: bounded('keep_alive_timeout'),
    idleTimeoutMs: bounded('idle_timeout'),
    maxConnections: server.max_connections,
    maxConnectionsPerAddress: server.max_connections_per_address,
    maxRequestsPerSocket: server.max_requests_per_socket,
  };
  if (limits.headersTimeoutMs > limits.requestTimeoutMs) {
    problems.push('server.headers_timeout: must not be longer than server.request_timeout');
  }
  if (limits.maxConnectionsPerAddress > limits.maxConnections) {
    problems.push('server.max_connections_per_address: must not be more than server.max_connections');
  }
  return limits;
}

function resolveStorage(
  storage: ConfigFile['storage'],
  at: (p: string) => string,
  duration: (name: string, text: string) => number,
  problem: (setting: string, message: string) => void,
): StorageConfig {
  const busyTimeoutMs = duration('storage.busy_timeout', storage.busy_timeout);
  if (storage.url.startsWith('sqlite:')) {
    const file = storage.url.slice('sqlite:'.length);
    if (file === '') problem('storage.url', 'sqlite: needs a path, e.g. sqlite:mcias.db');
    return { kind: 'sqlite', path: file === ':memory:' ? file : at(file), busyTimeoutMs };
  }
  if (/^postgres(ql)?:\/\//.test(storage.url)) {
    return { kind: 'postgres', url: storage.url, caFile: storage.ca_file ? at(storage.ca_file) : undefined, poolSize: storage.pool_size };
  }
  // Never echo the URL: it may carry a database password.
  problem('storage.url', 'must start with sqlite: or postgres://');
  return { kind: 'sqlite', path: '', busyTimeoutMs };
}

/**
 * `[metrics] listen`: "off", or a loopback IP address and port (SECURITY.md §48). The listener speaks plain HTTP and
 * asks for no credentials, so it is refused on any other address, a host name included (it could resolve anywhere).
 */
function resolveMetricsListen(
  text: string,
  server: { host: string; port: number } | undefined,
  problem: (setting: string, message: string) => void,
): { host: string; port: number } | undefined {
  if (text === 'off') return undefined;
  const listen = parseListen(text);
  if (typeof listen === 'string') {
    problem('metrics.listen', `${listen}, or off`);
    return undefined;
  }
  if (!isIP(listen.host) || ipaddr.parse(listen.host).range() !== 'loopback') {
    problem(
      'metrics.listen',
      `"${listen.host}" is not a loopback address: metrics are served over plain HTTP without credentials, so only on ` +
        '127.0.0.0/8 or [::1] (scrape from the same host, or through a proxy that adds TLS and authentication; see SECURITY.md §48)',
    );
    return undefined;
  }
  if (server !== undefined && listen.port !== 0 && listen.port === server.port && listen.host === server.host) {
    problem('metrics.listen', 'must not be the address server.listen serves the API on');
  }
  return listen;
}

export function parseListen(text: string): { host: string; port: number } | string {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]+)):(\d{1,5})$/.exec(text);
  if (!match) return `"${text}" is not HOST:PORT (IPv6 as [::1]:8443)`;
  const port = Number(match[3]);
  if (port > 65_535) return `port ${port} is out of range`;
  return { host: match[1] ?? match[2] ?? '', port };
}

function isAddressOrCidr(text: string): boolean {
  const [address = '', prefix, ...rest] = text.split('/');
  const family = isIP(address);
  if (family === 0 || rest.length > 0) return false;
  if (prefix === undefined) return true;
  return /^\d{1,3}$/.test(prefix) && Number(prefix) <= (family === 4 ? 32 : 128);
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}

/** A duration that must lie between two bounds (inclusive); an unparsable one is reported by `duration` alone. */
function bounded(
  name: string,
  text: string,
  [min, minText]: readonly [number, string],
  [max, maxText]: readonly [number, string],
  duration: (name: string, text: string) => number,
  problem: (setting: string, message: string) => void,
): number {
  const ms = duration(name, text);
  if (parseDuration(text) !== undefined && (ms < min || ms > max)) problem(name, `must be between ${minText} and ${maxText}`);
  return ms;
}
