// The door of the proxy routes, end to end and in unit: tokens (each header an SDK may use), allow-lists,
// per-client limits, identity in logs, and nothing of a refused request reaching an upstream.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { ClientGate } from '../../src/clients/client-gate.js';
import { loadConfigObject } from '../../src/config/load.js';
import { startFakeUpstream, type FakeUpstream } from '../../src/fake-upstream/server.js';
import { startProxy, type TestProxy } from '../helpers/proxy.js';
import { waitFor } from '../helpers/wait.js';

const POOL_KEY = 'sk-pool-key-for-gate-0001';
const A = 'tok-agent-a-0123456789abcdef';
const B = 'tok-agent-b-0123456789abcdef';
const base = { upstreams: [{ name: 'openai', baseUrl: 'http://127.0.0.1:1/v1', keys: [POOL_KEY] }] };
const config = (clients: unknown) => loadConfigObject({ ...base, clients }, {}).config;

let upstream: FakeUpstream | undefined;
let proxy: TestProxy | undefined;
afterEach(async () => {
  await proxy?.close();
  await upstream?.close();
  proxy = undefined;
  upstream = undefined;
});

describe('ClientGate', () => {
  const gate = new ClientGate(config([
    { name: 'a', token: A, maxConcurrent: 2, rpm: 3 },
    { name: 'b', token: B, upstreams: ['openai'], models: ['gpt-4o*'] },
  ]).clients!);
  it('knows a client by Bearer, x-api-key, api-key or x-goog-api-key; nothing else', () => {
    expect(gate.identify({ authorization: `Bearer ${A}` })?.name).toBe('a');
    expect(gate.identify({ authorization: `bearer   ${A} ` })?.name).toBe('a');
    expect(gate.identify({ 'x-api-key': B })?.name).toBe('b');
    expect(gate.identify({ 'api-key': B })?.name).toBe('b');
    expect(gate.identify({ 'x-goog-api-key': A })?.name).toBe('a');
    expect(gate.identify({ authorization: `Basic ${A}` })).toBeUndefined();
    expect(gate.identify({ authorization: `Bearer ${A}x` })).toBeUndefined();
    expect(gate.identify({})).toBeUndefined();
  });
  it('holds a client to its concurrency and its minute, and releases once', () => {
    const c = gate.identify({ authorization: `Bearer ${A}` })!;
    const one = gate.admit(c, 'openai', 0);
    const two = gate.admit(c, 'openai', 0);
    expect(one.ok && two.ok).toBe(true);
    const three = gate.admit(c, 'openai', 0);
    expect(three).toMatchObject({ ok: false, error: { code: 'keypool_client_limit', status: 429 } });
    if (one.ok) {
      one.release();
      one.release();
    }
    expect(gate.inflight('a')).toBe(1);
    expect(gate.admit(c, 'openai', 10).ok).toBe(true);
    // The fourth in the same minute is over rpm 3, with an honest Retry-After.
    if (two.ok) two.release();
    const over = gate.admit(c, 'openai', 20);
    expect(over.ok).toBe(false);
    if (!over.ok) expect(over.error.headers['retry-after-ms']).toBe(String(60_000 - 20));
    expect(gate.admit(c, 'openai', 60_000).ok).toBe(true);
  });
  it('keeps clients to their upstreams and models', () => {
    const b = gate.identify({ 'x-api-key': B })!;
    expect(gate.refuseModel(b, 'openai', 'gpt-4o-mini')).toBeUndefined();
    expect(gate.refuseModel(b, 'openai', 'o3')).toMatchObject({ code: 'keypool_client_forbidden', status: 403 });
    expect(gate.refuseModel(b, 'openai', '')).toMatchObject({ code: 'keypool_client_forbidden' });
    expect(gate.admit(b, 'anthropic', 0)).toMatchObject({ ok: false, error: { code: 'keypool_client_forbidden' } });
  });
});

describe('clients in config', () => {
  it('reads a token from a file, and names the field of every problem without the token', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kp-tok-'));
    writeFileSync(join(dir, 'a'), `  ${A}\n`);
    expect(config([{ name: 'a', tokenFile: join(dir, 'a') }]).clients![0]!.token.reveal()).toBe(A);
    const problems = (clients: unknown) => {
      try {
        config(clients);
        return [];
      } catch (err) {
        return (err as { problems: string[] }).problems;
      }
    };
    expect(problems([{ name: 'a', token: 'short-1' }])).toEqual(['clients[0].token: the token is too short (at least 16 characters)']);
    expect(problems([{ name: 'a' }])).toEqual(['clients[0]: give exactly one of token and tokenFile']);
    expect(problems([{ name: 'a', token: A }, { name: 'a', token: B }])).toEqual(['clients[1].name: client name a is used twice']);
    expect(problems([{ name: 'a', token: A }, { name: 'b', token: A }])).toEqual(['clients[1]: same token as client a; every client needs its own']);
    expect(problems([{ name: 'a', token: A, upstreams: ['nope'] }])).toEqual(['clients[0].upstreams[0]: no upstream is named nope']);
    expect(problems([{ name: 'a', tokenFile: join(dir, 'missing') }])).toEqual(['clients[0].tokenFile: cannot read the file: ENOENT']);
    const all = JSON.stringify([problems([{ name: 'a', token: 'short-1' }]), config([{ name: 'a', token: A }])]);
    expect(all).not.toContain(A);
    expect(all).not.toContain('short-1');
  });
});

