import { Type, type Static, type TLiteral, type TUnion } from 'typebox';
import type { FastifyReply } from 'fastify';
import { formatDuration } from '../config/duration.ts';
import {
  ACCOUNT_KINDS,
  ACCOUNT_STATUSES,
  PG_ROTATION_MODES,
  PG_SSLMODES,
  TOKEN_KINDS,
  type Account,
  type Permission,
  type PgCredentialsRecord,
  type RegistrationRecord,
  type Role,
  type TokenInfo,
} from '../domain/model.ts';
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
export const PgSslModeSchema = literals(PG_SSLMODES);
export const PgRotationModeSchema = literals(PG_ROTATION_MODES);

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

/** A resource or action as stored: lower-case words with `.`, `_`, `:`, `/`, `-`, or `*` (every one). */
export const PERMISSION_PART = '^(\\*|[a-z0-9][a-z0-9._:/-]{0,127})$';
/** A resource or action asked about: one concrete name, never `*`. */
export const PERMISSION_QUERY_PART = '^[a-z0-9][a-z0-9._:/-]{0,127}$';

export const PermissionView = Type.Object(
  {
    id: Type.String({ format: 'uuid' }),
    resource: Type.String(),
    action: Type.String(),
    description: Type.String(),
    roles: Type.Array(Type.String(), { description: 'the roles holding it' }),
    created_at: Timestamp,
  },
  { additionalProperties: false },
);

export function permissionView(p: Permission): Static<typeof PermissionView> {
  return { id: p.id, resource: p.resource, action: p.action, description: p.description, roles: [...p.roles], created_at: rfc3339(p.createdAt) };
}

const registrationFields = {
  id: Type.String({ format: 'uuid' }),
  roles: Type.Array(Type.String(), { description: 'granted to each account registered with the code' }),
  uses_left: Type.Integer(),
  expires_at: Timestamp,
  created_at: Timestamp,
};
/** A registration code as listed: never the code, which exists only in the answer that created it. */
export const RegistrationView = Type.Object(registrationFields, { additionalProperties: false });
export const NewRegistrationView = Type.Object(
  { ...registrationFields, code: Type.String({ description: 'the code itself, shown this once' }) },
  { additionalProperties: false },
);

export function registrationView(r: RegistrationRecord): Static<typeof RegistrationView> {
  return { id: r.id, roles: [...r.roles], uses_left: r.usesLeft, expires_at: rfc3339(r.expiresAt), created_at: rfc3339(r.createdAt) };
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

const NullableTimestamp = Type.Union([Timestamp, Type.Null()]);

/** A service's PostgreSQL connection settings and rotation state, without the password (PUT answers this). */
const pgCredentialsFields = {
  host: Type.String(),
  port: Type.Integer(),
  database: Type.String(),
  username: Type.String({ description: 'the login role to connect as (alternating mode: the active one of <group_role>_a and _b)' }),
  group_role: Type.Union([Type.String(), Type.Null()], { description: 'alternating mode: the group role both logins belong to; single mode: null' }),
  sslmode: PgSslModeSchema,
  ca_cert: Type.Union([Type.String(), Type.Null()], { description: 'PEM certificates to trust for the server' }),
  mode: PgRotationModeSchema,
  admin: Type.Union([Type.String(), Type.Null()], { description: 'the [pg_admin.NAME] entry rotation uses; null: the one matching host and port' }),
  rotate_every: Type.Union([Type.String(), Type.Null()], { description: 'a duration such as 30d; null: no scheduled rotation' }),
  last_rotated_at: NullableTimestamp,
  next_rotation_at: NullableTimestamp,
  last_rotation_error: Type.Union([Type.String(), Type.Null()]),
  rotation_pending: Type.Boolean({ description: 'a rotation has begun and not finished: fetch again shortly' }),
};

export const PgCredentialsView = Type.Object(pgCredentialsFields, { additionalProperties: false });
/** What a read hands out: the settings and the login's password. */
export const PgCredentialsWithPassword = Type.Object({ ...pgCredentialsFields, password: Type.String() }, { additionalProperties: false });

export function pgCredentialsView(record: PgCredentialsRecord): Static<typeof PgCredentialsView> {
  return {
    host: record.host,
    port: record.port,
    database: record.database,
    username: record.activeLogin,
    group_role: record.mode === 'alternating' ? record.username : null,
    sslmode: record.sslmode,
    ca_cert: record.caCert,
    mode: record.mode,
    admin: record.admin,
    rotate_every: record.rotateEvery === null ? null : formatDuration(record.rotateEvery),
    last_rotated_at: record.lastRotatedAt === null ? null : rfc3339(record.lastRotatedAt),
    next_rotation_at: record.nextRotationAt === null ? null : rfc3339(record.nextRotationAt),
    last_rotation_error: record.lastRotationError,
    rotation_pending: record.pendingPassword !== null,
  };
}
