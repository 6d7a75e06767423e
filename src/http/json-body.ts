import type { FastifyInstance } from 'fastify';
import { MciasError } from '../domain/errors.ts';

/**
 * Request bodies that name one key twice (`{"kind":"human","kind":"system"}`) are refused with 400: JSON.parse keeps
 * the last value, and another parser in front of MCIAS (a proxy, a WAF, the app that built the body) may keep the
 * first, so the two would act on different requests. Nested objects are checked too.
 *
 * How: Fastify's own JSON parser runs first (secure-json-parse, so `__proto__` and `constructor.prototype` stay
 * refused, SECURITY.md §33, and malformed JSON gets its usual answer); only text it accepted is then scanned for
 * repeated keys. JSON.parse cannot report them (a reviver sees the finished object), and the libraries that can
 * were worse here: jsonc-parser's visitor recurses and overflows the stack on a 20 KB body of nested brackets that
 * JSON.parse accepts, lossless-json allows a key repeated with an identical value and is ~15x slower than JSON.parse
 * on long strings, and an AST parser (momoa) is slower still. The scan below is iterative and, because the text is
 * already known to be valid JSON, needs only strings and brackets: a string followed by `:` is a key, every other
 * string is skipped whole, and nothing outside strings is a quote or a bracket except structure. Its cost is in
 * docs/operations.md ("Request bodies").
 */

/** Every string (its escapes skipped whole), with `:` after it when it is a key; or a bracket. */
const TOKEN = /"[^"\\]*(?:\\.[^"\\]*)*"(\s*:)?|[{}[\]]/g;

/** The first key that occurs twice in one object of `text`, which must already be valid JSON; else undefined. */
export function duplicateKey(text: string): string | undefined {
  // One entry per open bracket: the keys seen so far for an object, null for an array.
  const open: (Set<string> | null)[] = [];
  const token = new RegExp(TOKEN);
  for (let match = token.exec(text); match !== null; match = token.exec(text)) {
    const [found, colon] = match;
    if (found === '{') open.push(new Set());
    else if (found === '[') open.push(null);
    else if (found === '}' || found === ']') open.pop();
    else if (colon !== undefined) {
      const quoted = found.slice(0, found.length - colon.length);
      // "\u0061" and "a" are the same key.
      const key = quoted.includes('\\') ? (JSON.parse(quoted) as string) : quoted.slice(1, -1);
      const keys = open.at(-1);
      if (keys === null || keys === undefined) continue; // cannot happen in valid JSON
      if (keys.has(key)) return key;
      keys.add(key);
    }
  }
  return undefined;
}

/** Field names are echoed in the detail only when they look like one: never a long or odd string a client chose. */
const NAMEABLE = /^[A-Za-z0-9_.-]{1,64}$/;

/** Replaces Fastify's application/json parser with the same parser plus the duplicate-key check. */
export function refuseDuplicateKeys(app: FastifyInstance, poisoning: 'error'): void {
  const parseJson = app.getDefaultJsonParser(poisoning, poisoning);
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const text = String(body); // parseAs 'string' always gives a string
    parseJson(request, text, (error, value) => {
      if (error !== null && error !== undefined) return done(error, undefined);
      const repeated = duplicateKey(text);
      if (repeated === undefined) return done(null, value);
      const which = NAMEABLE.test(repeated) ? `the key "${repeated}"` : 'a key';
      done(new MciasError('invalid_request', `the JSON body names ${which} more than once in one object`), undefined);
    });
  });
}
