// /readyz flips to 503, naming the upstream, when its last usable key goes (an operator's disable, or
// the upstream rejecting every key with 401), and back to 200 when a key is enabled; cooling keys
// do not make it unready; shutting down does.
import { afterEach, describe, expect, it } from 'vitest';
import { readiness } from '../../src/admin/readiness.js';
import { startFakeUpstream, type FakeUpstream } from '../../src/fake-upstream/server.js';
import { chatBody, get, json, startAdminProxy, type AdminProxy } from './harness.js';

const KEYS = ['sk-ready-key-zero-0aaaaaaaaaaaaaaaaaaaa', 'sk-ready-key-one-1bbbbbbbbbbbbbbbbbbbb'];
const OTHER = 'sk-ready-key-other-2cccccccccccccccccc';

let upstream: FakeUpstream | undefined;
let proxy: AdminProxy | undefined;
afterEach(async () => {
  await proxy?.close();
  await upstream?.close();
  proxy = undefined;
  upstream = undefined;
});

async function start(): Promise<{ p: AdminProxy; up: FakeUpstream }> {
  upstream = await startFakeUpstream();
  proxy = await startAdminProxy({
    upstreams: [
      { name: 'openai', baseUrl: `${upstream.url}/v1`, keys: KEYS },
      { name: 'backup', prefix: '/backup', baseUrl: `${upstream.url}/v1`, keys: [OTHER] },
    ],
    retry: { backoffBaseMs: 0 },
  });
  return { p: proxy, up: upstream };
}

const ready = (p: AdminProxy) => get(`${p.url}/readyz`);
const post = (p: AdminProxy, path: string) => get(`${p.url}${path}`, { method: 'POST' });

describe('GET /readyz', () => {
  it('200 while every upstream has a usable key; 503 naming the upstream when its last key is disabled by an operator; 200 after enable', async () => {
    const { p } = await start();
    const ok = await ready(p);
    expect(ok.status).toBe(200);
    expect(json(ok)).toEqual({ status: 'ready' });
    await post(p, '/admin/keys/openai-1/disable');
    expect((await ready(p)).status).toBe(200);
    await post(p, '/admin/keys/openai-2/disable');
    const down = await ready(p);
    expect(down.status).toBe(503);
    expect(json(down)).toEqual({ status: 'not_ready', reason: 'upstream openai: all 2 key(s) are disabled', upstreams: ['openai'] });
    await post(p, '/admin/keys/openai-2/enable');
    expect((await ready(p)).status).toBe(200);
  });

  it('503 when the upstream rejects every key (401), 200 again once one is enabled', async () => {
    const { p, up } = await start();
    for (const k of KEYS) up.setDefault(k, { kind: 'unauthorized' });
    const r = await get(`${p.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: chatBody() });
    expect(r.status).toBe(503);
    const down = await ready(p);
    expect(down.status).toBe(503);
    expect(json(down)).toMatchObject({ upstreams: ['openai'] });
    expect(String(json(down).reason)).toContain('upstream openai');
    expect(String(json(down).reason)).not.toContain('backup');
    for (const k of KEYS) up.setDefault(k, { kind: 'ok' });
    await post(p, '/admin/keys/openai-1/enable');
    expect((await ready(p)).status).toBe(200);
  });

  it('stays ready while keys only cool (rate limit, out of credit): they come back by themselves', async () => {
    const { p, up } = await start();
    up.script(KEYS[0]!, { kind: 'rate_limit', ms: 60_000 });
    up.script(KEYS[1]!, { kind: 'insufficient_quota' });
    await get(`${p.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: chatBody() });
    const pool = p.app.pools.get('openai')!;
    expect(pool.nextAvailableAt({ model: 'gpt-4o', tokens: 0 }, Date.now())).toBeGreaterThan(Date.now());
    expect((await ready(p)).status).toBe(200);
  });

  it('names every upstream without keys, and is unready while shutting down', async () => {
    const { p } = await start();
    await post(p, '/admin/keys/openai-1/disable');
    await post(p, '/admin/keys/openai-2/disable');
    await post(p, '/admin/keys/backup-1/disable');
    expect(json(await ready(p))).toMatchObject({ upstreams: ['openai', 'backup'] });
    expect(readiness(new Map(), true, 0)).toEqual({ ready: false, reason: 'keypool is shutting down', upstreams: [] });
    p.app.proxy.closing = true;
    expect((await ready(p)).status).toBe(503);
  });

  it('a disable whose period ran out counts as usable again', async () => {
    const { p } = await start();
    const pool = p.app.pools.get('backup')!;
    pool.disable(pool.states()[0]!, 'unauthorized', Date.now() + 60_000);
    expect(readiness(p.app.pools, false, Date.now())).toMatchObject({ ready: false, upstreams: ['backup'] });
    expect(readiness(p.app.pools, false, Date.now() + 61_000)).toEqual({ ready: true });
  });
});
