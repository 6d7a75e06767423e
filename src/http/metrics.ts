import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { ERROR_CODES } from '../domain/errors.ts';
import type { Observer } from '../domain/ports.ts';
import { TOKEN_FAILURES } from '../domain/tokens.ts';

/** Through process.getBuiltinModule, not an ES import, which would load Node's bundled undici (src/http/problem.ts says why). */
const { createServer } = process.getBuiltinModule('node:http');

/**
 * The server's Prometheus metrics (SECURITY.md §48, docs/operations.md says what each means). One registry per
 * server, never prom-client's global one, so that tests and several apps in one process do not share counters.
 * Every label value comes from a fixed set (outcomes, error codes, failure reasons, route patterns, status classes):
 * never a username, an address, a token, or the raw URL.
 */

/** Latency buckets in seconds: a token check takes about a millisecond, a login at the production cost about a second. */
const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const LOGIN_OUTCOMES: ReadonlySet<string> = new Set(['success', ...ERROR_CODES]);
const INACTIVE_REASONS: ReadonlySet<string> = new Set([...TOKEN_FAILURES, 'password_change_required']);
/** A problem's `reason` as the code writes them; anything else is not used as a label. */
const REASON_SHAPE = /^[a-z][a-z0-9_]{0,39}$/;
/** The label for a request that matched no route: its path is the client's, not ours to count by. */
const UNMATCHED = 'unmatched';

export interface HashLoad {
  readonly queued: number;
  readonly running: number;
}

export class Metrics implements Observer {
  readonly registry = new Registry();
  readonly #logins: Counter<'outcome'>;
  readonly #validations: Counter<'result' | 'reason'>;
  readonly #lockouts: Counter;
  readonly #rateLimited: Counter<'source'>;
  readonly #duration: Histogram<'method' | 'route' | 'status_class'>;
  #hashLoad: (() => HashLoad) | undefined;

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.#logins = new Counter({
      name: 'mcias_logins_total',
      help: 'Login attempts that reached the login service, by outcome: success, or the error code of the refusal',
      labelNames: ['outcome'],
      registers,
    });
    this.#validations = new Counter({
      name: 'mcias_token_validations_total',
      help: 'POST /v1/token/validate answers: result active, or inactive with the reason',
      labelNames: ['result', 'reason'],
      registers,
    });
    this.#lockouts = new Counter({ name: 'mcias_lockouts_total', help: 'Lockouts of an account or an address after repeated failures', registers });
    this.#rateLimited = new Counter({
      name: 'mcias_rate_limited_total',
      help: 'Answers with status 429, by source: the reason in the problem body (unspecified if it has none)',
      labelNames: ['source'],
      registers,
    });
    this.#duration = new Histogram({
      name: 'mcias_http_request_duration_seconds',
      help: 'API request latency, by method, route pattern (unmatched for unknown routes) and status class',
      labelNames: ['method', 'route', 'status_class'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    const load = () => this.#hashLoad?.();
    new Gauge({
      name: 'mcias_password_hash_queue_depth',
      help: 'Password hashes waiting for a slot',
      registers,
      collect() {
        this.set(load()?.queued ?? 0);
      },
    });
    new Gauge({
      name: 'mcias_password_hashes_running',
      help: 'Password hashes running now (at most passwords.max_concurrent_hashes)',
      registers,
      collect() {
        this.set(load()?.running ?? 0);
      },
    });
    // The series a dashboard needs from the start read 0 rather than missing.
    for (const outcome of ['success', 'invalid_credentials', 'totp_required', 'rate_limited']) this.#logins.inc({ outcome }, 0);
    this.#validations.inc({ result: 'active' }, 0);
  }

  /** Where the hash gauges read from at each scrape (the server's PasswordHasher). */
  watchHashing(load: () => HashLoad): void {
    this.#hashLoad = load;
  }

  loginAttempt(outcome: string): void {
    this.#logins.inc({ outcome: LOGIN_OUTCOMES.has(outcome) ? outcome : 'other' });
  }

  tokenValidation(outcome: string): void {
    if (outcome === 'active') this.#validations.inc({ result: 'active' });
    else this.#validations.inc({ result: 'inactive', reason: INACTIVE_REASONS.has(outcome) ? outcome : 'other' });
  }

  lockout(): void {
    this.#lockouts.inc();
  }

  /** The text exposition format, with its content type. */
  async scrape(): Promise<{ body: string; contentType: string }> {
    return { body: await this.registry.metrics(), contentType: this.registry.contentType };
  }

  /**
   * Counts every 429 the API sends, whichever limit sent it: one hook sees them all, so a new limit is counted
   * without code of its own. The source is the `reason` of the problem body.
   */
  countRateLimited(reply: FastifyReply, payload: unknown): void {
    if (reply.statusCode !== 429) return;
    let source = 'unspecified';
    if (typeof payload === 'string') {
      try {
        const reason = (JSON.parse(payload) as { reason?: unknown }).reason;
        if (typeof reason === 'string' && REASON_SHAPE.test(reason)) source = reason;
      } catch {
        // not a problem body: unspecified
      }
    }
    this.#rateLimited.inc({ source });
  }

  /** One observation per answered request, labelled by the route's pattern, never by the URL the client sent. */
  observeResponse(request: FastifyRequest, reply: FastifyReply): void {
    const route = request.is404 ? undefined : request.routeOptions.url;
    this.#duration.observe(
      { method: request.method, route: route ?? UNMATCHED, status_class: `${Math.floor(reply.statusCode / 100)}xx` },
      reply.elapsedTime / 1000,
    );
  }
}

