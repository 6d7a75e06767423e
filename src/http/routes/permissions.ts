import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { AppServices } from '../services.ts';
import { principalOf, requestContext } from '../access.ts';
import { NoContent, PERMISSION_PART, PERMISSION_QUERY_PART, PermissionView, RoleName, noContent, permissionView } from '../schemas.ts';

const PermissionId = Type.Object({ id: Type.String({ format: 'uuid' }) }, { additionalProperties: false });
const RolePermission = Type.Object({ role: RoleName, id: Type.String({ format: 'uuid' }) }, { additionalProperties: false });

/** Permissions, their attachment to roles (admin), and the check apps ask (SECURITY.md §50). */
export const permissionRoutes: FastifyPluginAsyncTypebox<AppServices> = async (app, services) => {
  const admin = { access: 'admin' } as const;

  app.get(
    '/v1/permissions',
    {
      config: admin,
      schema: {
        tags: ['permissions'],
        summary: 'List permissions with the roles holding each',
        response: { 200: Type.Object({ permissions: Type.Array(PermissionView) }, { additionalProperties: false }) },
      },
    },
    async () => ({ permissions: (await services.permissions.list()).map(permissionView) }),
  );

  app.post(
    '/v1/permissions',
    {
      config: admin,
      schema: {
        tags: ['permissions'],
        summary: 'Create a permission: a (resource, action) pair; * in either matches every one',
        body: Type.Object(
          {
            resource: Type.String({ pattern: PERMISSION_PART, maxLength: 128 }),
            action: Type.String({ pattern: PERMISSION_PART, maxLength: 128 }),
            description: Type.String({ maxLength: 512 }),
          },
          { additionalProperties: false },
        ),
        response: { 201: PermissionView },
      },
    },
    async (request, reply) => {
      const permission = await services.permissions.create(request.body, principalOf(request), requestContext(request));
      return reply.code(201).send(permissionView(permission));
    },
  );

  app.delete(
    '/v1/permissions/:id',
    {
      config: admin,
      schema: { tags: ['permissions'], summary: 'Delete a permission; every role loses it', params: PermissionId, response: { 204: NoContent } },
    },
    async (request, reply) => {
      await services.permissions.delete(request.params.id, principalOf(request), requestContext(request));
      return noContent(reply);
    },
  );

  app.put(
    '/v1/roles/:role/permissions/:id',
    { config: admin, schema: { tags: ['permissions'], summary: 'Attach a permission to a role', params: RolePermission, response: { 204: NoContent } } },
    async (request, reply) => {
      await services.permissions.grant(request.params.role, request.params.id, principalOf(request), requestContext(request));
      return noContent(reply);
    },
  );

  app.delete(
    '/v1/roles/:role/permissions/:id',
    { config: admin, schema: { tags: ['permissions'], summary: 'Detach a permission from a role', params: RolePermission, response: { 204: NoContent } } },
    async (request, reply) => {
      await services.permissions.revoke(request.params.role, request.params.id, principalOf(request), requestContext(request));
      return noContent(reply);
    },
  );

  app.post(
    '/v1/authz/check',
    {
      config: { access: 'token' },
      schema: {
        tags: ['permissions'],
        summary: "May the holder of this token do this action on this resource? Asked by an app with its own token",
        description:
          'allowed is false for a token that is not active (expired, revoked, forged, disabled or deleted account, temporary password). ' +
          'admin may do everything. Read from the database at each check: a change is seen by the next check on every instance.',
        body: Type.Object(
          {
            token: Type.String({ maxLength: 8192 }),
            resource: Type.String({ pattern: PERMISSION_QUERY_PART, maxLength: 128 }),
            action: Type.String({ pattern: PERMISSION_QUERY_PART, maxLength: 128 }),
          },
          { additionalProperties: false },
        ),
        response: { 200: Type.Object({ allowed: Type.Boolean() }, { additionalProperties: false }) },
      },
    },
    async (request) => ({ allowed: await services.permissions.check(request.body.token, request.body.resource, request.body.action) }),
  );
};
