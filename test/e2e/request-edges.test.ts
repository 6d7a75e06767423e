import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { connect } from 'node:tls';
import { httpsRequest, login, logEntries, portOf, waitFor } from '../support/process-tools.ts';
import { startServerProcess, type ServerProcess } from '../support/server-process.ts';

/**
 * What a client meets at the edges of a real `mciassrv` process over TLS: a token put in a URL never reaches the
 * log, even at trace level and even when Node itself refuses the request (SECURITY.md §19); an unknown route with a
 * large announced body answers 404 at once and closes, without reading the body (docs/api.md: 404 for every unknown route).
 */

interface RawAnswer {
  /** Everything the server sent. */
  readonly text: string;
  /** Whether the server closed the connection before `waitMs` ran out. */
  readonly closedByServer: boolean;
}

/** Writes `request` on a fresh TLS connection and reads until the server closes it or `waitMs` pass. */
function rawExchange(server: ServerProcess, request: string | Buffer, waitMs = 5_000): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port: portOf(server), ca: readFileSync(server.caCertFile) });
    let text = '';
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ text, closedByServer: false });
    }, waitMs);
    socket.on('secureConnect', () => socket.write(request));
    socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
    socket.on('error', (error: NodeJS.ErrnoException) => {
      // A reset after the answer is a close too.
      if (error.code !== 'ECONNRESET' || text === '') return reject(error);
      clearTimeout(timer);
      resolve({ text, closedByServer: true });
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ text, closedByServer: true });
    });
  });
}

describe('a real mciassrv process: tokens in URLs stay out of its log; unknown routes are 404 before the body', () => {
  let server: ServerProcess;
  let token: string;

  before(async () => {
    server = await startServerProcess({ env: { MCIAS_LOG_LEVEL: 'trace' } });
    const answer = await login(server, 'admin', server.adminPassword);
    assert.equal(answer.status, 200, answer.body);
    token = (JSON.parse(answer.body) as { token: string }).token;
  });
  after(() => server?.dispose());

  test('a token in a query string, a path or a malformed request is refused and appears in no log line', async () => {
    const caFile = server.caCertFile;
    const refused = await httpsRequest(`${server.url}/v1/me?token=${token}`, { caFile });
    assert.equal(refused.status, 401);
    assert.equal((await httpsRequest(`${server.url}/v1/me?${token}`, { caFile })).status, 401);
    assert.equal((await httpsRequest(`${server.url}/v1/token/validate/${token}`, { caFile })).status, 404);
    // Refused by Node's HTTP parser before Fastify sees it (a NUL in a header): the error Node hands to the
    // server's clientError handler carries the raw bytes of the request, this token in the URL and header included.
    const malformed = await rawExchange(
      server,
      `GET /v1/me?access_token=${token} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${token}\r\nX-Broken: a\u0000b\r\n\r\n`,
    );
    assert.match(malformed.text, /^HTTP\/1\.1 400 /);
    assert.ok(malformed.closedByServer);

    // The access-log line of the last ordinary request is written once the whole exchange is done; wait for it.
    const marker = await httpsRequest(`${server.url}/healthz?${token}`, { caFile });
    const markerId = String(marker.headers['x-request-id']);
    await waitFor(() => logEntries(server).some((e) => e['reqId'] === markerId && e['msg'] === 'request'), 'the access-log line of the marker');

    const access = logEntries(server).filter((e) => e['msg'] === 'request');
    assert.ok(access.some((e) => e['url'] === '/v1/me?[redacted]' && e['status'] === 401), 'the refused /v1/me request was logged, redacted');
    assert.ok(access.some((e) => e['url'] === '/v1/token/validate/[redacted]' && e['status'] === 404));
    const [, payload, signature] = token.split('.') as [string, string, string];
    // pino writes a Buffer field as its bytes in decimal: look for that spelling of the token too.
    const asBytes = [...Buffer.from(signature.slice(0, 24))].join(',');
    for (const line of server.logs) {
      assert.ok(!line.includes(token), `a log line holds the token: ${line.slice(0, 200)}`);
      assert.ok(!line.includes(signature) && !line.includes(payload), `a log line holds part of the token: ${line.slice(0, 200)}`);
      assert.ok(!line.includes(asBytes), `a log line holds the token's bytes: ${line.slice(0, 200)}`);
      assert.doesNotMatch(line, /rawPacket|authorization/i);
    }
  });

  test('an unknown route announcing a 10 MB body answers 404 and closes without reading it', async () => {
    const header = `POST /v1/token/validat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${10 * 1024 * 1024}\r\n\r\n`;
    const started = performance.now();
    // Only the start of the body is ever sent: an answer needs no more.
    const answer = await rawExchange(server, `${header}{"token":"${'x'.repeat(1_000)}`);
    assert.match(answer.text, /^HTTP\/1\.1 404 /);
    assert.match(answer.text, /\r\ncontent-type: application\/problem\+json/i);
    assert.match(answer.text, /"code":"not_found"/);
    assert.match(answer.text, /\r\nconnection: close\r\n/i);
    assert.ok(answer.closedByServer, 'the server kept the connection open for the rest of the body');
    assert.ok(performance.now() - started < 4_000);
    assert.equal((await httpsRequest(`${server.url}/healthz`, { caFile: server.caCertFile })).status, 200);
  });
});
