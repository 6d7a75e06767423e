import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { AppServices } from '../app.ts';
import { principalOf, requestContext } from '../access.ts';
import { AccountView, NoContent, Password, ProblemSchema, TokenResponse, Username, accountView, noContent, rfc3339 } from '../schemas.ts';

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
            totp_code: Type.Optional(Type.String({ pattern: '^[0-9A-Za-z-]{6,32}$', description: 'second factor, once TOTP is enrolled' })),
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
            },
            { additionalProperties: false },
          ),
          401: ProblemSchema,
        },
      },
    },
    async (request) => {
      const { username, password } = request.body;
      const result = await services.login.login({ username, password }, requestContext(request));
      return {
        token: result.token,
        token_type: 'Bearer' as const,
        expires_at: rfc3339(result.expiresAt),
        account: accountView(result.account),
      };
    },
  );

  app.post(
    '/v1/auth/logout',
    { config: { access: 'token' }, schema: { tags: ['auth'], summary: 'Revoke the presented token', response: { 204: NoContent } } },
    async (request, reply) => {
      await services.login.logout(principalOf(request), requestContext(request));
      return noContent(reply);
    },
  );
};
