import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { after, before, describe, test } from 'node:test';
import { startServerProcess, type ServerProcess } from '../support/server-process.ts';

describe('a real mciassrv process', () => {
  let server: ServerProcess;
  before(async () => {
    server = await startServerProcess();
  });
  after(() => server.dispose());

  test('serves /healthz over TLS with the generated certificate as the only trust anchor', async () => {
    const ca = readFileSync(server.caCertFile);
    const body = await new Promise<string>((resolve, reject) => {
      request(`${server.url}/healthz`, { ca }, (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => resolve(text));
      })
        .on('error', reject)
        .end();
    });
    assert.deepEqual(JSON.parse(body), { status: 'ok' });
  });

  test('SIGTERM shuts it down with exit code 0', async () => {
    assert.equal(await server.stop('SIGTERM'), 0);
  });
});
