import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { parseDuration } from '../../config/duration.ts';
import { fail } from '../../domain/errors.ts';
import { MAX_REGISTRATION_USES } from '../../domain/registrations.ts';
import type { AppServices } from '../services.ts';
import { principalOf, requestContext } from '../access.ts';
import { AccountView, NewRegistrationView, NoContent, Password, RegistrationView, RoleName, Username, accountView, noContent, registrationView } from '../schemas.ts';

/** Registration codes (admin) and sign-up with one (public): SECURITY.md §49. */
export const registrationRoutes: FastifyPluginAsyncTypebox<AppServices> = async (app, services) => {
  const admin = { access: 'admin' } as const;

  app.get(
    '/v1/registrations',
    {
      config: admin,
      schema: {
        tags: ['registrations'],
        summary: 'List registration codes (never the codes themselves)',
        response: { 200: Type.Object({ registrations: Type.Array(RegistrationView) }, { additionalProperties: false }) },
      },
    },
    async () => ({ registrations: (await services.registrations.list()).map(registrationView) }),
  );

  app.post(
    '/v1/registrations',
    {
      config: admin,
      schema: {
        tags: ['registrations'],
        summary: 'Create a registration code, shown in this answer only',
        description: 'Granting admin on sign-up needs "allow_admin": true (audited).',
        body: Type.Object(
          {
            roles: Type.Optional(Type.Array(RoleName, { maxItems: 64, description: 'granted on sign-up; admin needs allow_admin' })),
            uses: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_REGISTRATION_USES, description: 'default 1' })),
            expires_in: Type.Optional(Type.String({ maxLength: 16, description: 'a duration such as 7d (the default), 1m to 365d' })),
            allow_admin: Type.Optional(Type.Boolean({ description: 'required for a code that grants admin' })),
          },
          { additionalProperties: false },
        ),
        response: { 201: NewRegistrationView },
      },
    },
    async (request, reply) => {
      const { roles, uses, expires_in: expiresIn, allow_admin: allowAdmin } = request.body;
      const ttlMs = expiresIn === undefined ? undefined : parseDuration(expiresIn);
      if (ttlMs === undefined && expiresIn !== undefined) fail('invalid_request', 'expires_in must be a duration such as 12h or 7d');
      const { registration, code } = await services.registrations.create({ roles, uses, ttlMs, allowAdmin }, principalOf(request), requestContext(request));
      return reply.code(201).send({ ...registrationView(registration), code });
    },
  );

  app.delete(
    '/v1/registrations/:id',
    {
      config: admin,
      schema: {
        tags: ['registrations'],
        summary: 'Delete a registration code: it can no longer be redeemed',
        params: Type.Object({ id: Type.String({ format: 'uuid' }) }, { additionalProperties: false }),
        response: { 204: NoContent },
      },
    },
    async (request, reply) => {
      await services.registrations.delete(request.params.id, principalOf(request), requestContext(request));
      return noContent(reply);
    },
  );

  app.post(
    '/v1/register',
    {
      config: { access: 'public' },
      schema: {
        tags: ['registrations'],
        summary: 'Create your own (human) account with a registration code',
        description:
          'An unknown, malformed, expired, used-up or deleted code is one answer, 401 invalid_credentials, and counts against the ' +
          'address like a failed login. The body takes exactly these fields: roles and kind come from the code, never from here.',
        body: Type.Object(
          { code: Type.String({ minLength: 1, maxLength: 256 }), username: Username, password: Password },
          { additionalProperties: false },
        ),
        response: { 201: AccountView },
      },
    },
    async (request, reply) => {
      const account = await services.registrations.register(request.body, requestContext(request));
      return reply.code(201).send(accountView(account));
    },
  );
};
