// Every behaviour on every personality: the status and error envelope each provider really sends,
// successes and streams in its format, the key read where the provider puts it and never echoed.
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PROVIDERS, startFakeUpstream } from '../../src/fake-upstream/server.js';
import type { Behavior, FakeUpstream, Provider } from '../../src/fake-upstream/server.js';
import { answerText, call, chat, chatRequest, sseEvents, streamedText } from './provider-calls.js';

const KEY = 'sk-persona-secret-0123456789abcdef';
const OTHER = 'sk-persona-other-fedcba9876543210';
const TEXT = 'Hello from the fake upstream.';

let opened: FakeUpstream[] = [];
afterEach(async () => {
  await Promise.all(opened.map((upstream) => upstream.close()));
  opened = [];
});
async function start(provider: Provider, options: Parameters<typeof startFakeUpstream>[0] = {}): Promise<FakeUpstream> {
  const upstream = await startFakeUpstream({ provider, ...options });
  opened.push(upstream);
  return upstream;
}

/** What each provider answers per behaviour: status, then the error's type (Anthropic), status name (Gemini) or code. */
const TABLE: Record<string, Record<Provider, [number, string | number]>> = {
  rate_limit: { openai: [429, 'rate_limit_exceeded'], anthropic: [429, 'rate_limit_error'], gemini: [429, 'RESOURCE_EXHAUSTED'], azure: [429, '429'], openrouter: [429, 429] },
  resource_exhausted: { openai: [429, 'rate_limit_exceeded'], anthropic: [429, 'rate_limit_error'], gemini: [429, 'RESOURCE_EXHAUSTED'], azure: [429, '429'], openrouter: [429, 429] },
  insufficient_quota: { openai: [429, 'insufficient_quota'], anthropic: [400, 'invalid_request_error'], gemini: [429, 'RESOURCE_EXHAUSTED'], azure: [403, '403'], openrouter: [402, 402] },
  payment_required: { openai: [402, 'payment_required'], anthropic: [402, 'billing_error'], gemini: [400, 'FAILED_PRECONDITION'], azure: [403, '403'], openrouter: [402, 402] },
  unauthorized: { openai: [401, 'invalid_api_key'], anthropic: [401, 'authentication_error'], gemini: [400, 'INVALID_ARGUMENT'], azure: [401, '401'], openrouter: [401, 401] },
  forbidden: { openai: [403, 'permission_denied'], anthropic: [403, 'permission_error'], gemini: [403, 'PERMISSION_DENIED'], azure: [403, '403'], openrouter: [403, 403] },
  key_revoked: { openai: [403, 'organization_deactivated'], anthropic: [403, 'permission_error'], gemini: [400, 'INVALID_ARGUMENT'], azure: [403, 'AuthenticationTypeDisabled'], openrouter: [401, 401] },
  model_not_found: { openai: [404, 'model_not_found'], anthropic: [404, 'not_found_error'], gemini: [404, 'NOT_FOUND'], azure: [404, 'DeploymentNotFound'], openrouter: [404, 404] },
  server_error: { openai: [500, 'server_error'], anthropic: [500, 'api_error'], gemini: [500, 'INTERNAL'], azure: [500, 'server_error'], openrouter: [500, 500] },
  overloaded: { openai: [503, 'server_error'], anthropic: [529, 'overloaded_error'], gemini: [503, 'UNAVAILABLE'], azure: [503, 'ServiceUnavailable'], openrouter: [502, 502] },
};

/** The field of the provider's error envelope the table names; throws when the envelope is not the provider's. */
function errorMark(provider: Provider, text: string): string | number {
  const body = JSON.parse(text) as { type?: string; error: Record<string, unknown> };
  expect(typeof body.error['message']).toBe('string');
  switch (provider) {
    case 'anthropic':
      expect(body.type).toBe('error');
      return body.error['type'] as string;
    case 'gemini':
      expect(typeof body.error['code']).toBe('number');
      return body.error['status'] as string;
    case 'openrouter':
      return body.error['code'] as number;
    case 'openai':
      return (body.error['code'] ?? body.error['type']) as string;
    case 'azure':
      // Azure's gateway errors have a string code; errors from the model itself are OpenAI's (type).
      return (body.error['type'] ?? body.error['code']) as string;
  }
}

