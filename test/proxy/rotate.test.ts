// The retry budget and rotation rules, end to end: real keypool, real fake upstream, loopback only.
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startFakeUpstream, type FakeUpstream } from '../../src/fake-upstream/server.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { startProxy, type TestProxy } from '../helpers/proxy.js';
import { waitFor } from '../helpers/wait.js';

const KEYS = Array.from({ length: 10 }, (_, i) => `sk-test-key-${String(i + 1).padStart(2, '0')}`);
const CHAT = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });

let upstream: FakeUpstream | undefined;
let proxy: TestProxy | undefined;
afterEach(async () => {
  await proxy?.close();
  await upstream?.close();
  proxy = undefined;
  upstream = undefined;
});

async function setup(keys: string[], opts: Omit<Parameters<typeof startProxy>[0], 'upstreamUrl' | 'keys'> = {}) {
  upstream = await startFakeUpstream();
  proxy = await startProxy({ upstreamUrl: upstream.url, keys, ...opts });
  return { upstream, proxy };
}

async function chat(p: TestProxy, init: { signal?: AbortSignal } = {}) {
  const res = await request(`${p.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer client-token' },
    body: CHAT,
    signal: init.signal,
  });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, text, json: () => JSON.parse(text) as Record<string, any> };
}

const keysSeen = (u: FakeUpstream) => u.requests.map((r) => r.key);

describe('rotation is free', () => {
  it('10 keys, 9 rate-limited, maxRetries 3: one client call succeeds on the 10th key', async () => {
    const { upstream, proxy } = await setup(KEYS, { retry: { maxRetries: 3 } });
    for (const k of KEYS.slice(0, 9)) upstream.setDefault(k, { kind: 'rate_limit', style: 'retry-after', ms: 60_000 });
    const res = await chat(proxy);
    expect(res.status).toBe(200);
    expect(res.headers['x-keypool-key']).toBe('openai-10');
    expect(res.headers['x-keypool-attempts']).toBe('10');
    expect(keysSeen(upstream)).toEqual(KEYS);
  });

  it('keys already cooling are skipped without an attempt, by every later request', async () => {
    const { upstream, proxy } = await setup(KEYS.slice(0, 3));
    upstream.setDefault(KEYS[0]!, { kind: 'rate_limit', style: 'retry-after', ms: 30_000 });
    expect((await chat(proxy)).status).toBe(200);
    upstream.reset();
    const results = await Promise.all(Array.from({ length: 6 }, () => chat(proxy!)));
    expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 200]);
    expect(results.every((r) => r.headers['x-keypool-attempts'] === '1')).toBe(true);
    expect(keysSeen(upstream)).not.toContain(KEYS[0]);
  });
});

describe('the budget counts only attempts after the pool is exhausted', () => {
  it('N keys that all fail see exactly N + maxRetries attempts, then an OpenAI-shaped 429', async () => {
    const keys = KEYS.slice(0, 4);
    const { upstream, proxy } = await setup(keys, { retry: { maxRetries: 3 } });
    // retry-after-ms: 0 means "usable again at once", so the budget (not waiting) is what stops it.
    for (const k of keys) upstream.setDefault(k, { kind: 'rate_limit', style: 'retry-after-ms', ms: 0 });
    const res = await chat(proxy);
    expect(upstream.requests).toHaveLength(4 + 3);
    expect(new Set(keysSeen(upstream).slice(0, 4))).toEqual(new Set(keys));
    expect(res.status).toBe(429);
    expect(res.headers['x-keypool-attempts']).toBe('7');
    expect(res.headers['retry-after']).toBe('1');
    expect(res.json()).toMatchObject({
      error: { type: 'rate_limit_error', code: 'keypool_pool_exhausted', param: null, message: expect.stringContaining('3 retries used') },
    });
  });

  it('maxRetries 0 still walks the whole pool', async () => {
    const keys = KEYS.slice(0, 5);
    const { upstream, proxy } = await setup(keys, { retry: { maxRetries: 0 } });
    for (const k of keys) upstream.setDefault(k, { kind: 'rate_limit', style: 'retry-after-ms', ms: 0 });
    expect((await chat(proxy)).status).toBe(429);
    expect(upstream.requests).toHaveLength(5);
  });

  it('waits out Retry-After on a single key, then succeeds (one unit of budget)', async () => {
    const clock = new FakeClock();
    const { upstream, proxy } = await setup([KEYS[0]!], { clock, retry: { maxRetries: 1 } });
    upstream.script(KEYS[0]!, { kind: 'rate_limit', style: 'retry-after', ms: 2000 });
    const pending = chat(proxy);
    await waitFor(() => proxy.room.size === 1);
    expect(upstream.requests).toHaveLength(1);
    clock.advance(1999);
    await settle();
    expect(proxy.room.size).toBe(1);
    clock.advance(1);
    const res = await pending;
    expect(res.status).toBe(200);
    expect(res.headers['x-keypool-attempts']).toBe('2');
    expect(res.headers['x-keypool-wait-ms']).toBe('2000');
    expect(upstream.requests).toHaveLength(2);
  });

  it('a wait longer than maxWaitMs fails at once with Retry-After from the earliest key', async () => {
    const { upstream, proxy } = await setup(KEYS.slice(0, 2), { retry: { maxWaitMs: 30_000 } });
    upstream.setDefault(KEYS[0]!, { kind: 'rate_limit', style: 'retry-after', ms: 60_000 });
    upstream.setDefault(KEYS[1]!, { kind: 'rate_limit', style: 'retry-after', ms: 45_000 });
    const res = await chat(proxy);
    expect(res.status).toBe(429);
    expect(upstream.requests).toHaveLength(2);
    expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(44);
    expect(Number(res.headers['retry-after'])).toBeLessThanOrEqual(45);
  });

  it('a request arriving while every key cools waits for the earliest one and spends one unit', async () => {
    const clock = new FakeClock();
    const { upstream, proxy } = await setup(KEYS.slice(0, 2), { clock, retry: { maxRetries: 1 } });
    upstream.script(KEYS[0]!, { kind: 'rate_limit', style: 'retry-after', ms: 5000 });
    upstream.script(KEYS[1]!, { kind: 'rate_limit', style: 'retry-after', ms: 3000 });
    const first = chat(proxy);
    await waitFor(() => proxy.room.size === 1);
    const second = chat(proxy);
    await waitFor(() => proxy.room.size === 2);
    expect(upstream.requests).toHaveLength(2);
    clock.advance(3000);
    const [a, b] = await Promise.all([first, second]);
    expect([a.status, b.status]).toEqual([200, 200]);
    expect(a.headers['x-keypool-key']).toBe('openai-2');
    expect(b.headers['x-keypool-attempts']).toBe('1');
  });
});

describe('probes after a long cooldown', () => {
  it('one request goes first; its good answer opens the key before its stream ends', async () => {
    const clock = new FakeClock();
    const { upstream, proxy } = await setup(KEYS.slice(0, 1), { clock, retry: { maxRetries: 0 }, cooldown: { probeAfterMs: 60_000 } });
    upstream.script(KEYS[0]!, { kind: 'rate_limit', style: 'retry-after', ms: 60_000 }, { kind: 'stream', chunks: 50, gapMs: 40 });
    expect((await chat(proxy)).status).toBe(429);
    clock.advance(60_000);
    const probe = await request(`${proxy.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer client-token' },
      body: JSON.stringify({ model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(probe.statusCode).toBe(200);
    let streamEnded = false;
    const drained = probe.body.text().then(() => (streamEnded = true));
    // The probe's stream has ~2 s to go; the next request does not wait for it.
    const next = await chat(proxy);
    expect(next.status).toBe(200);
    expect(streamEnded).toBe(false);
    await drained;
  });
});

describe('what each failure does to the key', () => {
  it('insufficient_quota cools the key for the long out-of-credit period', async () => {
    const { upstream, proxy } = await setup(KEYS.slice(0, 2), { cooldown: { outOfCreditMs: 7_200_000 } });
    upstream.setDefault(KEYS[0]!, { kind: 'insufficient_quota' });
    const t0 = Date.now();
    expect((await chat(proxy)).status).toBe(200);
    const s = proxy.pool.states()[0]!;
    expect(s.creditUntil).toBeGreaterThanOrEqual(t0 + 7_200_000);
    for (let i = 0; i < 3; i++) expect((await chat(proxy)).headers['x-keypool-key']).toBe('openai-2');
  });

  it('402 is out of credit too; when it is the last answer the client sees 402', async () => {
    const { upstream, proxy } = await setup([KEYS[0]!]);
    upstream.setDefault(KEYS[0]!, { kind: 'payment_required' });
    const res = await chat(proxy);
    expect(res.status).toBe(402);
    expect(res.json().error).toMatchObject({ code: 'keypool_pool_exhausted', type: 'insufficient_quota' });
    expect(Number(res.headers['retry-after'])).toBeGreaterThan(3000);
    expect(proxy.pool.states()[0]!.creditUntil).toBeGreaterThan(Date.now() + 3_000_000);
  });

  it('401 and a 403 naming the key disable it (logged once, by name, with its period); all disabled -> 503, do not retry', async () => {
    const { upstream, proxy } = await setup(KEYS.slice(0, 2));
    upstream.setDefault(KEYS[0]!, { kind: 'unauthorized' });
    upstream.setDefault(KEYS[1]!, { kind: 'key_revoked' });
    const res = await chat(proxy);
    expect(res.status).toBe(503);
    expect(res.json().error.code).toBe('keypool_no_usable_keys');
    expect(res.headers['x-should-retry']).toBe('false');
    const again = await chat(proxy);
    expect(again.status).toBe(503);
    expect(upstream.requests).toHaveLength(2);
    const disabledLines = proxy.logs.filter((l) => l.includes('key disabled'));
    expect(disabledLines).toHaveLength(2);
    expect(disabledLines.join()).toContain('"key":"openai-1"');
    // Disabled for cooldown.disabledMs (24 h), not for good.
    const until = Date.parse(String(JSON.parse(disabledLines[0]!).until));
    expect(until - Date.now()).toBeGreaterThan(86_300_000);
    expect(until - Date.now()).toBeLessThanOrEqual(86_400_000);
  });

  it('a 403 or 404 refusing the model skips that key for that model only; when every key refuses, the client gets the upstream\'s answer and no key is disabled', async () => {
    const { upstream, proxy } = await setup(KEYS.slice(0, 3));
    upstream.setDefault(KEYS[0]!, { kind: 'model_not_found', status: 403 });
    const served = await chat(proxy);
    expect(served.status).toBe(200);
    expect(served.headers['x-keypool-key']).toBe('openai-2');
    upstream.setDefault(KEYS[1]!, { kind: 'model_not_found', status: 404 });
    upstream.setDefault(KEYS[2]!, { kind: 'model_not_found', status: 404 });
    upstream.reset();
    const refused = await chat(proxy);
    expect(refused.status).toBe(404);
    expect(refused.json().error.code).toBe('model_not_found');
    // key 1 was already known not to serve the model: only keys 2 and 3 were asked.
    expect(upstream.requests).toHaveLength(2);
    expect(proxy.pool.usable).toBe(3);
    // The next request for that model gets the answer without walking the pool again; other models are served.
    upstream.reset();
    expect((await chat(proxy)).status).toBe(404);
    expect(upstream.requests).toHaveLength(0);
    for (const k of KEYS.slice(0, 3)) upstream.setDefault(k, { kind: 'ok' });
    const other = await request(`${proxy.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"model":"gpt-4o"}' });
    expect(other.statusCode).toBe(200);
    await other.body.dump();
    expect(proxy.logs.some((l) => l.includes('key disabled'))).toBe(false);
  });

  it('a 403 nobody can explain moves on without blaming the key; from every key, the client gets it', async () => {
    const { upstream, proxy } = await setup(KEYS.slice(0, 2));
    upstream.setDefault(KEYS[0]!, { kind: 'forbidden' });
    expect((await chat(proxy)).status).toBe(200);
    upstream.setDefault(KEYS[1]!, { kind: 'forbidden' });
    upstream.reset();
    const res = await chat(proxy);
    expect(res.status).toBe(403);
    expect(res.json().error.code).toBe('permission_denied');
    expect(upstream.requests).toHaveLength(2);
    expect(proxy.pool.usable).toBe(2);
  });

  it('5xx is not the key\'s fault: no cooldown, and the retry spends budget', async () => {
    const { upstream, proxy } = await setup(KEYS.slice(0, 2), { retry: { maxRetries: 2, backoffBaseMs: 0 } });
    upstream.script(KEYS[0]!, { kind: 'server_error', status: 503 });
    const ok = await chat(proxy);
    expect(ok.status).toBe(200);
    expect(ok.headers['x-keypool-attempts']).toBe('2');
    expect(proxy.pool.states()[0]!.scopes.get('gpt-4o-mini')?.cooldownUntil ?? 0).toBe(0);

    upstream.reset();
    upstream.setDefault(KEYS[0]!, { kind: 'server_error' });
    upstream.setDefault(KEYS[1]!, { kind: 'server_error' });
    const res = await chat(proxy);
    // 1 attempt + 2 retries: rotating to an untried key does not make a 5xx retry free.
    expect(upstream.requests).toHaveLength(3);
    expect(res.status).toBe(500);
    expect(res.json().error.code).toBe('keypool_upstream_error');
    expect(proxy.pool.states().every((s) => (s.scopes.get('gpt-4o-mini')?.cooldownUntil ?? 0) === 0 && s.creditUntil === 0)).toBe(true);
  });

  it('a 5xx retry waits a short backoff first', async () => {
    const clock = new FakeClock();
    const { upstream, proxy } = await setup([KEYS[0]!], { clock, retry: { backoffBaseMs: 400 } });
    upstream.script(KEYS[0]!, { kind: 'server_error' });
    const pending = chat(proxy);
    await clock.waitForSleepers(1);
    expect(upstream.requests).toHaveLength(1);
    clock.advance(400);
    expect((await pending).status).toBe(200);
  });

  it('other 4xx go straight back unchanged, no retry', async () => {
    const { upstream, proxy } = await setup(KEYS.slice(0, 2));
    const body = '{"error":{"message":"No such File object: file-abc","type":"invalid_request_error","param":"id","code":null}}';
    upstream.script(KEYS[0]!, { kind: 'status', status: 404, body, headers: { 'x-upstream': 'yes' } });
    const res = await chat(proxy);
    expect(res.status).toBe(404);
    expect(res.text).toBe(body);
    expect(res.headers['x-upstream']).toBe('yes');
    expect(upstream.requests).toHaveLength(1);
  });

  it('an unreachable upstream is a 502 after the budget', async () => {
    upstream = await startFakeUpstream();
    const deadUrl = upstream.url;
    await upstream.close();
    upstream = undefined;
    proxy = await startProxy({ upstreamUrl: deadUrl, keys: KEYS.slice(0, 2), retry: { maxRetries: 1, backoffBaseMs: 0 } });
    const res = await chat(proxy);
    expect(res.status).toBe(502);
    expect(res.json().error.code).toBe('keypool_upstream_unreachable');
    expect(res.headers['x-keypool-attempts']).toBe('2');
  });

  it('the request deadline gives 504 and cancels the upstream request', async () => {
    const clock = new FakeClock();
    const { upstream, proxy } = await setup([KEYS[0]!], { clock, retry: { timeoutMs: 5000 } });
    upstream.script(KEYS[0]!, { kind: 'hang' });
    const pending = chat(proxy);
    await waitFor(() => upstream.requests.length === 1);
    clock.advance(5000);
    const res = await pending;
    expect(res.status).toBe(504);
    expect(res.json().error.code).toBe('keypool_upstream_timeout');
  });
});

/** Lets pending I/O callbacks and microtasks run. */
const settle = () => new Promise((r) => setTimeout(r, 20));

