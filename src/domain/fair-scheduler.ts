import { MciasError } from './errors.ts';

export interface FairSchedulerOptions {
  /** Tasks running at once. */
  readonly concurrency: number;
  /** Tasks waiting for a slot, over all keys; past this, new tasks are refused. */
  readonly maxQueued: number;
  /** Tasks one key may have waiting or running at once; past this, that key's new tasks are refused. */
  readonly maxPerKey: number;
}

/**
 * A bounded pool of task slots shared fairly between keys (client addresses: SECURITY.md §37). Each key may hold at
 * most `maxPerKey` tasks (waiting plus running), so one key can never fill the queue; and when a slot frees, the
 * next task comes from the next key in turn (round robin over the keys that have tasks waiting), so a task of a
 * newly arrived key waits behind at most one task of each other key, however many each of them has queued.
 * A refusal is a `rate_limited` error with a Retry-After and a reason (`hash_address_limit`, `hash_queue_full`), raised
 * before the task runs.
 */
export class FairScheduler {
  readonly #options: FairSchedulerOptions;
  /** Waiting tasks by key; Map order is the turn order (a key that was served moves to the back). */
  readonly #waiting = new Map<string, (() => void)[]>();
  /** Waiting plus running tasks by key; a key leaves the map when its count returns to zero. */
  readonly #held = new Map<string, number>();
  #queued = 0;
  #running = 0;

  constructor(options: FairSchedulerOptions) {
    if (options.concurrency < 1 || options.maxPerKey < 1 || options.maxQueued < 0) throw new RangeError('invalid scheduler limits');
    this.#options = options;
  }

  /** Tasks waiting for a slot, running, and keys holding any: for tests and metrics. */
  get stats(): { queued: number; running: number; keys: number } {
    return { queued: this.#queued, running: this.#running, keys: this.#held.size };
  }

  /** Runs `task` in a slot under `key`; refuses at once with `rate_limited` if the key or the queue is full. */
  run<T>(key: string, task: () => Promise<T>): Promise<T> {
    const held = this.#held.get(key) ?? 0;
    if (held >= this.#options.maxPerKey) {
      return Promise.reject(new MciasError('rate_limited', 'too many password checks from your address at once; try again shortly', { retryAfter: 1, reason: 'hash_address_limit' }));
    }
    const slotFree = this.#running < this.#options.concurrency;
    if (!slotFree && this.#queued >= this.#options.maxQueued) {
      return Promise.reject(new MciasError('rate_limited', 'the server is busy checking passwords; try again shortly', { retryAfter: 1, reason: 'hash_queue_full' }));
    }
    this.#held.set(key, held + 1);
    return new Promise<T>((resolve, reject) => {
      const start = () => {
        this.#running++;
        let result: Promise<T>;
        try {
          result = task();
        } catch (error) {
          result = Promise.reject(error);
        }
        result.then(resolve, reject).finally(() => this.#release(key));
      };
      if (slotFree) {
        start();
      } else {
        const queue = this.#waiting.get(key);
        if (queue === undefined) this.#waiting.set(key, [start]);
        else queue.push(start);
        this.#queued++;
      }
    });
  }

  #release(key: string): void {
    this.#running--;
    const held = (this.#held.get(key) ?? 1) - 1;
    if (held === 0) this.#held.delete(key);
    else this.#held.set(key, held);
    this.#next();
  }

  /** Called as a slot frees: starts the oldest waiting task of the key whose turn it is, and sends that key to the back of the turn order. */
  #next(): void {
    const first = this.#waiting.entries().next();
    if (first.done === true) return;
    const [key, queue] = first.value;
    const start = queue.shift() as () => void;
    this.#waiting.delete(key);
    if (queue.length > 0) this.#waiting.set(key, queue);
    this.#queued--;
    start();
  }
}
