import type { AccountService } from '../domain/accounts.ts';
import type { AuditTrail } from '../domain/audit-trail.ts';
import type { LoginService } from '../domain/auth.ts';
import type { PgCredentialsService } from '../domain/pgcreds.ts';
import type { KeyRing } from '../domain/keys.ts';
import type { TokenLifecycle } from '../domain/lifecycle.ts';
import type { PermissionService } from '../domain/permissions.ts';
import type { PgRotationService } from '../domain/pgcreds-rotation.ts';
import type { RegistrationService } from '../domain/registrations.ts';
import type { RoleService } from '../domain/roles.ts';
import type { FailureSummaries } from '../domain/summaries.ts';
import type { TokenService } from '../domain/tokens.ts';
import type { TotpService } from '../domain/totp.ts';

/**
 * What the routes call: domain services, built once by the caller (src/server.ts, or a test). No store: the
 * services hold theirs, so nothing in src/http reads or writes the database itself.
 */
export interface AppServices {
  readonly accounts: AccountService;
  readonly roles: RoleService;
  readonly login: LoginService;
  readonly lifecycle: TokenLifecycle;
  readonly totp: TotpService;
  readonly tokens: TokenService;
  readonly keys: KeyRing;
  readonly audit: AuditTrail;
  /** Where 429 refusals are counted, bounded (SECURITY.md §41). */
  readonly summaries: FailureSummaries;
  readonly pgcreds: PgCredentialsService;
  readonly pgRotation: PgRotationService;
  readonly registrations: RegistrationService;
  readonly permissions: PermissionService;
  /** Throws when the database does not answer. */
  readonly ready: () => Promise<void>;
}
