import assert from 'node:assert/strict';
import { MciasApiError } from '../../packages/client/src/index.ts';

/** Asserts that `promise` rejects with an MciasApiError of this status and code, and returns it. */
export async function apiError(promise: Promise<unknown>, status: number, code: string): Promise<MciasApiError> {
  const error = await promise.then(
    () => assert.fail(`expected ${status} ${code}, got success`),
    (e: unknown) => e,
  );
  assert.ok(error instanceof MciasApiError, `expected MciasApiError, got ${String(error)}`);
  assert.equal(error.status, status);
  assert.equal(error.code, code);
  return error;
}
