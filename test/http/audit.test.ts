import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { auditEvent } from '../../src/domain/audit.ts';
import { auditRows, lastAuditSeq } from '../support/audit.ts';
import { DIALECTS } from '../support/databases.ts';
import { ADMIN_PASSWORD, createHarness, type Harness } from '../support/harness.ts';
import { assertProblem } from '../support/inspect.ts';
import { nextCode, totpCode } from '../support/totp-codes.ts';

/**
 * SECURITY.md §30 and §31 over HTTP: a scripted session leaves exactly the audit rows it should, each also logged as
 * one structured line once committed, with no password, token, TOTP code or recovery code in either; GET /v1/audit
 * filters and pages the trail for administrators only.
 */

const P1 = 'first scenario passphrase, quite long';
const P2 = 'second scenario passphrase, longer still';
const P3 = 'third passphrase, set by the admin';
const AGENT = 'scenario-agent/1.0';

/** A pino logger writing into `lines`, one entry per line written. */
function capture(lines: string[]) {
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter((l) => l !== ''));
      done();
    },
  });
  return pino({ level: 'info' }, sink);
}

/** The audit lines among the captured ones, parsed. */
const auditLines = (lines: readonly string[]) =>
  lines.map((l) => JSON.parse(l) as { msg: string; audit?: Record<string, unknown> & { seq: number; hash: string } }).filter((l) => l.audit !== undefined);

/** A row or line without the fields that are all digits or hex (times, positions, hashes), where a 6-digit code could appear by chance. */
function searchable(value: Record<string, unknown>): string {
  const { seq: _s, occurred_at: _o, hash: _h, prev_hash: _p, time: _t, pid: _pid, ...rest } = value;
  return JSON.stringify(rest);
}

