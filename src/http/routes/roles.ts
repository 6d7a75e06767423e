import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { AppServices } from '../services.ts';
import { principalOf, requestContext } from '../access.ts';
import { NoContent, RoleName, noContent, roleView } from '../schemas.ts';

const RoleView = Type.Object(
  {
    name: Type.String(),
    permissions: Type.Array(
      Type.Object({ id: Type.String(), resource: Type.String(), action: Type.String() }, { additionalProperties: false }),
    ),
  },
  { additionalProperties: false },
);

export const roleRoutes: FastifyPluginAsyncTypebox<AppServices> = async (app, services) => {
  const admin = { access: 'admin' } as const;

  app.get(
    '/v1/roles',
    { config: admin, schema: { tags: ['roles'], summary: 'List roles and their permissions', response: { 200: Type.Object({ roles: Type.Array(RoleView) }) } } },
    async () => ({ roles: (await services.roles.list()).map(roleView) }),
  );

  app.post(
    '/v1/roles',
    {
      config: admin,
      schema: {
        tags: ['roles'],
        summary: 'Create a role',
        body: Type.Object({ name: RoleName }, { additionalProperties: false }),
        response: { 201: RoleView },
      },
    },
    async (request, reply) => {
      const role = await services.roles.create(request.body.name, principalOf(request), requestContext(request));
      return reply.code(201).send(roleView(role));
    },
  );

  app.get(
    '/v1/roles/:role',
    {
      config: admin,
      schema: {
        tags: ['roles'],
        summary: 'Show a role: its permissions and the usernames holding it',
        params: Type.Object({ role: RoleName }, { additionalProperties: false }),
        response: { 200: Type.Object({ ...RoleView.properties, holders: Type.Array(Type.String()) }, { additionalProperties: false }) },
      },
    },
    async (request) => {
      const role = await services.roles.show(request.params.role);
      return { ...roleView(role), holders: [...role.holders] };
    },
  );

  app.delete(
    '/v1/roles/:role',
    {
      config: admin,
      schema: {
        tags: ['roles'],
        summary: 'Delete a role (not admin); its grants go with it',
        params: Type.Object({ role: RoleName }, { additionalProperties: false }),
        response: { 204: NoContent },
      },
    },
    async (request, reply) => {
      await services.roles.delete(request.params.role, principalOf(request), requestContext(request));
      return noContent(reply);
    },
  );
};
