import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { TOTP_CODE_PATTERN, TYPED_CODE_PATTERN } from '../../domain/totp.ts';
import type { AppServices } from '../services.ts';
import { principalOf, requestContext } from '../access.ts';
import { NoContent, Password, UsernameParams, noContent } from '../schemas.ts';

const Code = Type.String({ pattern: TOTP_CODE_PATTERN, description: 'the current 6-digit code' });

/** TOTP enrollment, confirmation and removal for people; an administrator's reset for a lost authenticator. */
export const totpRoutes: FastifyPluginAsyncTypebox<AppServices> = async (app, services) => {
  const { totp } = services;

  app.post(
    '/v1/me/totp',
    {
      config: { access: 'human' },
      schema: {
        tags: ['me'],
        summary: 'Start TOTP enrollment: a fresh secret and its otpauth:// URI (not active until confirmed)',
        description: 'Needs the current password (re-authentication): a token alone cannot turn TOTP on. A wrong one is 401 invalid_credentials.',
        body: Type.Object({ password: Password }, { additionalProperties: false }),
        response: { 200: Type.Object({ secret: Type.String(), otpauth_uri: Type.String() }, { additionalProperties: false }) },
      },
    },
    async (request) => {
      const { secret, uri } = await totp.begin(principalOf(request), request.body.password, requestContext(request));
      return { secret, otpauth_uri: uri };
    },
  );

  app.post(
    '/v1/me/totp/confirm',
    {
      config: { access: 'human' },
      schema: {
        tags: ['me'],
        summary: 'Activate TOTP with a correct code; returns ten single-use recovery codes, shown this once',
        body: Type.Object({ code: Code }, { additionalProperties: false }),
        response: { 200: Type.Object({ recovery_codes: Type.Array(Type.String()) }, { additionalProperties: false }) },
      },
    },
    async (request) => ({ recovery_codes: await totp.confirm(principalOf(request), request.body.code, requestContext(request)) }),
  );

  app.delete(
    '/v1/me/totp',
    {
      config: { access: 'human' },
      schema: {
        tags: ['me'],
        summary: 'Remove TOTP (needs the password and a current code)',
        body: Type.Object({ password: Password, code: Type.String({ pattern: TYPED_CODE_PATTERN }) }, { additionalProperties: false }),
        response: { 204: NoContent },
      },
    },
    async (request, reply) => {
      await totp.disable(principalOf(request), request.body, requestContext(request));
      return noContent(reply);
    },
  );

  app.delete(
    '/v1/accounts/:username/totp',
    {
      config: { access: 'admin' },
      schema: { tags: ['accounts'], summary: 'Reset a lost authenticator (removes TOTP and recovery codes)', params: UsernameParams, response: { 204: NoContent } },
    },
    async (request, reply) => {
      await totp.reset(principalOf(request), request.params.username, requestContext(request));
      return noContent(reply);
    },
  );
};