/** Adds the hooks that feed `metrics` from every request the app answers. */
export function observeRequests(app: FastifyInstance, metrics: Metrics): void {
  app.addHook('onSend', (_request, reply, payload, done) => {
    metrics.countRateLimited(reply, payload);
    done(null, payload);
  });
  app.addHook('onResponse', (request, reply, done) => {
    metrics.observeResponse(request, reply);
    done();
  });
}

export interface MetricsListener {
  /** Where Prometheus scrapes: `http://HOST:PORT/metrics`. */
  readonly url: string;
  close(): Promise<void>;
}

/** Scrapers are few and local; these bound what a stuck or hostile local client can hold. */
const LISTENER_LIMITS = { maxConnections: 16, headersTimeoutMs: 10_000, requestTimeoutMs: 10_000, keepAliveTimeoutMs: 10_000 };

/**
 * The metrics listener (SECURITY.md §48): plain HTTP on a loopback address (the configuration refuses any other),
 * apart from the API, so it needs no token and the API's limits and logs never see scrapes. GET (or HEAD) /metrics;
 * every other path is 404 and every other method 405.
 */
export async function serveMetrics(metrics: Metrics, listen: { host: string; port: number }, logger: Logger): Promise<MetricsListener> {
  const answer = (request: IncomingMessage, response: ServerResponse) => {
    const headers = { 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' };
    const path = (request.url ?? '').split('?')[0];
    if (path !== '/metrics') {
      response.writeHead(404, { ...headers, 'content-type': 'text/plain; charset=utf-8' }).end('not found: the metrics are at /metrics\n');
      return;
    }
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.writeHead(405, { ...headers, allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end('only GET\n');
      return;
    }
    metrics.scrape().then(
      ({ body, contentType }) => {
        response.writeHead(200, { ...headers, 'content-type': contentType });
        response.end(request.method === 'HEAD' ? undefined : body);
      },
      (error: unknown) => {
        logger.error({ err: error }, 'metrics scrape failed');
        response.writeHead(500, { ...headers, 'content-type': 'text/plain; charset=utf-8' }).end('the metrics could not be collected\n');
      },
    );
  };
  const server = createServer(
    {
      headersTimeout: LISTENER_LIMITS.headersTimeoutMs,
      requestTimeout: LISTENER_LIMITS.requestTimeoutMs,
      keepAliveTimeout: LISTENER_LIMITS.keepAliveTimeoutMs,
      // How often Node enforces the two timeouts above (default 30 s, which would triple them).
      connectionsCheckingInterval: 1_000,
    },
    answer,
  );
  server.maxConnections = LISTENER_LIMITS.maxConnections;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: listen.host, port: listen.port }, () => {
      server.off('error', reject);
      resolve();
    });
  }).catch((error: unknown) => {
    const code = (error as NodeJS.ErrnoException).code;
    throw new Error(`metrics.listen ${listen.host}:${listen.port}: ${code === 'EADDRINUSE' ? 'the address is in use (choose another port, or off)' : (error as Error).message}`);
  });
  server.on('error', (error) => logger.error({ err: error }, 'metrics listener error'));
  const { port } = server.address() as AddressInfo;
  const host = listen.host.includes(':') ? `[${listen.host}]` : listen.host;
  return {
    url: `http://${host}:${port}/metrics`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // A scraper keeps its connection open between scrapes: end it rather than wait for its keep-alive timeout.
        server.closeAllConnections();
      }),
  };
}
