import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  BadRequestError,
  ERROR_CODES,
  InternalError,
  ModelNotFoundError,
  QueueFullError,
  asLlmdError,
  toErrorBody,
} from '../../src/core/errors.js';

describe('the error table', () => {
  it('documents every code in docs/errors.md, and documents no code that does not exist', () => {
    const doc = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
    const documented = new Set(doc.match(/LLMD_ERR_[A-Z_]+/g) ?? []);
    expect([...documented].sort()).toEqual([...ERROR_CODES].sort());
  });

  it('renders vLLM error JSON with the status as code', () => {
    const body = JSON.parse(toErrorBody(new ModelNotFoundError('m'))) as Record<string, unknown>;
    expect(body).toEqual({
      error: { message: 'The model `m` does not exist.', type: 'NotFoundError', param: 'model', code: 404 },
    });
    const flat = JSON.parse(toErrorBody(new BadRequestError('bad'), 'vllm-flat')) as Record<string, unknown>;
    expect(flat).toEqual({ object: 'error', message: 'bad', type: 'BadRequestError', param: '', code: 400 });
  });

  it('hides the details of unexpected errors', () => {
    const e = asLlmdError(new TypeError('secret internals at /src/x.ts:1'));
    expect(e).toBeInstanceOf(InternalError);
    expect(e.status).toBe(500);
    expect(toErrorBody(e)).not.toContain('secret');
    const known = new QueueFullError(3);
    expect(asLlmdError(known)).toBe(known);
    expect(known.status).toBe(429);
  });
});
