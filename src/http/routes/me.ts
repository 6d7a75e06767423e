import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { AppServices } from '../services.ts';
import { principalOf, requestContext } from '../access.ts';
import { AccountView, NoContent, Password, accountView, noContent } from '../schemas.ts';

export const meRoutes: FastifyPluginAsyncTypebox<AppServices> = async (app, services) => {
  app.get(
    '/v1/me',
    {
      config: { access: 'token', duringPasswordChange: true },
      schema: { tags: ['me'], summary: 'The calling account', response: { 200: AccountView } },
    },
    async (request) => accountView(principalOf(request).account),
  );

  app.put(
    '/v1/me/password',
    {
      config: { access: 'human', duringPasswordChange: true },
      schema: {
        tags: ['me'],
        summary: 'Change your own password; every other token of the account is revoked',
        description: 'Also the way out of a temporary password: the change clears password_change_required.',
        body: Type.Object({ current_password: Password, new_password: Password }, { additionalProperties: false }),
        response: { 204: NoContent },
      },
    },
    async (request, reply) => {
      await services.accounts.changeOwnPassword(
        principalOf(request),
        { currentPassword: request.body.current_password, newPassword: request.body.new_password },
        requestContext(request),
      );
      return noContent(reply);
    },
  );
};
