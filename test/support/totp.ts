import { setTimeout as sleep } from 'node:timers/promises';
import { Secret, TOTP } from 'otpauth';

const PERIOD_MS = 30_000;
/** The previous step's code is used only while at least this much of the current step is left. */
const MARGIN_MS = 5_000;

/**
 * An authenticator app for tests, computing codes with `otpauth` from the secret the server handed out. The server
 * accepts codes of its current time step ±1 and each step at most once, later than the last one it accepted; so
 * every code handed out here is of a later step than the one before, taken as early as the ±1 window allows
 * (the previous step's code first), and if the next step is too far ahead it waits for the clock to catch up.
 * Both processes run on this machine, so they share the clock.
 */
export class Authenticator {
  readonly #totp: TOTP;
  #lastStep = Number.NEGATIVE_INFINITY;

  constructor(base32Secret: string) {
    this.#totp = new TOTP({ secret: Secret.fromBase32(base32Secret), algorithm: 'SHA1', digits: 6, period: PERIOD_MS / 1000 });
  }

  /** A code the server takes now (and for at least MARGIN_MS), of a step later than every code handed out before. */
  async next(): Promise<string> {
    let now = Date.now();
    let current = Math.floor(now / PERIOD_MS);
    let step = Math.max(this.#lastStep + 1, current - 1);
    if (step > current + 1) {
      // Wait until `step` is the server's next step, and a little more.
      await sleep((step - 1) * PERIOD_MS - now + 250);
      now = Date.now();
      current = Math.floor(now / PERIOD_MS);
    }
    // The previous step's code expires at the end of this step: not if that is too close.
    if (step === current - 1 && (current + 1) * PERIOD_MS - now < MARGIN_MS) step = current;
    this.#lastStep = step;
    return this.#totp.generate({ timestamp: step * PERIOD_MS });
  }

  /** A 6-digit code that is none of the codes the server would take now. */
  wrong(): string {
    const now = Date.now();
    const valid = new Set([-1, 0, 1].map((delta) => this.#totp.generate({ timestamp: now + delta * PERIOD_MS })));
    for (let n = 0; ; n += 1) {
      const candidate = String((123_456 + n * 7919) % 1_000_000).padStart(6, '0');
      if (!valid.has(candidate)) return candidate;
    }
  }
}
