import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { createRequire } from 'node:module';
import { MciasError, fail } from './errors.ts';
import { FairScheduler } from './fair-scheduler.ts';

/**
 * Password storage (SECURITY.md §1-§7): scrypt in PHC string form, NFKC-normalised input, never truncated.
 * Hashing runs on libuv's thread pool (async `crypto.scrypt`), and at most `maxConcurrent` hashes run at once so
 * memory stays bounded (128·N·r bytes each: 128 MiB at N=2^17) and the event loop stays free for token checks
 * (SECURITY.md §7). The slots are shared fairly between client addresses (SECURITY.md §37): every hash names the key
 * it runs for (`addressKey(ctx.ip)` for a request, an `internal:` key otherwise); see FairScheduler.
 */
export interface ScryptParams {
  readonly ln: number;
  readonly r: number;
  readonly p: number;
}

export const DEFAULT_SCRYPT: ScryptParams = { ln: 17, r: 8, p: 1 };
const SALT_BYTES = 16;
const HASH_BYTES = 32;
/** NIST SP 800-63B asks to allow at least 64; the cap only keeps absurd inputs out. */
const MAX_PASSWORD_LENGTH = 1024;

/** Work done without a request (the bootstrap administrator, the start-up dummy hash) runs under keys of its own. */
export const BOOTSTRAP_HASH_KEY = 'internal:bootstrap';
const WARM_UP_HASH_KEY = 'internal:warm-up';

const PHC = /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,3}),p=(\d{1,3})\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/;

interface ParsedHash {
  readonly params: ScryptParams;
  readonly salt: Buffer;
  readonly hash: Buffer;
}

/**
 * A stored hash shorter than this is refused as unparseable (so it verifies nothing): scrypt derives exactly the
 * stored length, and a hash of zero bytes (`$...$A`) would otherwise match every password.
 */
const MIN_STORED_HASH_BYTES = 16;

export function parsePhc(phc: string): ParsedHash | undefined {
  const m = PHC.exec(phc);
  if (!m) return undefined;
  const [, ln, r, p, salt, hash] = m as unknown as [string, string, string, string, string, string];
  const parsed = { params: { ln: Number(ln), r: Number(r), p: Number(p) }, salt: Buffer.from(salt, 'base64'), hash: Buffer.from(hash, 'base64') };
  return parsed.hash.length >= MIN_STORED_HASH_BYTES ? parsed : undefined;
}

function formatPhc({ params, salt, hash }: ParsedHash): string {
  const b64 = (b: Buffer) => b.toString('base64').replace(/=+$/, '');
  return `$scrypt$ln=${params.ln},r=${params.r},p=${params.p}$${b64(salt)}$${b64(hash)}`;
}

export function normalizePassword(password: string): string {
  return password.normalize('NFKC');
}

/** A password's length as every rule counts it (SECURITY.md §4): characters (code points) after NFKC, not UTF-16 units. */
export function passwordLength(password: string): number {
  return [...normalizePassword(password)].length;
}

export interface VerifyResult {
  readonly ok: boolean;
  /** The stored hash is weaker than the configured parameters: store a fresh one. */
  readonly needsRehash: boolean;
}

export interface HashLimits {
  /** Hashes computed at once. */
  readonly maxConcurrent: number;
  /** Hashes waiting for a slot, over all clients. */
  readonly maxQueued: number;
  /** Hashes one client address (IPv6: one /64) may have waiting or running at once. */
  readonly maxPerClient: number;
}

export class PasswordHasher {
  readonly params: ScryptParams;
  readonly #slots: FairScheduler;
  #dummy: Promise<string> | undefined;
  /** Hashes started or queued and not yet finished: close() waits for them. */
  readonly #inFlight = new Set<Promise<Buffer>>();
  #closed = false;

  constructor(params: ScryptParams, limits: HashLimits) {
    this.params = params;
    this.#slots = new FairScheduler({ concurrency: limits.maxConcurrent, maxQueued: limits.maxQueued, maxPerKey: limits.maxPerClient });
  }

  /**
   * Refuses new hashes and resolves once every hash already running or queued has finished, so the process never
   * exits, nor closes the database under a caller, while scrypt still runs on the thread pool.
   */
  async close(): Promise<void> {
    this.#closed = true;
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
  }

  /** Hashes waiting for a slot and hashes running now: read by the metrics on each scrape. */
  get load(): { readonly queued: number; readonly running: number } {
    const { queued, running } = this.#slots.stats;
    return { queued, running };
  }

  /** Computes the dummy hash up front, so the first unknown-user login costs what every other one does. */
  async warmUp(): Promise<void> {
    await this.#dummyHash();
  }

