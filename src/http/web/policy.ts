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
 * origin is exactly one of the configured ones, with no user info. Relative and scheme-relative URLs (`//evil`,
 * `/\evil`), other schemes, backslashes, whitespace and control characters are refused before parsing, so a browser's
 * more forgiving parser cannot read another host out of what passed here. Answers the URL as parsed (normalised).
 */
export function allowedRedirect(target: string | undefined, origins: readonly string[]): string | undefined {
  if (target === undefined || target.length > MAX_REDIRECT_LENGTH) return undefined;
  if (!/^https:\/\/[^/\\]/i.test(target) || /[\\\s\x00-\x1f\x7f]/.test(target)) return undefined;
  let url: URL;
  try {
    url = new URL(target);
  } catch {
    return undefined;
  }
  if (url.protocol !== 'https:' || url.username !== '' || url.password !== '') return undefined;
  return origins.includes(url.origin) ? url.href : undefined;
}
