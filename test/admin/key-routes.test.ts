// GET /admin/keys shows each key as it is (ok, cooling with reason and until, unavailable for a model,
// disabled), with counts, tokens, per-minute rates and headroom; the key actions change what the proxy
// does at once: a disabled key serves nothing, enable brings it back, reset forgets its cooldowns.
import { afterEach, describe, expect, it } from 'vitest';
import type { KeysView, KeyRow } from '../../src/admin/key-view.js';
import { startFakeUpstream, type FakeUpstream } from '../../src/fake-upstream/server.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { chatBody, get, json, startAdminProxy, type AdminProxy } from './harness.js';

const KEYS = ['sk-admin-keys-zero-0aaaaaaaaaaaaaaaaaa', 'sk-admin-keys-one-1bbbbbbbbbbbbbbbbbbb', 'sk-admin-keys-two-2cccccccccccccccccc'];
const NOW = Date.parse('2026-11-28T12:00:00Z');

let upstream: FakeUpstream | undefined;
let proxy: AdminProxy | undefined;
afterEach(async () => {
  await proxy?.close();
  await upstream?.close();
  proxy = undefined;
  upstream = undefined;
});

async function start(extra: { second?: boolean } = {}): Promise<{ p: AdminProxy; clock: FakeClock; up: FakeUpstream }> {
  const clock = new FakeClock(NOW);
  upstream = await startFakeUpstream({ rateLimit: { requests: 100, windowMs: 60_000 }, now: () => clock.now() });
  const upstreams = [{ name: 'openai', baseUrl: `${upstream.url}/v1`, keys: KEYS.map((key, i) => ({ key, name: `openai-${i + 1}`, ...(i === 2 ? { group: 'org-b' } : {}) })) }];
  if (extra.second) upstreams.push({ name: 'other', prefix: '/other', baseUrl: `${upstream.url}/v1`, keys: [{ key: 'sk-admin-keys-other-3dddddddddddddddddd', name: 'openai-1' }] } as never);
  proxy = await startAdminProxy({ upstreams, clock, retry: { backoffBaseMs: 0, maxRetries: 0 }, cooldown: { probeAfterMs: 3_600_000 } });
  return { p: proxy, clock, up: upstream };
}

