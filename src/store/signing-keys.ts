import type { SigningKeyRecord } from '../domain/model.ts';
import type { KeyStore } from '../domain/ports.ts';
import type { Executor } from './executor.ts';

export class KyselyKeyStore implements KeyStore {
  readonly #db: Executor;
  constructor(db: Executor) {
    this.#db = db;
  }

  async list(): Promise<SigningKeyRecord[]> {
    const rows = await this.#db.selectFrom('signing_keys').selectAll().orderBy('created_at').execute();
    return rows.map((r) => ({
      kid: r.kid,
      algorithm: r.algorithm,
      publicJwk: r.public_jwk,
      privateKey: r.private_key,
      createdAt: r.created_at,
      retiredAt: r.retired_at,
    }));
  }

  async retireAll(now: number): Promise<string[]> {
    const rows = await this.#db.updateTable('signing_keys').set({ retired_at: now }).where('retired_at', 'is', null).returning('kid').execute();
    return rows.map((r) => r.kid);
  }

  async delete(kid: string): Promise<void> {
    await this.#db.deleteFrom('signing_keys').where('kid', '=', kid).execute();
  }

  async insert(k: SigningKeyRecord): Promise<void> {
    await this.#db
      .insertInto('signing_keys')
      .values({
        kid: k.kid,
        algorithm: k.algorithm,
        public_jwk: k.publicJwk,
        private_key: k.privateKey,
        created_at: k.createdAt,
        retired_at: k.retiredAt,
      })
      .execute();
  }
}
