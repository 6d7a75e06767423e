import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { MASTER_KEY_BYTES } from '../domain/sealing.ts';
import type { Config } from './load.ts';

/** Permission bits that must be clear on a private file: the master key admits no one else, a TLS key no world. */
const MASTER_KEY_FORBIDDEN_MODE = 0o077;
export const TLS_KEY_FORBIDDEN_MODE = 0o007;

/** Reads a secret file, refusing one that others can read. Messages name the file, never its content. */
export function readPrivateFile(file: string, forbiddenMode: number, what: string): Buffer {
  let mode: number;
  try {
    mode = statSync(file).mode;
  } catch (error) {
    throw new Error(`${what} ${file}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : 'cannot be read'}`);
  }
  if ((mode & forbiddenMode) !== 0) {
    throw new Error(
      `${what} ${file} has mode ${(mode & 0o777).toString(8).padStart(4, '0')}; refusing to use it: run chmod ${(0o777 & ~forbiddenMode & 0o600).toString(8).padStart(4, '0')} ${file}`,
    );
  }
  return readFileSync(file);
}

/** The master key from MCIAS_MASTER_KEY or the 0600 key file; the server refuses to start without it. */
export function loadMasterKey(config: Config): Buffer {
  return config.masterKey.inline === undefined ? readMasterKeyFile(config.masterKey.file) : decodeMasterKey(config.masterKey.inline);
}

/** A master key file: 0600 (no one else may read it), holding 32 bytes in base64. */
export function readMasterKeyFile(file: string): Buffer {
  const encoded = readPrivateFile(file, MASTER_KEY_FORBIDDEN_MODE, 'master key file').toString('utf8');
  try {
    return decodeMasterKey(encoded);
  } catch (error) {
    throw new Error(`master key file ${file}: ${(error as Error).message}`);
  }
}

function decodeMasterKey(encoded: string): Buffer {
  const key = Buffer.from(encoded.trim(), 'base64');
  if (key.length !== MASTER_KEY_BYTES || key.toString('base64') !== encoded.trim()) {
    throw new Error(`the master key must be ${MASTER_KEY_BYTES} bytes, base64-encoded`);
  }
  return key;
}

/** Writes a new random master key to a new 0600 file (never over an existing one). */
export function generateMasterKeyFile(file: string): void {
  writePrivateFile(file, `${randomBytes(MASTER_KEY_BYTES).toString('base64')}\n`);
}

/** Creates a file readable by its owner only; never overwrites. */
export function writePrivateFile(file: string, content: string | Uint8Array): void {
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  writeFileSync(file, content, { mode: 0o600, flag: 'wx' });
}