const chat = (p: AdminProxy, model = 'gpt-4o') => get(`${p.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: chatBody(model) });
const keys = async (p: AdminProxy) => json<KeysView>(await get(`${p.url}/admin/keys`));
const row = (v: KeysView, name: string, upstream = 'openai'): KeyRow => v.upstreams.find((u) => u.name === upstream)!.keys.find((k) => k.name === name)!;
const action = async (p: AdminProxy, name: string, what: string, query = '') => get(`${p.url}/admin/keys/${name}/${what}${query}`, { method: 'POST' });

describe('GET /admin/keys', () => {
  it('shows ok, a model cooldown, out of credit and a disabled key, with counts, tokens, rates and headroom', async () => {
    const { p, clock, up } = await start();
    up.script(KEYS[0]!, { kind: 'rate_limit', style: 'retry-after', ms: 30_000 });
    up.script(KEYS[1]!, { kind: 'insufficient_quota' });
    up.setDefault(KEYS[2]!, { kind: 'unauthorized' });
    // key 1: 429 -> key 2: out of credit -> key 3: 401 -> no budget left: an error.
    expect((await chat(p)).status).toBeGreaterThanOrEqual(400);
    up.setDefault(KEYS[2]!, { kind: 'ok' });
    // A request for another model: key 1 serves it (its cooldown is gpt-4o's).
    expect((await chat(p, 'gpt-4o-mini')).status).toBe(200);
    clock.advance(5_000);
    const v = await keys(p);
    expect(v.now).toBe(new Date(NOW + 5_000).toISOString());
    const u = v.upstreams[0]!;
    expect(u).toMatchObject({ name: 'openai', prefix: '/v1', usable: 2, size: 3, waiting: 0 });

    const k1 = row(v, 'openai-1');
    expect(k1).toMatchObject({ state: 'ok', reason: null, until: null, leftMs: null, group: null, requests: 2, successes: 1, rateLimited: 1, tokensIn: 9, tokensOut: 6 });
    expect(k1.fingerprint).toMatch(/^[0-9a-f]{8}$/);
    expect(k1.masked).toBe('sk-…aaaa');
    expect(k1.models).toEqual([{ model: 'gpt-4o', state: 'cooling', reason: 'rate_limited', until: new Date(NOW + 30_000).toISOString(), leftMs: 25_000 }]);
    expect(k1.perMinute).toEqual({ requests: 2, rateLimited: 1 });
    const head = k1.headroom.find((h) => h.model === 'gpt-4o-mini')!;
    expect(head.requests).toMatchObject({ limit: 100, remaining: 99 });
    expect(Date.parse(head.requests!.resetAt)).toBeGreaterThan(NOW);

    const k2 = row(v, 'openai-2');
    expect(k2).toMatchObject({ state: 'cooling', reason: 'out_of_credit', outOfCredit: 1, leftMs: 3_600_000 - 5_000 });
    expect(k2.until).toBe(new Date(NOW + 3_600_000).toISOString());

    const k3 = row(v, 'openai-3');
    expect(k3).toMatchObject({ state: 'disabled', reason: 'unauthorized', group: 'org-b', until: new Date(NOW + 86_400_000).toISOString() });

    // The per-minute window rolls: a minute later nothing is "per minute" any more, the totals stay.
    clock.advance(60_000);
    expect(row(await keys(p), 'openai-1')).toMatchObject({ perMinute: { requests: 0, rateLimited: 0 }, requests: 2 });
  });

  it('shows a model the key may not use as unavailable', async () => {
    const { p, up } = await start();
    up.script(KEYS[0]!, { kind: 'model_not_found', status: 404 });
    await chat(p, 'gpt-5-secret-model');
    expect(row(await keys(p), 'openai-1').models).toEqual([expect.objectContaining({ model: 'gpt-5-secret-model', state: 'unavailable', reason: 'model_unavailable' })]);
  });
});

describe('POST /admin/keys/:name/disable|enable|reset', () => {
  it('disable: the key serves nothing until enabled; enable: usable at once; both answer the new row and are logged', async () => {
    const { p, clock, up } = await start();
    const off = await action(p, 'openai-1', 'disable');
    expect(off.status).toBe(200);
    expect(json(off)).toMatchObject({ upstream: 'openai', name: 'openai-1', state: 'disabled', reason: 'admin', until: null, leftMs: null });
    // No period runs it out: a day (cooldown.disabledMs) and a year later it is still disabled.
    clock.advance(86_400_000 * 366);
    for (let i = 0; i < 4; i++) expect((await chat(p)).headers['x-keypool-key']).not.toBe('openai-1');
    expect(up.requests.every((r) => r.key !== KEYS[0])).toBe(true);
    expect(row(await keys(p), 'openai-1').state).toBe('disabled');

    const on = await action(p, 'openai-1', 'enable');
    expect(json(on)).toMatchObject({ name: 'openai-1', state: 'ok', reason: null });
    const served = new Set<unknown>();
    for (let i = 0; i < 3; i++) served.add((await chat(p)).headers['x-keypool-key']);
    expect(served.has('openai-1')).toBe(true);
    const lines = p.logs.filter((l) => l.includes('"msg":"admin key action"')).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.map((l) => [l.key, l.action])).toEqual([
      ['openai-1', 'disable'],
      ['openai-1', 'enable'],
    ]);
  });

  it('reset: forgets cooldowns, credit stops, streaks and a disable, so the key serves the cooled model now', async () => {
    const { p, up } = await start();
    up.script(KEYS[0]!, { kind: 'rate_limit', style: 'retry-after', ms: 600_000 });
    await chat(p);
    const pool = p.app.pools.get('openai')!;
    const s = pool.states()[0]!;
    expect(s.scopes.get('gpt-4o')!.streak).toBe(1);
    pool.cool(s, '', NOW + 1_000_000, 'out_of_credit', NOW);
    const r = await action(p, 'openai-1', 'reset');
    expect(json(r)).toMatchObject({ state: 'ok', models: [], until: null });
    expect(s.scopes.get('gpt-4o')!.streak).toBe(0);
    // Every other key disabled: only openai-1 can serve gpt-4o, and does.
    await action(p, 'openai-2', 'disable');
    await action(p, 'openai-3', 'disable');
    const served = await chat(p);
    expect(served.status).toBe(200);
    expect(served.headers['x-keypool-key']).toBe('openai-1');
    // reset also lifts a disable, the upstream's or an operator's.
    expect(json(await action(p, 'openai-3', 'reset'))).toMatchObject({ state: 'ok' });
  });

  it('answers 404 for an unknown key or action, 400 for a name in two upstreams unless ?upstream= says which', async () => {
    const { p } = await start({ second: true });
    const missing = await action(p, 'nope', 'disable');
    expect(missing.status).toBe(404);
    expect(json(missing)).toMatchObject({ error: { code: 'keypool_admin_key_not_found', type: 'invalid_request_error' } });
    expect((await action(p, 'openai-1', 'explode')).status).toBe(404);
    expect((await action(p, 'openai-2', 'disable', `?upstream=${'x'.repeat(5000)}`)).status).toBe(404);
    const both = await action(p, 'openai-1', 'disable');
    expect(both.status).toBe(400);
    expect(json(both)).toMatchObject({ error: { code: 'keypool_invalid_request' } });
    expect(p.app.pools.get('openai')!.usable).toBe(3);
    const one = await action(p, 'openai-1', 'disable', '?upstream=other');
    expect(json(one)).toMatchObject({ upstream: 'other', state: 'disabled' });
    expect(p.app.pools.get('openai')!.usable).toBe(3);
    expect(p.app.pools.get('other')!.usable).toBe(0);
    expect((await action(p, 'openai-1', 'enable', '?upstream=nowhere')).status).toBe(404);
  });

  it('takes a POST with a JSON content type and no body, and ignores a small body', async () => {
    const { p } = await start();
    const empty = await get(`${p.url}/admin/keys/openai-2/disable`, { method: 'POST', headers: { 'content-type': 'application/json' } });
    expect(empty.status).toBe(200);
    const body = await get(`${p.url}/admin/keys/openai-2/enable`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"whatever":1}' });
    expect(json(body)).toMatchObject({ state: 'ok' });
    const big = await get(`${p.url}/admin/keys/openai-2/disable`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'x'.repeat(200_000) });
    expect(big.status).toBe(413);
    expect(row(await keys(p), 'openai-2').state).toBe('ok');
  });
});
