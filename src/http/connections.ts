import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import type { Server as HttpsServer, ServerOptions as HttpsServerOptions } from 'node:https';
import { BlockList, isIPv4, isIPv6, type Socket } from 'node:net';
import type { FastifyBaseLogger, FastifyServerOptions } from 'fastify';
import type { ConnectionLimits } from '../config/load.ts';
import type { ErrorCode } from '../domain/errors.ts';
import { SECURITY_HEADERS } from './headers.ts';
import { PROBLEM_CONTENT_TYPE, STATUS_CODES, buildProblem } from './problem.ts';

/**
 * Bounds on connections (SECURITY.md §36): a client cannot hold the server's sockets, memory or file descriptors by
 * opening many connections and sending slowly, or not at all.
 */

/** Fastify's own options for the timeouts it forwards to the Node server. */
export function fastifyConnectionOptions(limits: ConnectionLimits): Partial<FastifyServerOptions> {
  return {
    connectionTimeout: limits.idleTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    maxRequestsPerSocket: limits.maxRequestsPerSocket,
  };
}

/** Options only `https.createServer` takes. */
export function httpsConnectionOptions(limits: ConnectionLimits): HttpsServerOptions {
  return {
    handshakeTimeout: limits.handshakeTimeoutMs,
    // Node checks the headers and request timeouts on this interval (30 s by default), so a bound of 10 s could
    // otherwise take 40 s to fire. A tenth of the shorter bound, between 100 ms and 1 s; the check is a list walk.
    connectionsCheckingInterval: Math.min(1_000, Math.max(100, Math.floor(Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs) / 10))),
  };
}

/**
 * The bounds Fastify has no option for: the headers timeout, the global cap (Node drops connections past it at
 * accept, before any TLS work) and the per-address cap, counted on the raw socket's peer address. A trusted
 * reverse proxy carries many clients on its connections, so it is exempt from the per-address cap (the global
 * cap still holds).
 */
export function limitConnections(server: HttpsServer, limits: ConnectionLimits, trustedProxies: readonly string[]): void {
  server.headersTimeout = limits.headersTimeoutMs;
  server.maxConnections = limits.maxConnections;
  const exempt = blockListOf(trustedProxies);
  const open = new Map<string, number>();
  // The TLS server's own listener has already wrapped the socket; destroying the raw socket ends both.
  server.on('connection', (socket: Socket) => {
    const address = socket.remoteAddress;
    if (address === undefined) {
      socket.destroy();
      return;
    }
    if (isExempt(exempt, address)) return;
    const group = addressGroup(address);
    const count = open.get(group) ?? 0;
    if (count >= limits.maxConnectionsPerAddress) {
      socket.destroy();
      return;
    }
    open.set(group, count + 1);
    socket.once('close', () => {
      const left = (open.get(group) ?? 1) - 1;
      if (left <= 0) open.delete(group);
      else open.set(group, left);
    });
  });
}

/**
 * The unit the per-address cap counts: an IPv4 address (also when IPv4-mapped), or an IPv6 address's /64, since
 * one client is routinely given a whole /64 and can pick any address in it.
 */
function addressGroup(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped?.[1] !== undefined) return mapped[1];
  if (!isIPv6(address)) return address;
  const [head = '', tail = ''] = address.split('%')[0]!.split('::') as [string?, string?];
  const left = head === '' ? [] : head.split(':');
  const right = tail === '' ? [] : tail.split(':');
  // A trailing dotted quad (`64:ff9b::192.0.2.1`) stands for two groups.
  const width = (parts: string[]) => parts.length + (parts.at(-1)?.includes('.') ? 1 : 0);
  const fill = Array<string>(Math.max(0, 8 - width(left) - width(right))).fill('0');
  const groups = address.includes('::') ? [...left, ...fill, ...right] : left;
  return `${groups
    .slice(0, 4)
    .map((g) => Number.parseInt(g, 16).toString(16))
    .join(':')}::/64`;
}

function blockListOf(addresses: readonly string[]): BlockList {
  const list = new BlockList();
  for (const entry of addresses) {
    const [address = '', prefix] = entry.split('/');
    const type = isIPv4(address) ? 'ipv4' : 'ipv6';
    if (prefix === undefined) list.addAddress(address, type);
    else list.addSubnet(address, Number(prefix), type);
  }
  return list;
}

function isExempt(list: BlockList, address: string): boolean {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1];
  if (mapped !== undefined) return list.check(mapped, 'ipv4');
  return list.check(address, isIPv4(address) ? 'ipv4' : 'ipv6');
}

/** Errors Node's HTTP parser raises before Fastify sees a request, and how they are answered. */
function answerFor(code: string | undefined): { status: number; code: ErrorCode; detail: string } | undefined {
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return { status: 408, code: 'invalid_request', detail: 'the request did not arrive in time' };
  if (code === 'HPE_HEADER_OVERFLOW') return { status: 431, code: 'invalid_request', detail: 'the request headers are too large' };
  if (code === 'HPE_CHUNK_EXTENSIONS_OVERFLOW') return { status: 413, code: 'payload_too_large', detail: 'the chunk extensions are too large' };
  if (code?.startsWith('HPE_')) return { status: 400, code: 'invalid_request', detail: 'the request is not valid HTTP/1.1' };
  return undefined;
}

const answered = new WeakSet<Socket>();

/**
 * Fastify's `clientErrorHandler`: malformed framing (400), oversized headers (431) and the headers or request
 * timeout (408) are answered in the house format, with the security headers, a request id and a problem+json body
 * (SECURITY.md §42), then the connection is closed. TLS errors (a handshake timeout, a bad ClientHello) have no HTTP
 * to answer in and only close the connection. The raw bytes the parser kept (`rawPacket`) may hold credentials
 * and are never logged.
 */
export function clientErrorHandler(this: { log: FastifyBaseLogger }, error: NodeJS.ErrnoException, socket: Socket): void {
  const answer = answerFor(error.code);
  const response = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
  // Answer once, on a socket that can still take it, and never after a response has begun (it would corrupt it).
  if (answer !== undefined && !answered.has(socket) && !socket.destroyed && socket.writable && response?.headersSent !== true) {
    answered.add(socket);
    const requestId = randomUUID();
    const body = JSON.stringify(buildProblem(answer.status, answer.code, requestId, answer.detail));
    const headers = {
      ...SECURITY_HEADERS,
      'x-request-id': requestId,
      'content-type': PROBLEM_CONTENT_TYPE,
      'content-length': String(Buffer.byteLength(body)),
      connection: 'close',
    };
    const head = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join('');
    socket.write(`HTTP/1.1 ${answer.status} ${STATUS_CODES[answer.status]}\r\n${head}\r\n${body}`);
    this.log.info({ reqId: requestId, status: answer.status, error: error.code, ip: socket.remoteAddress }, 'client error');
  }
  socket.destroy();
}