const cases = Object.entries(TABLE).flatMap(([kind, row]) =>
  PROVIDERS.map((provider) => ({ kind, provider, status: row[provider][0], mark: row[provider][1] })),
);

describe('failure behaviours, per provider', () => {
  it.each(cases)('$provider $kind -> $status $mark', async ({ kind, provider, status, mark }) => {
    const upstream = await start(provider, { acceptKeys: [KEY] });
    upstream.script(KEY, { kind } as Behavior);
    const reply = await chat(upstream, { key: KEY });
    expect(reply.status).toBe(status);
    expect(reply.headers['content-type']).toBe('application/json');
    expect(errorMark(provider, reply.text)).toBe(mark);
    expect(JSON.stringify(reply.headers) + reply.text).not.toContain(KEY);
  });
});

describe('successes and streams, per provider', () => {
  it.each(PROVIDERS)('%s: plain, streamed, and the key as recorded', async (provider) => {
    const upstream = await start(provider);
    const plain = await chat(upstream, { key: KEY });
    expect(plain.status).toBe(200);
    expect(answerText(provider, plain.text)).toBe(TEXT);
    const streamed = await chat(upstream, { key: KEY, stream: true });
    expect([streamed.status, streamed.headers['content-type']]).toEqual([200, 'text/event-stream']);
    expect(streamedText(provider, streamed.text)).toBe(TEXT);
    upstream.script(KEY, { kind: 'stream', chunks: 7 });
    const scripted = await chat(upstream, { key: KEY, stream: true });
    expect(streamedText(provider, scripted.text)).toBe(`${TEXT}Hello from`);
    expect(upstream.requests.map((r) => r.key)).toEqual([KEY, KEY, KEY]);
  });

  it.each(PROVIDERS)('%s: error_in_stream answers 200 and ends on the provider\'s error event', async (provider) => {
    const upstream = await start(provider);
    upstream.script(KEY, { kind: 'error_in_stream' }, { kind: 'error_in_stream', after: 2 });
    for (const after of [0, 2]) {
      const reply = await chat(upstream, { key: KEY, stream: true });
      expect(reply.status).toBe(200);
      const events = sseEvents(reply.text);
      expect(events).toHaveLength(after + 1);
      const last = events[after]!;
      const error = (JSON.parse(last.data) as { error: { message: string; type?: string } }).error;
      expect(typeof error.message).toBe('string');
      if (provider === 'anthropic') expect([last.event, error.type]).toEqual(['error', 'overloaded_error']);
      for (const event of events.slice(0, after)) expect(event.data).not.toContain('"error"');
    }
  });
});

describe('acceptKeys, per provider', () => {
  const refusals: Record<Provider, { missing: [number, string | number]; wrong: [number, string | number] }> = {
    openai: { missing: [401, 'invalid_api_key'], wrong: [401, 'invalid_api_key'] },
    anthropic: { missing: [401, 'authentication_error'], wrong: [401, 'authentication_error'] },
    gemini: { missing: [403, 'PERMISSION_DENIED'], wrong: [400, 'INVALID_ARGUMENT'] },
    azure: { missing: [401, '401'], wrong: [401, '401'] },
    openrouter: { missing: [401, 401], wrong: [401, 401] },
  };
  it.each(PROVIDERS)('%s refuses a missing or unknown key its own way', async (provider) => {
    const upstream = await start(provider, { acceptKeys: [KEY] });
    const missing = await chat(upstream, { key: undefined });
    expect([missing.status, errorMark(provider, missing.text)]).toEqual(refusals[provider].missing);
    const wrong = await chat(upstream, { key: OTHER });
    expect([wrong.status, errorMark(provider, wrong.text)]).toEqual(refusals[provider].wrong);
    expect(wrong.text).not.toContain(OTHER);
    expect((await chat(upstream, { key: KEY })).status).toBe(200);
  });
});

