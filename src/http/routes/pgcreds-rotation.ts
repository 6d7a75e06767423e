import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { parseDuration } from '../../config/duration.ts';
import { fail } from '../../domain/errors.ts';
import type { AppServices } from '../services.ts';
import { principalOf, requestContext } from '../access.ts';
import { PgCredentialsView, UsernameParams, pgCredentialsView } from '../schemas.ts';
import { PgCredentialsBody } from './pgcreds.ts';

/** PUT's body without the password (provisioning generates it), and whether to create the database too. */
const ProvisionBody = Type.Object(
  {
    ...Type.Omit(PgCredentialsBody, ['password']).properties,
    create_database: Type.Optional(Type.Boolean({ description: 'also create the database, owned by the group role (single mode: the login); default false' })),
  },
  { additionalProperties: false },
);

const FAILURES =
  'A failure on the PostgreSQL side is 502 upstream_failed with its reason (pg_unreachable, pg_tls_failed, pg_admin_refused, ' +
  'pg_role_missing, pg_outcome_unknown), and a server without a [pg_admin.NAME] entry is 409 conflict, reason no_pg_admin.';

/**
 * Rotating and provisioning services' PostgreSQL passwords on their servers (docs/pgcreds.md, Rotation;
 * SECURITY.md §43). Admin only; answers never hold a password (the service fetches it with GET).
 */
export const pgRotationRoutes: FastifyPluginAsyncTypebox<AppServices> = async (app, services) => {
  const { pgRotation } = services;

  app.post(
    '/v1/accounts/:username/pgcreds/rotate',
    {
      config: { access: 'admin' },
      schema: {
        tags: ['pgcreds'],
        summary: "Set a new random password on the service's PostgreSQL login now, and store it",
        description:
          'An unfinished earlier rotation is finished instead. Whatever fails, the stored password is one the server accepts ' +
          `(or the pending one, which recovery sets). ${FAILURES} Another rotation in progress: 409 conflict, reason rotation_in_progress.`,
        params: UsernameParams,
        response: { 200: PgCredentialsView },
      },
    },
    async (request) => pgCredentialsView(await pgRotation.rotate(request.params.username, principalOf(request), requestContext(request))),
  );

  app.post(
    '/v1/accounts/:username/pgcreds/provision',
    {
      config: { access: 'admin' },
      schema: {
        tags: ['pgcreds'],
        summary: "Create the service's PostgreSQL login role(s), optionally its database, with generated passwords, and store them",
        description: `Only for a service without stored credentials (else 409 conflict, reason pgcreds_exist). ${FAILURES}`,
        params: UsernameParams,
        body: ProvisionBody,
        response: { 201: PgCredentialsView },
      },
    },
    async (request, reply) => {
      const { rotate_every: rotateEvery, ca_cert: caCert, create_database: createDatabase, ...body } = request.body;
      const every = rotateEvery === undefined ? null : parseDuration(rotateEvery);
      if (every === undefined) fail('invalid_request', 'rotate_every must be a duration such as 12h or 30d');
      const record = await pgRotation.provision(
        request.params.username,
        { ...body, caCert, rotateEvery: every, createDatabase: createDatabase ?? false },
        principalOf(request),
        requestContext(request),
      );
      return reply.code(201).send(pgCredentialsView(record));
    },
  );
};
