import { setTimeout as sleep } from 'node:timers/promises';
import { PERIOD_MS, stepOf, totpCode, wrongCode } from './totp-codes.ts';

/** The previous step's code is used only while at least this much of the current step is left. */
const MARGIN_MS = 5_000;

/**
 * An authenticator app for tests against a real server process, on the wall clock (totp-codes.ts is the one for the
 * harness's ManualClock). The server accepts codes of its current time step ±1 and each step at most once, later
 * than the last one it accepted; so every code handed out here is of a later step than the one before, taken as early
 * as the ±1 window allows (the previous step's code first), and if the next step is too far ahead it waits for the
 * clock to catch up. Both processes run on this machine, so they share the clock.
 */
export class Authenticator {
  readonly #secret: string;
  #lastStep = Number.NEGATIVE_INFINITY;

  constructor(base32Secret: string) {
    this.#secret = base32Secret;
  }

  /** A code the server takes now (and for at least MARGIN_MS), of a step later than every code handed out before. */
  async next(): Promise<string> {
    let now = Date.now();
    let current = stepOf(now);
    let step = Math.max(this.#lastStep + 1, current - 1);
    if (step > current + 1) {
      // Wait until `step` is the server's next step, and a little more.
      await sleep((step - 1) * PERIOD_MS - now + 250);
      now = Date.now();
      current = stepOf(now);
    }
    // The previous step's code expires at the end of this step: not if that is too close.
    if (step === current - 1 && (current + 1) * PERIOD_MS - now < MARGIN_MS) step = current;
    this.#lastStep = step;
    return totpCode(this.#secret, step * PERIOD_MS);
  }

  /** A 6-digit code that is none of the codes the server would take now. */
  wrong(): string {
    return wrongCode(this.#secret, Date.now());
  }
}
