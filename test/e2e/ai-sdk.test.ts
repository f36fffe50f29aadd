// The Vercel AI SDK (`ai` with @ai-sdk/openai and @ai-sdk/anthropic) pointed at keypool, each call
// rotating past a refused first key: generateText and streamText over the Responses API, Chat
// Completions and Anthropic Messages.
import { createAnthropic } from '@ai-sdk/anthropic';
import { createOpenAI } from '@ai-sdk/openai';
import { generateText, streamText, type LanguageModel } from 'ai';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startFakeUpstream, type FakeUpstream, type Provider } from '../../src/fake-upstream/server.js';
import { startProxy, type TestProxy } from '../helpers/proxy.js';

const KEYS = ['sk-ai-sdk-pool-key-one-1111111111', 'sk-ai-sdk-pool-key-two-2222222222'];
const CLIENT_KEY = 'sk-ai-sdk-client-own-key-999999999';
const TEXT = 'Hello from the fake upstream.';

beforeAll(() => {
  // The SDK warns on console about settings the fake's model names cannot vouch for.
  (globalThis as { AI_SDK_LOG_WARNINGS?: boolean }).AI_SDK_LOG_WARNINGS = false;
});

let upstream: FakeUpstream | undefined;
let proxy: TestProxy | undefined;
afterEach(async () => {
  await proxy?.close();
  await upstream?.close();
  proxy = undefined;
  upstream = undefined;
});

async function through(provider: Provider): Promise<{ upstream: FakeUpstream; proxy: TestProxy }> {
  upstream = await startFakeUpstream({ provider, acceptKeys: KEYS });
  proxy = await startProxy(
    provider === 'anthropic'
      ? { upstreamUrl: upstream.url, keys: KEYS, upstream: { prefix: '/anthropic', baseUrl: `${upstream.url}/v1`, authHeader: 'x-api-key' } }
      : { upstreamUrl: upstream.url, keys: KEYS },
  );
  return { upstream, proxy };
}

const models: Record<string, (proxyUrl: string) => LanguageModel> = {
  'openai responses': (url) => createOpenAI({ apiKey: CLIENT_KEY, baseURL: `${url}/v1` })('gpt-4o-mini'),
  'openai chat': (url) => createOpenAI({ apiKey: CLIENT_KEY, baseURL: `${url}/v1` }).chat('gpt-4o-mini'),
  anthropic: (url) => createAnthropic({ apiKey: CLIENT_KEY, baseURL: `${url}/anthropic` })('claude-sonnet-4-5'),
};
const paths: Record<string, string> = {
  'openai responses': '/v1/responses',
  'openai chat': '/v1/chat/completions',
  anthropic: '/v1/messages',
};

function expectRotated(fake: FakeUpstream, path: string): void {
  expect(fake.requests.map((r) => [r.path, r.key])).toEqual([
    [path, KEYS[0]],
    [path, KEYS[1]],
  ]);
  for (const recorded of fake.requests) expect(JSON.stringify(recorded.headers)).not.toContain(CLIENT_KEY);
  const logs = proxy?.logs.join('\n') ?? '';
  for (const secret of [...KEYS, CLIENT_KEY]) expect(logs).not.toContain(secret);
}

describe.each(Object.keys(models))('Vercel AI SDK, %s, through keypool', (name) => {
  const provider: Provider = name === 'anthropic' ? 'anthropic' : 'openai';
  let fake: FakeUpstream;
  let model: LanguageModel;
  beforeEach(async () => {
    const started = await through(provider);
    fake = started.upstream;
    model = models[name]!(started.proxy.url);
  });

  it('generateText rotates past a rate-limited key', async () => {
    fake.script(KEYS[0]!, { kind: 'rate_limit', ms: 30_000 });
    const result = await generateText({ model, prompt: 'hi', maxOutputTokens: 64, maxRetries: 0 });
    expect(result.text).toBe(TEXT);
    expect(result.finishReason).toBe('stop');
    expect(result.usage.inputTokens).toBe(9);
    expect(result.response.headers?.['x-keypool-attempts']).toBe('2');
    expectRotated(fake, paths[name]!);
  });

  it('streamText rotates past an invalid key before the first event', async () => {
    fake.script(KEYS[0]!, { kind: 'unauthorized' });
    const errors: unknown[] = [];
    const result = streamText({ model, prompt: 'hi', maxOutputTokens: 64, maxRetries: 0, onError: ({ error }) => void errors.push(error) });
    const parts: string[] = [];
    for await (const part of result.textStream) parts.push(part);
    expect(errors).toEqual([]);
    expect(parts.join('')).toBe(TEXT);
    expect(parts.length).toBeGreaterThan(1);
    expect(await result.finishReason).toBe('stop');
    expectRotated(fake, paths[name]!);
  });
});
