import type { Command } from 'commander';
import { done, roleDetails, roleTable, show } from '../output.ts';
import { authenticated } from './connect.ts';

/** Roles (admin): role list, show, create, delete, grant, revoke. */
export function addRoleCommands(cli: Command): void {
  const role = cli.command('role').description('manage roles (admin)');

  role
    .command('list')
    .description('list roles and their permissions')
    .action(async (_o: unknown, command: Command) => {
      show(command, await authenticated(command).listRoles(), roleTable);
    });

  role
    .command('show')
    .description("show a role: its permissions and the accounts holding it")
    .argument('<name>')
    .action(async (name: string, _o: unknown, command: Command) => {
      show(command, await authenticated(command).getRole(name), roleDetails);
    });

  role
    .command('create')
    .description('create a role')
    .argument('<name>')
    .action(async (name: string, _o: unknown, command: Command) => {
      const created = await authenticated(command).createRole(name);
      done(command, `created role ${created.name}`, created);
    });

  role
    .command('delete')
    .description('delete a role (not admin); its grants go with it')
    .argument('<name>')
    .action(async (name: string, _o: unknown, command: Command) => {
      await authenticated(command).deleteRole(name);
      done(command, `deleted role ${name}`);
    });

  role
    .command('grant')
    .description('grant a role to an account')
    .argument('<role>')
    .argument('<username>')
    .action(async (name: string, username: string, _o: unknown, command: Command) => {
      await authenticated(command).grantRole(username, name);
      done(command, `granted role ${name} to ${username}`);
    });

  role
    .command('revoke')
    .description('revoke a role from an account')
    .argument('<role>')
    .argument('<username>')
    .action(async (name: string, username: string, _o: unknown, command: Command) => {
      await authenticated(command).revokeRole(username, name);
      done(command, `revoked role ${name} from ${username}`);
    });
}
