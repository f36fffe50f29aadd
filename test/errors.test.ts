import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERRORS, KeypoolError } from '../src/errors.js';

describe('error registry', () => {
  it('documents every code in docs/errors.md', () => {
    const doc = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8');
    for (const code of Object.keys(ERRORS)) expect(doc).toContain(`| \`${code}\` |`);
  });

  it('serialises as an OpenAI error body', () => {
    const e = new KeypoolError('keypool_pool_exhausted', 'all keys cooling', { status: 402, headers: { 'retry-after': '5' } });
    expect(e.status).toBe(402);
    expect(e.toBody()).toEqual({
      error: { message: 'all keys cooling', type: 'insufficient_quota', param: null, code: 'keypool_pool_exhausted' },
    });
    expect(new KeypoolError('keypool_body_too_large', 'x').status).toBe(413);
  });
});
