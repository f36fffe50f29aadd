// Scheduling end to end: header-driven admission, per-model cooldowns, sticky sessions, the waiting room
// and stream keep-alive, through real keypool and the fake upstream.
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startFakeUpstream, type FakeUpstream, type FakeUpstreamOptions } from '../../src/fake-upstream/server.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { startProxy, type TestProxy } from '../helpers/proxy.js';
import { waitFor } from '../helpers/wait.js';

const KEYS = ['sk-sched-key-one-0001', 'sk-sched-key-two-0002', 'sk-sched-key-three-0003'];

const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (closers.length > 0) await closers.pop()!();
});

async function setup(upOpts: FakeUpstreamOptions, proxyOpts: Omit<Parameters<typeof startProxy>[0], 'upstreamUrl'>) {
  const upstream = await startFakeUpstream(upOpts);
  closers.push(() => upstream.close());
  const proxy = await startProxy({ upstreamUrl: upstream.url, ...proxyOpts });
  closers.push(() => proxy.close());
  return { upstream, proxy };
}

async function chat(p: TestProxy, body: Record<string, unknown> = {}, headers: Record<string, string> = {}) {
  const res = await request(`${p.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], ...body }),
  });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, text };
}

const upstream429s = (p: TestProxy) => p.pool.states().reduce((n, s) => n + s.stats.rateLimited, 0);

describe('header-driven admission', () => {
  it('stops using a key whose x-ratelimit-remaining hit 0, before the upstream says 429', async () => {
    const { upstream, proxy } = await setup(
      { rateLimit: { requests: 2, windowMs: 60_000 } },
      { keys: KEYS.slice(0, 2), retry: { maxWaitMs: 100 } },
    );
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push((await chat(proxy)).status);
    expect(statuses).toEqual([200, 200, 200, 200]);
    expect(upstream429s(proxy)).toBe(0);
    // Both keys are spent for a minute: keypool answers itself instead of sending a doomed request.
    const res = await chat(proxy);
    expect(res.status).toBe(429);
    expect(JSON.parse(res.text).error.code).toBe('keypool_pool_exhausted');
    expect(Number(res.headers['retry-after'])).toBeGreaterThan(50);
    expect(upstream.requests).toHaveLength(4);
  });
});

describe('cooldown scope', () => {
  it('a key rate-limited on one model still serves another', async () => {
    const { upstream, proxy } = await setup({}, { keys: [KEYS[0]!], retry: { maxWaitMs: 0 } });
    upstream.script(KEYS[0]!, { kind: 'rate_limit', style: 'retry-after', ms: 60_000 });
    expect((await chat(proxy, { model: 'gpt-4o' })).status).toBe(429);
    const other = await chat(proxy, { model: 'gpt-4o-mini' });
    expect(other.status).toBe(200);
    expect(other.headers['x-keypool-key']).toBe('openai-1');
    expect((await chat(proxy, { model: 'gpt-4o' })).status).toBe(429);
    expect(upstream.requests).toHaveLength(2);
  });
});

describe('sticky sessions', () => {
  it('keeps a session on one key (header or prompt_cache_key), and off when not configured', async () => {
    const { proxy } = await setup({}, { keys: KEYS, upstream: { sticky: {} } });
    const viaHeader = [];
    for (let i = 0; i < 4; i++) viaHeader.push((await chat(proxy, {}, { 'x-session-id': 'sess-1' })).headers['x-keypool-key']);
    expect(new Set(viaHeader).size).toBe(1);
    const viaBody = [];
    for (let i = 0; i < 4; i++) viaBody.push((await chat(proxy, { prompt_cache_key: 'pck-9' })).headers['x-keypool-key']);
    expect(new Set(viaBody).size).toBe(1);

    const plain = await setup({}, { keys: KEYS });
    const spread = [];
    for (let i = 0; i < 3; i++) spread.push((await chat(plain.proxy, {}, { 'x-session-id': 'sess-1' })).headers['x-keypool-key']);
    expect(new Set(spread).size).toBe(3);
  });
});

describe('waiting room', () => {
  it('a full room answers 429 keypool_queue_full with Retry-After', async () => {
    const { upstream, proxy } = await setup({}, { keys: [KEYS[0]!], queue: { maxSize: 0 } });
    upstream.script(KEYS[0]!, { kind: 'rate_limit', style: 'retry-after', ms: 5000 });
    const res = await chat(proxy);
    expect(res.status).toBe(429);
    expect(JSON.parse(res.text).error.code).toBe('keypool_queue_full');
    expect(res.headers['retry-after']).toBe('5');
  });

  it('uses strategy from config', async () => {
    const { proxy } = await setup({}, { keys: KEYS, upstream: { strategy: 'fill_first' } });
    const used = [];
    for (let i = 0; i < 3; i++) used.push((await chat(proxy)).headers['x-keypool-key']);
    expect(used).toEqual(['openai-1', 'openai-1', 'openai-1']);
  });
});

describe('stream keep-alive', () => {
  it('off by default: a waiting stream gets nothing until a key is free', async () => {
    const clock = new FakeClock();
    const { upstream, proxy } = await setup({}, { keys: [KEYS[0]!], clock });
    upstream.script(KEYS[0]!, { kind: 'rate_limit', style: 'retry-after', ms: 3000 });
    let gotHeaders = false;
    const pending = request(`${proxy.url}/v1/chat/completions`, { method: 'POST', body: '{"stream":true}', headers: { 'content-type': 'application/json' } }).then((r) => {
      gotHeaders = true;
      return r;
    });
    await waitFor(() => proxy.room.size === 1);
    await new Promise((r) => setTimeout(r, 30));
    expect(gotHeaders).toBe(false);
    clock.advance(3000);
    const res = await pending;
    expect(res.headers['x-keypool-attempts']).toBe('2');
    expect(await res.body.text()).toContain('data: [DONE]');
  });

  it('on: commits 200 + SSE comments while waiting, then streams; a failure becomes an SSE error event', async () => {
    const clock = new FakeClock();
    const { upstream, proxy } = await setup(
      {},
      { keys: [KEYS[0]!], clock, queue: { streamKeepAlive: true, keepAliveIntervalMs: 1000 }, retry: { maxRetries: 1, maxWaitMs: 10_000 } },
    );
    upstream.script(KEYS[0]!, { kind: 'rate_limit', style: 'retry-after', ms: 3000 });
    const res = await request(`${proxy.url}/v1/chat/completions`, {
      method: 'POST',
      body: '{"stream":true}',
      headers: { 'content-type': 'application/json' },
    });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('text/event-stream');
    const it = res.body[Symbol.asyncIterator]();
    expect(String((await it.next()).value)).toContain(': keypool: waiting for a key');
    clock.advance(1000);
    expect(String((await it.next()).value)).toBe(': keep-alive\n\n');
    clock.advance(2000);
    let rest = '';
    for (let r = await it.next(); !r.done; r = await it.next()) rest += String(r.value);
    expect(rest).toContain('data: [DONE]');

    // Budget spent while waiting: the client has its 200 already, so the error comes as an event.
    upstream.setDefault(KEYS[0]!, { kind: 'rate_limit', style: 'retry-after', ms: 2000 });
    clock.advance(60_000);
    const failing = await request(`${proxy.url}/v1/chat/completions`, {
      method: 'POST',
      body: '{"stream":true}',
      headers: { 'content-type': 'application/json' },
    });
    expect(failing.statusCode).toBe(200);
    const texts: string[] = [];
    const it2 = failing.body[Symbol.asyncIterator]();
    texts.push(String((await it2.next()).value));
    clock.advance(2000);
    for (let r = await it2.next(); !r.done; r = await it2.next()) texts.push(String(r.value));
    const all = texts.join('');
    expect(all).toContain('event: error');
    expect(all).toContain('keypool_pool_exhausted');
  });
});

