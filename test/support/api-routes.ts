import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { routeKey } from './inspect.ts';

/**
 * A real server's API as a client meets it: its routes read from its own `GET /openapi.json` (so a route added
 * tomorrow is covered by every test that walks them), and a keep-alive HTTPS client for tests that send many
 * requests (test/reliability/).
 */

export interface ApiOperation {
  /** `METHOD /path/{param}` (test/support/inspect.ts routeKey). */
  readonly key: string;
  readonly method: string;
  /** The OpenAPI path, with `{param}` placeholders. */
  readonly path: string;
  readonly access: string | undefined;
  readonly parameters: readonly string[];
  /** The request body's JSON schema, when the route takes one. */
  readonly bodySchema: Record<string, unknown> | undefined;
}

export interface ApiResponse {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: string;
}

export interface ApiClient {
  send(options: { method: string; path: string; body?: unknown; rawBody?: string; token?: string; headers?: Record<string, string> }): Promise<ApiResponse>;
  /** The operations the server documents at `/openapi.json`. */
  operations(): Promise<ApiOperation[]>;
  close(): void;
}

/** A client of `url` that trusts only `caFile`, over `sockets` kept-alive connections. */
export function apiClient(url: string, caFile: string, sockets = 8): ApiClient {
  const agent = new Agent({ keepAlive: true, maxSockets: sockets, ca: readFileSync(caFile) });
  const send: ApiClient['send'] = (options) => {
    const payload = options.rawBody ?? (options.body === undefined ? undefined : JSON.stringify(options.body));
    return new Promise((resolve, reject) => {
      const req = request(
        `${url}${options.path}`,
        {
          method: options.method,
          agent,
          headers: {
            // Content-Length always: Node's client frames a GET or DELETE body with neither it nor chunking.
            ...(payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)) }),
            ...(options.token === undefined ? {} : { authorization: `Bearer ${options.token}` }),
            ...options.headers,
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (d: Buffer) => chunks.push(d));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(payload);
    });
  };
  return {
    send,
    async operations() {
      const response = await send({ method: 'GET', path: '/openapi.json' });
      if (response.status !== 200) throw new Error(`GET /openapi.json answered ${response.status}`);
      const document = JSON.parse(response.body) as { paths: Record<string, Record<string, Record<string, unknown>>> };
      return Object.entries(document.paths).flatMap(([path, methods]) =>
        Object.entries(methods).map(([method, operation]) => {
          const content = (operation['requestBody'] as { content?: Record<string, { schema?: Record<string, unknown> }> } | undefined)?.content;
          return {
            key: routeKey(method, path),
            method: method.toUpperCase(),
            path,
            access: operation['x-mcias-access'] as string | undefined,
            parameters: ((operation['parameters'] as { name: string; in: string }[] | undefined) ?? []).filter((p) => p.in === 'path').map((p) => p.name),
            bodySchema: content?.['application/json']?.schema,
          };
        }),
      );
    },
    close: () => agent.destroy(),
  };
}
