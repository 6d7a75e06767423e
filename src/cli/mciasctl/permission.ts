import type { Command } from 'commander';
import type { MciasClient, PermissionDefinition } from '@mcias/client';
import { CliError } from '../errors.ts';
import { done, permissionTable, show } from '../output.ts';
import { authenticated } from './connect.ts';

/** Permissions (admin): permission create, list, delete, grant, revoke; each named by its resource and action. */

/** The permission with this resource and action (the API names permissions by id; people name them by the pair). */
async function find(client: MciasClient, resource: string, action: string): Promise<PermissionDefinition> {
  const found = (await client.listPermissions()).find((p) => p.resource === resource && p.action === action);
  if (found === undefined) throw new CliError(`no permission ${resource}:${action}`, 'not_found');
  return found;
}

export function addPermissionCommands(cli: Command): void {
  const permission = cli.command('permission').description('manage permissions: (resource, action) pairs attached to roles (admin)');

  permission
    .command('create')
    .description('create a permission; * as the resource or the action matches every one')
    .argument('<resource>')
    .argument('<action>')
    .requiredOption('--description <text>', 'what the permission allows')
    .action(async (resource: string, action: string, o: { description: string }, command: Command) => {
      const created = await authenticated(command).createPermission({ resource, action, description: o.description });
      done(command, `created permission ${created.resource}:${created.action}`, created);
    });

  permission
    .command('list')
    .description('list permissions and the roles holding each')
    .action(async (_o: unknown, command: Command) => {
      show(command, await authenticated(command).listPermissions(), permissionTable);
    });

  permission
    .command('delete')
    .description('delete a permission; every role loses it')
    .argument('<resource>')
    .argument('<action>')
    .action(async (resource: string, action: string, _o: unknown, command: Command) => {
      const client = authenticated(command);
      await client.deletePermission((await find(client, resource, action)).id);
      done(command, `deleted permission ${resource}:${action}`);
    });

  permission
    .command('grant')
    .description('attach a permission to a role')
    .argument('<role>')
    .argument('<resource>')
    .argument('<action>')
    .action(async (role: string, resource: string, action: string, _o: unknown, command: Command) => {
      const client = authenticated(command);
      await client.grantPermission(role, (await find(client, resource, action)).id);
      done(command, `granted ${resource}:${action} to role ${role}`);
    });

  permission
    .command('revoke')
    .description('detach a permission from a role')
    .argument('<role>')
    .argument('<resource>')
    .argument('<action>')
    .action(async (role: string, resource: string, action: string, _o: unknown, command: Command) => {
      const client = authenticated(command);
      await client.revokePermission(role, (await find(client, resource, action)).id);
      done(command, `revoked ${resource}:${action} from role ${role}`);
    });
}
