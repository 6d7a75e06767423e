import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { TLS_KEY_FORBIDDEN_MODE, generateMasterKeyFile, readPrivateFile, writePrivateFile } from '../config/files.ts';
import { parse as parseToml } from 'smol-toml';
import { CONFIG_FILE_NAME, ConfigError, parseListen, resolveConfig } from '../config/load.ts';
import { createRuntime } from '../server.ts';
import { readPasswordFile } from './secret-file.ts';

/** Names a generated certificate covers, so both `localhost` and the loopback addresses verify. */
const DEFAULT_CERT_HOSTS = ['localhost', '127.0.0.1', '::1'];

export interface InitOptions {
  readonly dataDir: string;
  readonly adminUsername: string;
  readonly adminPasswordFile?: string | undefined;
  readonly listen: string;
  readonly storageUrl?: string | undefined;
  readonly certFile?: string | undefined;
  readonly keyFile?: string | undefined;
  readonly issuer?: string | undefined;
  readonly env?: Readonly<Record<string, string | undefined>>;
}

export interface InitResult {
  readonly configFile: string;
  readonly url: string;
  readonly adminUsername: string;
  /** Set only when the password was generated: the caller prints it once. It is temporary: the first login replaces it. */
  readonly generatedPassword: string | undefined;
  readonly caCertFile: string | undefined;
}

/**
 * Creates a data directory: config file, master key (0600), a self-signed certificate unless one is given, the
 * database, and the first administrator (SECURITY.md §11: no default accounts; the bootstrap is explicit).
 */
export async function initDataDir(options: InitOptions): Promise<InitResult> {
  const dataDir = path.resolve(options.dataDir);
  const configFile = path.join(dataDir, CONFIG_FILE_NAME);
  if (existsSync(configFile)) throw new Error(`${configFile} exists: this data directory is already initialised`);
  const listen = parseListen(options.listen);
  if (typeof listen === 'string') throw new Error(`--listen: ${listen}`);
  if ((options.certFile === undefined) !== (options.keyFile === undefined)) throw new Error('--cert and --key go together');
  const password = options.adminPasswordFile === undefined ? undefined : readPasswordFile(options.adminPasswordFile);

  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  // An existing directory (one a package manager made, say) is tightened too: it will hold the master key.
  chmodSync(dataDir, 0o700);
  let certFile = options.certFile && path.resolve(options.certFile);
  let keyFile = options.keyFile && path.resolve(options.keyFile);
  if (certFile === undefined || keyFile === undefined) {
    certFile = path.join(dataDir, 'tls', 'cert.pem');
    keyFile = path.join(dataDir, 'tls', 'key.pem');
  } else {
    readPrivateFile(keyFile, TLS_KEY_FORBIDDEN_MODE, 'TLS key file');
  }
  if (options.certFile === undefined && !existsSync(keyFile)) {
    const hosts = [...new Set([...DEFAULT_CERT_HOSTS, ...(listen.host === '0.0.0.0' || listen.host === '::' ? [] : [listen.host])])];
    // Loaded only here: the X.509 library and its polyfill are needed by init alone.
    const { generateSelfSignedCertificate } = await import('./certificate.ts');
    const { certPem, keyPem } = await generateSelfSignedCertificate(hosts);
    writePrivateFile(keyFile, keyPem);
    writeFileSync(certFile, certPem, { mode: 0o644 });
  }
  const masterKeyFile = path.join(dataDir, 'master.key');
  if (!existsSync(masterKeyFile) && (options.env ?? process.env)['MCIAS_MASTER_KEY'] === undefined) generateMasterKeyFile(masterKeyFile);

  const hostForUrl = listen.host === '0.0.0.0' || listen.host === '::' ? 'localhost' : listen.host.includes(':') ? `[${listen.host}]` : listen.host;
  const url = `https://${hostForUrl}:${listen.port}`;
  const text = configTemplate({
    listen: options.listen,
    issuer: options.issuer ?? url,
    storageUrl: options.storageUrl ?? 'sqlite:mcias.db',
    certFile: relativeTo(dataDir, certFile),
    keyFile: relativeTo(dataDir, keyFile),
  });
  const checked = resolveConfig(parseToml(text), { baseDir: dataDir, configFile, env: options.env ?? process.env });
  if (checked.config === undefined) throw new ConfigError(checked.problems);

  // The config file is written last, so a failed init (say, an unreachable database) can simply be run again.
  const runtime = await createRuntime(checked.config);
  try {
    const adminPassword = password ?? randomBytes(24).toString('base64url');
    // A generated password has been on a screen: it is temporary (SECURITY.md §39). The operator's own file is not.
    const admin = await runtime.services.accounts.bootstrapAdmin(options.adminUsername, adminPassword, { temporary: password === undefined });
    writePrivateFile(configFile, text);
    return {
      configFile,
      url,
      adminUsername: admin.username,
      generatedPassword: password === undefined ? adminPassword : undefined,
      caCertFile: options.certFile === undefined ? certFile : undefined,
    };
  } finally {
    await runtime.close();
  }
}

function relativeTo(dir: string, file: string): string {
  const relative = path.relative(dir, file);
  return relative.startsWith('..') ? file : relative;
}

function configTemplate(v: { listen: string; issuer: string; storageUrl: string; certFile: string; keyFile: string }): string {
  const q = (s: string) => JSON.stringify(s);
  return `# MCIAS configuration. Relative paths are relative to this file's folder.
# Every setting can be overridden by an environment variable: [tokens] user_ttl is MCIAS_TOKENS_USER_TTL,
# and MCIAS_<NAME>_FILE reads the value from a file. See docs/configuration.md.

# The master key that seals secrets in the database; keep it out of backups of the database.
master_key_file = "master.key"

[server]
listen = ${q(v.listen)}
# trusted_proxies = ["127.0.0.1"]

[tls]
cert_file = ${q(v.certFile)}
key_file = ${q(v.keyFile)}
min_version = "1.2"

[storage]
url = ${q(v.storageUrl)}

[tokens]
issuer = ${q(v.issuer)}
audience = "mcias"
user_ttl = "30d"
service_ttl = "30d"

[metrics]
# GET /metrics for Prometheus: plain HTTP, loopback addresses only; "off" for none.
# listen = "127.0.0.1:9464"
`;
}
