import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { MciasClient } from '@mcias/client';
import { USER_PASSWORD } from '../support/harness.ts';
import { assertOneLineError, ctl, inTerminal, needsTerminal, useMciasctlFixture } from '../support/mciasctl.ts';

describe('mciasctl against a real mciassrv', () => {
  const fx = useMciasctlFixture();
  const { freshEnv, loggedIn, sessionPath, storedToken, fileWith } = fx;
  let otherCaFile: string;

  before(() => {
    otherCaFile = path.join(fx.scratch, 'other-ca.pem');
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=127.0.0.1',
      '-keyout', path.join(fx.scratch, 'other-ca.key'), '-out', otherCaFile, '-days', '1',
    ], { stdio: 'ignore' });
  });

  test('login --password-file keeps the token in a 0600 file in a 0700 directory, and never the password', async () => {
    const env = freshEnv();
    const result = await ctl(env, 'login', '--username', 'admin', '--password-file', fx.adminPasswordFile);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, 'logged in as admin\n');
    assert.equal(result.stderr, '');

    assert.equal(statSync(env['MCIAS_CONFIG_DIR'] as string).mode & 0o777, 0o700);
    assert.equal(statSync(sessionPath(env)).mode & 0o777, 0o600);
    const text = readFileSync(sessionPath(env), 'utf8');
    const session = JSON.parse(text) as Record<string, unknown>;
    assert.equal(session['server'], fx.server.url);
    assert.equal(session['caCert'], path.resolve(fx.server.caCertFile));
    assert.equal(session['username'], 'admin');
    assert.match(String(session['token']), /^[\w-]+\.[\w-]+\.[\w-]+$/);
    assert.ok(!text.includes(fx.server.adminPassword));
    assert.ok(!`${result.stdout}${result.stderr}`.includes(String(session['token'])));
  });

  test('after login, the stored server and CA certificate are used without --server or --ca-cert', async () => {
    const env = await loggedIn();
    const result = await ctl({ ...env, MCIAS_SERVER: '', MCIAS_CA_CERT: '' }, 'whoami');
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, 'admin (human, active; roles: admin)\n');
  });

  test('whoami, and --json on every read command prints JSON', async () => {
    const env = await loggedIn();
    const me = JSON.parse((await ctl(env, 'whoami', '--json')).stdout) as { username: string; roles: string[] };
    assert.equal(me.username, 'admin');
    assert.deepEqual(me.roles, ['admin']);
    const accounts = JSON.parse((await ctl(env, '--json', 'account', 'list')).stdout) as { username: string }[];
    assert.ok(accounts.some((a) => a.username === 'admin'));
    const shown = JSON.parse((await ctl(env, 'account', 'show', 'admin', '--json')).stdout) as { username: string; kind: string };
    assert.deepEqual([shown.username, shown.kind], ['admin', 'human']);
    const roles = JSON.parse((await ctl(env, 'role', 'list', '--json')).stdout) as { name: string }[];
    assert.ok(roles.some((r) => r.name === 'admin'));
  });

  test('account create, list, show, disable, enable, set-password and delete', async () => {
    const env = await loggedIn();
    let result = await ctl(env, 'account', 'create', 'alice', '--password-file', fx.userPasswordFile, '--no-temporary');
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, 'created human account alice\n');
    result = await ctl(env, 'account', 'create', 'backup-bot', '--system');
    assert.equal(result.stdout, 'created system account backup-bot\n');

    const accounts = JSON.parse((await ctl(env, 'account', 'list', '--json')).stdout) as { username: string; kind: string; status: string }[];
    assert.deepEqual(
      accounts.filter((a) => a.username !== 'admin' && ['alice', 'backup-bot'].includes(a.username)).map((a) => `${a.username}:${a.kind}:${a.status}`).sort(),
      ['alice:human:active', 'backup-bot:system:active'],
    );
    const table = (await ctl(env, 'account', 'list')).stdout.split('\n');
    assert.match(table[0] ?? '', /^USERNAME\s+KIND\s+STATUS/);
    assert.ok(table.some((line) => /^alice\s+human\s+active\b/.test(line)));

    result = await ctl(env, 'account', 'show', 'alice');
    assert.match(result.stdout, /^username:\s+alice$/m);
    assert.match(result.stdout, /^status:\s+active$/m);

    assert.equal((await ctl(env, 'account', 'disable', 'alice')).stdout, 'disabled account alice\n');
    assert.match((await ctl(env, 'account', 'show', 'alice')).stdout, /^status:\s+disabled$/m);
    assertOneLineError(await ctl(freshEnv(), 'login', '--username', 'alice', '--password-file', fx.userPasswordFile), 'invalid_credentials');
    assert.equal((await ctl(env, 'account', 'enable', 'alice')).stdout, 'enabled account alice\n');
    assert.equal((await ctl(freshEnv(), 'login', '--username', 'alice', '--password-file', fx.userPasswordFile)).code, 0);

    const newPasswordFile = path.join(fx.scratch, 'alice-new-password');
    writeFileSync(newPasswordFile, 'another long password for the test\n', { mode: 0o600 });
    result = await ctl(env, 'account', 'set-password', 'alice', '--password-file', newPasswordFile, '--no-temporary');
    assert.equal(result.code, 0, result.stderr);
    assertOneLineError(await ctl(freshEnv(), 'login', '--username', 'alice', '--password-file', fx.userPasswordFile), 'invalid_credentials');
    assert.equal((await ctl(freshEnv(), 'login', '--username', 'alice', '--password-file', newPasswordFile)).stdout, 'logged in as alice\n');

    assert.equal((await ctl(env, 'account', 'delete', 'alice')).stdout, 'deleted account alice\n');
    assertOneLineError(await ctl(env, 'account', 'show', 'alice'), 'not_found');
    assertOneLineError(await ctl(env, 'account', 'create', 'backup-bot', '--system'), 'conflict');
  });

  test('role create, grant, revoke, list and delete', async () => {
    const env = await loggedIn();
    await ctl(env, 'account', 'create', 'bob', '--password-file', fx.userPasswordFile);
    assert.equal((await ctl(env, 'role', 'create', 'wiki')).stdout, 'created role wiki\n');
    assert.equal((await ctl(env, 'role', 'grant', 'wiki', 'bob')).stdout, 'granted role wiki to bob\n');
    assert.match((await ctl(env, 'account', 'show', 'bob')).stdout, /^roles:\s+wiki$/m);
    const list = (await ctl(env, 'role', 'list')).stdout;
    assert.match(list, /^NAME\s+PERMISSIONS$/m);
    assert.match(list, /^wiki\s+-$/m);
    assert.equal((await ctl(env, 'role', 'revoke', 'wiki', 'bob')).stdout, 'revoked role wiki from bob\n');
    assert.match((await ctl(env, 'account', 'show', 'bob')).stdout, /^roles:\s+-$/m);
    assert.equal((await ctl(env, 'role', 'delete', 'wiki')).stdout, 'deleted role wiki\n');
    const roles = JSON.parse((await ctl(env, 'role', 'list', '--json')).stdout) as { name: string }[];
    assert.ok(!roles.some((r) => r.name === 'wiki'));
    assertOneLineError(await ctl(env, 'role', 'grant', 'nosuchrole', 'bob'), 'not_found');
    assertOneLineError(await ctl(env, 'role', 'delete', 'admin'), 'conflict');
  });

  test('password changes your own password; the session stays logged in', async () => {
    const env = await loggedIn();
    await ctl(env, 'account', 'create', 'erin', '--password-file', fx.userPasswordFile, '--no-temporary');
    const erin = await loggedIn('erin', fx.userPasswordFile);
    assert.equal((await ctl(erin, 'whoami')).stdout, 'erin (human, active; roles: -)\n');
    const next = fileWith('a brand new long password for her');
    assertOneLineError(await ctl(erin, 'password', '--current-password-file', next, '--password-file', next), 'invalid_credentials');
    const result = await ctl(erin, 'password', '--current-password-file', fx.userPasswordFile, '--password-file', next);
    assert.equal(result.code, 0, result.stderr);
    assert.equal((await ctl(erin, 'whoami')).code, 0);
    assertOneLineError(await ctl(freshEnv(), 'login', '--username', 'erin', '--password-file', fx.userPasswordFile), 'invalid_credentials');
    assert.equal((await ctl(freshEnv(), 'login', '--username', 'erin', '--password-file', next)).code, 0);
  });

  test('a temporary password: account create and set-password make one; login replaces it with --new-password-file', async () => {
    const env = await loggedIn();
    let result = await ctl(env, 'account', 'create', 'tom', '--password-file', fx.userPasswordFile);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, 'created human account tom (the password is temporary: they choose their own at their first login)\n');
    assert.match((await ctl(env, 'account', 'show', 'tom')).stdout, /^password:\s+temporary/m);

    // A script without --new-password-file: one clear line, and a session that can only change the password.
    const tom = freshEnv();
    result = await ctl(tom, 'login', '--username', 'tom', '--password-file', fx.userPasswordFile);
    assertOneLineError(result, 'usage', 2);
    assert.match(result.stderr, /temporary.*--new-password-file/);
    assert.equal((await ctl(tom, 'whoami')).stdout, "tom (human, active; roles: -; the password is temporary: run 'mciasctl password')\n");
    assertOneLineError(await ctl(tom, 'token', 'list', 'tom'), 'password_change_required');

    const mine = fileWith('the password he chose for himself');
    result = await ctl(freshEnv(), 'login', '--username', 'tom', '--password-file', fx.userPasswordFile, '--new-password-file', fx.userPasswordFile);
    assertOneLineError(result, 'invalid_request');
    assert.match(result.stderr, /mciasctl password/);
    const fresh = freshEnv();
    result = await ctl(fresh, '--json', 'login', '--username', 'tom', '--password-file', fx.userPasswordFile, '--new-password-file', mine);
    assert.equal(result.code, 0, result.stderr);
    const printed = JSON.parse(result.stdout) as { account: { password_change_required: boolean }; password_changed?: boolean };
    assert.equal(printed.password_changed, true);
    assert.equal(printed.account.password_change_required, false);
    // The stored session is a full one now.
    assert.equal((await ctl(fresh, 'whoami')).stdout, 'tom (human, active; roles: -)\n');
    assertOneLineError(await ctl(freshEnv(), 'login', '--username', 'tom', '--password-file', fx.userPasswordFile), 'invalid_credentials');
    assert.equal((await ctl(freshEnv(), 'login', '--username', 'tom', '--password-file', mine)).stdout, 'logged in as tom\n');

    // An administrator's set-password is temporary again.
    result = await ctl(env, 'account', 'set-password', 'tom', '--password-file', fx.userPasswordFile);
    assert.equal(result.stdout, 'set the password of tom (temporary: they choose their own at their next login)\n');
    result = await ctl(freshEnv(), 'login', '--username', 'tom', '--password-file', fx.userPasswordFile, '--new-password-file', fileWith('yet another password of his own'));
    assert.equal(result.stdout, 'password changed: from now on, log in with the new one\nlogged in as tom\n');
    assertOneLineError(await ctl(env, 'account', 'create', 'tombot', '--system', '--no-temporary'), 'usage', 2);
  });

  test('with --json, write commands print the changed object or {}', async () => {
    const env = await loggedIn();
    const role = JSON.parse((await ctl(env, '--json', 'role', 'create', 'jsonrole')).stdout) as unknown;
    assert.deepEqual(role, { name: 'jsonrole', permissions: [] });
    const created = JSON.parse((await ctl(env, '--json', 'account', 'create', 'jsonbot', '--system')).stdout) as { username: string; kind: string };
    assert.deepEqual([created.username, created.kind], ['jsonbot', 'system']);
    assert.deepEqual(JSON.parse((await ctl(env, '--json', 'role', 'grant', 'jsonrole', 'jsonbot')).stdout), {});
    assert.equal((JSON.parse((await ctl(env, '--json', 'account', 'disable', 'jsonbot')).stdout) as { status: string }).status, 'disabled');
    assert.deepEqual(JSON.parse((await ctl(env, '--json', 'account', 'delete', 'jsonbot')).stdout), {});
  });

  test('a damaged session file is a one-line error, and login replaces it', async () => {
    const env = await loggedIn();
    writeFileSync(sessionPath(env), '{not json');
    assertOneLineError(await ctl(env, 'whoami'), 'session_file');
    assert.equal((await ctl(env, 'login', '--username', 'admin', '--password-file', fx.adminPasswordFile)).code, 0);
    assert.equal((await ctl(env, 'whoami')).code, 0);
  });

  test('logout revokes the token and forgets it; whoami then fails with one clear line', async () => {
    const env = await loggedIn();
    const token = storedToken(env);
    const result = await ctl(env, 'logout');
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, 'logged out\n');
    assert.ok(!readFileSync(sessionPath(env), 'utf8').includes(token));

    const whoami = await ctl(env, 'whoami');
    assertOneLineError(whoami, 'unauthenticated');
    assert.match(whoami.stderr, /not logged in/);

    const client = new MciasClient({ server: fx.server.url, caCert: readFileSync(fx.server.caCertFile), token });
    await assert.rejects(client.me(), { code: 'unauthenticated', status: 401 });
  });

  test('a wrong password is one line on stderr, a non-zero exit, and no session', async () => {
    const env = freshEnv();
    const wrong = path.join(fx.scratch, 'wrong-password');
    writeFileSync(wrong, 'this is not the password\n');
    const result = await ctl(env, 'login', '--username', 'admin', '--password-file', wrong);
    assertOneLineError(result, 'invalid_credentials');
    assert.equal(result.stdout, '');
    assert.ok(!result.stderr.includes('this is not the password'));
    assert.throws(() => statSync(sessionPath(env)), { code: 'ENOENT' });
  });

  test('an expired or revoked stored token is a one-line unauthenticated error that says to log in', async () => {
    const env = await loggedIn();
    await new MciasClient({ server: fx.server.url, caCert: readFileSync(fx.server.caCertFile), token: storedToken(env) }).logout();
    const result = await ctl(env, 'account', 'list');
    assertOneLineError(result, 'unauthenticated');
    assert.match(result.stderr, /mciasctl login/);
  });

  test('the stored token is never sent to a server other than the one it came from', async () => {
    const env = await loggedIn();
    // Nothing listens on port 1; if mciasctl tried to connect, this would be connection_failed instead.
    const result = await ctl({ ...env, MCIAS_SERVER: 'https://127.0.0.1:1' }, 'whoami');
    assertOneLineError(result, 'unauthenticated');
    assert.match(result.stderr, /not logged in to https:\/\/127\.0\.0\.1:1/);
  });

  test('MCIAS_TOKEN, MCIAS_SERVER and MCIAS_CA_CERT work without a session file', async () => {
    const token = storedToken(await loggedIn());
    const result = await ctl({ ...freshEnv(), MCIAS_TOKEN: token }, 'whoami');
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, 'admin (human, active; roles: admin)\n');
  });

  test('a server certificate that the given CA did not sign is a one-line TLS error', async () => {
    const env = await loggedIn();
    assertOneLineError(await ctl({ ...env, MCIAS_CA_CERT: '' }, '--ca-cert', otherCaFile, 'whoami'), 'tls_verification_failed');
    // Without any CA certificate only the public roots are trusted.
    const anonymous = await ctl({ ...freshEnv(), MCIAS_CA_CERT: '' }, 'login', '--username', 'admin', '--password-file', fx.adminPasswordFile);
    assertOneLineError(anonymous, 'tls_verification_failed');
    assertOneLineError(await ctl({ ...env, MCIAS_CA_CERT: path.join(fx.scratch, 'missing.pem') }, 'whoami'), 'usage', 2);
  });

  test('usage mistakes are one line and exit 2', async () => {
    const env = freshEnv();
    assertOneLineError(await ctl(env, 'acount', 'list'), 'usage', 2);
    assertOneLineError(await ctl(env, 'account', 'create'), 'usage', 2);
    assertOneLineError(await ctl(env, 'account', 'create', 'x', '--system', '--password-file', fx.adminPasswordFile), 'usage', 2);
    assertOneLineError(await ctl({ ...env, MCIAS_SERVER: 'http://127.0.0.1:8443' }, 'whoami'), 'invalid_argument', 2);
    // No terminal to ask on and no --password-file: say so rather than hang or read a password that echoes.
    const noTerminal = await ctl(env, 'login', '--username', 'admin');
    assertOneLineError(noTerminal, 'usage', 2);
    assert.match(noTerminal.stderr, /--password-file/);
  });

  test('a password file is one line: empty, two-line and missing files are refused before anything is sent', async () => {
    const twoLines = fileWith(`${fx.server.adminPassword}\nsecond line`);
    const cases: [file: string, message: RegExp][] = [
      [fileWith(''), /the password file \S+ is empty/],
      [twoLines, /the password file \S+ has more than one line/],
      [path.join(fx.scratch, 'no-such-file'), /cannot read the password file \S+: ENOENT/],
    ];
    for (const [file, message] of cases) {
      const env = freshEnv();
      const result = await ctl(env, 'login', '--username', 'admin', '--password-file', file);
      assertOneLineError(result, 'usage', 2);
      assert.match(result.stderr, message);
      assert.ok(!result.stderr.includes(fx.server.adminPassword), 'the file content is never echoed');
      assert.throws(() => statSync(sessionPath(env)), { code: 'ENOENT' });
    }
    // One trailing \r\n is dropped, and nothing else.
    assert.equal((await ctl(freshEnv(), 'login', '--username', 'admin', '--password-file', fileWith(`${fx.server.adminPassword}\r`))).code, 0);
    assertOneLineError(await ctl(freshEnv(), 'login', '--username', 'admin', '--password-file', fileWith(`${fx.server.adminPassword} `)), 'invalid_credentials');
  });

  test('login asks for the password on a terminal without echoing it', needsTerminal, async () => {
    const env = freshEnv();
    const { code, output } = await inTerminal(['login', '--username', 'admin'], env, [['Password for admin:', fx.server.adminPassword]]);
    assert.equal(code, 0, output);
    assert.match(output, /Password for admin:/);
    assert.match(output, /logged in as admin/);
    assert.ok(!output.includes(fx.server.adminPassword), 'the password was echoed');
    assert.equal(statSync(sessionPath(env)).mode & 0o777, 0o600);
  });

  test('account create asks twice on a terminal, without echo, and refuses two different passwords', needsTerminal, async () => {
    const env = await loggedIn();
    const password = 'typed twice and never shown';
    let { code, output } = await inTerminal(['account', 'create', 'carol', '--no-temporary'], env, [
      ['Password for carol:', password],
      ['Repeat it:', password],
    ]);
    assert.equal(code, 0, output);
    assert.match(output, /created human account carol/);
    assert.ok(!output.includes(password), 'the password was echoed');
    assert.equal((await ctl(freshEnv(), 'login', '--username', 'carol', '--password-file', fileWith(password))).code, 0);

    ({ code, output } = await inTerminal(['account', 'create', 'dave'], env, [
      ['Password for dave:', password],
      ['Repeat it:', `${password}!`],
    ]));
    assert.equal(code, 2, output);
    assert.match(output, /mciasctl: the two passwords differ \(usage\)/);
    assertOneLineError(await ctl(env, 'account', 'show', 'dave'), 'not_found');
  });

  test('login with a temporary password asks for a new one at once, twice and without echo', needsTerminal, async () => {
    const admin = await loggedIn();
    assert.equal((await ctl(admin, 'account', 'create', 'nina', '--password-file', fx.userPasswordFile)).code, 0);
    const env = freshEnv();
    const mine = 'she typed this one herself';
    const { code, output } = await inTerminal(['login', '--username', 'nina'], env, [
      ['Password for nina:', USER_PASSWORD],
      ['New password:', 'password'],
      ['Repeat it:', 'password'],
      ['New password:', mine],
      ['Repeat it:', mine],
    ]);
    assert.equal(code, 0, output);
    assert.match(output, /This password is temporary: choose your own now\./);
    // A refused password (too short) is asked for again.
    assert.match(output, /at least 15 characters/);
    assert.match(output, /password changed[^\n]*\r?\n[^\n]*logged in as nina/);
    assert.ok(!output.includes(mine) && !output.includes(USER_PASSWORD), 'a password was echoed');
    assert.equal((await ctl(env, 'whoami')).stdout, 'nina (human, active; roles: -)\n');
    assert.equal((await ctl(freshEnv(), 'login', '--username', 'nina', '--password-file', fileWith(mine))).code, 0);
  });

  test('at a first login, two different typings of the new password are asked again, up to three times in all', needsTerminal, async () => {
    const admin = await loggedIn();
    for (const name of ['olga', 'paul']) assert.equal((await ctl(admin, 'account', 'create', name, '--password-file', fx.userPasswordFile)).code, 0);
    const mine = 'typed the same the second time';
    let env = freshEnv();
    let { code, output } = await inTerminal(['login', '--username', 'olga'], env, [
      ['Password for olga:', USER_PASSWORD],
      ['New password:', mine],
      ['Repeat it:', `${mine}?`],
      ['New password:', mine],
      ['Repeat it:', mine],
    ]);
    assert.equal(code, 0, output);
    assert.match(output, /the two passwords differ/);
    assert.match(output, /password changed[^\n]*\r?\n[^\n]*logged in as olga/);
    assert.equal((await ctl(env, 'whoami')).stdout, 'olga (human, active; roles: -)\n');
    assert.equal((await ctl(freshEnv(), 'login', '--username', 'olga', '--password-file', fileWith(mine))).code, 0);

    // Three mismatches: nothing is changed, and the message says how to finish.
    env = freshEnv();
    const typings = [1, 2, 3].flatMap((n) => [['New password:', `${mine}${n}`], ['Repeat it:', `${mine}${n}!`]] as const);
    ({ code, output } = await inTerminal(['login', '--username', 'paul'], env, [['Password for paul:', USER_PASSWORD], ...typings]));
    assert.equal(code, 2, output);
    assert.equal(output.match(/the two passwords differ/g)?.length, 3, output);
    assert.match(output, /mciasctl: the new password was not set \(the two passwords differ\); until it is, this session can do nothing else: run 'mciasctl password' \(usage\)/);
    assert.match((await ctl(env, 'whoami')).stdout, /the password is temporary/);
  });
});