  /** `key` is whom the work is done for: `addressKey(ctx.ip)` in a request. */
  async hash(password: string, key: string): Promise<string> {
    const salt = randomBytes(SALT_BYTES);
    const hash = await this.#derive(password, salt, this.params, HASH_BYTES, key);
    return formatPhc({ params: this.params, salt, hash });
  }

  /** Verifies against a stored hash; with `undefined` (unknown user, system account) it does the same work and fails. */
  async verify(password: string, stored: string | null | undefined, key: string): Promise<VerifyResult> {
    const parsed = stored ? parsePhc(stored) : undefined;
    if (parsed === undefined) {
      await this.#verifyParsed(password, parsePhc(await this.#dummyHash()) as ParsedHash, key);
      return { ok: false, needsRehash: false };
    }
    const ok = await this.#verifyParsed(password, parsed, key);
    return { ok, needsRehash: ok && isWeaker(parsed.params, this.params) };
  }

  async #verifyParsed(password: string, parsed: ParsedHash, key: string): Promise<boolean> {
    const derived = await this.#derive(password, parsed.salt, parsed.params, parsed.hash.length, key);
    return derived.length === parsed.hash.length && timingSafeEqual(derived, parsed.hash);
  }

  /** A hash of a random password at the configured cost, so that failing for an unknown user costs the same. */
  #dummyHash(): Promise<string> {
    // A refused attempt (a full queue) is not kept: the next unknown-user login tries again.
    this.#dummy ??= this.hash(randomBytes(32).toString('base64'), WARM_UP_HASH_KEY).catch((error: unknown) => {
      this.#dummy = undefined;
      throw error;
    });
    return this.#dummy;
  }

  #derive(password: string, salt: Buffer, params: ScryptParams, length: number, key: string): Promise<Buffer> {
    if (this.#closed) throw new MciasError('rate_limited', 'the server is shutting down; try again shortly', { retryAfter: 1, reason: 'shutting_down' });
    const work = this.#compute(password, salt, params, length, key);
    this.#inFlight.add(work);
    const settled = () => this.#inFlight.delete(work);
    work.then(settled, settled);
    return work;
  }

  #compute(password: string, salt: Buffer, params: ScryptParams, length: number, key: string): Promise<Buffer> {
    const N = 2 ** params.ln;
    const options: ScryptOptions = { N, r: params.r, p: params.p, maxmem: 256 * N * params.r };
    const input = Buffer.from(normalizePassword(password), 'utf8');
    return this.#slots.run(
      key,
      () =>
        new Promise<Buffer>((resolve, reject) => {
          scrypt(input, salt, length, options, (error, derived) => (error ? reject(error) : resolve(derived)));
        }),
    );
  }
}

function isWeaker(stored: ScryptParams, wanted: ScryptParams): boolean {
  return stored.ln < wanted.ln || stored.r < wanted.r || stored.p < wanted.p;
}

let commonPasswords: Set<string> | undefined;

/**
 * The common-password list (@zxcvbn-ts/language-common), loaded the first time a new password is checked: its
 * dictionaries take about 15 MB that a server which only checks tokens and logins never needs.
 */
function loadCommonPasswords(): Set<string> {
  const { dictionary } = createRequire(import.meta.url)('@zxcvbn-ts/language-common') as typeof import('@zxcvbn-ts/language-common');
  return new Set(dictionary['passwords-common']);
}

/**
 * Rules for a new password (SECURITY.md §4, NIST SP 800-63B): a minimum length, no composition rules, not a
 * commonly used password, not built from the username. Each refusal carries a machine-readable reason.
 */
export function checkNewPassword(password: string, options: { username: string; minLength: number }): void {
  const normalized = normalizePassword(password);
  const length = passwordLength(password);
  if (length < options.minLength) {
    fail('invalid_request', `the password must have at least ${options.minLength} characters`, 'password_too_short');
  }
  if (length > MAX_PASSWORD_LENGTH) {
    fail('invalid_request', `the password must have at most ${MAX_PASSWORD_LENGTH} characters`, 'password_too_long');
  }
  const folded = normalized.toLowerCase();
  commonPasswords ??= loadCommonPasswords();
  if (commonPasswords.has(folded) || commonPasswords.has(folded.replace(/[\d\W_]+$/u, ''))) {
    fail('invalid_request', 'the password is on a list of commonly used passwords', 'password_common');
  }
  if (options.username.length >= 3 && folded.includes(options.username.toLowerCase())) {
    fail('invalid_request', 'the password must not contain the username', 'password_contains_username');
  }
}
