/**
 * A fixture's value, set by its `before` hook: reading it earlier (at file load, outside a hook or test) is a
 * mistake in the test, said plainly instead of surfacing as `undefined` somewhere else.
 */
export function required<T>(value: T | undefined, fixture: string, what: string): T {
  if (value === undefined) throw new Error(`the ${fixture} fixture has no ${what} yet (use it from a hook or test)`);
  return value;
}
