import { X509Certificate } from 'node:crypto';
import { loadMasterKey } from '../config/files.ts';
import { readConfig } from '../config/load.ts';
import { readTlsMaterial } from '../http/tls.ts';
import { openDatabase } from '../store/database.ts';

/** Checks everything `serve` needs and reports every problem at once (an empty list means ready to serve). */
export async function checkConfig(file: string, env: Readonly<Record<string, string | undefined>>, now = Date.now()): Promise<string[]> {
  const { config, problems } = readConfig({ file, env });
  if (config === undefined) return problems;
  const found: string[] = [];
  const attempt = async (work: () => unknown) => {
    try {
      await work();
    } catch (error) {
      found.push((error as Error).message);
    }
  };
  await attempt(() => loadMasterKey(config));
  await attempt(() => {
    const { cert } = readTlsMaterial(config.tls);
    const certificate = new X509Certificate(cert as Buffer);
    if (Date.parse(certificate.validTo) < now) throw new Error(`TLS certificate ${config.tls.certFile} expired on ${certificate.validTo}`);
  });
  await attempt(async () => {
    const database = openDatabase(config.storage);
    try {
      await database.ping();
    } catch (error) {
      // Name the failure, not the connection string (it may hold a password).
      throw new Error(`storage: cannot reach the database: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    } finally {
      await database.close();
    }
  });
  return found;
}
