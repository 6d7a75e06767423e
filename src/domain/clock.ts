/** Time is read at the edge and passed in, so the domain can be tested without sleeping. */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
}

/** Whole seconds since the epoch for a time in epoch milliseconds: a JWT NumericDate (RFC 7519 §2), rounded down. */
export function epochSeconds(ms: number): number {
  return Math.floor(ms / 1000);
}

export const systemClock: Clock = { now: () => Date.now() };

/** A clock tests can set and advance. */
export class ManualClock implements Clock {
  #now: number;
  constructor(start: number = Date.UTC(2026, 10, 23, 10, 0, 0)) {
    this.#now = start;
  }
  now(): number {
    return this.#now;
  }
  advance(ms: number): void {
    this.#now += ms;
  }
  set(ms: number): void {
    this.#now = ms;
  }
}
