// The retry policy, row by row, with no HTTP: every phase a failure can come in, every status class,
// x-should-retry both ways, the replay guard by method, the budget, and whom a 401/403/404 blames.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { blameOf } from '../../src/proxy/blame.js';
import { decide, isIdempotent, retryDelayMs, type AttemptResult, type Decision, type PolicyInput } from '../../src/proxy/retry-policy.js';

const settings = {
  backoffBaseMs: 1000,
  backoffMaxMs: 60_000,
  outOfCreditMs: 3_600_000,
  maxMs: 3_600_000,
  modelUnavailableMs: 1_800_000,
  disabledMs: 86_400_000,
  replayAfterSend: false,
  dialect: 'openai' as const,
};
const NOW = 1_000_000;
const input = (result: AttemptResult, over: Partial<PolicyInput> = {}): PolicyInput => ({
  method: 'POST',
  model: 'gpt-4o',
  stream: false,
  result,
  context: { attempts: 1, retriesLeft: 3 },
  now: NOW,
  streak: 1,
  random: 0.5,
  settings,
  ...over,
});
const answered = (status: number, headers: Record<string, string> = {}, body?: string): AttemptResult => ({ kind: 'answered', status, headers, body });
const failed = (phase: 'connect' | 'writing' | 'sent', timedOut = false): AttemptResult => ({ kind: 'failed', phase, timedOut });
const noBudget = { context: { attempts: 5, retriesLeft: 0 } };

const MODEL_403 = '{"error":{"message":"Project `proj_x` does not have access to model `gpt-4o`","type":"invalid_request_error","code":"model_not_found"}}';
const MODEL_404 = '{"error":{"message":"The model `gpt-4.1-nano-x` does not exist or you do not have access to it.","type":"invalid_request_error","code":"model_not_found"}}';
const KEY_403 = '{"error":{"message":"Your organization has been disabled.","type":"invalid_request_error","code":null}}';
const REGION_403 = '{"error":{"code":"unsupported_country_region_territory","message":"Country, region, or territory not supported"}}';
const QUOTA = '{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}';

describe('failures before an answer', () => {
  it.each(['connect', 'writing'] as const)('%s: nothing reached the upstream whole, any method goes again (charged)', (phase) => {
    for (const method of ['POST', 'PATCH', 'GET']) expect(decide(input(failed(phase), { method }))).toEqual({ kind: 'retry', cause: 'network' });
  });
  it('sent, no head: a POST or PATCH is never sent again (it may be running and billed)', () => {
    for (const method of ['POST', 'PATCH']) {
      expect(decide(input(failed('sent'), { method }))).toEqual({ kind: 'fail', why: 'replay_refused', cause: 'network' });
    }
  });
  it.each(['GET', 'HEAD', 'PUT', 'DELETE', 'OPTIONS'])('sent, no head: %s is idempotent and goes again', (method) => {
    expect(decide(input(failed('sent'), { method }))).toEqual({ kind: 'retry', cause: 'network' });
  });
  it('sent, no head, with retry.replayAfterSend: the POST goes again', () => {
    expect(decide(input(failed('sent'), { settings: { ...settings, replayAfterSend: true } }))).toEqual({ kind: 'retry', cause: 'network' });
  });
  it('no head within the headers timeout: a stream or an idempotent method fails over; a non-streaming POST may be generating, so it is not sent again', () => {
    expect(decide(input(failed('sent', true), { stream: true }))).toEqual({ kind: 'retry', cause: 'timeout' });
    expect(decide(input(failed('sent', true), { method: 'GET' }))).toEqual({ kind: 'retry', cause: 'timeout' });
    expect(decide(input(failed('sent', true), { settings: { ...settings, replayAfterSend: true } }))).toEqual({ kind: 'retry', cause: 'timeout' });
    expect(decide(input(failed('sent', true)))).toEqual({ kind: 'fail', why: 'replay_refused', cause: 'timeout' });
  });
  it('budget spent: fail, naming the cause', () => {
    expect(decide(input(failed('connect'), noBudget))).toEqual({ kind: 'fail', why: 'budget_spent', cause: 'network' });
    expect(decide(input(failed('sent', true), { ...noBudget, stream: true }))).toEqual({ kind: 'fail', why: 'budget_spent', cause: 'timeout' });
    // The replay guard comes first: a refused replay is not a spent budget.
    expect(decide(input(failed('sent'), noBudget))).toEqual({ kind: 'fail', why: 'replay_refused', cause: 'network' });
  });
});

