// Provider presets, through real clients against the fake's personalities: an upstream's `provider`
// sets base URL, auth style, required
// headers, the shape of keypool's own errors, how rate-limit signals are read and commit on content
// (on by default for providers that send errors inside a 200 stream); every preset field can be
// overridden (here `baseUrl`, to reach the fake); a key may carry its own `baseUrl`.
import { createAnthropic } from '@ai-sdk/anthropic';
import Anthropic from '@anthropic-ai/sdk';
import { generateText } from 'ai';
import OpenAI, { AzureOpenAI } from 'openai';
import { request } from 'undici';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ConfigInput } from '../../src/config/schema.js';
import { startFakeUpstream, type FakeUpstream, type Provider } from '../../src/fake-upstream/server.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { startProxy, type TestProxy } from '../helpers/proxy.js';
import { waitFor } from '../helpers/wait.js';

type UpstreamInput = ConfigInput['upstreams'][number];

const KEYS = ['preset-pool-key-one-1111111111', 'preset-pool-key-two-2222222222'];
const CLIENT_KEY = 'preset-client-own-key-9999999999';
const TEXT = 'Hello from the fake upstream.';
const MESSAGE = { model: 'claude-sonnet-4-5-20250929', max_tokens: 64, messages: [{ role: 'user' as const, content: 'hi' }] };
const HOUR_MS = 3_600_000;

/** Fields the config does not know yet (`provider`, a key's `baseUrl`), passed through untyped. */
function preset(fields: Record<string, unknown>): Partial<UpstreamInput> {
  return fields as unknown as Partial<UpstreamInput>;
}

beforeAll(() => {
  (globalThis as { AI_SDK_LOG_WARNINGS?: boolean }).AI_SDK_LOG_WARNINGS = false;
});

let fakes: FakeUpstream[] = [];
let proxy: TestProxy | undefined;
afterEach(async () => {
  await proxy?.close();
  await Promise.all(fakes.map((fake) => fake.close()));
  proxy = undefined;
  fakes = [];
});

async function fake(provider: Provider, clock?: FakeClock): Promise<FakeUpstream> {
  const started = await startFakeUpstream({ provider, acceptKeys: KEYS, ...(clock === undefined ? {} : { now: () => clock.now() }) });
  fakes.push(started);
  return started;
}

async function keypool(upstreamUrl: string, fields: Record<string, unknown>, clock?: FakeClock, keys: unknown[] = KEYS): Promise<TestProxy> {
  proxy = await startProxy({ upstreamUrl, keys: keys as string[], upstream: preset(fields), ...(clock === undefined ? {} : { clock }) });
  return proxy;
}

function expectPoolKeysOnly(f: FakeUpstream): void {
  expect(f.requests.length).toBeGreaterThan(0);
  for (const r of f.requests) {
    expect(KEYS).toContain(r.key);
    expect(JSON.stringify(r.headers) + r.path).not.toContain(CLIENT_KEY);
  }
}

