import { X509Certificate, createHash, timingSafeEqual } from 'node:crypto';
import { STATUS_CODES, type ClientRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { Agent, request, type AgentOptions, type RequestOptions } from 'node:https';
import { isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import { connect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { MciasApiError, MciasClientError, MciasConnectionError } from './errors.ts';

/** The largest response body read (the OpenAPI document is the biggest by far, at a few hundred KiB). */
const MAX_RESPONSE_BYTES = 8 * 1024 * 1024;
const DEFAULT_TIMEOUT_MS = 30_000;

export type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export interface TransportOptions {
  readonly server: string;
  readonly caCert?: string | Buffer | undefined;
  readonly pin?: string | readonly string[] | undefined;
  readonly timeoutMs?: number | undefined;
}

export interface Response {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  /** The parsed JSON body, or undefined when there is none (204). */
  readonly body: unknown;
}

/**
 * HTTPS to one server: one keep-alive agent whose only trust anchors are `caCert` when given (else Node's
 * bundled roots). Verification cannot be turned off, not even by NODE_TLS_REJECT_UNAUTHORIZED=0.
 */
export class Transport {
  readonly origin: string;
  readonly #basePath: string;
  readonly #hostname: string;
  readonly #port: number;
  readonly #timeoutMs: number;
  readonly #agent: Agent;

  constructor(options: TransportOptions) {
    const url = parseServerUrl(options.server);
    this.origin = url.origin;
    this.#basePath = url.pathname.replace(/\/+$/, '');
    this.#hostname = url.hostname.replace(/^\[(.*)\]$/, '$1');
    this.#port = url.port === '' ? 443 : Number(url.port);
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!Number.isFinite(this.#timeoutMs) || this.#timeoutMs <= 0) throw new MciasClientError('invalid_argument', 'timeoutMs must be a positive number');
    // Node ignores a CA that holds no certificate, and every request then fails verification with no word why.
    if (options.caCert !== undefined) checkCaCertificate(options.caCert);
    const agentOptions: AgentOptions = {
      keepAlive: true,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.2',
      ...(options.caCert === undefined ? {} : { ca: options.caCert }),
    };
    const pins = options.pin === undefined ? [] : parsePins(options.pin);
    this.#agent = pins.length === 0 ? new Agent(agentOptions) : new PinningAgent(agentOptions, pins, options.caCert !== undefined);
  }

  /** The server's URL, normalised (no trailing slash). */
  get server(): string {
    return `${this.origin}${this.#basePath}`;
  }

  send(method: Method, path: string, options: { token?: string | undefined; body?: unknown } = {}): Promise<Response> {
    const headers: Record<string, string> = { accept: 'application/json', 'user-agent': 'mcias-client' };
    if (options.token !== undefined) headers['authorization'] = `Bearer ${options.token}`;
    let payload: Buffer | undefined;
    if (options.body !== undefined) {
      payload = Buffer.from(JSON.stringify(options.body), 'utf8');
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(payload.length);
    }
    return new Promise<Response>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const fail = (error: Error) => {
        clearTimeout(timer);
        reject(this.#connectionError(error));
      };
      const onResponse = (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_RESPONSE_BYTES) {
            res.destroy(new MciasConnectionError('invalid_response', `the response from ${this.origin} is too large`));
            return;
          }
          chunks.push(chunk);
        });
        res.on('error', fail);
        res.on('end', () => {
          clearTimeout(timer);
          try {
            resolve(this.#toResponse(res.statusCode ?? 0, res.headers, Buffer.concat(chunks)));
          } catch (error) {
            reject(error);
          }
        });
      };
      let req: ClientRequest;
      try {
        req = request({ agent: this.#agent, hostname: this.#hostname, port: this.#port, method, path: `${this.#basePath}${path}`, headers }, onResponse);
      } catch (error) {
        // e.g. a control character in the token; Node's message names the header, never its value.
        reject(new MciasClientError('invalid_argument', `cannot send the request: ${(error as Error).message}`));
        return;
      }
      // A deadline for the whole exchange, not just socket idleness.
      timer = setTimeout(() => {
        const error = new MciasConnectionError('timeout', `${this.origin} did not answer within ${this.#timeoutMs} ms`);
        fail(error);
        req.destroy(error);
      }, this.#timeoutMs);
      req.on('error', fail);
      req.end(payload);
    });
  }

  /** Closes idle keep-alive connections (they never hold the process open, so this is optional). */
  close(): void {
    this.#agent.destroy();
  }

  #toResponse(status: number, headers: IncomingHttpHeaders, raw: Buffer): Response {
    const body = parseBody(raw, headers['content-type']);
    if (status >= 200 && status < 300) {
      if (body === INVALID) throw new MciasConnectionError('invalid_response', `${this.origin} answered ${status} with a body that is not JSON`);
      return { status, headers, body };
    }
    throw apiError(status, headers, body === INVALID ? undefined : body);
  }

  #connectionError(error: Error): MciasClientError {
    if (error instanceof MciasClientError) return error;
    const code = (error as NodeJS.ErrnoException).code ?? '';
    // Node appends advice about --use-system-ca to some verification errors: that is a flag of Node, not of ours.
    // An OpenSSL error (EPROTO) is a long line of internals ending in a newline: keep its reason.
    const openssl = /:SSL routines:[^:]*:([^:]+):/.exec(error.message)?.[1];
    const message = (openssl ?? error.message.replace(/;[^;]*--use-system-ca[^;]*/, '')).replace(/\s+/g, ' ').trim();
    const reason = `${message}${code !== '' && !message.includes(code) ? ` (${code})` : ''}`;
    if (TLS_VERIFY_CODES.test(code)) {
      return new MciasConnectionError('tls_verification_failed', `the certificate of ${this.origin} did not verify: ${reason}`, { cause: error });
    }
    if (code.startsWith('ERR_SSL') || code.startsWith('ERR_TLS') || code === 'EPROTO') {
      return new MciasConnectionError('tls_failed', `TLS with ${this.origin} failed: ${reason}`, { cause: error });
    }
    return new MciasConnectionError('connection_failed', `cannot reach ${this.origin}: ${reason}`, { cause: error });
  }
}

/** A pin: the SHA-256 of the leaf certificate's public key (SPKI, DER) or of the whole certificate (DER). */
interface Pin {
  readonly of: 'spki' | 'certificate';
  readonly digest: Buffer;
}

/**
 * `sha256/BASE64` pins the leaf's public key (SubjectPublicKeyInfo, as curl's `--pinnedpubkey sha256//…` and HPKP
 * spell it); 64 hex digits, with or without colons (as `openssl x509 -fingerprint -sha256` prints them), pin the
 * leaf certificate itself.
 */
function parsePins(pin: string | readonly string[]): Pin[] {
  const list = typeof pin === 'string' ? [pin] : pin;
  if (list.length === 0) throw new MciasClientError('invalid_argument', 'pin must name at least one SHA-256 pin');
  return list.map((text) => {
    const spki = /^sha256\/\/?([A-Za-z0-9+/]{43}=)$/.exec(text.trim());
    if (spki?.[1] !== undefined) return { of: 'spki', digest: Buffer.from(spki[1], 'base64') };
    const hex = text.trim().replace(/:/g, '');
    if (/^[0-9a-f]{64}$/i.test(hex)) return { of: 'certificate', digest: Buffer.from(hex, 'hex') };
    throw new MciasClientError('invalid_argument', 'each pin must be sha256/BASE64 (the public key) or a SHA-256 certificate fingerprint in hex');
  });
}

/** The pins of a PEM certificate, in both forms `pin` takes: for configuring a client from the server's certificate. */
export function certificatePins(pem: string | Buffer): { spki: string; certificate: string } {
  checkCaCertificate(pem, 'the certificate');
  const cert = new X509Certificate(pem);
  return {
    spki: `sha256/${createHash('sha256').update(cert.publicKey.export({ type: 'spki', format: 'der' })).digest('base64')}`,
    certificate: cert.fingerprint256,
  };
}

function pinMatches(socket: TLSSocket, pins: readonly Pin[]): boolean {
  const raw = socket.getPeerCertificate(false)?.raw;
  if (raw === undefined) return false;
  const cert = new X509Certificate(raw);
  const spki = createHash('sha256').update(cert.publicKey.export({ type: 'spki', format: 'der' })).digest();
  const whole = createHash('sha256').update(raw).digest();
  // Both sides are SHA-256 digests (parsePins admits only 32 bytes), compared the project's one way (no Buffer#equals).
  return pins.some((p) => timingSafeEqual(p.of === 'spki' ? spki : whole, p.digest));
}

/**
 * An agent that hands a connection to HTTP only after the server's leaf certificate matched a pin, so no request
 * byte (and no bearer token) reaches a server that does not hold the pinned key. With a pin alone the pin is the
 * check (a self-signed certificate needs no CA); with `caCert` too, the chain must verify as well.
 */
class PinningAgent extends Agent {
  readonly #pins: readonly Pin[];
  readonly #verifyChain: boolean;

  constructor(options: AgentOptions, pins: readonly Pin[], verifyChain: boolean) {
    super(options);
    this.#pins = pins;
    this.#verifyChain = verifyChain;
  }

  override createConnection(requestOptions: RequestOptions, callback?: (error: Error | null, socket: Duplex) => void): undefined {
    const options = requestOptions as ConnectionOptions;
    const host = options.host ?? 'localhost';
    const servername = options.servername !== undefined && options.servername !== '' ? options.servername : isIP(host) === 0 ? host : undefined;
    const socket = connect({
      ...options,
      rejectUnauthorized: this.#verifyChain,
      ...(servername === undefined ? { servername: '' } : { servername }),
      ...(this.#verifyChain ? {} : { checkServerIdentity: () => undefined }),
    });
    const fail = (error: Error) => callback?.(error, socket);
    socket.once('error', fail);
    socket.once('secureConnect', () => {
      socket.off('error', fail);
      if (pinMatches(socket, this.#pins)) {
        callback?.(null, socket);
        return;
      }
      const error = Object.assign(new Error('the certificate matches no pin'), { code: 'ERR_TLS_CERT_PIN_MISMATCH' });
      socket.destroy();
      callback?.(error, socket);
    });
    return undefined;
  }
}

/** OpenSSL verification results as Node names them, and Node's own hostname check. */
const TLS_VERIFY_CODES = /CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY|DECRYPT|DECODE)|ALTNAME|HOSTNAME|ISSUER|SIGNATURE_FAILURE|CHAIN_TOO_LONG|PATH_LENGTH/;

/** The server URL as the SDK uses it (https only, no trailing slash); throws MciasClientError `invalid_argument`. */
export function normalizeServerUrl(server: string): string {
  const url = parseServerUrl(server);
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

function parseServerUrl(server: string): URL {
  const invalid = (message: string) => new MciasClientError('invalid_argument', message);
  const scheme = /^([a-z][a-z\d+.-]*):\/\//i.exec(server)?.[1]?.toLowerCase();
  if (scheme === undefined) {
    // `127.0.0.1:8443` or `localhost:8443` (which URL would take for the scheme `localhost:`).
    if (HOST_AND_PORT.test(server)) throw invalid(`the server URL ${JSON.stringify(server)} has no scheme: use ${JSON.stringify(`https://${server}`)}`);
    throw invalid(`the server URL ${JSON.stringify(server)} is not a URL (expected https://HOST:PORT)`);
  }
  if (scheme === 'http') {
    throw invalid(`the server is HTTPS only: use ${JSON.stringify(`https://${server.slice('http://'.length)}`)}`);
  }
  let url: URL;
  try {
    url = new URL(server);
  } catch {
    throw invalid(`the server URL ${JSON.stringify(server)} is not a URL`);
  }
  if (url.protocol !== 'https:') throw invalid(`the server URL must be https:// (got ${url.protocol}//)`);
  if (url.username !== '' || url.password !== '') throw new MciasClientError('invalid_argument', 'the server URL must not contain credentials');
  if (url.search !== '' || url.hash !== '') throw new MciasClientError('invalid_argument', 'the server URL must not have a query or fragment');
  return url;
}

/** A host name, IPv4 or [IPv6] address, with an optional port and path: what people type for a server. */
const HOST_AND_PORT = /^(?:[a-z\d](?:[a-z\d.-]*[a-z\d])?|\[[\da-f:.]+\])(?::\d{1,5})?(?:\/\S*)?$/i;

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/**
 * Throws MciasClientError `invalid_argument` unless `pem` holds at least one PEM certificate and every one parses.
 * `name` says what held it in the message (the SDK's option, or the CLI's file).
 */
export function checkCaCertificate(pem: string | Buffer, name = 'caCert'): void {
  const text = typeof pem === 'string' ? pem : pem.toString('latin1');
  const blocks = text.match(PEM_CERTIFICATE) ?? [];
  if (blocks.length === 0) {
    if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)) {
      throw new MciasClientError('invalid_argument', `${name} holds a private key, not a certificate: use the certificate file`);
    }
    throw new MciasClientError('invalid_argument', `${name} holds no certificate: it has no "-----BEGIN CERTIFICATE-----" line`);
  }
  for (const block of blocks) {
    try {
      new X509Certificate(block);
    } catch {
      throw new MciasClientError('invalid_argument', `${name} holds a certificate that cannot be read`);
    }
  }
}

const INVALID = Symbol('invalid JSON');

function parseBody(raw: Buffer, contentType: string | undefined): unknown {
  if (raw.length === 0) return undefined;
  if (contentType === undefined || !/^application\/([a-z.+-]*\+)?json\b/i.test(contentType)) return INVALID;
  try {
    return JSON.parse(raw.toString('utf8')) as unknown;
  } catch {
    return INVALID;
  }
}

/** Used only when the answer is not problem+json (a proxy's error page, say). */
const CODE_BY_STATUS: Readonly<Record<number, string>> = {
  400: 'invalid_request',
  401: 'unauthenticated',
  403: 'forbidden',
  404: 'not_found',
  409: 'conflict',
  413: 'payload_too_large',
  429: 'rate_limited',
  503: 'unavailable',
};

function apiError(status: number, headers: IncomingHttpHeaders, body: unknown): MciasApiError {
  const problem = typeof body === 'object' && body !== null ? (body as Record<string, unknown>) : {};
  const text = (key: string): string | undefined => {
    const value = problem[key];
    // Server text goes into terminals and logs: keep it one short line of printable characters.
    return typeof value === 'string' && value !== '' ? value.replace(/[\p{Cc}\p{Cf}]+/gu, ' ').slice(0, 500) : undefined;
  };
  const header = (name: string): string | undefined => {
    const value = headers[name];
    return typeof value === 'string' ? value : undefined;
  };
  const retryAfter = Number(header('retry-after'));
  const reason = text('reason');
  const requestId = text('request_id') ?? header('x-request-id');
  return new MciasApiError({
    status,
    code: text('code') ?? CODE_BY_STATUS[status] ?? (status >= 500 ? 'internal' : 'http_error'),
    message: text('detail') ?? text('title') ?? STATUS_CODES[status] ?? `HTTP ${status}`,
    ...(reason === undefined ? {} : { reason }),
    ...(requestId === undefined ? {} : { requestId }),
    ...(Number.isFinite(retryAfter) && header('retry-after') !== undefined ? { retryAfter } : {}),
  });
}
