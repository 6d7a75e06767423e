/**
 * The one permission rule (SECURITY.md §50), shared by the server's authorization (src/domain/authorization.ts) and
 * the SDK middleware's `requirePermission`: an administrator may do everything; anyone else needs a permission of
 * one of their roles whose resource and action are each the one asked about or `*`.
 */

/** The role that makes an account an administrator. */
export const ADMIN_ROLE = 'admin';

/**
 * Matches every resource, or every action, in a stored permission (never in a question: `permits` is asked about one
 * concrete resource and action, and the HTTP schema refuses `*` there).
 */
export const PERMISSION_WILDCARD = '*';

export interface PermissionSubject {
  readonly roles: readonly string[];
  readonly permissions: readonly { readonly resource: string; readonly action: string }[];
}

/** May `subject` (its current roles and their permissions) do `action` on `resource`? */
export function permits(subject: PermissionSubject, resource: string, action: string): boolean {
  if (subject.roles.includes(ADMIN_ROLE)) return true;
  return subject.permissions.some(
    (p) => (p.resource === resource || p.resource === PERMISSION_WILDCARD) && (p.action === action || p.action === PERMISSION_WILDCARD),
  );
}
