// GET /admin/clients: per client what it was served (statuses by class, 429s, tokens, last seen, per
// minute) and what it has going on now (in flight; waiting, as the room reports it).
import { afterEach, describe, expect, it } from 'vitest';
import { waitingByClient, type ClientsView } from '../../src/admin/clients-view.js';
import type { WaitingRoom } from '../../src/keys/waiting-room.js';
import { startFakeUpstream, type FakeUpstream } from '../../src/fake-upstream/server.js';
import { waitFor } from '../helpers/wait.js';
import { chatBody, get, json, startAdminProxy, type AdminProxy } from './harness.js';

const KEYS = ['sk-clients-key-zero-0aaaaaaaaaaaaaaaaaa', 'sk-clients-key-one-1bbbbbbbbbbbbbbbbbbb'];

let upstream: FakeUpstream | undefined;
let proxy: AdminProxy | undefined;
afterEach(async () => {
  await proxy?.close();
  await upstream?.close();
  proxy = undefined;
  upstream = undefined;
});

const clients = async (p: AdminProxy) => json<ClientsView>(await get(`${p.url}/admin/clients`)).clients;

describe('GET /admin/clients', () => {
  it('counts each client’s answers, 429s and tokens, and shows requests in flight before they finish', async () => {
    upstream = await startFakeUpstream();
    proxy = await startAdminProxy({ upstreams: [{ name: 'openai', baseUrl: `${upstream.url}/v1`, keys: KEYS }], retry: { maxRetries: 0, backoffBaseMs: 0 } });
    const p = proxy;
    const chat = (client: string, signal?: AbortSignal, model = 'gpt-4o') =>
      get(`${p.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-agent-id': client }, body: chatBody(model), signal });
    expect((await chat('agent-a')).status).toBe(200);
    expect((await chat('agent-a')).status).toBe(200);
    for (const k of KEYS) upstream.script(k, { kind: 'rate_limit', ms: 5_000 });
    expect((await chat('agent-b')).status).toBe(429);
    expect((await get(`${p.url}/v1/nothing-here`, { headers: { 'x-agent-id': 'agent-b' } })).status).toBe(404);

    const rows = await clients(p);
    expect(rows.map((r) => r.name)).toEqual(['agent-b', 'agent-a']);
    const a = rows.find((r) => r.name === 'agent-a')!;
    expect(a).toMatchObject({ requests: 2, inFlight: 0, waiting: 0, '2xx': 2, '4xx': 0, '5xx': 0, rateLimited: 0, tokensIn: 18, perMinute: { requests: 2 } });
    expect(a.tokensOut).toBeGreaterThan(0);
    expect(Date.parse(a.lastSeen!)).toBeLessThanOrEqual(Date.now());
    expect(rows.find((r) => r.name === 'agent-b')).toMatchObject({ requests: 2, '2xx': 0, '4xx': 2, rateLimited: 1 });

    // A request that hangs upstream is in flight for its client until it ends (another model: gpt-4o cools).
    upstream.script(KEYS[0]!, { kind: 'hang' });
    upstream.script(KEYS[1]!, { kind: 'hang' });
    const ctl = new AbortController();
    const hanging = chat('agent-c', ctl.signal, 'gpt-4o-mini').catch(() => undefined);
    await waitFor(async () => (await clients(p)).some((r) => r.name === 'agent-c' && r.inFlight === 1));
    expect((await clients(p)).find((r) => r.name === 'agent-c')).toMatchObject({ requests: 0, lastSeen: null, inFlight: 1 });
    ctl.abort();
    await hanging;
    await waitFor(async () => (await clients(p)).find((r) => r.name === 'agent-c')?.inFlight === 0);
    expect(p.app.proxy.inflightByClient.size).toBe(0);
  });

  it('reads waiting clients from the room’s gauges when it has them, summed over upstreams', () => {
    const room = (clients: { client: string; waiting: number }[]) => ({ gauges: () => ({ clients }) }) as unknown as WaitingRoom;
    const w = waitingByClient([room([{ client: 'a', waiting: 2 }]), room([{ client: 'a', waiting: 1 }, { client: 'b', waiting: 4 }]), {} as WaitingRoom]);
    expect([...w]).toEqual([
      ['a', 3],
      ['b', 4],
    ]);
  });
});
