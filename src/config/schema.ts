import { Type, type Static } from 'typebox';
import { DEFAULT_SCRYPT } from '../domain/password.ts';

/**
 * The configuration file's shape, with every default. The file (TOML) and `MCIAS_*` environment variables are
 * merged, checked against this schema once at start-up, then resolved into a frozen `Config` (src/config/load.ts).
 */
const section = <T extends Parameters<typeof Type.Object>[0]>(properties: T) =>
  Type.Object(properties, { additionalProperties: false, default: {} });

const Duration = (fallback: string, description: string) =>
  Type.String({ default: fallback, description: `${description} (a duration such as 30d, 15m, 10s)` });

export const ConfigFileSchema = Type.Object(
  {
    /** Path of the 0600 file holding the base64 master key (relative paths: to the config file's folder). */
    master_key_file: Type.String({ default: 'master.key' }),
    /** The master key itself (base64); environment only (MCIAS_MASTER_KEY), never in the file. */
    master_key: Type.Optional(Type.String()),
    server: section({
      listen: Type.String({ default: '127.0.0.1:8443', description: 'HOST:PORT to listen on (HTTPS only)' }),
      trusted_proxies: Type.Array(Type.String(), {
        default: [],
        description: 'addresses or CIDRs of reverse proxies whose X-Forwarded-For is believed',
      }),
      body_limit: Type.Integer({ default: 65_536, minimum: 1_024, maximum: 1_048_576 }),
      shutdown_timeout: Duration('30s', 'how long in-flight requests may take to finish on SIGTERM'),
      // Connection bounds (SECURITY.md §36); docs/configuration.md argues each default.
      handshake_timeout: Duration('10s', 'how long a connection may take to finish its TLS handshake'),
      headers_timeout: Duration('10s', 'how long a request may take to send its headers'),
      request_timeout: Duration('30s', 'how long a request may take to arrive in full, headers and body'),
      keep_alive_timeout: Duration('10s', 'how long an idle connection is kept open between requests'),
      idle_timeout: Duration('30s', 'how long a connection may stay silent in both directions mid-request'),
      max_connections: Type.Integer({ default: 1_024, minimum: 1, maximum: 100_000, description: 'open connections at once' }),
      max_connections_per_address: Type.Integer({
        default: 64,
        minimum: 1,
        maximum: 100_000,
        description: 'open connections from one client address (IPv6: one /64); trusted proxies are exempt',
      }),
      max_requests_per_socket: Type.Integer({ default: 1_000, minimum: 1, maximum: 1_000_000 }),
    }),
    tls: section({
      cert_file: Type.String({ default: 'tls/cert.pem' }),
      key_file: Type.String({ default: 'tls/key.pem' }),
      min_version: Type.Union([Type.Literal('1.2'), Type.Literal('1.3')], { default: '1.2' }),
    }),
    storage: section({
      url: Type.String({ default: 'sqlite:mcias.db', description: 'sqlite:PATH or postgres://...' }),
      ca_file: Type.String({ default: '', description: 'CA bundle for PostgreSQL sslmode=verify-full' }),
      busy_timeout: Duration('5s', 'SQLite busy timeout'),
      pool_size: Type.Integer({ default: 10, minimum: 1, maximum: 200 }),
    }),
    tokens: section({
      issuer: Type.String({ default: 'https://127.0.0.1:8443' }),
      audience: Type.String({ default: 'mcias', minLength: 1 }),
      user_ttl: Duration('30d', 'lifetime of a human session token'),
      service_ttl: Duration('30d', 'lifetime of a system account token'),
      max_session_age: Duration('30d', 'how long after their password login a person may keep renewing'),
      check_cache: Duration(
        '1s',
        "how long a token check's database read may be reused (SECURITY.md §51): the most another instance's change can be late; 0s turns it off",
      ),
    }),
    passwords: section({
      scrypt_ln: Type.Integer({ default: DEFAULT_SCRYPT.ln, minimum: 1, maximum: 22, description: 'log2 of the scrypt cost N' }),
      scrypt_r: Type.Integer({ default: DEFAULT_SCRYPT.r, minimum: 1, maximum: 32 }),
      scrypt_p: Type.Integer({ default: DEFAULT_SCRYPT.p, minimum: 1, maximum: 16 }),
      max_concurrent_hashes: Type.Integer({
        default: 0,
        minimum: 0,
        maximum: 64,
        description: '0 means one fewer than the CPU cores (at least 1), so a core stays free for token checks',
      }),
      max_queued_hashes: Type.Integer({ default: 64, minimum: 0, maximum: 10_000 }),
      max_hashes_per_client: Type.Integer({
        default: 0,
        minimum: 0,
        maximum: 10_000,
        description: 'hashes one client address (an IPv6 /64) may have waiting or running; 0 means an eighth of max_queued_hashes (at least 1)',
      }),
      min_length: Type.Integer({ default: 15, minimum: 8, maximum: 256 }),
      min_length_with_totp: Type.Integer({ default: 8, minimum: 8, maximum: 256, description: 'for accounts with TOTP enabled' }),
    }),
    auth: section({
      totp_issuer: Type.String({ default: 'MCIAS', minLength: 1, maxLength: 64, description: 'issuer shown in authenticator apps' }),
      require_totp_for_admins: Type.Boolean({
        default: false,
        description: "refuse logins by admin-role accounts without TOTP (the bootstrap admin's first login excepted)",
      }),
    }),
    // Failed-login throttling and lockout (SECURITY.md §9); docs/configuration.md argues each default.
    login_throttle: section({
      free_failures: Type.Integer({
        default: 5,
        minimum: 0,
        maximum: 1_000_000,
        description: 'failures an account (or an address) may have before each further attempt must wait',
      }),
      base_delay: Duration('1s', 'the wait after the first failure beyond free_failures; it doubles with each further one'),
      max_delay: Duration('1m', 'the longest wait between attempts before the lockout'),
      account_lockout_failures: Type.Integer({
        default: 100,
        minimum: 1,
        maximum: 100,
        description: 'consecutive failures that lock an account (NIST SP 800-63B: at most 100)',
      }),
      account_lockout: Duration('15m', 'how long a locked account stays locked after its last failure'),
      address_lockout_failures: Type.Integer({
        default: 30,
        minimum: 1,
        maximum: 1_000_000,
        description: 'failures from one client address (an IPv6 /64) that lock the address, for every account',
      }),
      address_lockout: Duration('1h', 'how long a locked address stays locked after its last failure'),
    }),
    // The general per-address request limit (SECURITY.md §46) and the bounded record of anonymous failures (§41).
    rate_limit: section({
      requests: Type.Integer({
        default: 3_000,
        minimum: 1,
        maximum: 100_000_000,
        description: 'requests one client address (an IPv6 /64) may make per window on this instance (/healthz and /readyz exempt)',
      }),
      window: Duration('1m', 'the window the request limit counts over'),
      summary_interval: Duration('1m', 'how often anonymous failures and 429 refusals are written to the audit trail, one row per address'),
      summary_max_addresses: Type.Integer({
        default: 1_000,
        minimum: 1,
        maximum: 100_000,
        description: 'addresses summarised separately per interval; the rest share one row',
      }),
    }),
    /**
     * Admin connections to the PostgreSQL servers that hold services' databases, one table per server:
     * `[pg_admin.NAME]` with `url` (postgres://, with the admin password) and an optional
     * `ca_file` for `sslmode=verify-full`. Used to rotate and provision services' login roles (docs/pgcreds.md).
     */
    pg_admin: Type.Record(
      Type.String(),
      Type.Object(
        {
          url: Type.String({ description: 'postgres://USER:PASSWORD@HOST:PORT/DATABASE?sslmode=...' }),
          ca_file: Type.Optional(Type.String({ description: 'CA bundle for sslmode=verify-full' })),
        },
        { additionalProperties: false },
      ),
      { default: {} },
    ),
    audit: section({
      retention: Type.String({
        default: 'forever',
        description: 'how long audit events are kept (a duration of at least 1d), or forever; older ones are pruned behind the chain anchor',
      }),
    }),
    metrics: section({
      listen: Type.String({
        default: '127.0.0.1:9464',
        description: 'HOST:PORT of the plain-HTTP GET /metrics listener, a loopback address only (SECURITY.md §48); off disables it',
      }),
    }),
    pgcreds: section({
      check_interval: Duration('1m', 'how often due PostgreSQL password rotations, and unfinished ones, are looked for'),
      lease: Duration('2m', "how long one instance may hold a service's rotation before another may take it over (after a crash)"),
    }),
    // The login page and its cookie (SECURITY.md §55), for forward-auth behind a reverse proxy (SECURITY.md §54).
    web: section({
      enabled: Type.Boolean({ default: false, description: 'serve the login page (GET/POST /login, POST /logout) and set the mcias_token cookie' }),
      cookie_domain: Type.String({
        default: '',
        description: 'Domain of the mcias_token cookie (example.home: one login serves *.example.home); empty: this host only',
      }),
      allowed_redirect_origins: Type.Array(Type.String(), {
        default: [],
        description: 'https origins (https://wiki.example.home) the login page and forward-auth may send a browser back to',
      }),
    }),
    log: section({
      level: Type.Union(
        ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)),
        { default: 'info' },
      ),
    }),
  },
  { additionalProperties: false },
);

export type ConfigFile = Static<typeof ConfigFileSchema>;
