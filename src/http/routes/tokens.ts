import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { AppServices } from '../services.ts';
import { epochSeconds } from '../../domain/clock.ts';
import { principalOf, requestContext } from '../access.ts';
import { AccountKindSchema, NoContent, TokenInfoView, TokenResponse, Username, UsernameParams, noContent, tokenInfoView, tokenResponse } from '../schemas.ts';

const Jti = Type.String({ format: 'uuid' });
const TokenList = Type.Object({ tokens: Type.Array(TokenInfoView) }, { additionalProperties: false });

/** Token listings and revocation, service tokens, validation for apps, and signing-key rotation. */
export const tokenRoutes: FastifyPluginAsyncTypebox<AppServices> = async (app, services) => {
  const { lifecycle } = services;

  app.post(
    '/v1/token/validate',
    {
      config: { access: 'public' },
      schema: {
        tags: ['tokens'],
        summary: 'RFC 7662-style validation: the token is active, with current roles and permissions, or it is not',
        description:
          'Expired, revoked, malformed, forged, wrong-audience and disabled- or deleted-account tokens, and any spelling of a token ' +
          'but the exact one issued (no padding, no stray bits), are all simply {"active": false}.',
        body: Type.Object({ token: Type.String({ maxLength: 8192 }) }, { additionalProperties: false }),
        response: {
          200: Type.Union([
            Type.Object(
              {
                active: Type.Literal(true),
                sub: Type.String(),
                username: Type.String(),
                kind: AccountKindSchema,
                roles: Type.Array(Type.String()),
                permissions: Type.Array(Type.Object({ resource: Type.String(), action: Type.String() }, { additionalProperties: false })),
                exp: Type.Integer({ description: 'seconds since the epoch' }),
                iat: Type.Integer({ description: 'seconds since the epoch' }),
                jti: Type.String(),
              },
              { additionalProperties: false },
            ),
            Type.Object({ active: Type.Literal(false) }, { additionalProperties: false }),
          ]),
        },
      },
    },
    async (request) => {
      const result = await lifecycle.validate(request.body.token, requestContext(request));
      if (!result.active) return { active: false as const };
      return {
        active: true as const,
        sub: result.account.id,
        username: result.account.username,
        kind: result.account.kind,
        roles: [...result.account.roles],
        permissions: result.permissions.map((p) => ({ resource: p.resource, action: p.action })),
        exp: epochSeconds(result.expiresAt),
        iat: epochSeconds(result.issuedAt),
        jti: result.jti,
      };
    },
  );

  app.get(
    '/v1/me/tokens',
    { config: { access: 'human' }, schema: { tags: ['me'], summary: 'Your unexpired, unrevoked tokens', response: { 200: TokenList } } },
    async (request) => ({ tokens: (await lifecycle.listOwn(principalOf(request))).map(tokenInfoView) }),
  );

  app.delete(
    '/v1/me/tokens/:jti',
    {
      config: { access: 'human' },
      schema: {
        tags: ['me'],
        summary: 'Revoke one of your tokens',
        params: Type.Object({ jti: Jti }, { additionalProperties: false }),
        response: { 204: NoContent },
      },
    },
    async (request, reply) => {
      await lifecycle.revokeOwn(principalOf(request), request.params.jti, requestContext(request));
      return noContent(reply);
    },
  );

  app.get(
    '/v1/accounts/:username/tokens',
    {
      config: { access: 'admin' },
      schema: { tags: ['tokens'], summary: "An account's unexpired, unrevoked tokens", params: UsernameParams, response: { 200: TokenList } },
    },
    async (request) => ({ tokens: (await lifecycle.listFor(request.params.username)).map(tokenInfoView) }),
  );

  app.delete(
    '/v1/tokens/:jti',
    {
      config: { access: 'admin' },
      schema: {
        tags: ['tokens'],
        summary: 'Revoke any token',
        params: Type.Object({ jti: Jti }, { additionalProperties: false }),
        response: { 204: NoContent },
      },
    },
    async (request, reply) => {
      await lifecycle.revoke(principalOf(request), request.params.jti, requestContext(request));
      return noContent(reply);
    },
  );

  const ServiceParams = Type.Object({ username: Username }, { additionalProperties: false });

  app.post(
    '/v1/accounts/:username/token',
    {
      // Admin or delegate: the route admits human callers, the domain decides which of them may.
      config: { access: 'human' },
      schema: {
        tags: ['tokens'],
        summary: "Issue a system account's token (admin, or a human holding the role named after it)",
        description:
          'A system account holds at most one live token: issuing revokes the previous one in the same transaction. ' +
          'A delegate must hold every role the service holds (else 403 forbidden, reason delegation_exceeds_roles).',
        params: ServiceParams,
        response: { 201: TokenResponse },
      },
    },
    async (request, reply) => {
      const issued = await lifecycle.issueServiceToken(principalOf(request), request.params.username, requestContext(request));
      return reply.code(201).send(tokenResponse(issued.token, issued.record.expiresAt));
    },
  );

  app.delete(
    '/v1/accounts/:username/token',
    {
      config: { access: 'admin' },
      schema: { tags: ['tokens'], summary: "Revoke a system account's live token", params: ServiceParams, response: { 204: NoContent } },
    },
    async (request, reply) => {
      await lifecycle.revokeServiceToken(principalOf(request), request.params.username, requestContext(request));
      return noContent(reply);
    },
  );

  app.post(
    '/v1/keys/rotate',
    {
      config: { access: 'admin' },
      schema: {
        tags: ['tokens'],
        summary: 'Start signing with a new key; old keys keep verifying until their tokens expire',
        response: { 200: Type.Object({ kid: Type.String() }, { additionalProperties: false }) },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      return { kid: await services.keys.rotate({ id: principal.account.id, username: principal.account.username }, requestContext(request)) };
    },
  );
};