describe('rate-limit window, per provider', () => {
  const exceeded: Record<Provider, string[]> = {
    openai: ['retry-after', 'retry-after-ms', 'x-ratelimit-reset-requests'],
    anthropic: ['retry-after', 'anthropic-ratelimit-requests-reset'],
    gemini: [],
    azure: ['retry-after', 'retry-after-ms', 'x-ms-retry-after-ms'],
    openrouter: ['retry-after'],
  };
  it.each(PROVIDERS)('%s: successes carry its headers, the 429 past the window says when', async (provider) => {
    const now = 1_700_000_000_000;
    const upstream = await start(provider, { rateLimit: { requests: 1, windowMs: 2000 }, now: () => now });
    const first = await chat(upstream, { key: KEY });
    expect(first.status).toBe(200);
    const over = await chat(upstream, { key: KEY });
    expect(over.status).toBe(429);
    for (const name of exceeded[provider]) expect(over.headers[name], name).toBeDefined();
    if (provider === 'gemini') expect(over.text).toContain('"retryDelay":"2s"');
    if (provider === 'anthropic') {
      expect(first.headers['anthropic-ratelimit-requests-remaining']).toBe('0');
      expect(over.headers['anthropic-ratelimit-requests-reset']).toBe('2023-11-14T22:13:22Z');
    }
  });
});

describe('rate_limit style, per provider', () => {
  const own: Record<Provider, string[]> = {
    openai: ['retry-after'],
    anthropic: ['retry-after', 'anthropic-ratelimit-requests-limit', 'anthropic-ratelimit-requests-remaining', 'anthropic-ratelimit-requests-reset'],
    gemini: [],
    azure: ['retry-after', 'retry-after-ms', 'x-ms-retry-after-ms'],
    openrouter: ['retry-after'],
  };
  const DIALECTS = /^(retry-after|x-ratelimit|anthropic-ratelimit|x-ms-retry)/;
  it.each(PROVIDERS)('%s tells the wait its own way unless a style is named', async (provider) => {
    const upstream = await start(provider, { now: () => 1_700_000_000_000 });
    upstream.script(KEY, { kind: 'rate_limit', ms: 2500 }, { kind: 'rate_limit', style: 'x-ms-retry-after-ms', ms: 2500 });
    const mine = await chat(upstream, { key: KEY });
    expect(Object.keys(mine.headers).filter((h) => DIALECTS.test(h)).sort()).toEqual([...own[provider]].sort());
    const named = await chat(upstream, { key: KEY });
    expect(Object.keys(named.headers).filter((h) => DIALECTS.test(h))).toEqual(['x-ms-retry-after-ms']);
    expect(named.headers['x-ms-retry-after-ms']).toBe('2500');
  });
});

describe('keys are read where each provider puts them, and never echoed', () => {
  // Printable, no whitespace: what a key looks like, plus the characters that need encoding in a query.
  // The prefix keeps a short key from occurring in a body by chance (digits of a timestamp).
  const keyArb = fc
    .string({ unit: fc.constantFrom(...'abcXYZ019-_.~+/=%&?#'), minLength: 6, maxLength: 40 })
    .map((tail) => `sk-fc-${tail}`);
  const behaviorArb = fc.constantFrom<Behavior>(
    ...Object.keys(TABLE).map((kind) => ({ kind }) as Behavior),
    { kind: 'ok' },
    { kind: 'stream', chunks: 2 },
    { kind: 'error_in_stream', after: 1 },
  );
  let upstreams: Partial<Record<Provider, FakeUpstream>> = {};
  beforeAll(async () => {
    for (const provider of PROVIDERS) upstreams[provider] = await startFakeUpstream({ provider });
  });
  afterAll(async () => {
    await Promise.all(Object.values(upstreams).map((upstream) => upstream.close()));
    upstreams = {};
  });

  it('records the key and keeps it out of every reply', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...PROVIDERS), keyArb, behaviorArb, fc.boolean(), async (provider, key, behavior, inQuery) => {
        const upstream = upstreams[provider]!;
        upstream.reset();
        upstream.script(key, behavior);
        const viaQuery = provider === 'gemini' && inQuery;
        const { path, headers, body } = chatRequest(provider, { key: viaQuery ? undefined : key });
        const target = viaQuery ? `${path}${path.includes('?') ? '&' : '?'}key=${encodeURIComponent(key)}` : path;
        const reply = await call(upstream, target, { headers, body });
        expect(upstream.requests[0]?.key).toBe(key);
        expect(JSON.stringify(reply.headers) + reply.text).not.toContain(key);
      }),
      { numRuns: 60 },
    );
  });
});
