import { auditEvent } from './audit.ts';
import { addressKey } from './address.ts';
import type { Clock } from './clock.ts';
import type { Store } from './ports.ts';

export interface SummarySettings {
  /** How long an interval lasts; its rows are written when it ends (and at shutdown). */
  readonly intervalMs: number;
  /** Addresses counted separately per interval; every further one is counted in one "others" row. */
  readonly maxAddresses: number;
}

/** The address key of the row that counts every address beyond `maxAddresses` in an interval. */
const OTHERS = 'others';

/**
 * Bounded records of what strangers cause (SECURITY.md §41): failed token validations and 429 refusals are counted
 * in memory per instance, by client address (IPv6 by /64) and by what happened, and written as one
 * `failures_summarized` audit row per address when the interval ends. At most `maxAddresses + 1` rows per interval
 * and instance, whatever the traffic: an anonymous client can no longer add a row per request. Rows are appended,
 * never updated (the audit trail is append-only).
 */
export class FailureSummaries {
  readonly #store: Store;
  readonly #clock: Clock;
  readonly #settings: SummarySettings;
  readonly #onError: (error: unknown) => void;
  #current = new Map<string, Map<string, number>>();
  #startedAt: number;
  #timer: NodeJS.Timeout | undefined;
  #writing: Promise<void> = Promise.resolve();

  constructor(deps: { store: Store; clock: Clock; settings: SummarySettings; onError: (error: unknown) => void }) {
    this.#store = deps.store;
    this.#clock = deps.clock;
    this.#settings = deps.settings;
    this.#onError = deps.onError;
    this.#startedAt = this.#clock.now();
  }

  /** Counts one event (`what`: `token_validation_failed.expired`, `rate_limited./v1/auth/login`) for the address. */
  record(ip: string | null, what: string): void {
    let address = addressKey(ip);
    if (!this.#current.has(address) && this.#current.size >= this.#settings.maxAddresses) address = OTHERS;
    let counts = this.#current.get(address);
    if (counts === undefined) {
      counts = new Map();
      this.#current.set(address, counts);
    }
    counts.set(what, (counts.get(what) ?? 0) + 1);
  }

  /** Writes the current interval's rows every `intervalMs`; the timer does not keep the process alive. */
  start(): void {
    this.#timer ??= setInterval(() => void this.flush(), this.#settings.intervalMs).unref();
  }

  /** Ends the current interval: its rows are appended (one per address), and a new interval begins. */
  flush(): Promise<void> {
    const counts = this.#current;
    const startedAt = this.#startedAt;
    this.#current = new Map();
    this.#startedAt = this.#clock.now();
    if (counts.size === 0) return this.#writing;
    // One write at a time, in order, so a slow database never has two intervals' rows racing.
    this.#writing = this.#writing.then(() => this.#write(counts, startedAt, this.#startedAt)).catch(this.#onError);
    return this.#writing;
  }

  /** Stops the timer and writes what is counted: called at shutdown, before the database closes. */
  async close(): Promise<void> {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.flush();
  }

  async #write(counts: Map<string, Map<string, number>>, from: number, to: number): Promise<void> {
    // All rows of an interval in one transaction: appended together or not at all.
    await this.#store.transaction(async (tx) => {
      for (const [address, byWhat] of counts) {
        let total = 0;
        for (const n of byWhat.values()) total += n;
        await tx.audit.insert(
          auditEvent({
            at: to,
            type: 'failures_summarized',
            outcome: 'failure',
            details: { address, interval_start: from, interval_end: to, total, ...Object.fromEntries(byWhat) },
          }),
        );
      }
    });
  }
}
