import { readFileSync } from 'node:fs';
import { connect as connectTcp, type Socket } from 'node:net';
import { connect as connectTls } from 'node:tls';
import { portOf } from './process-tools.ts';
import type { ServerProcess } from './server-process.ts';

/**
 * Raw clients for the connection bounds (SECURITY.md §36) and the errors Node answers before Fastify (SECURITY.md §42):
 * sockets that stall, trickle or send bad bytes, driven by hand so a test sees exactly when the server closes them.
 */

/** How a raw connection behaves once open. */
export type SlowKind =
  /** TCP only, then the first bytes of a TLS record and nothing more: the handshake never finishes. */
  | 'handshake'
  /** A finished handshake, then silence. */
  | 'idle'
  /** A request line, then one header line every `trickleMs`, never the blank line that ends the headers. */
  | 'headers'
  /** Complete headers announcing a 60 KB body, then one body byte every `trickleMs`. */
  | 'body';

export interface RawOutcome {
  /** The TLS handshake completed (false for `handshake`, and for a connection the server refused). */
  readonly handshook: boolean;
  /** Milliseconds from the start of the connection until the server closed it. */
  readonly closedAfterMs: number;
  /** Everything the server sent, decrypted. */
  readonly received: string;
}

export interface RawConnection {
  readonly socket: Socket;
  /** Settles when the connection closes (it never rejects). */
  readonly closed: Promise<RawOutcome>;
  /** Settles with whether the TLS handshake completed, as soon as that is known. */
  readonly handshake: Promise<boolean>;
}

export interface RawOptions {
  readonly localAddress?: string;
  readonly trickleMs?: number;
}

/** A TLS connection (trusting the server's certificate) that sends `first` once the handshake is done. */
export function openTls(server: ServerProcess, first: string | Buffer | undefined, options: RawOptions = {}): RawConnection {
  const started = Date.now();
  const socket = connectTls({
    host: '127.0.0.1',
    port: portOf(server),
    servername: 'localhost',
    ca: readFileSync(server.caCertFile),
    ...(options.localAddress === undefined ? {} : { localAddress: options.localAddress }),
  });
  let handshook = false;
  let received = '';
  const handshake = new Promise<boolean>((resolve) => {
    socket.once('secureConnect', () => {
      handshook = true;
      if (first !== undefined) socket.write(first);
      resolve(true);
    });
    socket.once('close', () => resolve(false));
  });
  socket.on('data', (d: Buffer) => (received += d.toString('latin1')));
  socket.on('error', () => {});
  const closed = new Promise<RawOutcome>((resolve) => {
    socket.once('close', () => resolve({ handshook, closedAfterMs: Date.now() - started, received }));
  });
  return { socket, closed, handshake };
}

/** Opens one slow connection of the given kind; it trickles until the server closes it. */
export function openSlow(server: ServerProcess, kind: SlowKind, options: RawOptions = {}): RawConnection {
  const trickleMs = options.trickleMs ?? 200;
  if (kind === 'handshake') {
    const started = Date.now();
    const socket = connectTcp({ host: '127.0.0.1', port: portOf(server), ...(options.localAddress ? { localAddress: options.localAddress } : {}) });
    // A TLS handshake record header announcing 512 bytes that never come.
    socket.once('connect', () => socket.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00])));
    socket.on('error', () => {});
    const closed = new Promise<RawOutcome>((resolve) => {
      socket.once('close', () => resolve({ handshook: false, closedAfterMs: Date.now() - started, received: '' }));
    });
    return { socket, closed, handshake: Promise.resolve(false) };
  }
  const first = {
    idle: undefined,
    headers: 'GET /healthz HTTP/1.1\r\nHost: localhost\r\n',
    body: 'POST /v1/auth/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n',
  }[kind];
  const connection = openTls(server, first, options);
  if (kind !== 'idle') {
    const timer = setInterval(() => {
      if (connection.socket.destroyed || !connection.socket.writable) return;
      connection.socket.write(kind === 'headers' ? 'X-Slow: a\r\n' : 'a');
    }, trickleMs);
    void connection.handshake.then((ok) => (ok ? undefined : clearInterval(timer)));
    void connection.closed.then(() => clearInterval(timer));
  }
  return connection;
}

export interface RawResponse {
  readonly status: number;
  /** Lower-cased names; a repeated header keeps its last value (the tests check that none repeats). */
  readonly headers: Record<string, string>;
  readonly headerNames: readonly string[];
  readonly body: string;
}

/** Parses the one HTTP/1.1 response a raw connection received (undefined if there was none). */
export function parseResponse(text: string): RawResponse | undefined {
  const end = text.indexOf('\r\n\r\n');
  if (end < 0) return undefined;
  const [statusLine = '', ...lines] = text.slice(0, end).split('\r\n');
  const match = /^HTTP\/1\.1 (\d{3}) /.exec(statusLine);
  if (!match) return undefined;
  const headers: Record<string, string> = {};
  const headerNames: string[] = [];
  for (const line of lines) {
    const colon = line.indexOf(':');
    const name = line.slice(0, colon).trim().toLowerCase();
    headerNames.push(name);
    headers[name] = line.slice(colon + 1).trim();
  }
  return { status: Number(match[1]), headers, headerNames, body: text.slice(end + 4) };
}

/** The server's resident memory in MiB, from /proc (Linux). */
export function residentMiB(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!match) throw new Error(`no VmRSS for process ${pid}`);
  return Number(match[1]) / 1024;
}
