// Two replicas in one process sharing the reference store, serving real HTTP against the fake upstream:
// limits set per key hold for the pair, not for each replica.
import { afterEach, beforeAll, afterAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startFakeUpstream, type FakeUpstream } from '../../src/fake-upstream/server.js';
import { MemoryHub } from '../../src/state/memory-store.js';
import { startProxy, type TestProxy } from '../helpers/proxy.js';

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

async function pair(keyOptions: Record<string, unknown>, o: { upstreamUrl?: string; strategy?: 'fill_first' } = {}) {
  const hub = new MemoryHub();
  const keys = KEYS.map((key) => ({ key, ...keyOptions }));
  const upstreamUrl = o.upstreamUrl ?? upstream.url;
  for (let i = 0; i < 2; i++) {
    proxies.push(await startProxy({ upstreamUrl, keys, store: hub.client(), upstream: o.strategy ? { strategy: o.strategy } : {} }));
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

async function chatAttempts(base: string) {
  const res = await request(`${base}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] }),
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
});
