import type { FailureCounter, FailureCounterStore } from '../domain/ports.ts';
import type { Executor } from './executor.ts';

/** Failed-login counters (SECURITY.md §9): one upsert per key, so concurrent failures on any instance all count. */
export class KyselyFailureCounterStore implements FailureCounterStore {
  readonly #db: Executor;
  constructor(db: Executor) {
    this.#db = db;
  }

  async read(keys: readonly string[]): Promise<Map<string, FailureCounter>> {
    if (keys.length === 0) return new Map();
    const rows = await this.#db.selectFrom('login_failures').selectAll().where('key', 'in', [...keys]).execute();
    return new Map(rows.map((r) => [r.key, { failures: Number(r.failures), lastFailureAt: Number(r.last_failure_at) }]));
  }

  async recordFailure(keys: readonly string[], now: number, forgetBefore: number): Promise<Map<string, FailureCounter>> {
    const counters = new Map<string, FailureCounter>();
    for (const key of keys) {
      const row = await this.#db
        .insertInto('login_failures')
        .values({ key, failures: 1, last_failure_at: now })
        .onConflict((oc) =>
          oc.column('key').doUpdateSet((eb) => ({
            failures: eb
              .case()
              .when('login_failures.last_failure_at', '<', forgetBefore)
              .then(1)
              .else(eb('login_failures.failures', '+', 1))
              .end(),
            // Two instances' clocks may differ by a little: the counter keeps the later time.
            last_failure_at: eb
              .case()
              .when('login_failures.last_failure_at', '<', now)
              .then(now)
              .else(eb.ref('login_failures.last_failure_at'))
              .end(),
          })),
        )
        .returning(['failures', 'last_failure_at'])
        .executeTakeFirstOrThrow();
      counters.set(key, { failures: Number(row.failures), lastFailureAt: Number(row.last_failure_at) });
    }
    return counters;
  }

  async reset(key: string): Promise<number> {
    const row = await this.#db.deleteFrom('login_failures').where('key', '=', key).returning('failures').executeTakeFirst();
    return row === undefined ? 0 : Number(row.failures);
  }

  async prune(before: number): Promise<number> {
    const result = await this.#db.deleteFrom('login_failures').where('last_failure_at', '<', before).executeTakeFirst();
    return Number(result.numDeletedRows);
  }
}
