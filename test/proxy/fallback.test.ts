// Fallback chains against fault upstreams: when the primary cannot serve (persistent 5xx, every key out
// of credit, no answer, a context window too small), the request goes on to the next target, and the
// retry arithmetic across the chain is exact.
import { createServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { act } from '../helpers/fault-upstream.js';
import { chainHarness, completion, secretOf, type ChainHarness } from '../helpers/chain.js';

const open: ChainHarness[] = [];
afterEach(async () => {
  while (open.length > 0) await open.pop()!.close();
});
async function chain(...args: Parameters<typeof chainHarness>): Promise<ChainHarness> {
  const h = await chainHarness(...args);
  open.push(h);
  return h;
}

/** A loopback port nothing listens on (connections are refused). */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

const ok = (from: string) => () => act.afterBody((r) => act.json(200, completion((JSON.parse(r.body.toString()) as { model: string }).model, from)));
const down = () => act.json(503, { error: { message: 'upstream overloaded', type: 'server_error' } });
const outOfCredit = () => act.json(429, { error: { message: 'You exceeded your current quota', type: 'insufficient_quota', code: 'insufficient_quota' } });

describe('fallback chains', () => {
  it('a primary answering 503 sends the request on at once; the fallback answers and says so', async () => {
    const h = await chain([
      { name: 'primary', script: down, keys: 3, config: { fallbacks: [{ upstream: 'azure' }] } },
      { name: 'azure', script: ok('azure'), keys: 2 },
    ]);
    const r = await h.call();
    expect(r.status).toBe(200);
    expect(JSON.parse(r.text).choices[0].message.content).toBe('from azure');
    expect(r.headers['x-keypool-upstream']).toBe('azure');
    expect(r.headers['x-keypool-model']).toBe('gpt-4o');
    // One attempt on the primary (a server fault with a target to go: no budget spent on it), one on azure.
    expect(r.headers['x-keypool-attempts']).toBe('2');
    expect(h.up.primary!.requests).toHaveLength(1);
    expect(h.up.azure!.requests).toHaveLength(1);
    // Each upstream saw only its own keys.
    expect(h.up.azure!.requests.every((q) => q.key?.startsWith('sk-azure-'))).toBe(true);
    expect(h.up.primary!.requests.every((q) => q.key?.startsWith('sk-primary-'))).toBe(true);
    const line = h.requestLines().at(-1)!;
    expect(line.upstream).toBe('azure');
    expect(line.chain).toEqual(['primary', 'azure']);
    expect(line.tried).toEqual(['primary/primary-1:503:retry', 'azure-1:200:deliver']);
  });

  it('an answer from the primary itself carries no x-keypool-upstream', async () => {
    const h = await chain([
      { name: 'primary', script: ok('primary'), config: { fallbacks: [{ upstream: 'azure' }] } },
      { name: 'azure', script: ok('azure') },
    ]);
    const r = await h.call();
    expect(r.status).toBe(200);
    expect(r.headers['x-keypool-upstream']).toBeUndefined();
    expect(r.headers['x-keypool-model']).toBeUndefined();
    expect(h.up.azure!.requests).toHaveLength(0);
    expect(h.requestLines().at(-1)!.chain).toBeUndefined();
  });

  it('budget arithmetic: every target down spends at most one free attempt per target walked plus retry.maxRetries on the last', async () => {
    // maxRetries 2; primary (3 keys) 503, azure (2 keys) 503, openrouter (2 keys) 503.
    const h = await chain([
      { name: 'primary', script: down, keys: 3, config: { fallbacks: [{ upstream: 'azure' }, { upstream: 'openrouter', model: 'openai/gpt-4o' }] } },
      { name: 'azure', script: down, keys: 2 },
      { name: 'openrouter', script: down, keys: 2 },
    ]);
    const r = await h.call();
    expect(r.status).toBe(503);
    // primary 1 (free), azure 1 (free), openrouter 1 (free) + 2 charged = 5 = targets walked + maxRetries.
    expect([h.up.primary!.requests.length, h.up.azure!.requests.length, h.up.openrouter!.requests.length]).toEqual([1, 1, 3]);
    expect(r.headers['x-keypool-attempts']).toBe('5');
    expect(JSON.parse(r.text).error.code).toBe('keypool_upstream_error');
    const line = h.requestLines().at(-1)!;
    expect(line.retries).toBe(2);
    expect(line.chain).toEqual(['primary', 'azure', 'openrouter']);
  });

  it('budget arithmetic: key-level rotations stay free on every target, and the charged budget is one for the whole chain', async () => {
    // Primary: every key 429 for a minute (free walk of 3, then the pool is exhausted past maxWaitMs);
    // fallback: 2 keys 503 then 200 on the third try. maxRetries 2: 3 + 1 free + 2 charged = 6 attempts.
    let n = 0;
    const h = await chain(
      [
        { name: 'primary', script: () => act.json(429, { error: { message: 'Rate limit reached', type: 'requests' } }, { 'retry-after': '60' }), keys: 3, config: { fallbacks: [{ upstream: 'azure' }] } },
        { name: 'azure', script: () => (++n <= 2 ? down() : ok('azure')()), keys: 2 },
      ],
      { retry: { maxWaitMs: 1_000 } },
    );
    const r = await h.call();
    expect(r.status).toBe(200);
    expect([h.up.primary!.requests.length, h.up.azure!.requests.length]).toEqual([3, 3]);
    expect(r.headers['x-keypool-attempts']).toBe('6');
    expect(h.requestLines().at(-1)!.retries).toBe(2);
  });

  it('budget spent: a fourth try is never made, whatever the chain', async () => {
    let n = 0;
    const h = await chain(
      [
        { name: 'primary', script: () => act.json(429, { error: { message: 'Rate limit reached' } }, { 'retry-after': '60' }), keys: 1, config: { fallbacks: [{ upstream: 'azure' }] } },
        { name: 'azure', script: () => (++n <= 10 ? down() : ok('azure')()), keys: 1 },
      ],
      { retry: { maxWaitMs: 1_000, maxRetries: 1 } },
    );
    const r = await h.call();
    // primary 1 free; azure 1 free + 1 charged.
    expect([h.up.primary!.requests.length, h.up.azure!.requests.length]).toEqual([1, 2]);
    expect(r.headers['x-keypool-attempts']).toBe('3');
    // Every target gave up: the client is told the one it can act on (azure's budget_spent says
    // x-should-retry: false; the primary's pool is back in 60 s).
    expect(r.status).toBe(429);
    expect(r.headers['retry-after']).toBe('60');
    expect(JSON.parse(r.text).error.code).toBe('keypool_pool_exhausted');
  });

  it('budget arithmetic: charged attempts spent on the primary are not given again to the fallback', async () => {
    // Primary: 1 key, 429 for 50 ms each time (a wait for it is charged); maxRetries 2 spent there, then
    // the fallback gets its free attempt only.
    const h = await chain(
      [
        { name: 'primary', script: () => act.json(429, { error: { message: 'Rate limit reached' } }, { 'retry-after-ms': '20' }), keys: 1, config: { fallbacks: [{ upstream: 'azure' }] } },
        { name: 'azure', script: down, keys: 1 },
      ],
      { retry: { maxWaitMs: 5_000 } },
    );
    const r = await h.call();
    expect([h.up.primary!.requests.length, h.up.azure!.requests.length]).toEqual([3, 1]);
    expect(r.headers['x-keypool-attempts']).toBe('4');
    expect(h.requestLines().at(-1)!.retries).toBe(2);
  });

  it('an upstream with another auth header never gets the previous target’s key header', async () => {
    const h = await chain([
      { name: 'primary', script: down, keys: 1, config: { fallbacks: [{ upstream: 'azure' }] } },
      { name: 'azure', script: ok('azure'), keys: 1, config: { authHeader: 'api-key' } },
    ]);
    const r = await h.call();
    expect(r.status).toBe(200);
    const got = h.up.azure!.requests[0]!.headers;
    expect(got['api-key']).toBe(secretOf('azure', 0));
    expect(got.authorization).toBeUndefined();
  });

  it('every primary key out of credit: the fallback serves, and later requests go straight to it', async () => {
    const h = await chain([
      { name: 'primary', script: outOfCredit, keys: 2, config: { fallbacks: [{ upstream: 'openrouter', model: 'openai/gpt-4o' }] } },
      { name: 'openrouter', script: ok('openrouter') },
    ]);
    const first = await h.call();
    expect(first.status).toBe(200);
    expect(first.headers['x-keypool-upstream']).toBe('openrouter');
    expect(first.headers['x-keypool-model']).toBe('openai/gpt-4o');
    expect(JSON.parse(first.text).model).toBe('openai/gpt-4o');
    expect(h.up.primary!.requests).toHaveLength(2);
    const second = await h.call();
    expect(second.status).toBe(200);
    expect(second.headers['x-keypool-attempts']).toBe('1');
    expect(h.up.primary!.requests).toHaveLength(2);
  });

  it('the fallback model is rewritten in the body and nothing else changes, byte for byte', async () => {
    const body = '{"messages":[{"role":"user","content":"héllo \\u00e9"}],  "model" : "gpt-4o","temperature":0.25,"x":{"model":"inner"}}';
    const h = await chain([
      { name: 'primary', script: outOfCredit, keys: 1, config: { fallbacks: [{ upstream: 'openrouter', model: 'openai/gpt-4o' }] } },
      { name: 'openrouter', script: ok('openrouter') },
    ]);
    const r = await h.call('/v1/chat/completions', body);
    expect(r.status).toBe(200);
    expect(h.up.openrouter!.requests[0]!.body.toString('utf8')).toBe(body.replace('"model" : "gpt-4o"', '"model" : "openai/gpt-4o"'));
    expect(h.up.primary!.requests[0]!.body.toString('utf8')).toBe(body);
  });

  it('per-model chains win over the upstream chain', async () => {
    const h = await chain([
      {
        name: 'primary',
        script: down,
        config: { fallbacks: [{ upstream: 'azure' }], modelFallbacks: { 'gpt-4o-mini*': [{ upstream: 'openrouter', model: 'openai/gpt-4o-mini' }] } },
      },
      { name: 'azure', script: ok('azure') },
      { name: 'openrouter', script: ok('openrouter') },
    ]);
    const mini = await h.call('/v1/chat/completions', { model: 'gpt-4o-mini', messages: [] });
    expect(mini.headers['x-keypool-upstream']).toBe('openrouter');
    const big = await h.call('/v1/chat/completions', { model: 'gpt-4o', messages: [] });
    expect(big.headers['x-keypool-upstream']).toBe('azure');
  });

  it('a fallback on the same upstream with a smaller model (a downgrade)', async () => {
    const h = await chain([
      {
        name: 'primary',
        script: () => act.afterBody((r) => (JSON.parse(r.body.toString()).model === 'gpt-4o' ? outOfCredit() : act.json(200, completion('gpt-4o-mini', 'primary')))),
        keys: 1,
        config: { fallbacks: [{ upstream: 'primary', model: 'gpt-4o-mini' }] },
      },
    ]);
    // A model-wide cooldown from insufficient_quota is key-wide: the downgrade finds no key either.
    const r = await h.call();
    expect(r.status).toBe(429);
    expect(h.up.primary!.requests).toHaveLength(1);
  });

  it('chains do not chain: a fallback’s own fallbacks are not followed', async () => {
    const h = await chain([
      { name: 'primary', script: down, keys: 1, config: { fallbacks: [{ upstream: 'azure' }] } },
      { name: 'azure', script: down, keys: 1, config: { fallbacks: [{ upstream: 'openrouter' }] } },
      { name: 'openrouter', script: ok('openrouter') },
    ]);
    const r = await h.call();
    expect(r.status).toBe(503);
    expect(h.up.openrouter!.requests).toHaveLength(0);
  });
});

describe('context-length fallbacks', () => {
  const tooLong = () => act.json(400, { error: { message: "This model's maximum context length is 128000 tokens. However, your messages resulted in 200000 tokens.", type: 'invalid_request_error', code: 'context_length_exceeded' } });

  it('a context-length 400 goes to the larger model; the 400 is never shown', async () => {
    const h = await chain([
      {
        name: 'primary',
        script: () => act.afterBody((r) => (JSON.parse(r.body.toString()).model === 'gpt-4.1' ? act.json(200, completion('gpt-4.1', 'primary')) : tooLong())),
        keys: 2,
        config: { errorFallbacks: { contextLengthExceeded: [{ upstream: 'primary', model: 'gpt-4.1' }] } },
      },
    ]);
    const r = await h.call();
    expect(r.status).toBe(200);
    expect(r.headers['x-keypool-model']).toBe('gpt-4.1');
    expect(r.headers['x-keypool-upstream']).toBe('primary');
    expect(r.headers['x-keypool-attempts']).toBe('2');
    // The 400 was the request's, not the key's: no key was cooled for it.
    expect(h.app.pools.get('primary')!.states().every((s) => s.scopes.size === 0 || [...s.scopes.values()].every((sc) => sc.cooldownUntil === 0))).toBe(true);
  });

  it('without errorFallbacks the 400 is the client’s, unchanged and tried once', async () => {
    const h = await chain([{ name: 'primary', script: tooLong, keys: 2 }]);
    const r = await h.call();
    expect(r.status).toBe(400);
    expect(JSON.parse(r.text).error.code).toBe('context_length_exceeded');
    expect(h.up.primary!.requests).toHaveLength(1);
  });

  it('a 400 for content policy is never sent anywhere else', async () => {
    const h = await chain([
      {
        name: 'primary',
        script: () => act.json(400, { error: { message: 'Your request was rejected as a result of our safety system.', type: 'invalid_request_error', code: 'content_policy_violation' } }),
        config: { errorFallbacks: { contextLengthExceeded: [{ upstream: 'azure', model: 'gpt-4.1' }] }, fallbacks: [{ upstream: 'azure' }] },
      },
      { name: 'azure', script: ok('azure') },
    ]);
    const r = await h.call();
    expect(r.status).toBe(400);
    expect(JSON.parse(r.text).error.code).toBe('content_policy_violation');
    expect(h.up.azure!.requests).toHaveLength(0);
  });

  it('the last model of the context chain gives its 400 to the client', async () => {
    const h = await chain([
      { name: 'primary', script: tooLong, keys: 1, config: { errorFallbacks: { contextLengthExceeded: [{ upstream: 'primary', model: 'gpt-4.1' }, { upstream: 'primary', model: 'gpt-4.1-1m' }] } } },
    ]);
    const r = await h.call();
    expect(r.status).toBe(400);
    expect(h.up.primary!.requests.map((q) => JSON.parse(q.body.toString()).model)).toEqual(['gpt-4o', 'gpt-4.1', 'gpt-4.1-1m']);
  });
});

describe('a primary that never answers', () => {
  const streamed = (from: string) => () => act.stream([`data: ${JSON.stringify({ choices: [{ delta: { content: from } }] })}\n\n`, 'data: [DONE]\n\n']);

  it('a stream fails over after one headers timeout, not one per key', async () => {
    const h = await chain(
      [
        { name: 'primary', script: () => act.stallBeforeHeaders(), keys: 3, config: { fallbacks: [{ upstream: 'azure' }] } },
        { name: 'azure', script: streamed('azure') },
      ],
      { retry: { streamHeadersTimeoutMs: 200 } },
    );
    const r = await h.call('/v1/chat/completions', { model: 'gpt-4o', stream: true, messages: [] });
    expect(r.status).toBe(200);
    expect(r.text).toContain('azure');
    expect(r.headers['x-keypool-upstream']).toBe('azure');
    expect(h.up.primary!.requests).toHaveLength(1);
  });

  it('a non-streaming POST that may be running upstream is not sent to the fallback (it would be billed twice)', async () => {
    const h = await chain(
      [
        { name: 'primary', script: () => act.stallBeforeHeaders(), keys: 2, config: { fallbacks: [{ upstream: 'azure' }] } },
        { name: 'azure', script: ok('azure') },
      ],
      { retry: { headersTimeoutMs: 200 } },
    );
    const r = await h.call();
    expect(r.status).toBe(504);
    expect(r.headers['x-should-retry']).toBe('false');
    expect(h.up.azure!.requests).toHaveLength(0);
  });

  it('a primary refusing connections fails over at once, whatever the method', async () => {
    const closed = await closedPort();
    const h = await chain([
      { name: 'primary', script: () => act.resetBeforeBody(), keys: 2, config: { baseUrl: `http://127.0.0.1:${closed}/v1`, fallbacks: [{ upstream: 'azure' }] } },
      { name: 'azure', script: ok('azure') },
    ]);
    const r = await h.call();
    expect(r.status).toBe(200);
    expect(r.headers['x-keypool-upstream']).toBe('azure');
    expect(h.requestLines().at(-1)!.tried).toEqual(['primary/primary-1:connect:retry', 'azure-1:200:deliver']);
  });

  it('a stream cut after it started is never continued elsewhere: it ends with an error event', async () => {
    const h = await chain([
      { name: 'primary', script: () => act.stream(['data: {"choices":[{"delta":{"content":"par"}}]}\n\n', 'data: {}\n\n'], { truncateAfter: 1 }), config: { fallbacks: [{ upstream: 'azure' }] } },
      { name: 'azure', script: streamed('azure') },
    ]);
    const r = await h.call('/v1/chat/completions', { model: 'gpt-4o', stream: true, messages: [] });
    expect(r.status).toBe(200);
    expect(r.text).toContain('par');
    expect(r.text).toContain('keypool_stream_interrupted');
    expect(h.up.azure!.requests).toHaveLength(0);
  });
});

describe('who may be served by a fallback', () => {
  it('a client whose token does not allow the fallback upstream gets the primary’s error', async () => {
    const h = await chain(
      [
        { name: 'primary', script: down, keys: 1, config: { fallbacks: [{ upstream: 'azure' }] } },
        { name: 'azure', script: ok('azure') },
      ],
      { clients: [{ name: 'ci', token: 'kp-client-token-for-ci-0123456789', upstreams: ['primary'] }] },
    );
    const r = await h.call('/v1/chat/completions', undefined, { headers: { authorization: 'Bearer kp-client-token-for-ci-0123456789' } });
    expect(r.status).toBe(503);
    expect(h.up.azure!.requests).toHaveLength(0);
  });

  it('usage is counted on the key that served', async () => {
    const h = await chain([
      { name: 'primary', script: outOfCredit, keys: 1, config: { fallbacks: [{ upstream: 'azure' }] } },
      { name: 'azure', script: ok('azure'), keys: 1 },
    ]);
    await h.call();
    const served = h.app.pools.get('azure')!.states()[0]!;
    expect(served.tokens).toEqual({ input: 3, output: 2 });
    expect(h.app.pools.get('primary')!.states()[0]!.tokens).toEqual({ input: 0, output: 0 });
    expect(secretOf('azure', 0)).not.toBe(secretOf('primary', 0));
  });
});
