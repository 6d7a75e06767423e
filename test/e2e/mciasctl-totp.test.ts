import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, statSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { URI } from 'otpauth';
import { USER_PASSWORD } from '../support/harness.ts';
import { MCIASCTL, ROOT, startServerProcess } from '../support/server-process.ts';
import { Authenticator } from '../support/totp.ts';
import { assertOk, assertOneLineError, ctl, inTerminal, needsTerminal, useMciasctlFixture, type CtlEnv } from '../support/mciasctl.ts';

/**
 * mciasctl's TOTP commands and the login with a second factor, driven through the shipped binary against a real
 * server: on a pseudo-terminal (util-linux `script`) as a person would, and without one as a script would. Codes come
 * from `otpauth`, computed from the secret mciasctl printed, right before they are typed.
 */

const HAVE_MKFIFO = spawnSync('mkfifo', ['--version'], { stdio: 'ignore' }).status === 0;

const CODE_PROMPT = 'TOTP code (or recovery code):';
/** Long enough for one wait for the next 30 s time step. */
const TOTP_TIMEOUT_MS = 60_000;
const RECOVERY_CODE = /^ {2}([A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4})\r?$/gm;
/** A terminal QR code: rows of the block characters renderUnicodeCompact draws with. */
const QR_ROWS = /(?:^[█▀▄ ]{21,}\r?\n){10,}/m;

/** The recovery codes in mciasctl's output. */
function recoveryCodesIn(output: string): string[] {
  return [...output.matchAll(RECOVERY_CODE)].map((m) => m[1] as string);
}

