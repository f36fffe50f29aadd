// /metrics after known traffic, read with a strict Prometheus text parser: every family's name, type,
// labels and values as the traffic implies (a rotation on 429, a refused replay, a cut stream, a charged
// retry after a 500, tokens from usage, a model cooldown), state gauges after an admin disable, and a
// registry of the app's own (never prom-client's global one).
import { register as globalRegistry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { act, startFaultUpstream, type FaultAction, type FaultUpstream } from '../helpers/fault-upstream.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { chatBody, get, startAdminProxy, type AdminProxy } from './harness.js';
import { parsePromText, sample, type PromFamily } from './prom-text.js';

const KEYS = ['sk-metrics-key-zero-0aaaaaaaaaaaaaaa', 'sk-metrics-key-one-1bbbbbbbbbbbbbbbb', 'sk-metrics-key-two-2cccccccccccccccc'];
const ADMIN_TOKEN = 'admin-token-metrics-dddddddddddddddd';

let up: FaultUpstream | undefined;
const proxies: AdminProxy[] = [];
afterEach(async () => {
  for (const p of proxies.splice(0)) await p.close();
  await up?.close();
  up = undefined;
});

const USAGE = { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 };
const CHAT_OK = act.json(200, { id: 'c1', object: 'chat.completion', choices: [], usage: USAGE });
const RATE_LIMITED = act.json(429, { error: { message: 'Rate limit reached', type: 'requests', code: 'rate_limit_exceeded' } }, { 'retry-after': '30' });
const EVENTS = ['{"id":"c","choices":[{"index":0,"delta":{"content":"Hel"}}]}', '{"id":"c","choices":[{"index":0,"delta":{"content":"lo"}}]}'];
/** Per key, the answer to its n-th request. */
const SCRIPT: readonly (readonly FaultAction[])[] = [
  [RATE_LIMITED, act.json(200, { object: 'list', data: [] })],
  [CHAT_OK, act.stream(EVENTS, { truncateAfter: 1 })],
  [act.resetAfterRequest(), act.json(500, { error: { message: 'boom', type: 'server_error' } })],
];

async function start(clock = new FakeClock()): Promise<{ proxy: AdminProxy; clock: FakeClock }> {
  up ??= await startFaultUpstream((r, _i, perKey) => SCRIPT[KEYS.indexOf(r.key ?? '')]?.[perKey] ?? CHAT_OK);
  const proxy = await startAdminProxy({
    upstreams: [{ name: 'openai', baseUrl: `${up.url}/v1`, keys: KEYS }],
    adminToken: ADMIN_TOKEN,
    clock,
    retry: { backoffBaseMs: 0 },
  });
  proxies.push(proxy);
  return { proxy, clock };
}

const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };
async function scrape(p: AdminProxy): Promise<{ families: Map<string, PromFamily>; text: string; type: string }> {
  const r = await get(`${p.url}/metrics`, { headers: auth });
  expect(r.status).toBe(200);
  return { families: parsePromText(r.text), text: r.text, type: String(r.headers['content-type']) };
}

