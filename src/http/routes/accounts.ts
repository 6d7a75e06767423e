import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { AppServices } from '../services.ts';
import { principalOf, requestContext } from '../access.ts';
import { AccountKindSchema, AccountStatusSchema, AccountView, NoContent, Password, RoleName, Username, UsernameParams, accountView, noContent } from '../schemas.ts';

const Temporary = Type.Boolean({
  description: 'default true: the person must replace the password at their next login (false: for automation)',
});

/** Account and role-membership administration (admin). */
export const accountRoutes: FastifyPluginAsyncTypebox<AppServices> = async (app, services) => {
  const admin = { access: 'admin' } as const;

  app.get(
    '/v1/accounts',
    {
      config: admin,
      schema: { tags: ['accounts'], summary: 'List accounts', response: { 200: Type.Object({ accounts: Type.Array(AccountView) }) } },
    },
    async () => ({ accounts: (await services.accounts.list()).map(accountView) }),
  );

  app.post(
    '/v1/accounts',
    {
      config: admin,
      schema: {
        tags: ['accounts'],
        summary: 'Create an account (password required for human, refused for system)',
        description: 'The password is temporary unless "temporary": false: the person must change it at their first login.',
        body: Type.Object(
          {
            username: Username,
            kind: AccountKindSchema,
            password: Type.Optional(Password),
            temporary: Type.Optional(Temporary),
          },
          { additionalProperties: false },
        ),
        response: { 201: AccountView },
      },
    },
    async (request, reply) => {
      const account = await services.accounts.create(request.body, principalOf(request), requestContext(request));
      return reply.code(201).send(accountView(account));
    },
  );

  app.get(
    '/v1/accounts/:username',
    { config: admin, schema: { tags: ['accounts'], summary: 'Show an account', params: UsernameParams, response: { 200: AccountView } } },
    async (request) => accountView(await services.accounts.get(request.params.username)),
  );

  app.patch(
    '/v1/accounts/:username',
    {
      config: admin,
      schema: {
        tags: ['accounts'],
        summary: 'Enable or disable an account; disabling revokes all of its tokens',
        params: UsernameParams,
        body: Type.Object({ status: AccountStatusSchema }, { additionalProperties: false }),
        response: { 200: AccountView },
      },
    },
    async (request) =>
      accountView(await services.accounts.setStatus(request.params.username, request.body.status, principalOf(request), requestContext(request))),
  );

  app.delete(
    '/v1/accounts/:username',
    {
      config: admin,
      schema: {
        tags: ['accounts'],
        summary: 'Delete an account, its tokens and credentials (audit rows stay)',
        params: UsernameParams,
        response: { 204: NoContent },
      },
    },
    async (request, reply) => {
      await services.accounts.delete(request.params.username, principalOf(request), requestContext(request));
      return noContent(reply);
    },
  );

  app.put(
    '/v1/accounts/:username/password',
    {
      config: admin,
      schema: {
        tags: ['accounts'],
        summary: "Reset a human account's password; revokes its tokens",
        description: 'The password is temporary unless "temporary": false: the person must change it at their next login.',
        params: UsernameParams,
        body: Type.Object({ password: Password, temporary: Type.Optional(Temporary) }, { additionalProperties: false }),
        response: { 204: NoContent },
      },
    },
    async (request, reply) => {
      await services.accounts.resetPassword(request.params.username, request.body, principalOf(request), requestContext(request));
      return noContent(reply);
    },
  );

  app.post(
    '/v1/accounts/:username/unlock',
    {
      config: admin,
      schema: {
        tags: ['accounts'],
        summary: "Clear an account's failed-login count, so the person may log in at once (SECURITY.md §9)",
        description: 'The addresses that made the failures stay limited until their own lockout ends.',
        params: UsernameParams,
        response: {
          200: Type.Object(
            {
              username: Username,
              failures_cleared: Type.Integer({ minimum: 0, description: 'failed attempts the counter held (0: it was not throttled)' }),
            },
            { additionalProperties: false },
          ),
        },
      },
    },
    async (request) => {
      const { username, failures } = await services.accounts.unlock(request.params.username, principalOf(request), requestContext(request));
      return { username, failures_cleared: failures };
    },
  );

  const RoleParams = Type.Object({ username: Username, role: RoleName }, { additionalProperties: false });

  app.put(
    '/v1/accounts/:username/roles/:role',
    {
      config: admin,
      schema: {
        tags: ['accounts'],
        summary: 'Grant a role (404 if the role does not exist)',
        description:
          "Granting a system account a role that the delegate who issued its live token lacks revokes that token (SECURITY.md §38).",
        params: RoleParams,
        response: { 204: NoContent },
      },
    },
    async (request, reply) => {
      await services.roles.grant(request.params.username, request.params.role, principalOf(request), requestContext(request));
      return noContent(reply);
    },
  );

  app.delete(
    '/v1/accounts/:username/roles/:role',
    { config: admin, schema: { tags: ['accounts'], summary: 'Revoke a role', params: RoleParams, response: { 204: NoContent } } },
    async (request, reply) => {
      await services.roles.revoke(request.params.username, request.params.role, principalOf(request), requestContext(request));
      return noContent(reply);
    },
  );
};
