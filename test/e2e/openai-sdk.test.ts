// The official openai client, pointed at keypool through baseURL, against the fake upstream.
import OpenAI from 'openai';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startFakeUpstream, type FakeUpstream } from '../../src/fake-upstream/server.js';
import { startProxy, type TestProxy } from '../helpers/proxy.js';

const KEYS = ['sk-sdk-pool-key-one-1111', 'sk-sdk-pool-key-two-2222', 'sk-sdk-pool-key-three-3333'];

let upstream: FakeUpstream;
let proxy: TestProxy;
let client: OpenAI;
beforeEach(async () => {
  upstream = await startFakeUpstream({ acceptKeys: KEYS });
  proxy = await startProxy({ upstreamUrl: upstream.url, keys: KEYS });
  // The agent's own key is a placeholder; keypool swaps in a pool key. maxRetries 0: keypool retries.
  client = new OpenAI({ apiKey: 'sk-agent-placeholder', baseURL: `${proxy.url}/v1`, maxRetries: 0 });
});
afterEach(async () => {
  await proxy.close();
  await upstream.close();
});

describe('official openai client through keypool', () => {
  it('models.list', async () => {
    const page = await client.models.list();
    expect(page.data.length).toBeGreaterThan(0);
    expect(upstream.requests[0]!.headers.authorization).toBe(`Bearer ${KEYS[0]}`);
  });

  it('embeddings.create', async () => {
    const res = await client.embeddings.create({ model: 'text-embedding-3-small', input: ['a', 'b'] });
    expect(res.data).toHaveLength(2);
    expect(res.data[0]!.embedding.length).toBeGreaterThan(0);
  });

  it('chat.completions.create, rotating past a rate-limited key; the headers show it', async () => {
    upstream.script(KEYS[0]!, { kind: 'rate_limit', style: 'x-ratelimit', ms: 30_000 });
    const { data, response } = await client.chat.completions
      .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] })
      .withResponse();
    expect(data.choices[0]!.message.content).toBeTruthy();
    expect(response.headers.get('x-keypool-key')).toBe('openai-2');
    expect(response.headers.get('x-keypool-attempts')).toBe('2');
  });

  it('chat.completions.create with stream: true', async () => {
    upstream.script(KEYS[0]!, { kind: 'rate_limit', style: 'retry-after', ms: 30_000 });
    const stream = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
    });
    let text = '';
    let chunks = 0;
    for await (const chunk of stream) {
      chunks++;
      text += chunk.choices[0]?.delta.content ?? '';
    }
    expect(chunks).toBeGreaterThan(1);
    expect(text.length).toBeGreaterThan(0);
  });

  it('surfaces keypool\'s exhausted pool as a RateLimitError with retry-after', async () => {
    for (const k of KEYS) upstream.setDefault(k, { kind: 'rate_limit', style: 'retry-after', ms: 90_000 });
    const err = await client.chat.completions
      .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    const e = err as InstanceType<typeof OpenAI.RateLimitError>;
    expect(e.code).toBe('keypool_pool_exhausted');
    expect(Number(e.headers?.get('retry-after'))).toBeGreaterThan(60);
    expect(upstream.requests).toHaveLength(3);
  });
});

describe('official openai client, Responses API, through keypool', () => {
  const TEXT = 'Hello from the fake upstream.';

  it('responses.create, rotating past a rate-limited key', async () => {
    upstream.script(KEYS[0]!, { kind: 'rate_limit', style: 'retry-after-ms', ms: 30_000 });
    const { data, response } = await client.responses.create({ model: 'gpt-4o-mini', input: 'hi' }).withResponse();
    expect(data.output_text).toBe(TEXT);
    expect(response.headers.get('x-keypool-attempts')).toBe('2');
    expect(upstream.requests.map((r) => [r.path, r.key])).toEqual([
      ['/v1/responses', KEYS[0]],
      ['/v1/responses', KEYS[1]],
    ]);
  });

  it('responses.stream, rotating past an invalid key before the first event', async () => {
    upstream.script(KEYS[0]!, { kind: 'unauthorized' });
    const stream = client.responses.stream({ model: 'gpt-4o-mini', input: 'hi' });
    const types: string[] = [];
    let deltas = '';
    stream.on('event', (event) => types.push(event.type));
    stream.on('response.output_text.delta', (event) => (deltas += event.delta));
    const final = await stream.finalResponse();
    expect([deltas, final.output_text, final.status]).toEqual([TEXT, TEXT, 'completed']);
    expect([types[0], types.at(-1)]).toEqual(['response.created', 'response.completed']);
    expect(upstream.requests.map((r) => r.key)).toEqual([KEYS[0], KEYS[1]]);
  });

  it('responses.create({ stream: true }), rotating past an out-of-credit key', async () => {
    upstream.script(KEYS[0]!, { kind: 'insufficient_quota' });
    const stream = await client.responses.create({ model: 'gpt-4o-mini', input: 'hi', stream: true });
    let text = '';
    let completed = false;
    for await (const event of stream) {
      if (event.type === 'response.output_text.delta') text += event.delta;
      if (event.type === 'response.completed') completed = true;
    }
    expect([text, completed]).toEqual([TEXT, true]);
    expect(upstream.requests.map((r) => r.key)).toEqual([KEYS[0], KEYS[1]]);
  });
});
