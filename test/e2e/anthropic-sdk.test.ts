// The official Anthropic client pointed at keypool (an upstream with `authHeader: x-api-key` in front
// of the fake's anthropic personality), each test rotating past a refused first key: messages plain
// and streamed, count_tokens, models. The pool key reaches the fake; the client's own key never does.
import Anthropic from '@anthropic-ai/sdk';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startFakeUpstream, type FakeUpstream } from '../../src/fake-upstream/server.js';
import { startProxy, type TestProxy } from '../helpers/proxy.js';

const KEYS = ['sk-ant-pool-key-one-1111111111', 'sk-ant-pool-key-two-2222222222'];
const CLIENT_KEY = 'sk-ant-client-own-key-9999999999';
const MODEL = 'claude-sonnet-4-5-20250929';
const MESSAGE = { model: MODEL, max_tokens: 64, messages: [{ role: 'user' as const, content: 'hi' }] };
const TEXT = 'Hello from the fake upstream.';

let upstream: FakeUpstream;
let proxy: TestProxy;
let client: Anthropic;
beforeEach(async () => {
  upstream = await startFakeUpstream({ provider: 'anthropic', acceptKeys: KEYS });
  proxy = await startProxy({
    upstreamUrl: upstream.url,
    keys: KEYS,
    upstream: { prefix: '/anthropic', baseUrl: upstream.url, authHeader: 'x-api-key' },
  });
  // maxRetries 0: keypool does the retrying, and a retry by the client would hide a missed rotation.
  client = new Anthropic({ apiKey: CLIENT_KEY, baseURL: `${proxy.url}/anthropic`, maxRetries: 0 });
});
afterEach(async () => {
  await proxy.close();
  await upstream.close();
});

/** Every request reached the fake with a pool key, and the client's own key was never seen there. */
function expectPoolKeysOnly(): void {
  expect(upstream.requests.length).toBeGreaterThan(0);
  for (const recorded of upstream.requests) {
    expect(KEYS).toContain(recorded.key);
    expect(recorded.headers['x-api-key']).toBe(recorded.key);
    expect(recorded.headers.authorization).toBeUndefined();
    expect(JSON.stringify(recorded.headers) + recorded.path + recorded.body.toString('utf8')).not.toContain(CLIENT_KEY);
  }
  const logs = proxy.logs.join('\n');
  for (const secret of [...KEYS, CLIENT_KEY]) expect(logs).not.toContain(secret);
}

describe('official Anthropic client through keypool', () => {
  it('messages.create rotates past a rate-limited key (429 rate_limit_error)', async () => {
    upstream.script(KEYS[0]!, { kind: 'rate_limit', ms: 30_000 });
    const { data, response } = await client.messages.create(MESSAGE).withResponse();
    expect(data.content).toEqual([{ type: 'text', text: TEXT }]);
    expect(response.headers.get('x-keypool-attempts')).toBe('2');
    expect(upstream.requests.map((r) => r.key)).toEqual(KEYS);
    expectPoolKeysOnly();
  });

  it('messages.stream rotates past a revoked key (401 authentication_error) before the first event', async () => {
    upstream.script(KEYS[0]!, { kind: 'unauthorized' });
    const stream = client.messages.stream(MESSAGE);
    const deltas: string[] = [];
    stream.on('text', (text) => deltas.push(text));
    const final = await stream.finalMessage();
    expect(deltas.join('')).toBe(TEXT);
    expect(final.stop_reason).toBe('end_turn');
    expect(upstream.requests.map((r) => r.key)).toEqual(KEYS);
    expectPoolKeysOnly();
  });

  it('messages.countTokens rotates past a rate-limited key', async () => {
    upstream.script(KEYS[0]!, { kind: 'rate_limit', style: 'anthropic-ratelimit', ms: 20_000 });
    const counted = await client.messages.countTokens({ model: MODEL, messages: MESSAGE.messages });
    expect(counted.input_tokens).toBeGreaterThan(0);
    expect(upstream.requests.map((r) => [r.path, r.key])).toEqual([
      ['/v1/messages/count_tokens', KEYS[0]],
      ['/v1/messages/count_tokens', KEYS[1]],
    ]);
    expectPoolKeysOnly();
  });

  it('the next request for the model skips the cooling key; models.list works on the same upstream', async () => {
    upstream.script(KEYS[0]!, { kind: 'rate_limit', ms: 60_000 });
    await client.messages.create(MESSAGE);
    await client.messages.create(MESSAGE);
    const ids: string[] = [];
    for await (const model of client.models.list()) ids.push(model.id);
    expect(ids).toContain(MODEL);
    // Rate limits cool a key per model; a model-less GET may use either key.
    expect(upstream.requests.slice(0, 3).map((r) => r.key)).toEqual([KEYS[0], KEYS[1], KEYS[1]]);
    expectPoolKeysOnly();
  });
});
