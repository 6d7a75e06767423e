import type { IncomingMessage, ServerResponse } from 'node:http';
import { MciasAuth, PROBLEM_CONTENT_TYPE, isProblem, type MciasAuthOptions, type MciasPrincipal, type MciasProblem } from './middleware.ts';

/**
 * Express/Connect middleware over the same core as the Fastify plugin. It needs nothing from Express (only Node's
 * request and response), so it works with Connect, Express 4 and 5, or a bare `http` server.
 *
 *   const auth = mciasExpress({ client });
 *   app.use(auth.authenticate);
 *   app.get('/admin', auth.requireRole('admin'), (req, res) => res.send(`hello ${req.mcias?.username}`));
 */

export type { MciasAuthOptions, MciasPrincipal } from './middleware.ts';

declare global {
  // Express's own way to type what middleware adds to a request.
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      /** The caller, when the request carried a valid MCIAS token. */
      mcias?: MciasPrincipal | undefined;
    }
  }
}

type Request = IncomingMessage & { mcias?: MciasPrincipal | undefined };
type Next = (error?: unknown) => void;
export type MciasHandler = (req: Request, res: ServerResponse, next: Next) => void;

function send(res: ServerResponse, problem: MciasProblem): void {
  res.statusCode = problem.status;
  for (const [name, value] of Object.entries(problem.headers)) res.setHeader(name, value);
  res.setHeader('content-type', PROBLEM_CONTENT_TYPE);
  res.end(JSON.stringify(problem.body));
}

export interface MciasExpress {
  /** Puts the request's principal on `req.mcias` (undefined without a valid token); use it before the guards. */
  readonly authenticate: MciasHandler;
  requireAuth(): MciasHandler;
  requireRole(role: string): MciasHandler;
  requirePermission(resource: string, action: string): MciasHandler;
}

export function mciasExpress(options: MciasAuthOptions): MciasExpress {
  const auth = new MciasAuth(options);
  const guard =
    (check: (req: Request) => MciasProblem | undefined | Promise<MciasProblem | undefined>): MciasHandler =>
    (req, res, next) => {
      Promise.resolve(check(req)).then((refused) => (refused === undefined ? next() : send(res, refused)), next);
    };
  return {
    authenticate: (req, res, next) => {
      auth.authenticate(req.headers).then((found) => {
        if (isProblem(found)) return send(res, found);
        req.mcias = found;
        next();
      }, next);
    },
    requireAuth: () => guard((req) => auth.requireAuth(req.mcias)),
    requireRole: (role) => guard((req) => auth.requireRole(req.mcias, role)),
    requirePermission: (resource, action) => guard((req) => auth.requirePermission(req.mcias, resource, action)),
  };
}