async function knownTraffic(p: AdminProxy): Promise<void> {
  const post = (client: string, body: string) => get(`${p.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-agent-id': client }, body });
  // 1. key 0: 429 (30 s) -> rotate -> key 1: 200 with usage.
  expect((await post('alpha', chatBody())).status).toBe(200);
  // 2. key 2: reset after the whole POST went out -> not sent again.
  expect((await post('beta', chatBody())).status).toBe(502);
  // 3. key 0 cools for gpt-4o, so key 1: a stream cut after one event.
  expect((await post('alpha', chatBody('gpt-4o', { stream: true }))).status).toBe(200);
  // 4. GET (no model): key 2 answers 500 -> charged retry -> key 0 (cooling only for gpt-4o): 200.
  expect((await get(`${p.url}/v1/models`, { headers: { 'x-agent-id': 'beta' } })).status).toBe(200);
}

describe('GET /metrics', () => {
  it('counts requests, attempts, rotations, retries, refused replays, cut streams and tokens as the traffic was', async () => {
    const { proxy } = await start();
    await knownTraffic(proxy);
    const { families: f, type } = await scrape(proxy);
    expect(type).toMatch(/^text\/plain; version=0\.0\.4/);

    const types = Object.fromEntries([...f.values()].map((x) => [x.name, x.type]));
    expect(types).toMatchObject({
      keypool_requests_total: 'counter',
      keypool_attempts_total: 'counter',
      keypool_rotations_total: 'counter',
      keypool_retries_total: 'counter',
      keypool_replays_refused_total: 'counter',
      keypool_streams_cut_total: 'counter',
      keypool_key_tokens_total: 'counter',
      keypool_key_state: 'gauge',
      keypool_key_cooldown_seconds: 'gauge',
      keypool_key_in_flight: 'gauge',
      keypool_keys_usable: 'gauge',
      keypool_requests_in_flight: 'gauge',
      keypool_waiting_requests: 'gauge',
      keypool_waiting_room_total: 'counter',
      keypool_upstream_duration_seconds: 'histogram',
      keypool_proxy_overhead_seconds: 'histogram',
      keypool_wait_duration_seconds: 'histogram',
    });
    for (const fam of f.values()) expect(fam.help, fam.name).toBeTruthy();

    const req = f.get('keypool_requests_total')!.samples;
    expect(req.map((s) => [s.labels.client, s.labels.status, s.value]).sort()).toEqual(
      [
        ['alpha', '200', 1],
        ['alpha', '502', 1],
        ['beta', '200', 1],
        ['beta', '502', 1],
      ].sort(),
    );
    for (const s of req) expect(Object.keys(s.labels).sort()).toEqual(['client', 'status', 'upstream']);

    const attempts = f.get('keypool_attempts_total')!.samples.map((s) => [s.labels.key, s.labels.result, s.value]);
    expect(attempts.sort()).toEqual(
      [
        ['openai-1', '429', 1],
        ['openai-1', '200', 1],
        ['openai-2', '200', 2],
        ['openai-3', 'sent', 1],
        ['openai-3', '500', 1],
      ].sort(),
    );
    expect(sample(f, 'keypool_rotations_total', { key: 'openai-1' })).toBe(1);
    expect(sample(f, 'keypool_rotations_total', { key: 'openai-2' })).toBe(0);
    expect(sample(f, 'keypool_retries_total', { upstream: 'openai' })).toBe(1);
    expect(sample(f, 'keypool_replays_refused_total', { upstream: 'openai' })).toBe(1);
    expect(sample(f, 'keypool_streams_cut_total', { upstream: 'openai', reason: 'upstream' })).toBe(1);
    expect(sample(f, 'keypool_key_tokens_total', { key: 'openai-2', direction: 'input' })).toBe(7);
    expect(sample(f, 'keypool_key_tokens_total', { key: 'openai-2', direction: 'output' })).toBe(3);
    expect(sample(f, 'keypool_key_tokens_total', { key: 'openai-1', direction: 'input' })).toBe(0);

    // Per-key state: key 0 cools for gpt-4o only, so it is ok key-wide with a model cooldown of 30 s (fake clock).
    for (const k of ['openai-1', 'openai-2', 'openai-3']) {
      expect(sample(f, 'keypool_key_state', { key: k, state: 'ok' })).toBe(1);
      expect(sample(f, 'keypool_key_state', { key: k, state: 'disabled' })).toBe(0);
    }
    expect(sample(f, 'keypool_key_cooldown_seconds', { key: 'openai-1', model: 'gpt-4o' })).toBe(30);
    expect(sample(f, 'keypool_key_cooldown_seconds', { key: 'openai-1', model: '' })).toBe(0);
    expect(sample(f, 'keypool_keys_usable', { upstream: 'openai' })).toBe(3);
    expect(sample(f, 'keypool_requests_in_flight', {})).toBe(0);
    expect(sample(f, 'keypool_waiting_requests', { upstream: 'openai' })).toBe(0);
    expect(sample(f, 'keypool_key_in_flight', { key: 'openai-2' })).toBe(0);

    // Histograms: every request with an attempt has upstream time; every request has overhead; nobody waited.
    const hist = (name: string, suffix: string, labels: Record<string, string> = {}) => sample(f, name, { upstream: 'openai', ...labels }, `${name}${suffix}`);
    expect(hist('keypool_upstream_duration_seconds', '_count')).toBe(4);
    expect(hist('keypool_upstream_duration_seconds', '_bucket', { le: '+Inf' })).toBe(4);
    expect(hist('keypool_upstream_duration_seconds', '_sum')).toBeGreaterThan(0);
    expect(hist('keypool_proxy_overhead_seconds', '_count')).toBe(4);
    expect(hist('keypool_wait_duration_seconds', '_count')).toBe(0);
    const buckets = f.get('keypool_upstream_duration_seconds')!.samples.filter((s) => s.name.endsWith('_bucket')).map((s) => s.labels.le);
    expect(buckets.slice(0, 3)).toEqual(['0.005', '0.01', '0.025']);
  });

  it('shows an admin disable and a model cooldown running down in the gauges, at scrape time', async () => {
    const { proxy, clock } = await start();
    await knownTraffic(proxy);
    const r = await get(`${proxy.url}/admin/keys/openai-3/disable`, { method: 'POST', headers: auth });
    expect(r.status).toBe(200);
    clock.advance(12_000);
    const { families: f } = await scrape(proxy);
    expect(sample(f, 'keypool_key_state', { key: 'openai-3', state: 'disabled' })).toBe(1);
    expect(sample(f, 'keypool_key_state', { key: 'openai-3', state: 'ok' })).toBe(0);
    expect(sample(f, 'keypool_keys_usable', { upstream: 'openai' })).toBe(2);
    expect(sample(f, 'keypool_key_cooldown_seconds', { key: 'openai-1', model: 'gpt-4o' })).toBe(18);
    clock.advance(18_000);
    const after = (await scrape(proxy)).families;
    expect(after.get('keypool_key_cooldown_seconds')!.samples.filter((s) => s.labels.key === 'openai-1').map((s) => s.labels.model)).toEqual(['']);
  });

  it('keeps a registry per app: two apps count apart, prom-client’s global registry stays empty', async () => {
    const a = await start();
    const b = await start();
    await knownTraffic(a.proxy);
    const fa = (await scrape(a.proxy)).families;
    const fb = (await scrape(b.proxy)).families;
    expect(sample(fa, 'keypool_retries_total', { upstream: 'openai' })).toBe(1);
    expect(sample(fb, 'keypool_retries_total', { upstream: 'openai' })).toBe(0);
    expect(fb.get('keypool_requests_total')!.samples).toEqual([]);
    expect(globalRegistry.getMetricsAsArray()).toEqual([]);
  });

  it('is behind the admin guard, and shows no secret', async () => {
    const { proxy } = await start();
    await knownTraffic(proxy);
    expect((await get(`${proxy.url}/metrics`)).status).toBe(401);
    expect((await get(`${proxy.url}/metrics`, { headers: { authorization: 'Bearer nope' } })).status).toBe(401);
    const { text } = await scrape(proxy);
    for (const s of [...KEYS, ADMIN_TOKEN]) {
      expect(text).not.toContain(s);
      expect(text).not.toContain(s.slice(8, 24));
    }
  });
});
