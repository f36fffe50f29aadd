// The Azure and OpenRouter personalities against the official openai client (AzureOpenAI, and OpenAI
// with OpenRouter's base URL), plus the raw bytes a client must cope with.
import OpenAI, { AzureOpenAI } from 'openai';
import { afterEach, describe, expect, it } from 'vitest';
import { startFakeUpstream } from '../../src/fake-upstream/server.js';
import type { FakeUpstream, FakeUpstreamOptions } from '../../src/fake-upstream/server.js';
import { call, chat } from './provider-calls.js';

const KEY = 'azure-fake-secret-0123456789abcdef';
const OR_KEY = 'sk-or-v1-fake-secret-0123456789abcdef';
const TEXT = 'Hello from the fake upstream.';
const MESSAGES = [{ role: 'user' as const, content: 'hi' }];

let opened: FakeUpstream[] = [];
afterEach(async () => {
  await Promise.all(opened.map((upstream) => upstream.close()));
  opened = [];
});
async function start(options: FakeUpstreamOptions): Promise<FakeUpstream> {
  const upstream = await startFakeUpstream(options);
  opened.push(upstream);
  return upstream;
}

describe('azure', () => {
  const azure = (upstream: FakeUpstream): AzureOpenAI =>
    new AzureOpenAI({ apiKey: KEY, endpoint: upstream.url, apiVersion: '2024-10-21', deployment: 'gpt-4o-mini', maxRetries: 0 });

  it('serves deployments with api-version, plain and streamed, reading the key from api-key', async () => {
    const upstream = await start({ provider: 'azure', acceptKeys: [KEY] });
    const client = azure(upstream);
    const completion = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: MESSAGES });
    expect(completion.choices[0]?.message.content).toBe(TEXT);
    let text = '';
    for await (const chunk of await client.chat.completions.create({ model: 'gpt-4o-mini', messages: MESSAGES, stream: true })) {
      text += chunk.choices[0]?.delta.content ?? '';
    }
    expect(text).toBe(TEXT);
    expect((await client.embeddings.create({ model: 'e', input: ['a', 'b'] })).data).toHaveLength(2);
    expect(upstream.requests.map((r) => [r.path.replace(/\?.*/, ''), r.key, r.headers['api-key']])).toEqual([
      ['/openai/deployments/gpt-4o-mini/chat/completions', KEY, KEY],
      ['/openai/deployments/gpt-4o-mini/chat/completions', KEY, KEY],
      ['/openai/deployments/gpt-4o-mini/embeddings', KEY, KEY],
    ]);
    expect(upstream.requests.every((r) => r.path.endsWith('?api-version=2024-10-21'))).toBe(true);
  });

  it('answers 404 without api-version, and serves the v1 API without one', async () => {
    const upstream = await start({ provider: 'azure' });
    const bare = await call(upstream, '/openai/deployments/d/chat/completions', { headers: { 'api-key': KEY }, body: '{}' });
    expect([bare.status, JSON.parse(bare.text)]).toEqual([404, { error: { code: '404', message: 'Resource not found' } }]);
    const v1 = await call(upstream, '/openai/v1/chat/completions', { headers: { authorization: `Bearer ${KEY}` }, body: '{}' });
    expect(v1.status).toBe(200);
    expect(upstream.requests[1]?.key).toBe(KEY);
  });

  it('tells a 429 through retry-after, retry-after-ms and x-ms-retry-after-ms, in Azure\'s words', async () => {
    const upstream = await start({ provider: 'azure' });
    upstream.script(KEY, { kind: 'rate_limit', ms: 6500 }, { kind: 'model_not_found' });
    const error: unknown = await azure(upstream).chat.completions.create({ model: 'gpt-4o-mini', messages: MESSAGES }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.RateLimitError);
    const e = error as InstanceType<typeof OpenAI.RateLimitError>;
    expect([e.headers?.get('retry-after'), e.headers?.get('retry-after-ms'), e.headers?.get('x-ms-retry-after-ms')]).toEqual(['7', '6500', '6500']);
    expect(e.message).toMatch(/Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 .*retry after 7 seconds/);
    const missing = await chat(upstream, { key: KEY });
    expect([missing.status, (JSON.parse(missing.text) as { error: { code: string } }).error.code]).toEqual([404, 'DeploymentNotFound']);
  });
});

describe('openrouter', () => {
  const router = (upstream: FakeUpstream): OpenAI => new OpenAI({ apiKey: OR_KEY, baseURL: `${upstream.url}/api/v1`, maxRetries: 0 });

  it('is OpenAI-compatible at /api/v1; streams open with its processing comment', async () => {
    const upstream = await start({ provider: 'openrouter', acceptKeys: [OR_KEY] });
    const client = router(upstream);
    expect((await client.chat.completions.create({ model: 'openai/gpt-4o-mini', messages: MESSAGES })).choices[0]?.message.content).toBe(TEXT);
    let text = '';
    for await (const chunk of await client.chat.completions.create({ model: 'openai/gpt-4o-mini', messages: MESSAGES, stream: true })) {
      text += chunk.choices[0]?.delta.content ?? '';
    }
    expect(text).toBe(TEXT);
    const raw = await chat(upstream, { key: OR_KEY, stream: true });
    expect(raw.text.startsWith(': OPENROUTER PROCESSING\n\ndata: ')).toBe(true);
    const models = [];
    for await (const model of client.models.list()) models.push(model.id);
    expect(models).toContain('openai/gpt-4o-mini');
    expect(upstream.requests.every((r) => r.key === OR_KEY)).toBe(true);
  });

  it('answers 402 for insufficient credits, with the limit source', async () => {
    const upstream = await start({ provider: 'openrouter' });
    upstream.script(OR_KEY, { kind: 'payment_required' });
    const error: unknown = await router(upstream).chat.completions.create({ model: 'm', messages: MESSAGES }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.APIError);
    const e = error as InstanceType<typeof OpenAI.APIError>;
    expect(e.status).toBe(402);
    expect(e.error).toMatchObject({ code: 402, metadata: { limit_source: 'openrouter_credits' } });
  });

  it('sends its error chunk inside a 200 stream, which the openai client throws', async () => {
    const upstream = await start({ provider: 'openrouter' });
    upstream.script(OR_KEY, { kind: 'error_in_stream', after: 2 });
    const stream = await router(upstream).chat.completions.create({ model: 'm', messages: MESSAGES, stream: true });
    const seen: string[] = [];
    const error: unknown = await (async () => {
      for await (const chunk of stream) seen.push(chunk.choices[0]?.delta.content ?? '');
    })().catch((e: unknown) => e);
    expect(seen).toEqual(['Hello', ' from']);
    expect(error).toBeInstanceOf(OpenAI.APIError);
    expect((error as Error).message).toContain('Provider disconnected unexpectedly');
  });
});