for (const dialect of DIALECTS) {
  describe(`the audit trail of a scripted session [${dialect}]`, () => {
    let h: Harness;
    const lines: string[] = [];
    const tokens: string[] = [];
    const codes: string[] = [];
    let recoveryCodes: string[] = [];
    let start = 0;
    let samToken = '';

    const call = async (method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', url: string, token?: string, body?: unknown, status?: number) => {
      const response = await h.request({ method, url, token, body, headers: { 'user-agent': AGENT } });
      if (status !== undefined) assert.equal(response.statusCode, status, `${method} ${url}: ${response.body}`);
      return response;
    };
    const tokenOf = (response: { json(): unknown }) => {
      const token = (response.json() as { token: string }).token;
      tokens.push(token);
      return token;
    };

    before(async () => {
      h = await createHarness(dialect, { logger: capture(lines) });
      tokens.push(h.adminToken);
      start = await lastAuditSeq(h);
      const admin = h.adminToken;
      await call('POST', '/v1/accounts', admin, { username: 'sam', kind: 'human', password: P1, temporary: false }, 201);
      await call('POST', '/v1/auth/login', undefined, { username: 'sam', password: `${P1}!` }, 401);
      let sam = tokenOf(await call('POST', '/v1/auth/login', undefined, { username: 'sam', password: P1 }, 200));
      await call('PUT', '/v1/me/password', sam, { current_password: P1, new_password: P2 }, 204);
      const { secret } = (await call('POST', '/v1/me/totp', sam, { password: P2 }, 200)).json() as { secret: string };
      codes.push(totpCode(secret, h.clock.now()));
      recoveryCodes = ((await call('POST', '/v1/me/totp/confirm', sam, { code: codes[0] }, 200)).json() as { recovery_codes: string[] }).recovery_codes;
      codes.push(nextCode(h, secret));
      sam = tokenOf(await call('POST', '/v1/auth/login', undefined, { username: 'sam', password: P2, totp_code: codes[1] }, 200));
      sam = tokenOf(await call('POST', '/v1/auth/login', undefined, { username: 'sam', password: P2, totp_code: recoveryCodes[0] }, 200));
      sam = tokenOf(await call('POST', '/v1/auth/renew', sam, undefined, 200));
      await call('POST', '/v1/roles', admin, { name: 'auditors' }, 201);
      await call('PUT', '/v1/accounts/sam/roles/auditors', admin, undefined, 204);
      samToken = sam;
      await call('POST', '/v1/token/validate', undefined, { token: `${tokens[1]!.slice(0, -6)}AAAAAA` }, 200);
      // A failed validation is counted, not a row of its own (SECURITY.md §41): its interval ends here.
      await h.runtime.services.summaries.flush();
      await call('POST', '/v1/auth/logout', sam, undefined, 204);
      await call('PUT', '/v1/accounts/sam/password', admin, { password: P3, temporary: false }, 204);
      await call('DELETE', '/v1/accounts/sam/totp', admin, undefined, 204);
      await call('PATCH', '/v1/accounts/sam', admin, { status: 'disabled' }, 200);
      await call('POST', '/v1/keys/rotate', admin, undefined, 200);
    });
    after(() => h.close());

    test('exactly the expected rows, in order, with who acted on whom', async () => {
      const rows = await auditRows(h, { after: start });
      const got = rows.map((r) => [r.type, r.outcome, r.actor_username, r.subject_username]);
      assert.deepEqual(got, [
        ['account_created', 'success', 'admin', 'sam'],
        ['login_failed', 'failure', null, 'sam'],
        ['login_succeeded', 'success', null, 'sam'],
        ['password_changed', 'success', 'sam', 'sam'],
        ['totp_enrollment_started', 'success', 'sam', 'sam'],
        ['totp_enabled', 'success', 'sam', 'sam'],
        ['login_succeeded', 'success', null, 'sam'],
        ['login_succeeded', 'success', null, 'sam'],
        ['token_renewed', 'success', 'sam', 'sam'],
        ['role_created', 'success', 'admin', null],
        ['role_granted', 'success', 'admin', 'sam'],
        ['failures_summarized', 'failure', null, null],
        ['token_revoked', 'success', 'sam', 'sam'],
        ['password_reset', 'success', 'admin', 'sam'],
        ['totp_reset', 'success', 'admin', 'sam'],
        ['account_status_changed', 'success', 'admin', 'sam'],
        ['signing_key_rotated', 'success', 'admin', null],
      ]);
      const failed = rows[1]!;
      assert.deepEqual([failed.details['reason'], failed.details['factor']], ['wrong_password', 'password']);
      const { address, total, interval_start: _s, interval_end: _e, ...counted } = rows[11]!.details;
      assert.deepEqual([address, total, Object.values(counted)], ['127.0.0.1', 1, [1]]);
      assert.match(Object.keys(counted)[0]!, /^token_validation_failed\./);
      const logins = rows.filter((r) => r.type.startsWith('login_'));
      for (const row of logins) {
        const raw = JSON.parse(row.raw) as { ip: string; user_agent: string };
        assert.deepEqual([raw.ip, raw.user_agent], ['127.0.0.1', AGENT], `${row.type} records the address and user agent`);
      }
      assert.deepEqual(logins.map((r) => r.details['factor']), ['password', 'password', 'password+totp', 'password+recovery_code']);
    });

    test('every committed row is logged once, as one JSON line with its seq and hash', async () => {
      const rows = await h.runtime.database.db.selectFrom('audit_events').select(['seq', 'hash', 'type']).where('seq', '>', start).orderBy('seq').execute();
      const logged = auditLines(lines).filter((l) => l.audit!.seq > start);
      assert.deepEqual(
        logged.map((l) => [l.audit!.seq, l.audit!.hash, l.audit!['type']]),
        rows.map((r) => [Number(r.seq), r.hash, r.type]),
      );
      assert.ok(logged.every((l) => l.msg === 'audit event'));
    });

    test('no row and no log line holds a password, token, TOTP code or recovery code the session used', async () => {
      const rows = await h.runtime.database.db.selectFrom('audit_events').selectAll().execute();
      const texts = [
        ...rows.map((r) => [`row ${r.seq}`, searchable(r as unknown as Record<string, unknown>)] as const),
        ...lines.map((l, i) => [`log line ${i}`, searchable(JSON.parse(l) as Record<string, unknown>)] as const),
      ];
      const needles = [ADMIN_PASSWORD, P1, P2, P3, ...tokens, ...tokens.map((t) => t.split('.')[2]!), ...recoveryCodes, ...recoveryCodes.map((c) => c.replaceAll('-', ''))];
      assert.ok(codes.length === 2 && recoveryCodes.length > 0);
      for (const [where, text] of texts) {
        for (const needle of needles) assert.ok(!text.includes(needle), `${where} holds a secret`);
        for (const code of codes) assert.doesNotMatch(text, new RegExp(`(?<![0-9])${code}(?![0-9])`), `${where} holds a TOTP code`);
        assert.doesNotMatch(text, /\$scrypt\$|eyJ[A-Za-z0-9_-]{10,}\./, `${where} holds a hash or a token`);
      }
    });

    test('an event whose transaction rolls back is neither stored nor logged', async () => {
      const before = [await lastAuditSeq(h), lines.length];
      await assert.rejects(
        h.runtime.database.store.transaction(async (tx) => {
          await tx.audit.insert(auditEvent({ at: h.clock.now(), type: 'role_created', details: { role: 'ghost' } }));
          throw new Error('changed my mind');
        }),
        /changed my mind/,
      );
      assert.deepEqual([await lastAuditSeq(h), lines.length], before);
    });

    test('control characters in user-supplied fields are escaped in the log line: CR/LF cannot split it or forge another', async () => {
      const forged = 'mallory\r\n{"level":30,"msg":"audit event","audit":{"type":"login_succeeded"}}';
      const count = lines.length;
      await h.runtime.database.store.audit.insert({
        ...auditEvent({ at: h.clock.now(), type: 'login_failed', outcome: 'failure', subject: { id: 'x', username: forged }, details: { username: forged, note: 'bell\u0007' } }),
        userAgent: 'agent\u0085next\u2028line\u001b[31m',
      });
      const added = lines.slice(count);
      assert.equal(added.length, 1, 'one event, one line');
      const entry = JSON.parse(added[0]!) as { audit: { subject: { username: string }; user_agent: string; details: Record<string, string> } };
      const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;
      for (const value of [entry.audit.subject.username, entry.audit.user_agent, ...Object.values(entry.audit.details)]) {
        assert.doesNotMatch(value, CONTROL, `${JSON.stringify(value)} keeps a control character`);
      }
      assert.equal(entry.audit.subject.username, 'mallory\\u{0d}\\u{0a}{"level":30,"msg":"audit event","audit":{"type":"login_succeeded"}}');
      assert.equal(entry.audit.user_agent, 'agent\\u{85}next\\u{2028}line\\u{1b}[31m');
      assert.equal(entry.audit.details['note'], 'bell\\u{07}');
      // The row keeps the value as it was (the hash covers it); only the log line is escaped.
      const row = await h.runtime.database.db.selectFrom('audit_events').select('subject_username').orderBy('seq', 'desc').limit(1).executeTakeFirstOrThrow();
      assert.equal(row.subject_username, forged);
    });

    test('a CR/LF username over HTTP is refused before anything is written', async () => {
      const count = [await lastAuditSeq(h), lines.length];
      assertProblem(await call('POST', '/v1/auth/login', undefined, { username: 'sam\r\nadmin', password: P3 }), { status: 400, code: 'invalid_request' });
      assert.deepEqual([await lastAuditSeq(h), lines.length], count);
    });

    test('GET /v1/audit is for administrators: anonymous 401, a person without admin 403', async () => {
      await call('PATCH', '/v1/accounts/sam', h.adminToken, { status: 'active' }, 200);
      const person = await h.login('sam', P3);
      assertProblem(await call('GET', '/v1/audit'), { status: 401, code: 'unauthenticated' });
      assertProblem(await call('GET', '/v1/audit', person), { status: 403, code: 'forbidden' });
      assert.ok(samToken.length > 0);
    });

    test('GET /v1/audit filters by type, outcome, account and time', async () => {
      const get = async (query: string) => {
        const response = await call('GET', `/v1/audit?${query}`, h.adminToken, undefined, 200);
        return response.json() as { events: { seq: number; type: string; outcome: string; actor: { username: string } | null; subject: { username: string; id: string } | null; occurred_at: string; ip: string | null; user_agent: string | null; details: Record<string, unknown>; hash: string }[]; next_cursor: string; more: boolean };
      };
      const failed = await get('type=login_failed&account=sam');
      assert.ok(failed.events.length >= 1);
      assert.ok(failed.events.every((e) => e.type === 'login_failed' && e.subject?.username === 'sam'));
      assert.deepEqual(failed.events[0]!.details, { reason: 'wrong_password', factor: 'password', username: 'sam' });
      assert.equal(failed.events[0]!.user_agent, AGENT);

      const byId = await get(`account=${failed.events[0]!.subject!.id}&type=login_failed`);
      assert.deepEqual(byId.events.map((e) => e.seq), failed.events.map((e) => e.seq));
      const asActor = await get('account=ADMIN&type=role_granted');
      assert.ok(asActor.events.length === 1 && asActor.events[0]!.actor?.username === 'admin', 'account matches the actor too, in any case');

      const failures = await get('outcome=failure&limit=1000');
      assert.ok(failures.events.length > 0 && failures.events.every((e) => e.outcome === 'failure'));

      const all = await get('limit=1000');
      const middle = all.events[Math.floor(all.events.length / 2)]!;
      const later = await get(`since=${encodeURIComponent(middle.occurred_at)}&limit=1000`);
      assert.ok(later.events.every((e) => e.occurred_at >= middle.occurred_at));
      const earlier = await get(`until=${encodeURIComponent(middle.occurred_at)}&limit=1000`);
      assert.ok(earlier.events.every((e) => e.occurred_at < middle.occurred_at));
      assert.equal(later.events.length + earlier.events.length, all.events.length, 'since and until split the trail without overlap');
    });

    test('paging by cursor repeats and skips nothing while new events arrive', async () => {
      const seen: number[] = [];
      let cursor: string | undefined;
      for (let page = 0; page < 100; page++) {
        const response = await call('GET', `/v1/audit?limit=3${cursor === undefined ? '' : `&cursor=${cursor}`}`, h.adminToken, undefined, 200);
        const body = response.json() as { events: { seq: number }[]; next_cursor: string; more: boolean };
        seen.push(...body.events.map((e) => e.seq));
        cursor = body.next_cursor;
        // New events between pages (each read is not one itself).
        if (page < 4) await call('POST', '/v1/auth/login', undefined, { username: 'sam', password: 'wrong on purpose, again' }, 401);
        if (!body.more && page >= 4) break;
      }
      const all = (await h.runtime.database.db.selectFrom('audit_events').select('seq').orderBy('seq').execute()).map((r) => Number(r.seq));
      assert.deepEqual(seen, all);
      const empty = (await call('GET', `/v1/audit?cursor=${cursor}`, h.adminToken, undefined, 200)).json() as { events: unknown[]; next_cursor: string; more: boolean };
      assert.deepEqual([empty.events, empty.next_cursor, empty.more], [[], cursor, false], 'an empty page keeps the cursor, for polling');
    });

    test('bad query parameters are 400 and change nothing', async () => {
      for (const query of ['limit=0', 'limit=1001', 'limit=ten', 'cursor=bm9wZQ', 'cursor=a!', 'type=made_up', 'outcome=maybe', 'since=yesterday', 'until=2026-13-45T99:00:00Z', 'colour=blue', 'type=login_failed&type=login_succeeded', 'since=2026-11-23T10:00:00Z&until=2026-11-23T09:00:00Z']) {
        assertProblem(await call('GET', `/v1/audit?${query}`, h.adminToken), { status: 400, code: 'invalid_request' });
      }
    });
  });
}