describe('answers', () => {
  it.each([200, 201, 204, 301, 304, 399])('%i is delivered', (status) => {
    expect(decide(input(answered(status)))).toEqual({ kind: 'deliver', penalty: { kind: 'none' } });
  });
  it.each([400, 409, 413, 422])('%i goes back to the client unchanged', (status) => {
    expect(decide(input(answered(status)))).toEqual({ kind: 'deliver', penalty: { kind: 'none' } });
  });
  it('a 404 without a known model is the request’s (a file, a path): delivered, body not read', () => {
    expect(decide(input(answered(404), { model: '' }))).toEqual({ kind: 'deliver', penalty: { kind: 'none' } });
  });

  it('429: cools its key at the head (provisional), then the body decides', () => {
    const head = decide(input(answered(429, { 'retry-after': '7' })));
    expect(head).toEqual({ kind: 'read-body', provisional: { kind: 'cool', scope: 'model', reason: 'rate_limited', until: NOW + 7000 } });
    expect(decide(input(answered(429, { 'retry-after': '7' }, '{}')))).toEqual({
      kind: 'rotate',
      penalty: { kind: 'cool', scope: 'model', reason: 'rate_limited', until: NOW + 7000 },
      cause: 'limit',
    });
  });
  it('429 insufficient_quota and 402: out of credit, key-wide, long', () => {
    const credit = { kind: 'cool', scope: 'key', reason: 'out_of_credit', until: NOW + settings.outOfCreditMs };
    expect(decide(input(answered(429, {}, QUOTA)))).toEqual({ kind: 'rotate', penalty: credit, cause: 'credit' });
    expect(decide(input(answered(402)))).toEqual({ kind: 'read-body', provisional: { kind: 'none' } });
    expect(decide(input(answered(402, {}, '{"error":{"message":"Insufficient credits"}}')))).toEqual({ kind: 'rotate', penalty: credit, cause: 'credit' });
  });
  it('a 402 about this request\'s size (OpenRouter: "requires more credits, or fewer max_tokens") is the request\'s: delivered, no key cooled', () => {
    const sized = '{"error":{"message":"This request requires more credits, or fewer max_tokens. You requested up to 65536 tokens, but can only afford 3919.","code":402}}';
    expect(decide(input(answered(402, {}, sized)))).toEqual({ kind: 'deliver', penalty: { kind: 'none' } });
  });
  it('429 with x-should-retry: false is delivered, and still cools the key', () => {
    expect(decide(input(answered(429, { 'x-should-retry': 'false', 'retry-after': '2' })))).toEqual({
      kind: 'deliver',
      penalty: { kind: 'cool', scope: 'model', reason: 'rate_limited', until: NOW + 2000 },
    });
  });
  it('401 disables the key for cooldown.disabledMs, unless it is a restricted key missing one endpoint\'s scope', () => {
    expect(decide(input(answered(401)))).toEqual({ kind: 'read-body', provisional: { kind: 'none' } });
    expect(decide(input(answered(401, {}, '{"error":{"code":"invalid_api_key"}}')))).toEqual({ kind: 'rotate', penalty: { kind: 'disable', reason: 'unauthorized', until: NOW + settings.disabledMs }, cause: 'auth' });
    const scope = '{"error":{"message":"You have insufficient permissions for this operation. Missing scopes: api.model.read.","code":"missing_scope"}}';
    expect(decide(input(answered(401, {}, scope)))).toEqual({ kind: 'rotate', penalty: { kind: 'none' }, cause: 'answer' });
  });
  it('403 and 404 need the body before anyone is blamed', () => {
    expect(decide(input(answered(403)))).toEqual({ kind: 'read-body', provisional: { kind: 'none' } });
    expect(decide(input(answered(404)))).toEqual({ kind: 'read-body', provisional: { kind: 'none' } });
  });
  it('403/404 about the model: that key is skipped for that model only; the client may get the answer', () => {
    const unavailable = { kind: 'cool', scope: 'model', reason: 'model_unavailable', until: NOW + settings.modelUnavailableMs };
    expect(decide(input(answered(403, {}, MODEL_403)))).toEqual({ kind: 'rotate', penalty: unavailable, cause: 'answer' });
    expect(decide(input(answered(404, {}, MODEL_404)))).toEqual({ kind: 'rotate', penalty: unavailable, cause: 'answer' });
  });
  it('403 blaming the key or its organisation disables it', () => {
    expect(decide(input(answered(403, {}, KEY_403)))).toEqual({ kind: 'rotate', penalty: { kind: 'disable', reason: 'forbidden', until: NOW + settings.disabledMs }, cause: 'auth' });
  });
  it('403 about where the request comes from is delivered: no key would do better', () => {
    expect(decide(input(answered(403, {}, REGION_403)))).toEqual({ kind: 'deliver', penalty: { kind: 'none' } });
  });
  it('a 403 nobody can explain moves on without blaming the key', () => {
    expect(decide(input(answered(403, {}, '{"error":{"message":"Forbidden"}}')))).toEqual({ kind: 'rotate', penalty: { kind: 'none' }, cause: 'answer' });
  });
  it.each([500, 502, 503, 504, 529, 408])('%i is a server fault: retry, charged, key not blamed', (status) => {
    expect(decide(input(answered(status)))).toEqual({ kind: 'retry', cause: 'server' });
    expect(decide(input(answered(status), noBudget))).toEqual({ kind: 'fail', why: 'budget_spent', cause: 'server' });
  });
  it('x-should-retry: false is delivered whatever the status; true retries any failure', () => {
    for (const status of [500, 503, 401, 402, 403, 408]) {
      expect(decide(input(answered(status, { 'x-should-retry': 'false' })))).toEqual({ kind: 'deliver', penalty: { kind: 'none' } });
    }
    expect(decide(input(answered(400, { 'x-should-retry': 'true' })))).toEqual({ kind: 'retry', cause: 'server' });
    expect(decide(input(answered(409, { 'x-should-retry': ' TRUE ' }), noBudget))).toEqual({ kind: 'fail', why: 'budget_spent', cause: 'server' });
    // A success is a success.
    expect(decide(input(answered(200, { 'x-should-retry': 'true' })))).toEqual({ kind: 'deliver', penalty: { kind: 'none' } });
  });

  it('never throws, and asks for the body at most once (a body in hand never yields read-body)', () => {
    const statuses = fc.integer({ min: 100, max: 599 });
    const headers = fc.dictionary(fc.constantFrom('x-should-retry', 'retry-after', 'retry-after-ms', 'x-ratelimit-reset-requests', 'x-ratelimit-remaining-requests'), fc.string({ maxLength: 30 }));
    fc.assert(
      fc.property(statuses, headers, fc.string({ maxLength: 300 }), fc.constantFrom('POST', 'GET', 'PATCH'), fc.constantFrom('', 'gpt-4o'), fc.nat(3), (status, h, body, method, model, left) => {
        const d: Decision = decide(input(answered(status, h, body), { method, model, context: { attempts: 1, retriesLeft: left } }));
        expect(d.kind).not.toBe('read-body');
        if (d.kind === 'retry') expect(left).toBeGreaterThan(0);
        if (d.kind === 'rotate' && d.penalty.kind === 'cool') {
          expect(Number.isFinite(d.penalty.until)).toBe(true);
          expect(d.penalty.until).toBeGreaterThanOrEqual(NOW);
          expect(d.penalty.until - NOW).toBeLessThanOrEqual(Math.max(settings.maxMs, settings.outOfCreditMs, settings.modelUnavailableMs));
        }
      }),
    );
  });
});

