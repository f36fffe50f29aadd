// Two replicas in one process sharing the reference store, serving real HTTP against the fake upstream:
// limits set per key hold for the pair, not for each replica.
import { afterEach, beforeAll, afterAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startFakeUpstream, type FakeUpstream } from '../../src/fake-upstream/server.js';
import { MemoryHub } from '../../src/state/memory-store.js';
import { startProxy, type TestProxy } from '../helpers/proxy.js';
import { waitFor } from '../helpers/wait.js';

const KEYS = ['sk-ledger-key-one-000001', 'sk-ledger-key-two-000002'];
let upstream: FakeUpstream;
const proxies: TestProxy[] = [];

beforeAll(async () => {
  upstream = await startFakeUpstream();
});
afterAll(async () => {
  await upstream.close();
});
afterEach(async () => {
  for (const p of proxies.splice(0)) await p.close();
  upstream.reset();
});

async function pair(keyOptions: Record<string, unknown>, o: { upstreamUrl?: string; strategy?: 'fill_first' | 'least_inflight'; retry?: Record<string, number> } = {}) {
  const hub = new MemoryHub();
  const keys = KEYS.map((key) => ({ key, ...keyOptions }));
  const upstreamUrl = o.upstreamUrl ?? upstream.url;
  for (let i = 0; i < 2; i++) {
    proxies.push(await startProxy({ upstreamUrl, keys, store: hub.client(), upstream: o.strategy ? { strategy: o.strategy } : {}, retry: o.retry }));
  }
  return { a: proxies[0]!, b: proxies[1]!, hub };
}

async function chat(base: string) {
  const res = await request(`${base}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] }),
  });
  await res.body.dump();
  return res.statusCode;
}

async function chatAttempts(base: string, signal?: AbortSignal) {
  const res = await request(`${base}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] }),
    signal,
  });
  await res.body.dump();
  return { status: res.statusCode, key: res.headers['x-keypool-key'], attempts: Number(res.headers['x-keypool-attempts']) };
}

describe('a shared ledger across replicas', () => {
  it('maxConcurrent holds for the keys across both replicas; nobody fails, the rest wait their turn', async () => {
    const { a, b } = await pair({ maxConcurrent: 1 });
    for (const k of KEYS) upstream.setDefault(k, { kind: 'ok', delayMs: 150 });
    const statuses = await Promise.all(Array.from({ length: 6 }, (_, i) => chat(i % 2 === 0 ? a.url : b.url)));
    expect(statuses).toEqual([200, 200, 200, 200, 200, 200]);
    for (const k of KEYS) {
      const at = upstream.requests.filter((r) => r.key === k).map((r) => r.at).sort((x, y) => x - y);
      expect(at).toHaveLength(3);
      // One at a time per key: each request arrived after the previous one (150 ms) was answered.
      for (let i = 1; i < at.length; i++) expect(at[i]! - at[i - 1]!).toBeGreaterThanOrEqual(140);
    }
  });

  it('a hand-set rpm is the budget of the pair, not of each replica; usage is counted once', async () => {
    const { a, b, hub } = await pair({ rpm: 2 });
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push(await chat(i % 2 === 0 ? a.url : b.url));
    expect(statuses).toEqual([200, 200, 200, 200]);
    // The 5th request in the minute finds every key's rpm used up by the pair and gets keypool's 429.
    expect(await chat(a.url)).toBe(429);
    expect(upstream.requests).toHaveLength(4);
    const usage = await hub.client().usage('openai');
    const counted = Object.values(usage).map((u) => [u.attempts, u.successes]);
    expect(counted).toEqual([
      [2, 2],
      [2, 2],
    ]);
  });

  it("the upstream's rate-limit buckets are shared: a key another replica used up is skipped, not tried", async () => {
    // 3 requests per key per minute, told in x-ratelimit-* headers on every answer.
    const limited = await startFakeUpstream({ rateLimit: { requests: 3, windowMs: 60_000 } });
    try {
      const { a, b } = await pair({}, { upstreamUrl: limited.url, strategy: 'fill_first' });
      for (let i = 0; i < 3; i++) expect(await chatAttempts(a.url)).toMatchObject({ status: 200, key: 'openai-1', attempts: 1 });
      // b has never used openai-1; fill_first would send there first. The shared bucket says it is spent.
      expect(await chatAttempts(b.url)).toMatchObject({ status: 200, key: 'openai-2', attempts: 1 });
      expect(limited.requests.filter((r) => r.key === KEYS[0])).toHaveLength(3);
    } finally {
      await limited.close();
    }
  });

  it('least_inflight counts the other replica\'s attempts: a key busy elsewhere is left alone once seen', async () => {
    const { a, b } = await pair({}, { strategy: 'least_inflight' });
    upstream.setDefault(KEYS[0]!, { kind: 'hang' });
    const hung = new AbortController();
    const held: Promise<unknown>[] = [];
    try {
      // a's attempt on the first key never ends (one on the second key would just be answered).
      for (let i = 0; i < 3 && !upstream.requests.some((r) => r.key === KEYS[0]); i++) {
        held.push(chatAttempts(a.url, hung.signal).catch(() => undefined));
        await waitFor(() => upstream.requests.length > i);
      }
      expect(upstream.requests.filter((r) => r.key === KEYS[0])).toHaveLength(1);
      upstream.setDefault(KEYS[0]!, { kind: 'ok' });
      const keys: unknown[] = [];
      for (let i = 0; i < 6; i++) keys.push((await chatAttempts(b.url)).key);
      // b has nothing in flight itself; after at most one look at the busy key it keeps to the other.
      expect(keys.slice(2)).toEqual(Array(4).fill('openai-2'));
    } finally {
      hung.abort();
      await Promise.all(held);
    }
  });

  it('usage counts every server error, shared and in the pool that saw it', async () => {
    const { a, b, hub } = await pair({}, { strategy: 'fill_first', retry: { maxRetries: 2, backoffBaseMs: 0 } });
    upstream.setDefault(KEYS[0]!, { kind: 'server_error' });
    for (let i = 0; i < 2; i++) await chat(i % 2 === 0 ? a.url : b.url);
    const errors = upstream.requests.filter((r) => r.key === KEYS[0]).length;
    expect(errors).toBeGreaterThanOrEqual(2);
    const fp = a.pool.states()[0]!.key.fingerprint;
    await waitFor(async () => (await hub.client().usage('openai'))[fp]?.serverErrors === errors);
    expect(a.pool.states()[0]!.stats.serverErrors + b.pool.states()[0]!.stats.serverErrors).toBe(errors);
  });
});
