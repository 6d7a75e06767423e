import type { Role } from '../domain/model.ts';
import type { RoleStore } from '../domain/ports.ts';
import type { Executor } from './executor.ts';

export class KyselyRoleStore implements RoleStore {
  readonly #db: Executor;
  constructor(db: Executor) {
    this.#db = db;
  }

  async list(): Promise<Role[]> {
    const rows = await this.#db
      .selectFrom('roles')
      .leftJoin('role_permissions', 'role_permissions.role_name', 'roles.name')
      .leftJoin('permissions', 'permissions.id', 'role_permissions.permission_id')
      .select(['roles.name', 'permissions.id', 'permissions.resource', 'permissions.action'])
      .orderBy('roles.name')
      .orderBy('permissions.resource')
      .orderBy('permissions.action')
      .execute();
    const roles = new Map<string, Role['permissions'][number][]>();
    for (const row of rows) {
      const permissions = roles.get(row.name) ?? [];
      if (row.id !== null && row.resource !== null && row.action !== null) {
        permissions.push({ id: row.id, resource: row.resource, action: row.action });
      }
      roles.set(row.name, permissions);
    }
    return [...roles].map(([name, permissions]) => ({ name, permissions }));
  }

  async exists(name: string): Promise<boolean> {
    return (await this.#db.selectFrom('roles').select('name').where('name', '=', name).executeTakeFirst()) !== undefined;
  }

  async insert(name: string, now: number): Promise<void> {
    await this.#db.insertInto('roles').values({ name, created_at: now }).execute();
  }

  async delete(name: string): Promise<void> {
    await this.#db.deleteFrom('roles').where('name', '=', name).execute();
  }

  async rolesOf(accountIds: readonly string[]): Promise<Map<string, string[]>> {
    const result = new Map<string, string[]>(accountIds.map((id) => [id, []]));
    if (accountIds.length === 0) return result;
    const rows = await this.#db
      .selectFrom('account_roles')
      .select(['account_id', 'role_name'])
      .where('account_id', 'in', accountIds)
      .orderBy('role_name')
      .execute();
    for (const row of rows) result.get(row.account_id)?.push(row.role_name);
    return result;
  }

  async grant(accountId: string, role: string, now: number): Promise<void> {
    await this.#db
      .insertInto('account_roles')
      .values({ account_id: accountId, role_name: role, granted_at: now })
      .onConflict((oc) => oc.columns(['account_id', 'role_name']).doNothing())
      .execute();
  }

  async revoke(accountId: string, role: string): Promise<boolean> {
    const result = await this.#db
      .deleteFrom('account_roles')
      .where('account_id', '=', accountId)
      .where('role_name', '=', role)
      .executeTakeFirst();
    return Number(result.numDeletedRows) > 0;
  }

  async holders(role: string): Promise<string[]> {
    const rows = await this.#db
      .selectFrom('account_roles')
      .innerJoin('accounts', 'accounts.id', 'account_roles.account_id')
      .select('accounts.username')
      .where('account_roles.role_name', '=', role)
      .orderBy('accounts.username')
      .execute();
    return rows.map((row) => row.username);
  }
}