describe('blameOf', () => {
  it.each([
    [401, '', 'gpt-4o', 'key'],
    [403, MODEL_403, 'gpt-4o', 'model'],
    [403, MODEL_403, '', 'request'],
    [404, MODEL_404, 'gpt-4.1-nano-x', 'model'],
    [404, '{"error":{"message":"No such File object: file-abc"}}', 'gpt-4o', 'request'],
    [403, KEY_403, 'gpt-4o', 'key'],
    [403, '{"error":{"code":"invalid_api_key","message":"Incorrect API key provided"}}', 'gpt-4o', 'key'],
    [403, '{"error":{"message":"This API key has been revoked."}}', 'gpt-4o', 'key'],
    [403, REGION_403, 'gpt-4o', 'request'],
    [403, '{"type":"error","error":{"type":"permission_error","message":"Your API key does not have permission to use the specified resource."}}', 'claude-x', 'model'],
    [404, '{"type":"error","error":{"type":"not_found_error","message":"model: claude-nope"}}', 'claude-nope', 'model'],
    [403, 'Forbidden', 'gpt-4o', 'unknown'],
  ] as const)('%i %s (model %s) blames %s', (status, body, model, blame) => {
    expect(blameOf(status, body, model)).toBe(blame);
  });
  it('reads a bounded part of a huge body', () => {
    expect(blameOf(403, 'x'.repeat(100_000) + 'model_not_found', 'gpt-4o')).toBe('unknown');
  });
});

