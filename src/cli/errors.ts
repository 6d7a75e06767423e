/**
 * A failure of a CLI itself (a bad argument, an unreadable file), as opposed to one of the server: mciasctl prints it
 * as `mciasctl: <message> (<code>)` (src/cli/output.ts), mciassrv as `mciassrv: <message>`.
 */
export class CliError extends Error {
  readonly code: string;

  constructor(message: string, code: string) {
    super(message);
    this.name = 'CliError';
    this.code = code;
  }
}
