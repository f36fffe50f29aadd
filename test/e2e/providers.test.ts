// Azure OpenAI, OpenRouter and Gemini through keypool as it is configured today (baseUrl, prefix,
// authHeader), each rotating past a refused first key, and each provider's wait read into the cooldown.
// The clock is a FakeClock shared by keypool and the fake, so cooldowns are compared exactly.
import OpenAI, { AzureOpenAI } from 'openai';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { startFakeUpstream, type FakeUpstream, type Provider } from '../../src/fake-upstream/server.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { startProxy, type TestProxy, type TestProxyOptions } from '../helpers/proxy.js';

const KEYS = ['provider-pool-key-one-1111111111', 'provider-pool-key-two-2222222222'];
const CLIENT_KEY = 'provider-client-own-key-9999999999';
const TEXT = 'Hello from the fake upstream.';
const MESSAGES = [{ role: 'user' as const, content: 'hi' }];

let upstream: FakeUpstream | undefined;
let proxy: TestProxy | undefined;
afterEach(async () => {
  await proxy?.close();
  await upstream?.close();
  proxy = undefined;
  upstream = undefined;
});

async function through(provider: Provider, route: (fakeUrl: string) => NonNullable<TestProxyOptions['upstream']>) {
  const clock = new FakeClock();
  upstream = await startFakeUpstream({ provider, acceptKeys: KEYS, now: () => clock.now() });
  proxy = await startProxy({ upstreamUrl: upstream.url, keys: KEYS, upstream: route(upstream.url), clock });
  return { fake: upstream, proxy, clock };
}

/** How long the first key cools for `model`, from keypool's own state. */
function firstKeyCoolsMs(p: TestProxy, clock: FakeClock, model: string): number | undefined {
  const until = p.pool.states()[0]?.scopes.get(model)?.cooldownUntil;
  return until === undefined ? undefined : until - clock.now();
}

function expectPoolKeysOnly(fake: FakeUpstream): void {
  expect(fake.requests.map((r) => r.key)).toEqual(KEYS);
  for (const r of fake.requests) expect(JSON.stringify(r.headers) + r.path).not.toContain(CLIENT_KEY);
  const logs = proxy?.logs.join('\n') ?? '';
  for (const secret of [...KEYS, CLIENT_KEY]) expect(logs).not.toContain(secret);
}

describe('Azure OpenAI (AzureOpenAI client, authHeader api-key)', () => {
  const azure = (p: TestProxy): AzureOpenAI =>
    new AzureOpenAI({ apiKey: CLIENT_KEY, endpoint: p.url, apiVersion: '2024-10-21', deployment: 'gpt-4o-mini', maxRetries: 0 });
  const route = (url: string) => ({ prefix: '/openai', baseUrl: `${url}/openai`, authHeader: 'api-key' });

  it('rotates past a 429 and cools the key for x-ms-retry-after-ms', async () => {
    const { fake, proxy: p, clock } = await through('azure', route);
    fake.script(KEYS[0]!, { kind: 'rate_limit', style: 'x-ms-retry-after-ms', ms: 45_000 });
    const completion = await azure(p).chat.completions.create({ model: 'gpt-4o-mini', messages: MESSAGES });
    expect(completion.choices[0]?.message.content).toBe(TEXT);
    expect(fake.requests.map((r) => r.path)).toEqual(Array.from({ length: 2 }, () => '/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21'));
    expect(firstKeyCoolsMs(p, clock, 'gpt-4o-mini')).toBe(45_000);
    expectPoolKeysOnly(fake);
  });

  it('streams after rotating past an invalid key', async () => {
    const { fake, proxy: p } = await through('azure', route);
    fake.script(KEYS[0]!, { kind: 'unauthorized' });
    let text = '';
    for await (const chunk of await azure(p).chat.completions.create({ model: 'gpt-4o-mini', messages: MESSAGES, stream: true })) {
      text += chunk.choices[0]?.delta.content ?? '';
    }
    expect(text).toBe(TEXT);
    expectPoolKeysOnly(fake);
  });
});

