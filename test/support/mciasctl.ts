import assert from 'node:assert/strict';
import type { CommandResult } from './server-process.ts';

/** Exactly one line on stderr, in the `mciasctl: <message> (<code>)` form, and the expected non-zero exit. */
export function assertOneLineError(result: CommandResult, code: string, exitCode = 1): void {
  assert.equal(result.code, exitCode, result.stderr);
  assert.match(result.stderr, new RegExp(`^mciasctl: [^\\n]+ \\(${code}\\)\\n$`));
}

/** Success, and nothing on stderr. */
export function assertOk(result: CommandResult): void {
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stderr, '');
}
