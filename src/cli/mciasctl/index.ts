import { Command, CommanderError, Option } from 'commander';
import { VERSION } from '../../version.ts';
import { printError, printUsageError } from '../output.ts';
import { addAccountCommands } from './account.ts';
import { addAuditCommands } from './audit.ts';
import { caCertInUse, closeClients } from './connect.ts';
import { addKeysCommands } from './keys.ts';
import { addPgCredentialsCommands } from './pgcreds.ts';
import { addPermissionCommands } from './permission.ts';
import { addPgRotationCommands } from './pgcreds-rotation.ts';
import { addRegistrationCommands } from './registration.ts';
import { addRoleCommands } from './role.ts';
import { addSessionCommands } from './session.ts';
import { addTokenCommands } from './token.ts';
import { addTotpCommands } from './totp.ts';

/**
 * The administrator's CLI, organised as `noun verb`, one module per noun (each adds its commands to the program). It
 * talks to the server only through the client SDK, so every test of it is also a test of the SDK. Nothing it prints
 * contains a password, nor a token or TOTP secret except where printing one is the point (`token issue` without
 * --out; `totp enroll` and `totp confirm`, which show the secret and the recovery codes once; `pgcreds get`, which
 * hands a service its database password). Codes and passwords
 * typed at its prompts are not echoed. Everything it prints goes through src/cli/output.ts.
 */
function program(): Command {
  const cli = new Command('mciasctl')
    .description('MCIAS administration: log in, then manage accounts, roles and tokens through the HTTPS API')
    .version(VERSION)
    .addOption(new Option('--server <url>', 'the server, https://host:port (default: the one you logged in to)').env('MCIAS_SERVER'))
    .addOption(new Option('--ca-cert <file>', "PEM certificate to trust for the server's TLS certificate").env('MCIAS_CA_CERT'))
    .option('--json', 'print machine-readable JSON on stdout (write commands print the changed object, or {})')
    .addHelpText('after', '\nThe token comes from MCIAS_TOKEN, else from the session file written by login.')
    .exitOverride()
    // Usage errors are one line, like every other error.
    .configureOutput({ outputError: printUsageError });

  addSessionCommands(cli);
  addTotpCommands(cli);
  addAccountCommands(cli);
  addRoleCommands(cli);
  addPermissionCommands(cli);
  addRegistrationCommands(cli);
  addTokenCommands(cli);
  addKeysCommands(cli);
  addPgRotationCommands(addPgCredentialsCommands(cli));
  addAuditCommands(cli);
  return cli;
}

/** One line on stderr, `mciasctl: <message> (<code>)`; exit 1, or 2 for a usage error. */
export async function main(argv: string[]): Promise<void> {
  try {
    await program().parseAsync(argv);
  } catch (error) {
    if (error instanceof CommanderError) {
      // Commander has printed help, the version, or its one-line usage error already.
      process.exitCode = error.exitCode === 0 ? 0 : 2;
      return;
    }
    process.exitCode = printError(error, { caCertFile: caCertInUse() });
  } finally {
    // Close the TLS connections, so the process ends because its work is done rather than by a cut.
    closeClients();
  }
}
