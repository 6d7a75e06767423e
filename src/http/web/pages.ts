import cookie from '@fastify/cookie';
import csrfProtection from '@fastify/csrf-protection';
import formbody from '@fastify/formbody';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { MciasError } from '../../domain/errors.ts';
import type { Principal } from '../../domain/model.ts';
import { TYPED_CODE_PATTERN } from '../../domain/totp.ts';
import { requestContext } from '../access.ts';
import { STATUS_BY_CODE } from '../problem.ts';
import type { AppServices } from '../services.ts';
import { STYLE_SOURCE, escapeHtml, form, page, type Field, type FormError } from './html.ts';
import { TOKEN_COOKIE, allowedRedirect, type WebSettings } from './policy.ts';

/**
 * The login page (SECURITY.md §55): an encapsulated plugin, so its HTML error pages, form bodies, CSRF check and CSP
 * stay here while the API keeps its JSON-only handling. Every step calls the domain functions the API calls (login
 * with its throttle, the own password change), and carries what the API's client carries between steps: the TOTP
 * step re-sends username and password in the POST body (never in a URL), and the temporary-password change runs
 * with the restricted session token, as `PUT /v1/me/password` does.
 */

/**
 * `__Host-`: only this host, over HTTPS, with Path=/, can set it, so an app on a sibling subdomain (under the token
 * cookie's domain) cannot plant a CSRF secret of its choosing.
 */
const CSRF_COOKIE = '__Host-mcias_csrf';
const CODE = new RegExp(TYPED_CODE_PATTERN);
const Text = (maxLength: number) => Type.String({ maxLength });
const Redirect = Type.Optional(Text(4_096));
/** As long as the API allows (src/http/schemas.ts); an empty field is answered on the form, not as a bad request. */
const Password = Text(4_096);

const USERNAME: Field = { name: 'username', label: 'Username', type: 'text', autocomplete: 'username' };
const PASSWORD: Field = { name: 'password', label: 'Password', type: 'password', autocomplete: 'current-password' };
const CODE_FIELD: Field = {
  name: 'totp_code',
  label: 'Authentication code',
  type: 'text',
  autocomplete: 'one-time-code',
  inputmode: 'numeric',
  hint: 'The 6-digit code from your authenticator app, or a recovery code.',
};

/** A form's error as the person should read it; anything unexpected goes on to the error page. */
function formError(error: unknown, field: string): { status: number; error: FormError; retryAfter?: number } {
  if (!(error instanceof MciasError)) throw error;
  const status = STATUS_BY_CODE[error.code];
  switch (error.code) {
    case 'invalid_credentials':
      return { status, error: { field, message: field === 'totp_code' ? 'That code is not correct.' : 'The username or password is not correct.' } };
    case 'invalid_request':
      return { status, error: { field, message: `${error.message[0]?.toUpperCase() ?? ''}${error.message.slice(1)}.` } };
    case 'rate_limited':
      return {
        status,
        error: { message: `Too many attempts. Try again in ${error.retryAfter ?? 1} seconds.` },
        ...(error.retryAfter === undefined ? {} : { retryAfter: error.retryAfter }),
      };
    case 'forbidden':
      return { status, error: { message: 'Administrators must turn on TOTP before they log in: ask another administrator.' } };
    default:
      throw error;
  }
}