/** The secret of the otpauth:// URI in mciasctl's output. */
function secretIn(output: string): string {
  const uri = /otpauth:\/\/[^\s"]+/.exec(output)?.[0];
  assert.ok(uri !== undefined, `no otpauth:// URI in:\n${output}`);
  return URI.parse(uri).secret.base32;
}

describe('mciasctl totp and the login with a second factor against a real mciassrv', () => {
  const fx = useMciasctlFixture({ admin: true });
  const { freshEnv, loggedIn, sessionPath, fileWith } = fx;
  let admin: CtlEnv;

  /** `mciasctl login` on a terminal: the password, then the code `code` gives; the result and the code typed. */
  async function terminalLogin(username: string, code: () => string | Promise<string>) {
    const env = freshEnv();
    let typed = '';
    const result = await inTerminal(['login', '--username', username], env, [
      [`Password for ${username}:`, USER_PASSWORD],
      [CODE_PROMPT, async () => (typed = await code())],
    ], TOTP_TIMEOUT_MS);
    return { ...result, env, typed };
  }

  before(async () => {
    admin = fx.admin;
    for (const name of ['alice', 'bob', 'carol', 'dave', 'erin']) {
      assertOk(await ctl(admin, 'account', 'create', name, '--password-file', fx.userPasswordFile, '--no-temporary'));
    }
  });

  test('on a terminal: enroll with the QR code, log in with a code, a wrong code, a recovery code once, disable', needsTerminal, async () => {
    const alice = await loggedIn('alice');
    let app: Authenticator | undefined;
    let confirmation = '';
    const enrolled = await inTerminal(['totp', 'enroll'], alice, [
      // Re-authentication first (SECURITY.md §14): nothing is started before the password is given.
      ['Current password:', USER_PASSWORD],
      [
        'Code from the app:',
        async (output) => {
          app = new Authenticator(secretIn(output));
          return (confirmation = await app.next());
        },
      ],
    ], TOTP_TIMEOUT_MS);
    assert.equal(enrolled.code, 0, enrolled.output);
    assert.match(enrolled.output, QR_ROWS, 'no QR code');
    assert.match(enrolled.output, /otpauth:\/\/totp\/MCIAS:alice\?\S*secret=[A-Z2-7]{32}/);
    assert.match(enrolled.output, /type in the secret by hand: [A-Z2-7]{32}\b/);
    assert.ok(app !== undefined);
    assert.ok(!enrolled.output.includes(confirmation), 'the code was echoed');
    assert.ok(!enrolled.output.includes(USER_PASSWORD), 'the password was echoed');
    assert.ok(enrolled.output.indexOf('Current password:') < enrolled.output.indexOf('otpauth://'));
    assert.match(enrolled.output, /TOTP is on/);
    const recovery = recoveryCodesIn(enrolled.output);
    assert.equal(recovery.length, 10, enrolled.output);
    assert.match(enrolled.output, /Store them somewhere safe/);
    assert.match((await ctl(admin, 'account', 'show', 'alice')).stdout, /^totp:\s+enabled$/m);

    // Login asks for the password, then for the code; neither is echoed.
    const good = await terminalLogin('alice', () => app!.next());
    assert.equal(good.code, 0, good.output);
    assert.ok(good.output.indexOf('Password for alice:') < good.output.indexOf(CODE_PROMPT));
    assert.match(good.output, /logged in as alice/);
    assert.ok(!good.output.includes(USER_PASSWORD) && !good.output.includes(good.typed), 'a secret was echoed');
    assert.equal(statSync(sessionPath(good.env)).mode & 0o777, 0o600);
    assertOk(await ctl(good.env, 'whoami'));

    // A wrong code, and the code that was just used, are one line each, a non-zero exit and no session.
    for (const code of [app.wrong(), good.typed]) {
      const bad = await terminalLogin('alice', () => code);
      assert.equal(bad.code, 1, bad.output);
      assert.equal(bad.output.match(/mciasctl: /g)?.length, 1, bad.output);
      assert.match(bad.output, /^mciasctl: the code is not correct, or was already used \(invalid_credentials\)\r?$/m);
      assert.throws(() => statSync(sessionPath(bad.env)), { code: 'ENOENT' });
    }

    // A recovery code typed at the prompt works once.
    const rescued = await terminalLogin('alice', () => recovery[0] as string);
    assert.equal(rescued.code, 0, rescued.output);
    assert.match(rescued.output, /logged in as alice/);
    const again = await terminalLogin('alice', () => recovery[0] as string);
    assert.equal(again.code, 1, again.output);
    assert.match(again.output, /\(invalid_credentials\)/);

    // Disable asks for the password and a code; then the password alone is enough again.
    let disableCode = '';
    const disabled = await inTerminal(['totp', 'disable'], good.env, [
      ['Password:', USER_PASSWORD],
      [CODE_PROMPT, async () => (disableCode = await app!.next())],
    ], TOTP_TIMEOUT_MS);
    assert.equal(disabled.code, 0, disabled.output);
    assert.match(disabled.output, /TOTP is off/);
    assert.ok(!disabled.output.includes(USER_PASSWORD) && !disabled.output.includes(disableCode), 'a secret was echoed');
    assert.match((await ctl(admin, 'account', 'show', 'alice')).stdout, /^totp:\s+not enabled$/m);
    assert.equal((await ctl(freshEnv(), 'login', '--username', 'alice', '--password-file', fx.userPasswordFile)).stdout, 'logged in as alice\n');
  });

  test('for scripts: enroll --uri-only or --json, confirm <code>, login --totp-code-file, disable --code-file', async () => {
    const bob = await loggedIn('bob');
    // A session alone cannot start an enrollment: a wrong password is refused and nothing is shown.
    const refused = await ctl(bob, 'totp', 'enroll', '--uri-only', '--password-file', fileWith('not the password at all'));
    assertOneLineError(refused, 'invalid_credentials');
    assert.equal(refused.stdout, '');
    assertOneLineError(await ctl(bob, 'totp', 'confirm', '123456'), 'conflict');
    let result = await ctl(bob, 'totp', 'enroll', '--uri-only', '--password-file', fx.userPasswordFile);
    assertOk(result);
    assert.match(result.stdout, /^otpauth:\/\/totp\/MCIAS:bob\?\S+\n$/);
    // Enrolling again starts over with a new secret; --json gives it apart as well.
    result = await ctl(bob, '--json', 'totp', 'enroll', '--password-file', fx.userPasswordFile);
    assertOk(result);
    const started = JSON.parse(result.stdout) as { otpauth_uri: string; secret: string };
    assert.deepEqual(Object.keys(started).sort(), ['otpauth_uri', 'secret']);
    assert.equal(URI.parse(started.otpauth_uri).secret.base32, started.secret);
    assert.notEqual(secretIn(result.stdout), secretIn((await ctl(bob, 'totp', 'enroll', '--uri-only', '--password-file', fx.userPasswordFile)).stdout));
    const uri = (await ctl(bob, 'totp', 'enroll', '--uri-only', '--password-file', fx.userPasswordFile)).stdout.trim();
    const app = new Authenticator(URI.parse(uri).secret.base32);

    result = await ctl(bob, 'totp', 'confirm', app.wrong());
    assertOneLineError(result, 'invalid_credentials');
    assert.match(result.stderr, /mciasctl totp confirm/);
    result = await ctl(bob, '--json', 'totp', 'confirm', await app.next());
    assertOk(result);
    const { recovery_codes: recovery } = JSON.parse(result.stdout) as { recovery_codes: string[] };
    assert.equal(recovery.length, 10);
    assertOneLineError(await ctl(bob, 'totp', 'enroll', '--uri-only', '--password-file', fx.userPasswordFile), 'conflict');

    // Without a terminal, a login that needs a code says how to give one, and keeps nothing.
    const env = freshEnv();
    result = await ctl(env, 'login', '--username', 'bob', '--password-file', fx.userPasswordFile);
    assertOneLineError(result, 'usage', 2);
    assert.match(result.stderr, /--totp-code-file/);
    assert.throws(() => statSync(sessionPath(env)), { code: 'ENOENT' });
    // A wrong password with a code file is still just a wrong password.
    assertOneLineError(
      await ctl(env, 'login', '--username', 'bob', '--password-file', fileWith('not the password at all'), '--totp-code-file', fileWith('123456')),
      'invalid_credentials',
    );

    const codeFile = fileWith(await app.next());
    result = await ctl(env, '--json', 'login', '--username', 'bob', '--password-file', fx.userPasswordFile, '--totp-code-file', codeFile);
    assertOk(result);
    const login = JSON.parse(result.stdout) as { account: { username: string; totp_enabled: boolean }; totp_enrollment_required?: boolean };
    assert.deepEqual([login.account.username, login.account.totp_enabled, login.totp_enrollment_required], ['bob', true, undefined]);
    // The same file again is a replay; a recovery code from a file works, spaces and all.
    assertOneLineError(await ctl(freshEnv(), 'login', '--username', 'bob', '--password-file', fx.userPasswordFile, '--totp-code-file', codeFile), 'invalid_credentials');
    const spaced = (recovery[0] as string).replaceAll('-', ' ');
    assertOk(await ctl(freshEnv(), 'login', '--username', 'bob', '--password-file', fx.userPasswordFile, '--totp-code-file', fileWith(spaced)));

    assertOneLineError(await ctl(env, 'totp', 'disable', '--password-file', fx.userPasswordFile, '--code-file', fileWith(app.wrong())), 'invalid_credentials');
    result = await ctl(env, '--json', 'totp', 'disable', '--password-file', fx.userPasswordFile, '--code-file', fileWith(await app.next()));
    assertOk(result);
    assert.deepEqual(JSON.parse(result.stdout), {});
    assert.equal((await ctl(freshEnv(), 'login', '--username', 'bob', '--password-file', fx.userPasswordFile)).stdout, 'logged in as bob\n');
  });

  test('usage mistakes: enroll without a terminal or a code file, --code-file with --uri-only or --json', async () => {
    const dave = await loggedIn('dave');
    let result = await ctl(dave, 'totp', 'enroll');
    assertOneLineError(result, 'usage', 2);
    assert.match(result.stderr, /--uri-only/);
    assert.equal(result.stdout, '', 'nothing was started or shown');
    const codeFile = fileWith('123456');
    assertOneLineError(await ctl(dave, 'totp', 'enroll', '--uri-only', '--code-file', codeFile), 'usage', 2);
    assertOneLineError(await ctl(dave, '--json', 'totp', 'enroll', '--code-file', codeFile), 'usage', 2);
    assertOneLineError(await ctl(dave, 'totp', 'disable', '--password-file', fx.userPasswordFile), 'usage', 2);
    assertOneLineError(await ctl(dave, 'totp', 'confirm', '123456'), 'conflict');
    assertOneLineError(await ctl(dave, 'totp', 'enroll', '--code-file', fileWith('')), 'usage', 2);
    // Enrolling needs the current password: without a terminal to ask on, --password-file.
    result = await ctl(dave, 'totp', 'enroll', '--uri-only');
    assertOneLineError(result, 'usage', 2);
    assert.match(result.stderr, /--password-file/);
    assert.equal(result.stdout, '');
  });

  test('enroll --code-file reads the code only after the secret is shown: a named pipe works', { skip: HAVE_MKFIFO ? false : 'mkfifo is not installed' }, async () => {
    const carol = await loggedIn('carol');
    const fifo = path.join(fx.scratch, 'code.fifo');
    execFileSync('mkfifo', ['-m', '0600', fifo]);
    const child = spawn(process.execPath, [MCIASCTL, 'totp', 'enroll', '--code-file', fifo, '--password-file', fx.userPasswordFile], { cwd: ROOT, env: { ...process.env, ...carol } });
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    let wrote: Promise<void> | undefined;
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (wrote === undefined && /by hand: [A-Z2-7]{32}/.test(stdout)) {
        const app = new Authenticator(secretIn(stdout));
        wrote = app.next().then((code) => writeFile(fifo, `${code}\n`));
      }
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    const [code] = (await once(child, 'close')) as [number | null];
    clearTimeout(timer);
    await wrote;
    assert.equal(code, 0, stderr);
    assert.match(stdout, QR_ROWS);
    assert.equal(recoveryCodesIn(stdout).length, 10, stdout);
    assert.match((await ctl(admin, 'account', 'show', 'carol')).stdout, /^totp:\s+enabled$/m);
  });

  test('account reset-totp: an administrator removes a lost authenticator; nobody else can', async () => {
    const erin = await loggedIn('erin');
    const started = JSON.parse((await ctl(erin, '--json', 'totp', 'enroll', '--password-file', fx.userPasswordFile)).stdout) as { secret: string };
    assertOk(await ctl(erin, 'totp', 'confirm', await new Authenticator(started.secret).next()));
    assertOneLineError(await ctl(freshEnv(), 'login', '--username', 'erin', '--password-file', fx.userPasswordFile), 'usage', 2);

    assertOneLineError(await ctl(erin, 'account', 'reset-totp', 'erin'), 'forbidden');
    assertOneLineError(await ctl(admin, 'account', 'reset-totp', 'nobody'), 'not_found');
    const result = await ctl(admin, 'account', 'reset-totp', 'erin');
    assertOk(result);
    assert.equal(result.stdout, 'reset the TOTP of erin: they log in with the password alone\n');
    assert.match((await ctl(admin, 'account', 'show', 'erin')).stdout, /^totp:\s+not enabled$/m);
    assert.equal((await ctl(freshEnv(), 'login', '--username', 'erin', '--password-file', fx.userPasswordFile)).stdout, 'logged in as erin\n');
    assert.deepEqual(JSON.parse((await ctl(admin, '--json', 'account', 'reset-totp', 'erin')).stdout), {});
  });

  test('with auth.require_totp_for_admins, the bootstrap admin is told to enroll at the first login, and must use it after', needsTerminal, async () => {
    const strict = await startServerProcess({ env: { MCIAS_AUTH_REQUIRE_TOTP_FOR_ADMINS: 'true' } });
    try {
      const env = freshEnv(strict);
      let result = await ctl(env, 'login', '--username', 'admin', '--password-file', fx.adminPasswordFile);
      assertOk(result);
      assert.equal(result.stdout, "logged in as admin\nadministrators must use TOTP: run 'mciasctl totp enroll' now, or your next login will be refused\n");

      // Another administrator without TOTP is refused outright.
      assertOk(await ctl(env, 'account', 'create', 'second', '--password-file', fx.userPasswordFile, '--no-temporary'));
      assertOk(await ctl(env, 'role', 'grant', 'admin', 'second'));
      result = await ctl(freshEnv(strict), 'login', '--username', 'second', '--password-file', fx.userPasswordFile);
      assertOneLineError(result, 'forbidden');

      const app = new Authenticator(secretIn((await ctl(env, 'totp', 'enroll', '--uri-only', '--password-file', fx.adminPasswordFile)).stdout));
      assertOk(await ctl(env, 'totp', 'confirm', await app.next()));
      const again = freshEnv(strict);
      const login = await inTerminal(['login', '--username', 'admin'], again, [
        ['Password for admin:', fx.server.adminPassword],
        [CODE_PROMPT, () => app.next()],
      ], TOTP_TIMEOUT_MS);
      assert.equal(login.code, 0, login.output);
      assert.match(login.output, /logged in as admin/);
      assert.doesNotMatch(login.output, /must use TOTP/);
      assert.equal(JSON.parse(readFileSync(sessionPath(again), 'utf8')).username, 'admin');
    } finally {
      await strict.dispose();
    }
  });
});
