import type { Account, Role, TokenInfo } from '../../packages/client/src/index.ts';

/** A failure of mciasctl itself (not of the server): printed as `mciasctl: <message> (<code>)`. */
export class CliError extends Error {
  readonly code: string;

  constructor(message: string, code: string) {
    super(message);
    this.name = 'CliError';
    this.code = code;
  }
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export function printLines(...lines: string[]): void {
  process.stdout.write(lines.map((line) => `${line}\n`).join(''));
}

/** Columns padded to their widest cell; the last column is not padded. */
export function table(header: readonly string[] | undefined, rows: readonly (readonly string[])[]): string[] {
  const all = header === undefined ? rows : [header, ...rows];
  const columns = Math.max(0, ...all.map((row) => row.length));
  const widths = Array.from({ length: columns }, (_, i) => Math.max(...all.map((row) => (row[i] ?? '').length)));
  return all.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join('  ').trimEnd());
}

const list = (items: readonly string[]) => (items.length === 0 ? '-' : items.join(','));

export function accountTable(accounts: readonly Account[]): string[] {
  return table(
    ['USERNAME', 'KIND', 'STATUS', 'TOTP', 'CREATED', 'ROLES'],
    accounts.map((a) => [a.username, a.kind, a.status, a.totp_enabled ? 'yes' : 'no', a.created_at, list(a.roles)]),
  );
}

export function accountDetails(account: Account): string[] {
  return table(undefined, [
    ['username:', account.username],
    ['id:', account.id],
    ['kind:', account.kind],
    ['status:', account.status],
    ['roles:', list(account.roles)],
    ['totp:', account.totp_enabled ? 'enabled' : 'not enabled'],
    ...(account.password_change_required ? [['password:', 'temporary (to be changed at the next login)']] : []),
    ['created:', account.created_at],
  ]);
}

export function roleTable(roles: readonly Role[]): string[] {
  return table(
    ['NAME', 'PERMISSIONS'],
    roles.map((r) => [r.name, list(r.permissions.map((p) => `${p.resource}:${p.action}`))]),
  );
}

export function tokenTable(tokens: readonly TokenInfo[]): string[] {
  return table(
    ['JTI', 'KIND', 'ISSUED', 'EXPIRES', 'ISSUED BY'],
    tokens.map((t) => [t.jti, t.kind, t.issued_at, t.expires_at, t.issued_by ?? '-']),
  );
}