describe('OpenRouter (openai client at /api/v1)', () => {
  const route = (url: string) => ({ prefix: '/api/v1', baseUrl: `${url}/api/v1` });
  const router = (p: TestProxy): OpenAI => new OpenAI({ apiKey: CLIENT_KEY, baseURL: `${p.url}/api/v1`, maxRetries: 0 });

  it('rotates past 402 insufficient credits, and keeps the key out of credit for every model', async () => {
    const { fake, proxy: p, clock } = await through('openrouter', route);
    fake.script(KEYS[0]!, { kind: 'payment_required' });
    const completion = await router(p).chat.completions.create({ model: 'openai/gpt-4o-mini', messages: MESSAGES });
    expect(completion.choices[0]?.message.content).toBe(TEXT);
    expect((p.pool.states()[0]?.creditUntil ?? 0) - clock.now()).toBe(p.config.cooldown.outOfCreditMs);
    expectPoolKeysOnly(fake);
  });

  it('streams, processing comment and all, after rotating past a 429', async () => {
    const { fake, proxy: p } = await through('openrouter', route);
    fake.script(KEYS[0]!, { kind: 'rate_limit', ms: 10_000 });
    const res = await request(`${p.url}/api/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'openai/gpt-4o-mini', messages: MESSAGES, stream: true }),
    });
    const text = await res.body.text();
    expect(res.statusCode).toBe(200);
    expect(text.startsWith(': OPENROUTER PROCESSING\n\n')).toBe(true);
    expect(text.endsWith('data: [DONE]\n\n')).toBe(true);
    expectPoolKeysOnly(fake);
  });
});

describe('Gemini (authHeader x-goog-api-key)', () => {
  const route = (url: string) => ({ prefix: '/v1beta', baseUrl: `${url}/v1beta`, authHeader: 'x-goog-api-key' });
  const post = (p: TestProxy, path: string) =>
    request(`${p.url}/v1beta/models/gemini-2.5-flash:${path}`, {
      method: 'POST',
      headers: { 'x-goog-api-key': CLIENT_KEY, 'content-type': 'application/json' },
      body: JSON.stringify({ contents: [{ role: 'user', parts: [{ text: 'hi' }] }] }),
    });

  it('generateContent rotates past 429 RESOURCE_EXHAUSTED', async () => {
    const { fake, proxy: p } = await through('gemini', route);
    fake.script(KEYS[0]!, { kind: 'rate_limit', ms: 37_000 });
    const res = await post(p, 'generateContent');
    const body = (await res.body.json()) as { candidates: { content: { parts: { text: string }[] } }[] };
    expect([res.statusCode, body.candidates[0]?.content.parts[0]?.text]).toEqual([200, TEXT]);
    expect(fake.requests.map((r) => r.path)).toEqual(Array.from({ length: 2 }, () => '/v1beta/models/gemini-2.5-flash:generateContent'));
    expectPoolKeysOnly(fake);
  });

  it('streamGenerateContent?alt=sse rotates past a quota 429 and streams CRLF-framed events', async () => {
    const { fake, proxy: p } = await through('gemini', route);
    fake.script(KEYS[0]!, { kind: 'resource_exhausted', ms: 5_000 });
    const res = await request(`${p.url}/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse`, {
      method: 'POST',
      headers: { 'x-goog-api-key': CLIENT_KEY, 'content-type': 'application/json' },
      body: '{"contents":[]}',
    });
    const text = await res.body.text();
    expect([res.statusCode, res.headers['content-type']]).toEqual([200, 'text/event-stream']);
    expect(text.split('\r\n\r\n').filter((e) => e.startsWith('data: '))).toHaveLength(5);
    expectPoolKeysOnly(fake);
  });
});