export const webPages: FastifyPluginAsyncTypebox<{ services: AppServices; web: WebSettings }> = async (app, { services, web }) => {
  const csp = [
    "default-src 'none'",
    `style-src ${STYLE_SOURCE}`,
    // A browser applies form-action to the redirect that answers a form too: the allowed origins are where a login
    // sends it back to.
    `form-action 'self' ${web.allowedRedirectOrigins.join(' ')}`.trimEnd(),
    "frame-ancestors 'none'",
    "base-uri 'none'",
  ].join('; ');
  app.addHook('onRequest', async (_request, reply) => {
    reply.header('content-security-policy', csp);
  });
  // Forms only: the API's JSON parser is not for these routes.
  app.removeContentTypeParser('application/json');
  await app.register(formbody);
  // Cookies (the session's and the CSRF secret's) in this context only; forward-auth registers its own.
  await app.register(cookie);
  await app.register(csrfProtection, {
    cookieKey: CSRF_COOKIE,
    cookieOpts: { path: '/', sameSite: 'strict', httpOnly: true, secure: true },
  });

  app.setErrorHandler((error, request, reply) => {
    const status =
      error instanceof MciasError ? STATUS_BY_CODE[error.code] : typeof (error as { statusCode?: unknown }).statusCode === 'number' ? (error as { statusCode: number }).statusCode : 500;
    if (error instanceof MciasError && error.retryAfter !== undefined) reply.header('retry-after', String(error.retryAfter));
    if (status >= 500) request.log.error({ err: error }, 'login page failed');
    const message =
      status === 403
        ? 'This form has expired or did not come from this page. Go back to the login page and try again.'
        : status === 429
          ? 'Too many requests. Wait a moment and try again.'
          : status >= 500
            ? `Something went wrong. The server log has the details under request ${request.id}.`
            : 'The request was not understood. Go back to the login page and try again.';
    return html(reply.code(status), page('Cannot continue', `<p role="alert">${message}</p><p><a href="/login">Back to the login page</a></p>`));
  });

  const html = (reply: FastifyReply, body: string) => reply.type('text/html; charset=utf-8').send(body);
  const cookieToken = (request: FastifyRequest) => request.cookies[TOKEN_COOKIE];
  const back = (rd: string | undefined) => allowedRedirect(rd, web.allowedRedirectOrigins);
  const done = (reply: FastifyReply, rd: string | undefined) => reply.code(303).header('location', back(rd) ?? '/login').send();

  const loginPage = (reply: FastifyReply, rd: string | undefined, username?: string, failure?: { status: number; error: FormError }) =>
    html(
      reply.code(failure?.status ?? 200),
      page(
        'Log in',
        form({
          action: '/login',
          csrf: reply.generateCsrf(),
          hidden: { rd: back(rd) },
          fields: [{ ...USERNAME, ...(username === undefined ? {} : { value: username }) }, PASSWORD],
          submit: 'Log in',
          error: failure?.error,
        }),
      ),
    );
  const totpPage = (reply: FastifyReply, input: { rd?: string | undefined; username: string; password: string }, failure?: { status: number; error: FormError }) =>
    html(
      reply.code(failure?.status ?? 200),
      page(
        'Enter your code',
        form({
          action: '/login',
          csrf: reply.generateCsrf(),
          // The API's way: the second request carries the password again (in the body, never the URL).
          hidden: { rd: back(input.rd), username: input.username, password: input.password },
          fields: [CODE_FIELD],
          submit: 'Continue',
          error: failure?.error,
        }),
      ),
    );
  const changePage = (reply: FastifyReply, rd: string | undefined, failure?: { status: number; error: FormError }) =>
    html(
      reply.code(failure?.status ?? 200),
      page(
        'Choose a new password',
        `<p>Your password is temporary: choose your own before you go on.</p>\n` +
          form({
            action: '/login/password',
            csrf: reply.generateCsrf(),
            hidden: { rd: back(rd) },
            fields: [
              { ...PASSWORD, name: 'current_password', label: 'Current password' },
              { name: 'new_password', label: 'New password', type: 'password', autocomplete: 'new-password', hint: 'Long and your own: a few words make a good one.' },
              { name: 'new_password_again', label: 'New password, again', type: 'password', autocomplete: 'new-password' },
            ],
            submit: 'Change password',
            error: failure?.error,
          }),
      ),
    );
  const signedInPage = (reply: FastifyReply, username: string) =>
    html(
      reply,
      page(
        'Signed in',
        `<p>You are signed in as <strong>${escapeHtml(username)}</strong>.</p>\n` +
          form({ action: '/logout', csrf: reply.generateCsrf(), fields: [], submit: 'Log out' }),
      ),
    );

  app.get(
    '/login',
    {
      config: { access: 'public' },
      schema: { hide: true, querystring: Type.Object({ rd: Redirect }, { additionalProperties: false }) },
    },
    async (request, reply) => {
      const token = cookieToken(request);
      const current = token === undefined ? undefined : await services.lifecycle.validate(token, requestContext(request));
      if (current?.active === true) {
        if (back(request.query.rd) !== undefined) return done(reply, request.query.rd);
        return signedInPage(reply, current.account.username);
      }
      return loginPage(reply, request.query.rd);
    },
  );

  app.post(
    '/login',
    {
      config: { access: 'public' },
      // Before the body is validated: a post without its token learns nothing from field errors.
      preValidation: app.csrfProtection,
      schema: {
        hide: true,
        body: Type.Object(
          { _csrf: Type.Optional(Text(256)), rd: Redirect, username: Text(256), password: Password, totp_code: Type.Optional(Text(64)) },
          { additionalProperties: false },
        ),
      },
    },
    async (request, reply) => {
      const { rd, username, password } = request.body;
      const totpCode = request.body.totp_code === '' ? undefined : request.body.totp_code;
      // An empty field is a slip, not an attempt: answered here, it costs no hash and counts against nobody.
      if (username.trim() === '') return loginPage(reply, rd, undefined, { status: 400, error: { field: 'username', message: 'Enter your username.' } });
      if (password === '') return loginPage(reply, rd, username, { status: 400, error: { field: 'password', message: 'Enter your password.' } });
      if (totpCode !== undefined && !CODE.test(totpCode)) {
        return totpPage(reply, { rd, username, password }, { status: 400, error: { field: 'totp_code', message: 'Enter the 6-digit code.' } });
      }
      let result;
      try {
        result = await services.login.login({ username, password, totpCode }, requestContext(request));
      } catch (error) {
        if (error instanceof MciasError && error.code === 'totp_required') return totpPage(reply, { rd, username, password });
        const failure = formError(error, totpCode === undefined ? 'password' : 'totp_code');
        if (failure.retryAfter !== undefined) reply.header('retry-after', String(failure.retryAfter));
        return totpCode === undefined || failure.error.field === undefined
          ? loginPage(reply, rd, username, failure)
          : totpPage(reply, { rd, username, password }, failure);
      }
      reply.setCookie(TOKEN_COOKIE, result.token, {
        httpOnly: true,
        secure: true,
        sameSite: 'lax',
        path: '/',
        ...(web.cookieDomain === undefined ? {} : { domain: web.cookieDomain }),
        maxAge: Math.max(0, Math.floor((result.expiresAt - Date.now()) / 1000)),
      });
      if (result.account.passwordChangeRequired) return changePage(reply, rd);
      return done(reply, rd);
    },
  );

  app.post(
    '/login/password',
    {
      config: { access: 'public' },
      // Before the body is validated: a post without its token learns nothing from field errors.
      preValidation: app.csrfProtection,
      schema: {
        hide: true,
        body: Type.Object(
          { _csrf: Type.Optional(Text(256)), rd: Redirect, current_password: Password, new_password: Password, new_password_again: Password },
          { additionalProperties: false },
        ),
      },
    },
    async (request, reply) => {
      const { rd } = request.body;
      const principal = await sessionOf(request);
      if (principal === undefined) return loginPage(reply, rd, undefined, { status: 401, error: { message: 'Your session has ended: log in again.' } });
      if (request.body.new_password !== request.body.new_password_again) {
        return changePage(reply, rd, { status: 400, error: { field: 'new_password_again', message: 'The two new passwords differ.' } });
      }
      try {
        await services.accounts.changeOwnPassword(
          principal,
          { currentPassword: request.body.current_password, newPassword: request.body.new_password },
          requestContext(request),
        );
      } catch (error) {
        const failure = formError(error, error instanceof MciasError && error.code === 'invalid_credentials' ? 'current_password' : 'new_password');
        if (failure.retryAfter !== undefined) reply.header('retry-after', String(failure.retryAfter));
        return changePage(reply, rd, failure);
      }
      return done(reply, rd);
    },
  );

  app.post(
    '/logout',
    {
      config: { access: 'public' },
      // Before the body is validated: a post without its token learns nothing from field errors.
      preValidation: app.csrfProtection,
      schema: { hide: true, body: Type.Object({ _csrf: Type.Optional(Text(256)) }, { additionalProperties: false }) },
    },
    async (request, reply) => {
      const principal = await sessionOf(request);
      if (principal !== undefined) await services.lifecycle.logout(principal, requestContext(request));
      reply.clearCookie(TOKEN_COOKIE, { path: '/', ...(web.cookieDomain === undefined ? {} : { domain: web.cookieDomain }) });
      return reply.code(303).header('location', '/login').send();
    },
  );

  /** The cookie's session, with the check every bearer token gets (src/http/access.ts); undefined when it is not valid. */
  async function sessionOf(request: FastifyRequest): Promise<Principal | undefined> {
    const token = cookieToken(request);
    if (token === undefined) return undefined;
    const checked = await services.tokens.check(token);
    return checked.ok ? checked.principal : undefined;
  }
};
