import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { TYPED_CODE_PATTERN } from '../../domain/totp.ts';
import type { AppServices } from '../services.ts';
import { principalOf, requestContext } from '../access.ts';
import { AccountView, NoContent, Password, ProblemSchema, TokenResponse, Username, accountView, noContent, rfc3339, tokenResponse } from '../schemas.ts';

export const authRoutes: FastifyPluginAsyncTypebox<AppServices> = async (app, services) => {
  app.post(
    '/v1/auth/login',
    {
      config: { access: 'public' },
      schema: {
        tags: ['auth'],
        summary: 'Log a person in with username and password; returns a session token',
        description:
          'Human accounts only. Unknown user, wrong password, disabled account and system account all answer the same 401 invalid_credentials.',
        body: Type.Object(
          {
            username: Username,
            password: Password,
            totp_code: Type.Optional(
              Type.String({ pattern: TYPED_CODE_PATTERN, description: 'the 6-digit TOTP code, or a recovery code, once TOTP is enabled' }),
            ),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object(
            {
              token: Type.String(),
              token_type: Type.Literal('Bearer'),
              expires_at: TokenResponse.properties.expires_at,
              account: AccountView,
              password_change_required: Type.Optional(
                Type.Boolean({
                  description:
                    'present (true) when the password is temporary: until PUT /v1/me/password, this token may only call GET /v1/me, PUT /v1/me/password and POST /v1/auth/logout',
                }),
              ),
              totp_enrollment_required: Type.Optional(
                Type.Boolean({ description: 'present (true) on the bootstrap admin\'s first login when admins must use TOTP: enroll now' }),
              ),
            },
            { additionalProperties: false },
          ),
          401: ProblemSchema,
          403: ProblemSchema,
        },
      },
    },
    async (request) => {
      const { username, password, totp_code: totpCode } = request.body;
      const result = await services.login.login({ username, password, totpCode }, requestContext(request));
      return {
        token: result.token,
        token_type: 'Bearer' as const,
        expires_at: rfc3339(result.expiresAt),
        account: accountView(result.account),
        ...(result.account.passwordChangeRequired ? { password_change_required: true } : {}),
        ...(result.totpEnrollmentRequired ? { totp_enrollment_required: true } : {}),
      };
    },
  );

  app.post(
    '/v1/auth/renew',
    {
      config: { access: 'token' },
      schema: {
        tags: ['auth'],
        summary: 'Exchange the presented token for a new one (new jti and expiry); the old one is revoked',
        description: "Humans renew up to tokens.max_session_age after their password login; system accounts while active.",
        response: { 200: TokenResponse },
      },
    },
    async (request) => {
      const issued = await services.lifecycle.renew(principalOf(request), requestContext(request));
      return tokenResponse(issued.token, issued.record.expiresAt);
    },
  );

  app.post(
    '/v1/auth/logout',
    {
      config: { access: 'token', duringPasswordChange: true },
      schema: { tags: ['auth'], summary: 'Revoke the presented token', response: { 204: NoContent } },
    },
    async (request, reply) => {
      await services.lifecycle.logout(principalOf(request), requestContext(request));
      return noContent(reply);
    },
  );
};
