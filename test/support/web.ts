import assert from 'node:assert/strict';
import type { LightMyRequestResponse } from 'fastify';
import type { Harness } from './harness.ts';

/** The `[web]` settings of the in-process login-page tests: one app origin, and the login page on another host. */
export const APP_ORIGIN = 'https://app.example.test';
export const WEB_CONFIG = {
  web: { enabled: true, cookie_domain: 'example.test', allowed_redirect_origins: [APP_ORIGIN] },
  tokens: { issuer: 'https://auth.example.test' },
} as const;

/**
 * A browser for `inject`: keeps the cookies the server sets (by name; the tests use one host), sends them back, and
 * reads the CSRF token of the last form it was shown.
 */
export class FormBrowser {
  readonly #h: Harness;
  readonly cookies = new Map<string, string>();
  csrf: string | undefined;
  last: LightMyRequestResponse | undefined;

  constructor(h: Harness) {
    this.#h = h;
  }

  #remember(response: LightMyRequestResponse): LightMyRequestResponse {
    for (const c of response.cookies as { name: string; value: string; maxAge?: number }[]) {
      if (c.value === '' || c.maxAge === 0) this.cookies.delete(c.name);
      else this.cookies.set(c.name, c.value);
    }
    const csrf = /name="_csrf" value="([^"]+)"/.exec(response.body)?.[1];
    if (csrf !== undefined) this.csrf = csrf;
    this.last = response;
    return response;
  }

  get cookieHeader(): string {
    return [...this.cookies].map(([name, value]) => `${name}=${value}`).join('; ');
  }

  async get(url: string, headers: Record<string, string> = {}): Promise<LightMyRequestResponse> {
    return this.#remember(await this.#h.app.inject({ method: 'GET', url, headers: { cookie: this.cookieHeader, ...headers } }));
  }

  /** Posts a form (urlencoded) with the current CSRF token unless `fields` says otherwise. */
  async post(url: string, fields: Record<string, string | undefined>, options: { csrf?: boolean } = {}): Promise<LightMyRequestResponse> {
    const all = { ...(options.csrf === false || this.csrf === undefined ? {} : { _csrf: this.csrf }), ...fields };
    const body = new URLSearchParams(Object.entries(all).filter((e): e is [string, string] => e[1] !== undefined)).toString();
    return this.#remember(
      await this.#h.app.inject({
        method: 'POST',
        url,
        headers: { cookie: this.cookieHeader, 'content-type': 'application/x-www-form-urlencoded' },
        payload: body,
      }),
    );
  }

  /** The hidden field `name` of the last page, or undefined. */
  hidden(name: string): string | undefined {
    const value = new RegExp(`type="hidden" name="${name}" value="([^"]*)"`).exec(this.last?.body ?? '')?.[1];
    return value?.replace(/&#(\d+);/g, (_m, code: string) => String.fromCharCode(Number(code)));
  }

  /** Logs in with the form (GET then POST); returns the POST's answer. */
  async login(username: string, password: string, rd?: string): Promise<LightMyRequestResponse> {
    const shown = await this.get(rd === undefined ? '/login' : `/login?rd=${encodeURIComponent(rd)}`);
    assert.equal(shown.statusCode, 200, shown.body);
    return this.post('/login', { username, password, rd: this.hidden('rd') });
  }
}
