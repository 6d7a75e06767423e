import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { writeTokenFile } from '@mcias/client';
import { decodeJwt } from 'jose';
import { useClientFixture } from '../support/client.ts';
import { USER_PASSWORD } from '../support/harness.ts';
import { useLocalLoginRole } from '../support/pgcreds.ts';
import { ROOT } from '../support/server-process.ts';

/**
 * The examples (examples/fastify-app, examples/service) run as a user runs them: `node <file>.ts` without the
 * source condition, so @mcias/client is the built package, against a real mciassrv (and real PostgreSQL).
 */

interface Example {
  readonly line: RegExpExecArray;
  readonly child: ChildProcessWithoutNullStreams;
  stop(): Promise<void>;
}

/** Starts an example and waits for the stdout line matching `ready`. */
async function startExample(file: string, env: Record<string, string>, ready: RegExp): Promise<Example> {
  const child = spawn(process.execPath, [path.join(ROOT, 'examples', file)], { cwd: ROOT, env: { ...process.env, ...env } });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = once(child, 'exit');
  const line = await new Promise<RegExpExecArray>((resolve, reject) => {
    createInterface({ input: child.stdout }).on('line', (text) => {
      const match = ready.exec(text);
      if (match !== null) resolve(match);
    });
    void exited.then(([code]) => reject(new Error(`${file} exited with ${String(code)}: ${stderr}`)));
  });
  return {
    line,
    child,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      await exited;
    },
  };
}

describe('the examples against a real server', () => {
  const f = useClientFixture();
  const dir = mkdtempSync(path.join(tmpdir(), 'mcias-examples-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  describe('examples/fastify-app', () => {
    let example: Example;
    let url: string;
    let noraToken: string;
    let ottoToken: string;

    before(async () => {
      await f.admin.createRole('note-writer');
      const permission = await f.admin.createPermission({ resource: 'notes', action: 'write', description: 'write notes' });
      await f.admin.grantPermission('note-writer', permission.id);
      await f.person('nora', ['note-writer']);
      await f.person('otto');
      noraToken = (await f.anonymous.login('nora', USER_PASSWORD)).token;
      ottoToken = (await f.anonymous.login('otto', USER_PASSWORD)).token;
      example = await startExample(
        'fastify-app/app.ts',
        { MCIAS_URL: f.server.url, MCIAS_CA_CERT: f.server.caCertFile, MCIAS_ISSUER: decodeJwt(f.adminToken).iss as string, PORT: '0' },
        /^example app listening on (http:\/\/\S+)$/,
      );
      url = example.line[1] as string;
    });
    after(() => example.stop());

    const call = async (method: string, route: string, token?: string) => {
      const response = await fetch(`${url}${route}`, { method, headers: token === undefined ? {} : { authorization: `Bearer ${token}` } });
      return { status: response.status, body: (await response.json()) as Record<string, unknown> };
    };

    test('strangers, people, roles and permissions', async () => {
      assert.deepEqual(await call('GET', '/'), { status: 200, body: { hello: 'stranger' } });
      assert.deepEqual(await call('GET', '/', noraToken), { status: 200, body: { hello: 'nora' } });
      assert.equal((await call('GET', '/admin')).status, 401);
      assert.equal((await call('GET', '/admin', noraToken)).status, 403);
      assert.deepEqual(await call('GET', '/admin', f.adminToken), { status: 200, body: { admin: 'admin' } });
      assert.deepEqual(await call('POST', '/notes', noraToken), { status: 200, body: { saved_by: 'nora' } });
      const refused = await call('POST', '/notes', ottoToken);
      assert.equal(refused.status, 403);
      assert.equal(refused.body['code'], 'forbidden');
    });
  });

  describe('examples/service', () => {
    const role = `mcias_example_${process.pid}`;
    const password = 'example service database password';
    useLocalLoginRole(role, password);

    test('the keeper loads the token file and the pool connects with the credentials MCIAS hands out', async () => {
      await f.admin.createAccount({ username: 'notes-svc', kind: 'system' });
      await f.admin.setPgCredentials('notes-svc', { host: '127.0.0.1', port: 5432, database: 'postgres', username: role, password, sslmode: 'disable' });
      const tokenFile = path.join(dir, 'notes-svc.token');
      await writeTokenFile(tokenFile, (await f.admin.issueServiceToken('notes-svc')).token);
      const example = await startExample(
        'service/service.ts',
        { MCIAS_URL: f.server.url, MCIAS_CA_CERT: f.server.caCertFile, MCIAS_TOKEN_FILE: tokenFile, MCIAS_SERVICE: 'notes-svc' },
        /^(\{.*\})$/,
      );
      try {
        assert.deepEqual(JSON.parse(example.line[1] as string), { service: 'notes-svc', database_user: role });
        assert.equal(statSync(tokenFile).mode & 0o777, 0o600);
      } finally {
        await example.stop();
      }
    });
  });
});
