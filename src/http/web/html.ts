import { createHash } from 'node:crypto';

/**
 * The login pages' HTML (SECURITY.md §55): server-rendered, no script, one inline stylesheet allowed by its hash.
 * Every value is escaped; an error is tied to its field with aria-describedby, and a form-wide one is an alert.
 */

const STYLE = [
  'body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1b1d21}',
  'main{max-width:24rem;margin:4rem auto;padding:2rem;background:#fff;border:1px solid #d5d8de;border-radius:8px}',
  'h1{font-size:1.4rem;margin:0 0 1rem}',
  'label{display:block;font-weight:600;margin-top:1rem}',
  'input{box-sizing:border-box;width:100%;padding:.5rem;font:inherit;border:1px solid #8a909c;border-radius:4px}',
  'input:focus,button:focus{outline:3px solid #1f5fbf;outline-offset:1px}',
  'button{margin-top:1.5rem;width:100%;padding:.6rem;font:inherit;font-weight:600;color:#fff;background:#1f5fbf;border:0;border-radius:4px}',
  '.error{color:#a4141b;margin:.25rem 0 0}',
  '[role=alert]{color:#a4141b;border:1px solid #a4141b;border-radius:4px;padding:.5rem;margin:0 0 1rem}',
  '.hint{color:#4a505c;font-size:.9rem;margin:.25rem 0 0}',
].join('');

/** The `style-src` source that allows exactly the stylesheet above. */
export const STYLE_SOURCE = `'sha256-${createHash('sha256').update(STYLE).digest('base64')}'`;

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export interface Field {
  readonly name: string;
  readonly label: string;
  readonly type: 'text' | 'password';
  readonly autocomplete: string;
  readonly value?: string;
  readonly hint?: string;
  readonly inputmode?: 'numeric';
}

/** A form error: on one field (`field`), or on the whole form. */
export interface FormError {
  readonly field?: string;
  readonly message: string;
}

function input(field: Field, error: FormError | undefined, autofocus: boolean): string {
  const id = `f-${field.name}`;
  const described = [field.hint ? `${id}-hint` : '', error?.field === field.name ? `${id}-error` : ''].filter((s) => s !== '');
  return [
    `<label for="${id}">${escapeHtml(field.label)}</label>`,
    `<input id="${id}" name="${field.name}" type="${field.type}" autocomplete="${field.autocomplete}" required`,
    field.value === undefined ? '' : ` value="${escapeHtml(field.value)}"`,
    field.inputmode === undefined ? '' : ` inputmode="${field.inputmode}"`,
    described.length > 0 ? ` aria-describedby="${described.join(' ')}"` : '',
    error?.field === field.name ? ' aria-invalid="true"' : '',
    autofocus ? ' autofocus' : '',
    '>',
    field.hint ? `<p class="hint" id="${id}-hint">${escapeHtml(field.hint)}</p>` : '',
    error?.field === field.name ? `<p class="error" id="${id}-error">${escapeHtml(error.message)}</p>` : '',
  ].join('');
}

export function form(options: {
  readonly action: string;
  readonly csrf: string;
  readonly hidden?: Readonly<Record<string, string | undefined>>;
  readonly fields: readonly Field[];
  readonly submit: string;
  readonly error?: FormError | undefined;
}): string {
  const { error } = options;
  // Focus goes to the field in error, else to the first empty one.
  const focus = options.fields.find((f) => f.name === error?.field) ?? options.fields.find((f) => f.value === undefined) ?? options.fields[0];
  const hidden = Object.entries({ _csrf: options.csrf, ...options.hidden })
    .filter((entry): entry is [string, string] => entry[1] !== undefined)
    .map(([name, value]) => `<input type="hidden" name="${name}" value="${escapeHtml(value)}">`);
  return [
    error !== undefined && error.field === undefined ? `<p role="alert">${escapeHtml(error.message)}</p>` : '',
    `<form method="post" action="${options.action}" novalidate>`,
    ...hidden,
    ...options.fields.map((f) => input(f, error, f === focus)),
    `<button type="submit">${escapeHtml(options.submit)}</button>`,
    '</form>',
  ].join('\n');
}

export function page(title: string, body: string): string {
  return [
    '<!doctype html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    '<meta name="referrer" content="no-referrer">',
    `<title>${escapeHtml(title)} · MCIAS</title>`,
    `<style>${STYLE}</style>`,
    '</head>',
    '<body>',
    '<main>',
    `<h1>${escapeHtml(title)}</h1>`,
    body,
    '</main>',
    '</body>',
    '</html>',
  ].join('\n');
}