describe('anthropic preset', () => {
  const start = async (): Promise<{ f: FakeUpstream; p: TestProxy }> => {
    const f = await fake('anthropic');
    const p = await keypool(f.url, { provider: 'anthropic', prefix: '/anthropic', baseUrl: f.url });
    return { f, p };
  };

  it('answers an exhausted pool in Anthropic\'s error shape, which the Anthropic SDK classifies', async () => {
    const { f, p } = await start();
    for (const key of KEYS) f.setDefault(key, { kind: 'rate_limit', ms: 90_000 });
    const client = new Anthropic({ apiKey: CLIENT_KEY, baseURL: `${p.url}/anthropic`, maxRetries: 0 });
    const error: unknown = await client.messages.create(MESSAGE).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(Anthropic.RateLimitError);
    const e = error as InstanceType<typeof Anthropic.RateLimitError>;
    expect(e.error).toMatchObject({ type: 'error', error: { type: 'rate_limit_error' } });
    expect(Number(e.headers?.get('retry-after'))).toBeGreaterThan(60);
  });

  it('gives @ai-sdk/anthropic keypool\'s message, not a bare "Too Many Requests"', async () => {
    const { f, p } = await start();
    for (const key of KEYS) f.setDefault(key, { kind: 'rate_limit', ms: 90_000 });
    const model = createAnthropic({ apiKey: CLIENT_KEY, baseURL: `${p.url}/anthropic/v1` })('claude-sonnet-4-5');
    const error: unknown = await generateText({ model, prompt: 'hi', maxOutputTokens: 64, maxRetries: 0 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).not.toBe('Too Many Requests');
    expect((error as Error).message.length).toBeGreaterThan('Too Many Requests'.length);
  });

  it('rotates when the first event of a 200 stream is overloaded_error (commit on content)', async () => {
    const { f, p } = await start();
    f.script(KEYS[0]!, { kind: 'error_in_stream' });
    const client = new Anthropic({ apiKey: CLIENT_KEY, baseURL: `${p.url}/anthropic`, maxRetries: 0 });
    const final = await client.messages.stream(MESSAGE).finalMessage();
    expect(final.content).toEqual([{ type: 'text', text: TEXT }]);
    expect(f.requests.map((r) => r.key)).toEqual(KEYS);
  });

  it('adds anthropic-version for a client that does not send it, and strips a bearer token', async () => {
    const { f, p } = await start();
    const res = await request(`${p.url}/anthropic/v1/messages`, {
      method: 'POST',
      headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify(MESSAGE),
    });
    expect(res.statusCode).toBe(200);
    await res.body.dump();
    expect(f.requests[0]?.headers['x-api-key']).toBe(KEYS[0]);
    expectPoolKeysOnly(f);
  });
});

describe('openrouter preset', () => {
  it('rotates when the first event of a 200 stream is OpenRouter\'s error chunk (commit on content)', async () => {
    const f = await fake('openrouter');
    const p = await keypool(f.url, { provider: 'openrouter', prefix: '/api/v1', baseUrl: `${f.url}/api/v1` });
    f.script(KEYS[0]!, { kind: 'error_in_stream' });
    const client = new OpenAI({ apiKey: CLIENT_KEY, baseURL: `${p.url}/api/v1`, maxRetries: 0 });
    let text = '';
    for await (const chunk of await client.chat.completions.create({ model: 'openai/gpt-4o-mini', messages: MESSAGE.messages, stream: true })) {
      text += chunk.choices[0]?.delta.content ?? '';
    }
    expect(text).toBe(TEXT);
    expect(f.requests.map((r) => r.key)).toEqual(KEYS);
  });
});

describe('gemini preset', () => {
  const start = async (clock?: FakeClock): Promise<{ f: FakeUpstream; p: TestProxy }> => {
    const f = await fake('gemini', clock);
    const p = await keypool(f.url, { provider: 'gemini', prefix: '/v1beta', baseUrl: `${f.url}/v1beta` }, clock);
    return { f, p };
  };
  const generate = (p: TestProxy, model: string, query = '') =>
    request(`${p.url}/v1beta/models/${model}:generateContent${query}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ contents: [{ role: 'user', parts: [{ text: 'hi' }] }] }),
    });
  const coolsMs = (p: TestProxy, clock: FakeClock, model: string): number =>
    (p.pool.states()[0]?.scopes.get(model)?.cooldownUntil ?? 0) - clock.now();

  it('strips the client\'s ?key= and sends a pool key', async () => {
    const { f, p } = await start();
    const res = await generate(p, 'gemini-2.5-flash', `?key=${CLIENT_KEY}`);
    expect(res.statusCode).toBe(200);
    await res.body.dump();
    expectPoolKeysOnly(f);
  });

  it('counts the tokens of Gemini\'s usageMetadata on the key that served', async () => {
    const { p } = await start();
    const res = await generate(p, 'gemini-2.5-flash');
    expect(res.statusCode).toBe(200);
    const body = (await res.body.json()) as { usageMetadata: { promptTokenCount: number; candidatesTokenCount: number } };
    await waitFor(() => p.pool.states().some((s) => s.tokens.input > 0));
    const served = p.pool.states().find((s) => s.tokens.input > 0)!;
    expect(served.tokens).toEqual({ input: body.usageMetadata.promptTokenCount, output: body.usageMetadata.candidatesTokenCount });
  });

  it('cools a key for the retryDelay of a 429 RESOURCE_EXHAUSTED', async () => {
    const clock = new FakeClock();
    const { f, p } = await start(clock);
    f.script(KEYS[0]!, { kind: 'rate_limit', ms: 37_000 });
    const res = await generate(p, 'gemini-2.5-flash');
    expect(res.statusCode).toBe(200);
    await res.body.dump();
    expect(coolsMs(p, clock, 'gemini-2.5-flash')).toBe(37_000);
  });

  it('cools a key for a long time, for that model only, when its daily quota is spent', async () => {
    const clock = new FakeClock();
    const { f, p } = await start(clock);
    f.script(KEYS[0]!, { kind: 'resource_exhausted', daily: true, ms: 37_000 });
    await (await generate(p, 'gemini-2.5-flash')).body.dump();
    expect(coolsMs(p, clock, 'gemini-2.5-flash')).toBeGreaterThanOrEqual(HOUR_MS);
    expect(p.pool.states()[0]?.scopes.get('gemini-2.5-pro')?.cooldownUntil ?? 0).toBeLessThanOrEqual(clock.now());
  });

  it('rotates past 400 API_KEY_INVALID instead of handing it to the client', async () => {
    const { f, p } = await start();
    f.script(KEYS[0]!, { kind: 'unauthorized' });
    const res = await generate(p, 'gemini-2.5-flash');
    expect(res.statusCode).toBe(200);
    await res.body.dump();
    expect(f.requests.map((r) => r.key)).toEqual(KEYS);
  });

  it('answers an exhausted pool in Google\'s error shape', async () => {
    const { f, p } = await start();
    for (const key of KEYS) f.setDefault(key, { kind: 'rate_limit', ms: 90_000 });
    const res = await generate(p, 'gemini-2.5-flash');
    const body = (await res.body.json()) as { error?: { code?: number; status?: string; message?: string } };
    expect(res.statusCode).toBe(429);
    expect(body.error).toMatchObject({ code: 429, status: 'RESOURCE_EXHAUSTED' });
  });
});

describe('azure preset with per-key base URLs', () => {
  it('rotates from one Azure resource to another', async () => {
    const east = await fake('azure');
    const west = await fake('azure');
    east.script(KEYS[0]!, { kind: 'rate_limit', ms: 30_000 });
    const p = await keypool(east.url, { provider: 'azure', prefix: '/openai', baseUrl: `${east.url}/openai` }, undefined, [
      { key: KEYS[0], baseUrl: `${east.url}/openai` },
      { key: KEYS[1], baseUrl: `${west.url}/openai` },
    ]);
    const client = new AzureOpenAI({ apiKey: CLIENT_KEY, endpoint: p.url, apiVersion: '2024-10-21', deployment: 'gpt-4o-mini', maxRetries: 0 });
    const completion = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: MESSAGE.messages });
    expect(completion.choices[0]?.message.content).toBe(TEXT);
    expect([east.requests.map((r) => r.key), west.requests.map((r) => r.key)]).toEqual([[KEYS[0]], [KEYS[1]]]);
    expect(west.requests[0]?.headers['api-key']).toBe(KEYS[1]);
  });
});
