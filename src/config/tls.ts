import { readFileSync } from 'node:fs';
import type { SecureContextOptions, TlsOptions } from 'node:tls';
import { TLS_KEY_FORBIDDEN_MODE, readPrivateFile } from './files.ts';
import type { Config } from './load.ts';

/**
 * Mozilla server-side TLS, intermediate profile (SECURITY.md §26): TLS 1.2 with exactly the ECDHE AEAD suites,
 * TLS 1.3 with its standard suites, and the client's preference honoured (every suite on the list is strong).
 */
export const TLS12_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
] as const;
const TLS13_CIPHERS = ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256'] as const;

/** Reads the certificate and key, refusing a key file that everyone can read (SECURITY.md §28). */
function readTlsMaterial(tls: Config['tls']): SecureContextOptions {
  return { key: readTlsKey(tls), cert: readTlsCertificate(tls) };
}

export function readTlsKey(tls: Config['tls']): Buffer {
  return readPrivateFile(tls.keyFile, TLS_KEY_FORBIDDEN_MODE, 'TLS key file');
}

export function readTlsCertificate(tls: Config['tls']): Buffer {
  try {
    return readFileSync(tls.certFile);
  } catch (error) {
    throw new Error(`TLS certificate file ${tls.certFile}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : 'cannot be read'}`);
  }
}

export function tlsServerOptions(tls: Config['tls']): TlsOptions {
  return {
    ...readTlsMaterial(tls),
    minVersion: tls.minVersion,
    maxVersion: 'TLSv1.3',
    ciphers: [...TLS13_CIPHERS, ...TLS12_CIPHERS].join(':'),
    ecdhCurve: 'X25519:prime256v1:secp384r1',
    honorCipherOrder: false,
  };
}
