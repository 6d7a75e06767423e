import { randomBytes } from 'node:crypto';
import { open, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { decodeJwt } from 'jose/jwt/decode';
import type { MciasClient } from './client.ts';
import { MciasClientError, isMciasApiError } from './errors.ts';

/** The keeper's time: injectable so that tests can jump to the renewal point. */
export interface KeeperClock {
  now(): number;
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const SYSTEM_CLOCK: KeeperClock = {
  now: () => Date.now(),
  setTimeout: (callback, ms) => setTimeout(callback, ms).unref(),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

export interface ServiceTokenKeeperOptions {
  /** A client of the server (its own token, if any, is not used). */
  readonly client: MciasClient;
  /** The token file (as `mciasctl token issue --out` writes it): one token, trailing whitespace ignored. */
  readonly file: string;
  /** Renew when this fraction of the token's life has passed; default 2/3. */
  readonly renewAt?: number;
  /** First retry delay after a failed renewal; doubles up to `maxRetryMs`. Default 1 s. */
  readonly minRetryMs?: number;
  /** Default 5 min. */
  readonly maxRetryMs?: number;
  readonly clock?: KeeperClock;
  /** Told of each failed renewal (the old token stays in use, and the keeper retries). */
  readonly onError?: (error: unknown) => void;
  /** Told of each renewal, with the new token. */
  readonly onRenew?: (token: string) => void;
}

/**
 * Keeps a service's token alive: loads it from a file, renews it (POST /v1/auth/renew) once two thirds of its life
 * have passed, and writes the new one back atomically (a 0600 temporary file in the same directory, then rename:
 * SECURITY.md §53), so a restart of the service finds the current token. When the server is unreachable (restarting,
 * say) the old token stays in use and the renewal is retried with exponential backoff; a token the server no longer
 * accepts sends the keeper back to the file, in case an operator has issued a new one.
 */
export class ServiceTokenKeeper {
  readonly #options: ServiceTokenKeeperOptions;
  readonly #clock: KeeperClock;
  #token: string | undefined;
  #timer: unknown;
  #retryMs: number;
  #running: Promise<void> = Promise.resolve();
  #stopped = false;

  constructor(options: ServiceTokenKeeperOptions) {
    const renewAt = options.renewAt ?? 2 / 3;
    if (!(renewAt > 0 && renewAt < 1)) throw new MciasClientError('invalid_argument', 'renewAt must be between 0 and 1');
    this.#options = options;
    this.#clock = options.clock ?? SYSTEM_CLOCK;
    this.#retryMs = options.minRetryMs ?? 1_000;
  }

  /** The current token. */
  get token(): string {
    if (this.#token === undefined) throw new MciasClientError('invalid_argument', 'the keeper has not been started');
    return this.#token;
  }

  /** A client that acts with the current token (take a new one after each renewal, or call this per use). */
  get client(): MciasClient {
    return this.#options.client.withToken(this.token);
  }

  /** Reads the token file and schedules its renewal (at once, if the renewal point has passed). */
  async start(): Promise<void> {
    this.#stopped = false;
    this.#token = await this.#readFile();
    this.#schedule(this.#renewalDelay(this.#token));
  }

  stop(): void {
    this.#stopped = true;
    this.#clock.clearTimeout(this.#timer);
  }

  /** Resolves when the renewal under way (if any) has finished. */
  settled(): Promise<void> {
    return this.#running;
  }

  #schedule(ms: number): void {
    if (this.#stopped) return;
    this.#clock.clearTimeout(this.#timer);
    this.#timer = this.#clock.setTimeout(() => {
      this.#running = this.#renew();
    }, Math.max(0, ms));
  }

  async #renew(): Promise<void> {
    const current = this.token;
    try {
      const { token } = await this.#options.client.withToken(current).renew();
      await writeTokenFile(this.#options.file, token);
      this.#token = token;
      this.#retryMs = this.#options.minRetryMs ?? 1_000;
      this.#options.onRenew?.(token);
      this.#schedule(this.#renewalDelay(token));
    } catch (error) {
      this.#options.onError?.(error);
      if (isMciasApiError(error, 'unauthenticated')) {
        // Revoked or expired: renewing it again cannot work. An operator may have written a new token to the file.
        const fromFile = await this.#readFile().catch(() => current);
        if (fromFile !== current) {
          this.#token = fromFile;
          this.#schedule(this.#renewalDelay(fromFile));
          return;
        }
      }
      this.#schedule(this.#retryMs);
      this.#retryMs = Math.min(this.#retryMs * 2, this.#options.maxRetryMs ?? 300_000);
    }
  }

  #renewalDelay(token: string): number {
    const { iat, exp } = decodeJwt(token);
    if (typeof iat !== 'number' || typeof exp !== 'number') throw new MciasClientError('invalid_argument', 'the token file does not hold an MCIAS token');
    const renewAt = this.#options.renewAt ?? 2 / 3;
    return (iat + (exp - iat) * renewAt) * 1000 - this.#clock.now();
  }

  async #readFile(): Promise<string> {
    const token = (await readFile(this.#options.file, 'utf8')).trim();
    if (token === '') throw new MciasClientError('invalid_argument', `${this.#options.file} holds no token`);
    return token;
  }
}

/**
 * Replaces `file` with `token` atomically: a new file created with mode 0600 (a umask can only narrow it) beside it,
 * written and flushed, then renamed over the old one, so a reader (or a crash) sees the old token or the new one, never a part, and never a readable one.
 */
export async function writeTokenFile(file: string, token: string): Promise<void> {
  const temporary = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const handle = await open(temporary, 'wx', 0o600);
  try {
    await handle.writeFile(`${token}\n`, 'utf8');
    await handle.sync();
  } catch (error) {
    await handle.close();
    await rm(temporary, { force: true });
    throw error;
  }
  await handle.close();
  try {
    await rename(temporary, file);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
}
