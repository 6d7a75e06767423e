import { setTimeout as sleep } from 'node:timers/promises';
import { Option, type Command } from 'commander';
import type { AuditEvent, AuditFilter, MciasClient } from '@mcias/client';
import { parseDuration } from '../../config/duration.ts';
import { CliError } from '../errors.ts';
import { auditTable, printJsonLine, printLines, show, wantsJson } from '../output.ts';
import { authenticated } from './connect.ts';

/** The audit trail (admin): audit list (one page, filtered), audit tail [--follow] (everything since, then new events). */

interface FilterOptions {
  since?: string;
  until?: string;
  type?: string;
  account?: string;
  outcome?: 'success' | 'failure';
}

/** `--since 1h` is an hour ago; anything else is passed on as an RFC 3339 time for the server to check. */
function instant(text: string | undefined, now: number): string | undefined {
  if (text === undefined) return undefined;
  const ago = parseDuration(text);
  return ago === undefined ? text : new Date(now - ago).toISOString();
}

function filterOf(o: FilterOptions): AuditFilter {
  const now = Date.now();
  return { since: instant(o.since, now), until: instant(o.until, now), type: o.type, account: o.account, outcome: o.outcome };
}

function addFilterOptions(command: Command, sinceDefault?: string): Command {
  const since = new Option('--since <when>', 'events at or after this time: RFC 3339, or a duration ago (1h, 7d)');
  return command
    .addOption(sinceDefault === undefined ? since : since.default(sinceDefault))
    .option('--until <when>', 'events before this time: RFC 3339, or a duration ago')
    .option('--type <type>', 'one event type (login_failed, token_issued, ...)')
    .option('--account <account>', 'a username or account id, as actor or subject')
    .addOption(new Option('--outcome <outcome>', 'success or failure').choices(['success', 'failure']));
}

function positiveInteger(text: string): number {
  if (!/^\d{1,7}$/.test(text) || Number(text) < 1) throw new CliError(`"${text}" is not a positive whole number`, 'usage');
  return Number(text);
}

export function addAuditCommands(cli: Command): void {
  const audit = cli.command('audit').description('read the audit trail (admin)');

  addFilterOptions(audit.command('list').description('one page of audit events, oldest first; --cursor for the next page'))
    .option('--limit <n>', 'events per page, 1 to 1000', positiveInteger, 100)
    .option('--cursor <cursor>', 'the next_cursor printed with the previous page')
    .action(async (o: FilterOptions & { limit: number; cursor?: string }, command: Command) => {
      const page = await authenticated(command).listAudit({ ...filterOf(o), limit: o.limit, cursor: o.cursor });
      show(command, page, (p) => [...auditTable(p.events), ...(p.more ? [`more events: --cursor ${p.next_cursor}`] : [])]);
    });

  addFilterOptions(audit.command('tail').description('audit events since --since (default 10m); with --follow, new ones as they happen'), '10m')
    .option('--follow', 'keep polling for new events until interrupted (Ctrl-C)')
    .option('--interval <seconds>', 'seconds between polls with --follow', positiveInteger, 2)
    .action(async (o: FilterOptions & { follow?: boolean; interval: number }, command: Command) => {
      await tail(authenticated(command), filterOf(o), { follow: o.follow === true, intervalMs: o.interval * 1000, json: wantsJson(command) });
    });
}

/**
 * Prints every event matching the filter, page after page, then (following) polls with the cursor; SIGINT or SIGTERM
 * ends the wait and the command returns normally, exit code 0. With --json, one event object per line.
 */
async function tail(client: MciasClient, filter: AuditFilter, options: { follow: boolean; intervalMs: number; json: boolean }): Promise<void> {
  const stop = new AbortController();
  const interrupt = () => stop.abort();
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);
  const print = (events: readonly AuditEvent[]) => {
    if (options.json) for (const event of events) printJsonLine(event);
    else if (events.length > 0) printLines(...auditTable(events, { header: false }));
  };
  try {
    let cursor: string | undefined;
    while (!stop.signal.aborted) {
      const page = await client.listAudit({ ...filter, limit: 1000, cursor });
      print(page.events);
      cursor = page.next_cursor;
      if (page.more) continue;
      if (!options.follow) return;
      await sleep(options.intervalMs, undefined, { signal: stop.signal }).catch(() => {});
    }
  } finally {
    process.removeListener('SIGINT', interrupt);
    process.removeListener('SIGTERM', interrupt);
  }
}
