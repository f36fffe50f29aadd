// What a probe's answer says about its key: the proxy's own blame, credit and rate-limit rules, row by
// row, and properties over any answer (never throws, 2xx is always ok, a code is never key-shaped).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { classify, errorCode, type ProbeAnswer } from '../../src/health/classify.js';

const NOW = Date.parse('2026-12-01T10:00:00Z');
const MAX = 3_600_000;
const openai = (code: string | null, message: string, type = 'invalid_request_error') => JSON.stringify({ error: { message, type, param: null, code } });
const answered = (status: number, body = '', headers: Record<string, string> = {}): ProbeAnswer => ({ kind: 'answered', status, headers, body });

describe('classify', () => {
  const rows: [string, ProbeAnswer, string, string][] = [
    ['200', answered(200, '{"data":[]}'), '', 'ok'],
    ['204', answered(204), '', 'ok'],
    ['401 invalid_api_key', answered(401, openai('invalid_api_key', 'Incorrect API key provided.')), '', 'invalid'],
    ['401 with no body', answered(401), '', 'invalid'],
    ['403 organisation disabled', answered(403, openai('organization_deactivated', 'Your organization has been disabled.')), '', 'invalid'],
    ['403 says nothing of whom', answered(403, openai('permission_denied', 'You have insufficient permissions for this operation.')), '', 'forbidden'],
    ['403 unsupported region', answered(403, openai('unsupported_country_region_territory', 'Country, region, or territory not supported')), '', 'error'],
    ['429 insufficient_quota', answered(429, openai('insufficient_quota', 'You exceeded your current quota', 'insufficient_quota')), '', 'out_of_credit'],
    ['402', answered(402, openai('payment_required', 'Insufficient credits')), '', 'out_of_credit'],
    ['429 rate limit', answered(429, openai('rate_limit_exceeded', 'Rate limit reached'), { 'retry-after': '20' }), '', 'rate_limited'],
    ['404 model for a model probe', answered(404, openai('model_not_found', 'The model `gpt-x` does not exist or you do not have access to it.')), 'gpt-x', 'model_refused'],
    ['403 model for a model probe', answered(403, openai('model_not_found', 'Project `p` does not have access to model `gpt-x`')), 'gpt-x', 'model_refused'],
    // Without a model, a model-shaped refusal concerns the request (blame.ts): a wrong probe, not the key.
    ['404 model without a model', answered(404, openai('model_not_found', 'The model `gpt-x` does not exist')), '', 'error'],
    ['404 unknown route', answered(404, openai(null, 'Invalid URL (GET /v1/modelz)')), '', 'error'],
    ['500', answered(500, openai(null, 'The server had an error', 'server_error')), '', 'error'],
    ['400', answered(400, openai('invalid_value', 'bad')), '', 'error'],
    ['302', answered(302), '', 'error'],
    ['connection refused', { kind: 'failed', reason: 'ECONNREFUSED' }, '', 'unreachable'],
    ['timeout', { kind: 'failed', reason: 'timeout' }, '', 'unreachable'],
  ];
  it.each(rows)('%s', (_name, answer, model, kind) => {
    expect(classify(answer, model, NOW, MAX).kind).toBe(kind);
  });

  it('reads the headroom an answer reports, and when a 429 says to come back', () => {
    const headers = { 'x-ratelimit-limit-requests': '500', 'x-ratelimit-remaining-requests': '480', 'x-ratelimit-reset-requests': '20s', 'x-ratelimit-limit-tokens': '10000', 'x-ratelimit-remaining-tokens': '9000', 'x-ratelimit-reset-tokens': '1s' };
    const ok = classify(answered(200, '{}', headers), '', NOW, MAX);
    expect(ok.kind).toBe('ok');
    if (ok.kind !== 'ok') return;
    expect(ok.headroom?.requests).toMatchObject({ limit: 500, remaining: 480, resetAt: NOW + 20_000 });
    expect(ok.headroom?.tokens).toMatchObject({ limit: 10_000, remaining: 9000, resetAt: NOW + 1000 });
    const limited = classify(answered(429, openai('rate_limit_exceeded', 'slow down'), { 'retry-after-ms': '1500' }), '', NOW, MAX);
    expect(limited).toMatchObject({ kind: 'rate_limited', retryInMs: 1500, code: 'rate_limit_exceeded' });
    // A header time is capped as the pool caps it.
    const far = classify(answered(429, '{}', { 'retry-after': '999999' }), '', NOW, MAX);
    expect(far.kind === 'rate_limited' && far.retryInMs).toBe(MAX);
  });

  it('never throws, says ok for every 2xx and never for anything else', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 100, max: 599 }),
        fc.string({ maxLength: 300 }),
        fc.dictionary(fc.constantFrom('retry-after', 'retry-after-ms', 'x-ratelimit-remaining-requests', 'x-ratelimit-reset-requests', 'x-ratelimit-limit-requests'), fc.string({ maxLength: 30 })),
        fc.string({ maxLength: 20 }),
        (status, body, headers, model) => {
          const o = classify(answered(status, body, headers), model, NOW, MAX);
          expect(o.kind === 'ok').toBe(status >= 200 && status < 300);
        },
      ),
    );
  });
});

describe('errorCode', () => {
  it.each([
    ['{"error":{"code":"invalid_api_key","type":"invalid_request_error"}}', 'invalid_api_key'],
    ['{"error":{"code":null,"type":"server_error"}}', 'server_error'],
    ['{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}', 'authentication_error'],
    ['{"error":{"code":403,"status":"PERMISSION_DENIED"}}', 'PERMISSION_DENIED'],
    ['{"error":{"code":"has spaces in it"}}', undefined],
    ['{"error":{"code":"sk-proj-abcdef123456"}}', undefined],
    ['not json', undefined],
    ['[1,2]', undefined],
  ])('%s -> %s', (body, code) => {
    expect(errorCode(body)).toBe(code);
  });

  it('returns only short identifiers, never anything shaped like a key', () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.string({ maxLength: 80 }), (v, s) => {
        for (const body of [JSON.stringify(v), JSON.stringify({ error: { code: s, type: s } }), s]) {
          const c = errorCode(body);
          if (c !== undefined) {
            expect(c).toMatch(/^[A-Za-z0-9_.-]{1,64}$/);
            expect(c).not.toMatch(/^(sk|pk|rk|sess|key)-/i);
          }
        }
      }),
    );
  });
});