describe('the proxy with clients', () => {
  async function setup(clients: unknown[]) {
    upstream = await startFakeUpstream();
    proxy = await startProxy({ upstreamUrl: upstream.url, keys: [POOL_KEY], clients });
    return { upstream, proxy };
  }
  const call = (p: TestProxy, headers: Record<string, string>, body = '{"model":"gpt-4o-mini"}') =>
    request(`${p.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body }).then(async (r) => ({
      status: r.statusCode,
      headers: r.headers,
      text: await r.body.text(),
    }));

  it('refuses a request without a known token before anything reaches the upstream; a known one is served as its client', async () => {
    const { upstream, proxy } = await setup([{ name: 'agent-a', token: A }, { name: 'agent-b', token: B }]);
    for (const headers of [{}, { authorization: 'Bearer nope-nope-nope-nope' }, { authorization: POOL_KEY }] as Record<string, string>[]) {
      const r = await call(proxy, headers);
      expect(r.status).toBe(401);
      expect(JSON.parse(r.text).error.code).toBe('keypool_unauthorized');
      expect(r.headers['x-should-retry']).toBe('false');
    }
    expect(upstream.requests).toHaveLength(0);
    const ok = await call(proxy, { authorization: `Bearer ${A}` });
    expect(ok.status).toBe(200);
    const viaApiKey = await call(proxy, { 'x-api-key': B });
    expect(viaApiKey.status).toBe(200);
    // The upstream sees the pool key only, never a client's token.
    expect(upstream.requests.map((r) => r.key)).toEqual([POOL_KEY, POOL_KEY]);
    for (const r of upstream.requests) expect(JSON.stringify(r.headers)).not.toMatch(/tok-agent/);
    const lines = proxy.logs.filter((l) => l.includes('"msg":"request"'));
    expect(lines.some((l) => l.includes('"client":"agent-a"'))).toBe(true);
    expect(lines.some((l) => l.includes('"client":"agent-b"'))).toBe(true);
    for (const secret of [A, B, POOL_KEY]) expect(proxy.logs.join('\n')).not.toContain(secret);
  });

  it('holds a client to its concurrency, apart from other clients', async () => {
    const { upstream, proxy } = await setup([{ name: 'agent-a', token: A, maxConcurrent: 1 }, { name: 'agent-b', token: B }]);
    upstream.script(POOL_KEY, { kind: 'ok', delayMs: 1500 });
    const first = call(proxy, { authorization: `Bearer ${A}` });
    // In flight once the upstream has it (not after a guessed delay).
    await waitFor(() => upstream.requests.length === 1);
    const second = await call(proxy, { authorization: `Bearer ${A}` });
    expect(second.status).toBe(429);
    expect(JSON.parse(second.text).error.code).toBe('keypool_client_limit');
    expect((await call(proxy, { authorization: `Bearer ${B}` })).status).toBe(200);
    expect((await first).status).toBe(200);
    // Released when the first ended.
    expect((await call(proxy, { authorization: `Bearer ${A}` })).status).toBe(200);
  });

  it('keeps a client to its models', async () => {
    const { upstream, proxy } = await setup([{ name: 'agent-a', token: A, models: ['gpt-4o-mini'] }]);
    expect((await call(proxy, { authorization: `Bearer ${A}` }, '{"model":"o3"}')).status).toBe(403);
    expect(upstream.requests).toHaveLength(0);
    expect((await call(proxy, { authorization: `Bearer ${A}` })).status).toBe(200);
  });
});

describe('client tokens on WebSocket handshakes', () => {
  it('refuses a handshake without a known token; takes one in a header or in the browser subprotocol', async () => {
    const { startWsFakeUpstream } = await import('../../src/fake-upstream/ws-server.js');
    const { openWs } = await import('../proxy/websocket-helpers.js');
    const u = await startWsFakeUpstream();
    proxy = await startProxy({ upstreamUrl: u.url, keys: [POOL_KEY], clients: [{ name: 'agent-a', token: A }] });
    try {
      const ws = `${proxy.url.replace('http', 'ws')}/v1/realtime?model=gpt-realtime`;
      const refused = await openWs(ws);
      expect(refused.kind).toBe('refused');
      expect(u.handshakes).toHaveLength(0);
      const viaHeader = await openWs(ws, { headers: { authorization: `Bearer ${A}` } });
      expect(viaHeader.kind).toBe('open');
      const viaProtocol = await openWs(ws, { protocols: ['realtime', `openai-insecure-api-key.${A}`] });
      expect(viaProtocol.kind).toBe('open');
      for (const o of [viaHeader, viaProtocol]) if (o.kind === 'open') o.ws.close();
      // The client's token never went upstream, in a header or a subprotocol.
      expect(JSON.stringify(u.handshakes)).not.toContain(A);
      expect(u.handshakes.map((h) => h.key)).toEqual([POOL_KEY, POOL_KEY]);
    } finally {
      await proxy.close();
      proxy = undefined;
      await u.close();
    }
  });
});
