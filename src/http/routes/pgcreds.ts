import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { parseDuration } from '../../config/duration.ts';
import { fail } from '../../domain/errors.ts';
import type { AppServices } from '../services.ts';
import { principalOf, requestContext } from '../access.ts';
import {
  NoContent,
  PgCredentialsView,
  PgCredentialsWithPassword,
  PgRotationModeSchema,
  PgSslModeSchema,
  UsernameParams,
  noContent,
  pgCredentialsView,
} from '../schemas.ts';

/** Field sizes the schema bounds before the domain checks them exactly (bytes, host syntax, certificates). Provision's body reuses it. */
export const PgCredentialsBody = Type.Object(
  {
    host: Type.String({ minLength: 1, maxLength: 253, description: 'host name or IP address of the PostgreSQL server' }),
    port: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535, description: 'default 5432' })),
    database: Type.String({ minLength: 1, maxLength: 63 }),
    username: Type.String({ minLength: 1, maxLength: 63, description: 'single: the login role; alternating: the group role (at most 61 bytes)' }),
    password: Type.String({ minLength: 1, maxLength: 1024, description: "the login's current password (alternating: <username>_a's)" }),
    sslmode: Type.Optional(PgSslModeSchema),
    ca_cert: Type.Optional(Type.String({ minLength: 1, maxLength: 32768, description: 'PEM certificates to trust for the server' })),
    mode: Type.Optional(PgRotationModeSchema),
    admin: Type.Optional(Type.String({ pattern: '^[a-z][a-z0-9_-]{0,31}$', description: 'a [pg_admin.NAME] entry of the configuration' })),
    rotate_every: Type.Optional(Type.String({ maxLength: 16, description: 'a duration such as 30d, at least 1h' })),
  },
  { additionalProperties: false },
);

/**
 * Services' PostgreSQL credentials (docs/pgcreds.md): stored by administrators, read by the service itself, its
 * delegates and administrators (SECURITY.md §45). Rotation and provisioning have routes of their own.
 */
export const pgCredentialsRoutes: FastifyPluginAsyncTypebox<AppServices> = async (app, services) => {
  const { pgcreds } = services;

  app.get(
    '/v1/accounts/:username/pgcreds',
    {
      // Any token: the service's own, or a person's; the domain decides which of them may (SECURITY.md §45).
      config: { access: 'token' },
      schema: {
        tags: ['pgcreds'],
        summary: "A system account's PostgreSQL credentials, with the password (the service itself, an admin or a delegate)",
        description:
          'Anyone else is 403 before the name is looked up. A delegate must hold every role the service holds (else 403 ' +
          'forbidden, reason delegation_exceeds_roles). Every read, and every refused one, is an audit event.',
        params: UsernameParams,
        response: { 200: PgCredentialsWithPassword },
      },
    },
    async (request) => {
      const { record, password } = await pgcreds.get(principalOf(request), request.params.username, requestContext(request));
      return { ...pgCredentialsView(record), password };
    },
  );

  app.put(
    '/v1/accounts/:username/pgcreds',
    {
      config: { access: 'admin' },
      schema: {
        tags: ['pgcreds'],
        summary: "Store or replace a system account's PostgreSQL credentials",
        description: 'Replacing clears the last rotation error; refused (409 rotation_in_progress) while a rotation is under way. The answer never holds the password.',
        params: UsernameParams,
        body: PgCredentialsBody,
        response: { 200: PgCredentialsView },
      },
    },
    async (request) => {
      const { rotate_every: rotateEvery, ca_cert: caCert, ...body } = request.body;
      const every = rotateEvery === undefined ? null : parseDuration(rotateEvery);
      if (every === undefined) fail('invalid_request', 'rotate_every must be a duration such as 12h or 30d');
      const stored = await pgcreds.put(principalOf(request), request.params.username, { ...body, caCert, rotateEvery: every }, requestContext(request));
      return pgCredentialsView(stored);
    },
  );

  app.delete(
    '/v1/accounts/:username/pgcreds',
    {
      config: { access: 'admin' },
      schema: {
        tags: ['pgcreds'],
        summary: "Remove a system account's PostgreSQL credentials (the roles on the PostgreSQL server stay)",
        params: UsernameParams,
        response: { 204: NoContent },
      },
    },
    async (request, reply) => {
      await pgcreds.delete(principalOf(request), request.params.username, requestContext(request));
      return noContent(reply);
    },
  );
};
