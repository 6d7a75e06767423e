import type { Command } from 'commander';
import { done } from '../output.ts';
import { authenticated } from './connect.ts';

/** Token signing keys (admin): keys rotate. */
export function addKeysCommands(cli: Command): void {
  cli
    .command('keys')
    .description('token signing keys (admin)')
    .command('rotate')
    .description('start signing with a new key; old keys keep verifying until their tokens expire')
    .action(async (_o: unknown, command: Command) => {
      const { kid } = await authenticated(command).rotateKeys();
      done(command, `new signing key ${kid}`, { kid });
    });
}
