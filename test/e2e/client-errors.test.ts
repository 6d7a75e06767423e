import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { SECURITY_HEADERS } from '../../src/http/headers.ts';
import { logEntries, waitFor } from '../support/process-tools.ts';
import { openTls, parseResponse, type RawOutcome } from '../support/raw-tls.ts';
import { startServerProcess, type ServerProcess } from '../support/server-process.ts';

/**
 * SECURITY.md §42 over a real TLS socket: what Node's HTTP parser refuses before Fastify sees a request (malformed
 * framing, oversized headers, a stalled request) is answered in the house format and the connection closed.
 */

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** Looks like a credential; it must not reach the log through the parser's copy of the raw bytes. */
const SECRET = 'Bearer eyJhbGciOiJFZERTQSJ9.c2VjcmV0LWluLWEtYmFkLXJlcXVlc3Q.c2ln';

describe("errors Node answers before Fastify, on a real mciassrv process (SECURITY.md §42)", { concurrency: true }, () => {
  let server: ServerProcess;
  before(async () => {
    server = await startServerProcess({ env: { MCIAS_SERVER_HEADERS_TIMEOUT: '1s', MCIAS_SERVER_REQUEST_TIMEOUT: '2s' } });
  });
  after(async () => {
    await server?.dispose();
  });

  /** Sends `bytes` over TLS and returns what came back before the server closed the connection. */
  async function exchange(bytes: string): Promise<RawOutcome> {
    const connection = openTls(server, bytes);
    assert.equal(await connection.handshake, true);
    return connection.closed;
  }

  function assertHouseFormat(outcome: RawOutcome, status: number, code: string): void {
    const response = parseResponse(outcome.received);
    assert.ok(response, `no HTTP response in ${JSON.stringify(outcome.received.slice(0, 80))}`);
    assert.equal(response.status, status);
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) assert.equal(response.headers[name], value, name);
    assert.equal(response.headers['content-type'], 'application/problem+json; charset=utf-8');
    assert.equal(response.headers.connection, 'close');
    assert.equal(new Set(response.headerNames).size, response.headerNames.length, 'no header is sent twice');
    const requestId = response.headers['x-request-id'] ?? '';
    assert.match(requestId, UUID);
    assert.equal(Number(response.headers['content-length']), Buffer.byteLength(response.body));
    const body = JSON.parse(response.body) as Record<string, unknown>;
    assert.deepEqual(Object.keys(body).sort(), ['code', 'detail', 'request_id', 'status', 'title', 'type']);
    assert.equal(body.type, 'about:blank');
    assert.equal(body.status, status);
    assert.equal(body.code, code);
    assert.equal(body.request_id, requestId);
    assert.equal(typeof body.detail, 'string');
    assert.equal(outcome.received.includes(SECRET), false, 'the request is not echoed');
  }

  /** The log line for the answer carries its request id, and nothing of the request's bytes. */
  async function assertLogged(outcome: RawOutcome, status: number): Promise<void> {
    const requestId = parseResponse(outcome.received)?.headers['x-request-id'];
    await waitFor(() => logEntries(server).some((e) => e.reqId === requestId), 'the client error log line');
    const entry = logEntries(server).find((e) => e.reqId === requestId);
    assert.equal(entry?.status, status);
    assert.equal(entry?.msg, 'client error');
    assert.equal(server.logs.some((line) => line.includes(SECRET.slice(7))), false, 'a credential in the bad request reached the log');
  }

  test('malformed framing before any request: 400 problem+json with the security headers', async () => {
    const outcome = await exchange(`GET /healthz HTTP/1.1\r\nHost: localhost\r\nAuthorization: ${SECRET}\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n`);
    assertHouseFormat(outcome, 400, 'invalid_request');
    await assertLogged(outcome, 400);
  });

  test('bytes that are not HTTP at all: 400 problem+json', async () => {
    assertHouseFormat(await exchange('\x00\x01 definitely not http\r\n\r\n'), 400, 'invalid_request');
  });

  test('a broken chunked body after the headers were accepted: 400 problem+json, nothing else sent', async () => {
    const outcome = await exchange(
      'POST /v1/auth/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n',
    );
    assertHouseFormat(outcome, 400, 'invalid_request');
    assert.equal(outcome.received.match(/HTTP\/1\.1 /g)?.length, 1, 'exactly one response');
  });

  test('oversized headers: 431 problem+json, and the header values are neither echoed nor logged', async () => {
    const outcome = await exchange(`GET /healthz HTTP/1.1\r\nHost: localhost\r\nAuthorization: ${SECRET}\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
    assertHouseFormat(outcome, 431, 'invalid_request');
    await assertLogged(outcome, 431);
  });

  test('a request whose headers stall: 408 problem+json once the headers timeout passes', async () => {
    const outcome = await exchange(`GET /healthz HTTP/1.1\r\nHost: localhost\r\nAuthorization: ${SECRET}\r\n`);
    assert.ok(outcome.closedAfterMs >= 950, `closed after ${outcome.closedAfterMs} ms`);
    assertHouseFormat(outcome, 408, 'invalid_request');
    await assertLogged(outcome, 408);
  });

  test('a request whose body stalls: 408 problem+json once the request timeout passes', async () => {
    const outcome = await exchange('POST /v1/auth/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"user');
    assert.ok(outcome.closedAfterMs >= 1_950, `closed after ${outcome.closedAfterMs} ms`);
    assertHouseFormat(outcome, 408, 'invalid_request');
  });

  test('an HTTP/1.1 request without Host: 400 problem+json, not Node\'s bare answer', async () => {
    const outcome = await exchange(`GET /healthz HTTP/1.1\r\nAuthorization: ${SECRET}\r\n\r\n`);
    assertHouseFormat(outcome, 400, 'invalid_request');
    assert.match((JSON.parse(parseResponse(outcome.received)?.body ?? '{}') as { detail?: string }).detail ?? '', /Host/);
    const requestId = parseResponse(outcome.received)?.headers['x-request-id'];
    await waitFor(() => logEntries(server).some((e) => e.reqId === requestId && e.msg === 'request'), 'the access-log line');
    assert.equal(logEntries(server).find((e) => e.reqId === requestId && e.msg === 'request')?.status, 400);
  });

  test('two Authorization fields (names in different case) or two Host fields: 400 problem+json, even on a public route', async () => {
    for (const [what, request] of [
      ['Authorization twice', `GET /healthz HTTP/1.1\r\nHost: localhost\r\nAuthorization: ${SECRET}\r\nauthorization: Bearer x\r\n\r\n`],
      ['Host twice', 'GET /healthz HTTP/1.1\r\nHost: localhost\r\nHOST: evil.example\r\n\r\n'],
    ] as const) {
      const outcome = await exchange(request);
      assertHouseFormat(outcome, 400, 'invalid_request');
      assert.match((JSON.parse(parseResponse(outcome.received)?.body ?? '{}') as { detail?: string }).detail ?? '', /more than one/, what);
    }
  });

  test('an HTTP/1.0 request may omit Host', async () => {
    const response = parseResponse((await exchange('GET /healthz HTTP/1.0\r\n\r\n')).received);
    assert.equal(response?.status, 200);
  });

  test('a well-formed request on the same server still gets the ordinary answer', async () => {
    const response = parseResponse((await exchange('GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n')).received);
    assert.equal(response?.status, 200);
    assert.equal(response?.headers['strict-transport-security'], SECURITY_HEADERS['strict-transport-security']);
  });
});
