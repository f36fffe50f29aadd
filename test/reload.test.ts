// Reload in place: keys added and removed, state of unchanged keys kept, a changed secret starting clean,
// settings applied to new requests, and requests in flight (a stream, waiters in the room) unaffected.
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { loadConfigObject, type Config } from '../src/config/load.js';
import { applyConfig } from '../src/reload.js';
import { startFakeUpstream, type FakeUpstream } from '../src/fake-upstream/server.js';
import { startProxy, type TestProxy } from './helpers/proxy.js';
import { waitFor } from './helpers/wait.js';

const K1 = 'sk-reload-key-one-00001';
const K2 = 'sk-reload-key-two-00002';
const K3 = 'sk-reload-key-three-0003';
let upstream: FakeUpstream | undefined;
let proxy: TestProxy | undefined;
afterEach(async () => {
  await proxy?.close();
  await upstream?.close();
  proxy = undefined;
  upstream = undefined;
});

function configWith(keys: unknown[], extra: Record<string, unknown> = {}): Config {
  return loadConfigObject({ server: { port: 0 }, upstreams: [{ name: 'openai', baseUrl: `${upstream!.url}/v1`, keys }], ...extra }, {}).config;
}
const chat = async (p: TestProxy, body = '{"model":"gpt-4o-mini"}', headers: Record<string, string> = {}) => {
  const r = await request(`${p.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
  return { status: r.statusCode, headers: r.headers, text: await r.body.text() };
};

describe('reload', () => {
  it('adds and removes keys, keeps the state of unchanged ones, starts a changed secret clean', async () => {
    upstream = await startFakeUpstream();
    proxy = await startProxy({ upstreamUrl: upstream.url, keys: [{ name: 'a', key: K1 }, { name: 'b', key: K2 }] });
    upstream.script(K1, { kind: 'rate_limit', style: 'retry-after', ms: 60_000 });
    expect((await chat(proxy)).headers['x-keypool-key']).toBe('b');
    const cooledUntil = proxy.pool.states()[0]!.scopes.get('gpt-4o-mini')!.cooldownUntil;
    // b's secret changes (same name), c is added, nothing removed but the old b.
    const report = proxy.app.reload(configWith([{ name: 'a', key: K1 }, { name: 'b', key: K3 }, { name: 'c', key: K2 }]));
    expect(report.upstreams.openai).toEqual({ added: ['b'], removed: [], kept: 2 });
    const states = proxy.pool.states();
    expect(states.map((s) => s.key.name)).toEqual(['a', 'b', 'c']);
    // a is still cooling; K2 kept its counts under its new name c; K3 (new b) starts clean.
    expect(states[0]!.scopes.get('gpt-4o-mini')!.cooldownUntil).toBe(cooledUntil);
    expect(states[2]!.stats.successes).toBe(1);
    expect(states[1]!.stats.attempts).toBe(0);
    upstream.reset();
    const seen = new Set<string>();
    for (let i = 0; i < 4; i++) seen.add(String((await chat(proxy)).headers['x-keypool-key']));
    expect(seen).toEqual(new Set(['b', 'c']));
    expect(new Set(upstream.requests.map((r) => r.key))).toEqual(new Set([K2, K3]));
    // Removing keys: the removed one is never chosen again.
    const removal = proxy.app.reload(configWith([{ name: 'c', key: K2 }]));
    expect(removal.upstreams.openai?.removed.sort()).toEqual(['a', 'b']);
    upstream.reset();
    for (let i = 0; i < 3; i++) await chat(proxy);
    expect(upstream.requests.every((r) => r.key === K2)).toBe(true);
    for (const k of [K1, K2, K3]) expect(proxy.logs.join('\n')).not.toContain(k);
  });

  it('a stream in flight runs to its end across a reload that removes its key', async () => {
    upstream = await startFakeUpstream();
    proxy = await startProxy({ upstreamUrl: upstream.url, keys: [K1] });
    upstream.script(K1, { kind: 'stream', chunks: 8, gapMs: 40 });
    const res = await request(`${proxy.url}/v1/chat/completions`, { method: 'POST', body: '{"model":"m","stream":true}', headers: { 'content-type': 'application/json' } });
    const text = res.body.text();
    await new Promise((r) => setTimeout(r, 60));
    proxy.app.reload(configWith([K2]));
    const all = await text;
    expect(all.match(/^data: /gm)?.length).toBe(9);
    expect(all.trimEnd().endsWith('data: [DONE]')).toBe(true);
    // The removed key's slot came back when its stream ended.
    await waitFor(() => proxy!.app.proxy.inflight === 0);
  });

  it('a request waiting for a key is served by a key the reload adds', async () => {
    upstream = await startFakeUpstream();
    proxy = await startProxy({ upstreamUrl: upstream.url, keys: [K1], retry: { maxWaitMs: 20_000 } });
    upstream.setDefault(K1, { kind: 'rate_limit', style: 'retry-after', ms: 30_000 });
    upstream.script(K1, { kind: 'rate_limit', style: 'retry-after', ms: 15_000 });
    const pending = chat(proxy);
    await waitFor(() => proxy!.room.size === 1);
    proxy.app.reload(configWith([K1, K2], { retry: { maxWaitMs: 20_000 } }));
    const res = await pending;
    expect(res.status).toBe(200);
    expect(upstream.requests.at(-1)!.key).toBe(K2);
    expect(proxy.room.size).toBe(0);
  });

  it('applies settings and clients to requests that start after it, and says what needs a restart', async () => {
    upstream = await startFakeUpstream();
    proxy = await startProxy({ upstreamUrl: upstream.url, keys: [K1] });
    expect((await chat(proxy)).status).toBe(200);
    const token = 'tok-reloaded-client-000001';
    const report = proxy.app.reload(configWith([K1], { clients: [{ name: 'agent', token }], server: { port: 1234 } }));
    expect(report.needsRestart).toEqual(['server.port']);
    expect((await chat(proxy)).status).toBe(401);
    expect((await chat(proxy, undefined, { authorization: `Bearer ${token}` })).status).toBe(200);
    expect(proxy.app.config().clients?.[0]?.name).toBe('agent');
  });

  it('adds and removes upstreams', async () => {
    upstream = await startFakeUpstream();
    proxy = await startProxy({ upstreamUrl: upstream.url, keys: [K1] });
    const two = loadConfigObject(
      { upstreams: [{ name: 'openai', baseUrl: `${upstream.url}/v1`, keys: [K1] }, { name: 'other', prefix: '/other', baseUrl: `${upstream.url}/v1`, keys: [K2] }] },
      {},
    ).config;
    expect(proxy.app.reload(two).upstreamsAdded).toEqual(['other']);
    const r = await request(`${proxy.url}/other/models`);
    expect(r.statusCode).toBe(200);
    await r.body.dump();
    expect(upstream.requests.at(-1)!.key).toBe(K2);
    expect(proxy.app.reload(configWith([K1])).upstreamsRemoved).toEqual(['other']);
    const gone = await request(`${proxy.url}/other/models`);
    expect(gone.statusCode).toBe(404);
    await gone.body.dump();
    expect(proxy.app.pools.has('other')).toBe(false);
  });
});

describe('applyConfig', () => {
  it('a new connect timeout goes to the one agent (kept: requests in flight make their next attempts on it)', () => {
    const told: number[] = [];
    const a = loadConfigObject({ upstreams: [{ name: 'openai', baseUrl: 'http://127.0.0.1:9/v1', keys: [K1] }] }, {}).config;
    const b = { ...a, retry: { ...a.retry, connectTimeoutMs: a.retry.connectTimeoutMs + 1 } };
    const target = {
      runtimes: new Map(),
      pools: new Map(),
      rooms: new Map(),
      proxy: { reconfigure: () => undefined },
      newRuntime: () => ({ pool: { reconfigure: () => ({ added: [], removed: [], kept: [] }) }, room: { setMaxSize: () => undefined } }),
      agent: { dispatcher: undefined, setConnectTimeout: (ms: number) => told.push(ms) },
      setLogLevel: () => undefined,
      gateFor: () => undefined,
    } as unknown as Parameters<typeof applyConfig>[0];
    applyConfig(target, a, a);
    expect(told).toEqual([]);
    applyConfig(target, a, b);
    expect(told).toEqual([a.retry.connectTimeoutMs + 1]);
  });
});
