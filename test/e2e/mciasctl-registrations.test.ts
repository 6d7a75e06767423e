import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { USER_PASSWORD } from '../support/harness.ts';
import { assertOk, assertOneLineError, ctl, inTerminal, needsTerminal, useMciasctlFixture } from '../support/mciasctl.ts';

/** mciasctl registration create|list|delete and register, through the shipped binary against a real mciassrv. */

describe('mciasctl registration codes against a real mciassrv', () => {
  const fx = useMciasctlFixture({ admin: true });

  test('create prints the code once with the command that redeems it; register redeems it; list never shows it', async () => {
    assertOk(await ctl(fx.admin, 'role', 'create', 'wiki'));
    const created = await ctl(fx.admin, 'registration', 'create', '--role', 'wiki', '--uses', '2', '--expires', '3d');
    assertOk(created);
    const lines = created.stdout.trimEnd().split('\n');
    assert.equal(lines.length, 3, created.stdout);
    assert.match(lines[0] ?? '', /^created registration code [0-9a-f-]{36}: 2 uses, roles wiki, expires \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    assert.equal(lines[1], 'the code is shown only now; pass this line on privately:');
    const share = /^MCIAS invitation code (mciasreg_[\w-]+) \(until \S+\); sign up with: (.+)$/.exec(lines[2] ?? '');
    assert.ok(share, lines[2]);
    const code = share[1] as string;
    assert.equal(share[2], `mciasctl --server ${fx.server.url} --ca-cert <the server certificate> register <username> (it asks for the code and a new password)`);
    // The redeeming command never carries the code: an argv is visible to other users of the host.
    assert.ok(!(share[2] ?? '').includes(code));

    const listed = await ctl(fx.admin, 'registration', 'list');
    assertOk(listed);
    assert.ok(!listed.stdout.includes(code));
    assert.match(listed.stdout, /^ID\s+USES LEFT\s+EXPIRES\s+ROLES\n[0-9a-f-]{36}\s+2\s+\S+\s+wiki\n$/);

    const invitee = fx.freshEnv();
    const registered = await ctl(invitee, 'register', 'Newbie', '--code-file', fx.fileWith(code), '--password-file', fx.userPasswordFile);
    assertOk(registered);
    assert.equal(registered.stdout, 'created account newbie with roles wiki; log in with: mciasctl login newbie\n');
    assertOk(await ctl(invitee, 'login', '--username', 'newbie', '--password-file', fx.userPasswordFile));

    const wrong = await ctl(fx.freshEnv(), 'register', 'other', '--code-file', fx.fileWith('mciasreg_not-a-real-code'), '--password-file', fx.userPasswordFile);
    assertOneLineError(wrong, 'invalid_credentials');
    assert.ok(!wrong.stderr.includes('not-a-real-code'));
  });

  test('--json create answers the object; delete makes the code unusable; admin needs --allow-admin', async () => {
    const created = await ctl(fx.admin, '--json', 'registration', 'create');
    assertOk(created);
    const made = JSON.parse(created.stdout) as { id: string; code: string; uses_left: number };
    assert.equal(made.uses_left, 1);
    assertOk(await ctl(fx.admin, 'registration', 'delete', made.id));
    assertOneLineError(await ctl(fx.freshEnv(), 'register', 'late', '--code-file', fx.fileWith(made.code), '--password-file', fx.userPasswordFile), 'invalid_credentials');
    assertOneLineError(await ctl(fx.admin, 'registration', 'delete', made.id), 'not_found');

    assertOneLineError(await ctl(fx.admin, 'registration', 'create', '--role', 'admin'), 'invalid_request');
    const adminCode = await ctl(fx.admin, 'registration', 'create', '--role', 'admin', '--allow-admin');
    assertOk(adminCode);
    assert.match(adminCode.stdout, /1 use, roles admin,/);
    assertOneLineError(await ctl(fx.admin, 'registration', 'create', '--uses', 'many'), 'usage', 2);
  });

  test('register without a code file and without a terminal says how to pass it', async () => {
    const result = await ctl(fx.freshEnv(), 'register', 'someone', '--password-file', fx.userPasswordFile);
    assertOneLineError(result, 'usage', 2);
    assert.match(result.stderr, /use --code-file/);
  });

  test('register on a terminal asks for the code and the password without echo', needsTerminal, async () => {
    const made = JSON.parse((await ctl(fx.admin, '--json', 'registration', 'create')).stdout) as { code: string };
    const result = await inTerminal(['register', 'typist'], fx.freshEnv(), [
      ['Registration code:', made.code],
      ['New password:', USER_PASSWORD],
      ['Repeat it:', USER_PASSWORD],
    ]);
    assert.equal(result.code, 0, result.output);
    assert.match(result.output, /created account typist; log in with: mciasctl login typist/);
    assert.ok(!result.output.includes(made.code), 'the code was echoed');
    assert.ok(!result.output.includes(USER_PASSWORD), 'the password was echoed');
  });
});
