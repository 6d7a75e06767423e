import type { Config } from '../../config/load.ts';

/** The cookie the login page sets and forward-auth reads (SECURITY.md §54, §55). */
export const TOKEN_COOKIE = 'mcias_token';

/** What the login page and forward-auth need from `[web]` (docs/configuration.md). */
export interface WebSettings {
  /** Where forward-auth sends a browser that has no valid token: `tokens.issuer` + `/login`. */
  readonly loginUrl: string;
  /** undefined: a host-only cookie. */
  readonly cookieDomain: string | undefined;
  readonly allowedRedirectOrigins: readonly string[];
}

/** The login page's settings, or undefined when `[web] enabled` is false (then there is no page and no redirect). */
export function webSettings(config: Config): WebSettings | undefined {
  if (!config.web.enabled) return undefined;
  return {
    loginUrl: `${config.tokens.issuer.replace(/\/+$/, '')}/login`,
    cookieDomain: config.web.cookieDomain,
    allowedRedirectOrigins: config.web.allowedRedirectOrigins,
  };
}

/** Longest URL a browser is sent back to. */
const MAX_REDIRECT_LENGTH = 2_048;

/**
 * The one check on where a browser may be sent (SECURITY.md §55, no open redirect): an absolute https URL whose
 * origin is exactly one of the configured ones, with no user info. It is read with the WHATWG URL parser, the one
 * browsers use, and the browser is sent that parse's serialisation, never the text it was given: so relative and
 * scheme-relative URLs (`//evil`, `/\evil`) fail to parse, and backslashes, tabs and the like cannot make the
 * browser read another host than the one checked here.
 */
export function allowedRedirect(target: string | undefined, origins: readonly string[]): string | undefined {
  if (target === undefined || target.length > MAX_REDIRECT_LENGTH) return undefined;
  let url: URL;
  try {
    url = new URL(target);
  } catch {
    return undefined;
  }
  // The origins are https only (src/config/load.ts), so an equal origin is an https URL.
  if (url.username !== '' || url.password !== '') return undefined;
  return origins.includes(url.origin) ? url.href : undefined;
}
