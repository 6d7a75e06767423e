import type { Permission } from '../domain/model.ts';
import type { PermissionStore } from '../domain/ports.ts';
import type { Executor } from './executor.ts';

/** `permissions` and `role_permissions` (migration 0001; deleting a permission or a role cascades to its grants). */
export class KyselyPermissionStore implements PermissionStore {
  readonly #db: Executor;
  constructor(db: Executor) {
    this.#db = db;
  }

  async list(): Promise<Permission[]> {
    return this.#select();
  }

  async find(id: string): Promise<Permission | undefined> {
    return (await this.#select(id))[0];
  }

  async insert(p: Permission): Promise<void> {
    await this.#db
      .insertInto('permissions')
      .values({ id: p.id, resource: p.resource, action: p.action, description: p.description, created_at: p.createdAt })
      .execute();
  }

  async delete(id: string): Promise<boolean> {
    const result = await this.#db.deleteFrom('permissions').where('id', '=', id).executeTakeFirst();
    return Number(result.numDeletedRows) > 0;
  }

  async grant(role: string, permissionId: string): Promise<boolean> {
    const result = await this.#db
      .insertInto('role_permissions')
      .values({ role_name: role, permission_id: permissionId })
      .onConflict((oc) => oc.columns(['role_name', 'permission_id']).doNothing())
      .executeTakeFirst();
    return Number(result.numInsertedOrUpdatedRows ?? 0n) > 0;
  }

  async revoke(role: string, permissionId: string): Promise<boolean> {
    const result = await this.#db
      .deleteFrom('role_permissions')
      .where('role_name', '=', role)
      .where('permission_id', '=', permissionId)
      .executeTakeFirst();
    return Number(result.numDeletedRows) > 0;
  }

  async #select(id?: string): Promise<Permission[]> {
    let query = this.#db
      .selectFrom('permissions')
      .leftJoin('role_permissions', 'role_permissions.permission_id', 'permissions.id')
      .select(['permissions.id', 'permissions.resource', 'permissions.action', 'permissions.description', 'permissions.created_at', 'role_permissions.role_name'])
      .orderBy('permissions.resource')
      .orderBy('permissions.action')
      .orderBy('role_permissions.role_name');
    if (id !== undefined) query = query.where('permissions.id', '=', id);
    const byId = new Map<string, Permission & { roles: string[] }>();
    for (const row of await query.execute()) {
      let permission = byId.get(row.id);
      if (permission === undefined) {
        permission = { id: row.id, resource: row.resource, action: row.action, description: row.description, createdAt: Number(row.created_at), roles: [] };
        byId.set(row.id, permission);
      }
      if (row.role_name !== null) permission.roles.push(row.role_name);
    }
    return [...byId.values()];
  }
}
