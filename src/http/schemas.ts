import { Type, type Static, type TLiteral, type TUnion } from 'typebox';
import type { FastifyReply } from 'fastify';
import { ACCOUNT_KINDS, ACCOUNT_STATUSES, TOKEN_KINDS, type Account, type Role, type TokenInfo } from '../domain/model.ts';
import { NAME_PATTERN_ANY_CASE } from '../domain/names.ts';

/** Schemas shared by several routes, and the one mapping from domain records to API views. */
const NAME = NAME_PATTERN_ANY_CASE;

/** A union of string literals from one of the domain's `as const` lists, so the schema follows the list. */
function literals<const T extends readonly string[]>(values: T): TUnion<{ -readonly [K in keyof T]: TLiteral<T[K]> }> {
  return Type.Union(values.map((value) => Type.Literal(value))) as never;
}

export const AccountKindSchema = literals(ACCOUNT_KINDS);
export const AccountStatusSchema = literals(ACCOUNT_STATUSES);
const TokenKindSchema = literals(TOKEN_KINDS);

export const Username = Type.String({ pattern: NAME, maxLength: 64, description: 'lower-cased before matching' });
export const RoleName = Type.String({ pattern: NAME, maxLength: 64 });
/** Long enough for any real password, short enough that nothing absurd reaches scrypt. */
export const Password = Type.String({ minLength: 1, maxLength: 4096 });
const Timestamp = Type.String({ format: 'date-time', description: 'RFC 3339, UTC' });

export const AccountView = Type.Object(
  {
    id: Type.String({ format: 'uuid' }),
    username: Type.String(),
    kind: AccountKindSchema,
    status: AccountStatusSchema,
    roles: Type.Array(Type.String()),
    totp_enabled: Type.Boolean(),
    password_change_required: Type.Boolean({ description: 'the password is temporary: the account must change it before anything else' }),
    created_at: Timestamp,
  },
  { $id: 'Account', additionalProperties: false },
);

export const TokenResponse = Type.Object(
  {
    token: Type.String(),
    token_type: Type.Literal('Bearer'),
    expires_at: Timestamp,
  },
  { additionalProperties: false },
);

export const ProblemSchema = Type.Object(
  {
    type: Type.String(),
    title: Type.String(),
    status: Type.Integer(),
    code: Type.String(),
    detail: Type.Optional(Type.String()),
    reason: Type.Optional(Type.String()),
    request_id: Type.String(),
  },
  { $id: 'Problem', description: 'RFC 9457 problem details (application/problem+json)' },
);

export const UsernameParams = Type.Object({ username: Username }, { additionalProperties: false });

export const NoContent = Type.Null({ description: 'No Content' });

export function rfc3339(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export function accountView(account: Account): Static<typeof AccountView> {
  return {
    id: account.id,
    username: account.username,
    kind: account.kind,
    status: account.status,
    roles: [...account.roles],
    totp_enabled: account.totpConfirmedAt !== null,
    password_change_required: account.passwordChangeRequired,
    created_at: rfc3339(account.createdAt),
  };
}

/** 204 No Content (the reply's generic type, so the typed route's body schema does not demand a payload). */
export function noContent(reply: FastifyReply): FastifyReply {
  return reply.code(204).send();
}

export function roleView(role: Role): { name: string; permissions: { id: string; resource: string; action: string }[] } {
  return { name: role.name, permissions: role.permissions.map((p) => ({ id: p.id, resource: p.resource, action: p.action })) };
}

export const TokenInfoView = Type.Object(
  {
    jti: Type.String(),
    account: Type.String({ description: 'username of the token\'s account' }),
    kind: TokenKindSchema,
    issued_at: Timestamp,
    expires_at: Timestamp,
    issued_by: Type.Union([Type.String(), Type.Null()], { description: 'username of whoever issued it' }),
  },
  { additionalProperties: false },
);

export function tokenInfoView(token: TokenInfo): Static<typeof TokenInfoView> {
  return {
    jti: token.jti,
    account: token.username,
    kind: token.kind,
    issued_at: rfc3339(token.issuedAt),
    expires_at: rfc3339(token.expiresAt),
    issued_by: token.issuedByUsername,
  };
}

export function tokenResponse(token: string, expiresAt: number): Static<typeof TokenResponse> {
  return { token, token_type: 'Bearer', expires_at: rfc3339(expiresAt) };
}
