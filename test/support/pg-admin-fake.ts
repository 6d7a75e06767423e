import { MciasError } from '../../src/domain/errors.ts';
import type { PgAdmin, PgTarget } from '../../src/domain/ports.ts';

/** A stand-in for the PostgresAdmin adapter (src/pgadmin), for tests of what drives it; the adapter has its own tests. */

export type ScriptedFailure = { reason: string; applied: boolean; code?: 'upstream_failed' | 'conflict' };

/**
 * A PostgreSQL server's logins and passwords, with failures scripted per call: `applied` says whether the change
 * happened before the error (an unknown outcome that did run). With `anyRole`, a login it has not seen exists.
 */
export class FakePgAdmin implements PgAdmin {
  readonly roles = new Map<string, string | null>();
  readonly #anyRole: boolean;
  constructor(options: { anyRole?: boolean } = {}) {
    this.#anyRole = options.anyRole ?? false;
  }
  readonly groups = new Set<string>();
  readonly calls: string[] = [];
  readonly failures: ScriptedFailure[] = [];
  delayMs = 0;

  async setPassword(_target: PgTarget, login: string, password: string): Promise<void> {
    this.calls.push(`setPassword ${login}`);
    if (this.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.delayMs));
    const failure = this.failures.shift();
    if (failure !== undefined && !failure.applied) throw failureError(failure);
    if (!this.roles.has(login) && !this.#anyRole) throw new MciasError('upstream_failed', `role ${login} does not exist`, { reason: 'pg_role_missing' });
    this.roles.set(login, password);
    if (failure !== undefined) throw failureError(failure);
  }

  async provision(_target: PgTarget, plan: Parameters<PgAdmin['provision']>[1]): Promise<{ created: string[] }> {
    this.calls.push('provision');
    const failure = this.failures.shift();
    if (failure !== undefined) throw failureError(failure);
    const created: string[] = [];
    if (plan.group !== null && !this.groups.has(plan.group)) {
      this.groups.add(plan.group);
      created.push(plan.group);
    }
    for (const { login, password } of plan.logins) {
      if (this.roles.has(login)) continue;
      this.roles.set(login, password);
      created.push(login);
    }
    return { created };
  }

  async canLogin(_target: PgTarget, login: { login: string; password: string }): Promise<boolean> {
    return this.roles.get(login.login) === login.password;
  }
}

function failureError(failure: ScriptedFailure): MciasError {
  if (failure.code === 'conflict') return new MciasError('conflict', 'no admin connection for this server', { reason: failure.reason });
  return new MciasError('upstream_failed', `scripted: ${failure.reason}`, { reason: failure.reason });
}
