import { once } from 'node:events';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { generateSelfSignedCertificate } from '../../src/cli/certificate.ts';

export interface TlsApp {
  readonly url: string;
  readonly certPem: string;
  /** `METHOD path` of every request that reached the app, in order. */
  readonly requests: string[];
  close(): Promise<void>;
}

/**
 * Serves an in-process app (a harness's, whose clock and keys a test controls) over real TLS on loopback, with a
 * fresh self-signed certificate, so that the SDK meets it exactly as it meets mciassrv.
 */
export async function serveOverTls(app: FastifyInstance): Promise<TlsApp> {
  const { certPem, keyPem } = await generateSelfSignedCertificate(['127.0.0.1', 'localhost']);
  await app.ready();
  const requests: string[] = [];
  const server: Server = createServer({ cert: certPem, key: keyPem }, (req, res) => {
    requests.push(`${req.method ?? ''} ${req.url ?? ''}`);
    app.routing(req, res);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `https://127.0.0.1:${port}`,
    certPem,
    requests,
    async close() {
      server.closeAllConnections();
      server.close();
      await once(server, 'close').catch(() => undefined);
    },
  };
}