describe('idempotence and pacing', () => {
  it('follows RFC 9110 §9.2.2', () => {
    expect(['GET', 'HEAD', 'PUT', 'DELETE', 'OPTIONS'].every(isIdempotent)).toBe(true);
    expect(['POST', 'PATCH', 'CONNECT', 'TRACE'].some(isIdempotent)).toBe(false);
  });
  it('charged attempts back off exponentially, jittered to 50-100 %, capped', () => {
    expect([1, 2, 3, 4].map((n) => retryDelayMs(n, 0.999999, 500, 8000))).toEqual([500, 1000, 2000, 4000]);
    expect(retryDelayMs(1, 0, 500, 8000)).toBe(250);
    expect(retryDelayMs(30, 0.999999, 500, 8000)).toBe(8000);
    expect(retryDelayMs(3, 0.5, 0, 8000)).toBe(0);
  });
});

describe('provider dialects', () => {
  const anthropic = { ...settings, dialect: 'anthropic' as const };
  const gemini = { ...settings, dialect: 'gemini' as const };
  it('Anthropic: a 400 saying the credit is too low is out of credit; another 400 is the request’s', () => {
    const low = '{"type":"error","error":{"type":"invalid_request_error","message":"Your credit balance is too low to access the Anthropic API."}}';
    expect(decide(input(answered(400), { settings: anthropic }))).toEqual({ kind: 'read-body', provisional: { kind: 'none' } });
    expect(decide(input(answered(400, {}, low), { settings: anthropic }))).toMatchObject({ kind: 'rotate', cause: 'credit', penalty: { reason: 'out_of_credit', scope: 'key' } });
    expect(decide(input(answered(400, {}, '{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: too big"}}'), { settings: anthropic }))).toEqual({ kind: 'deliver', penalty: { kind: 'none' } });
    // OpenAI's 400 is never read: it is always the request's.
    expect(decide(input(answered(400)))).toEqual({ kind: 'deliver', penalty: { kind: 'none' } });
  });
  it('Gemini: RetryInfo in a 429 body sets the cooldown; a spent daily quota cools until the reset (capped); 400 API_KEY_INVALID disables', () => {
    const retry = '{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"37s"}]}}';
    expect(decide(input(answered(429, {}, retry), { settings: gemini }))).toMatchObject({ kind: 'rotate', penalty: { reason: 'rate_limited', until: NOW + 37_000 } });
    const daily = '{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaId":"GenerateRequestsPerDayPerProjectPerModel-FreeTier"}]}]}}';
    const d = decide(input(answered(429, {}, daily), { settings: gemini }));
    expect(d.kind === 'rotate' && d.penalty.kind === 'cool' ? d.penalty.until - NOW : -1).toBeLessThanOrEqual(settings.maxMs);
    expect(d).toMatchObject({ penalty: { scope: 'model' } });
    expect(decide(input(answered(400, {}, '{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"reason":"API_KEY_INVALID"}]}}'), { settings: gemini }))).toMatchObject({
      kind: 'rotate',
      penalty: { kind: 'disable' },
    });
    // Without a RetryInfo, the headers' (or backoff's) cooldown stands.
    expect(decide(input(answered(429, { 'retry-after': '5' }, '{"error":{"code":429}}'), { settings: gemini }))).toMatchObject({ penalty: { until: NOW + 5000 } });
  });
});
