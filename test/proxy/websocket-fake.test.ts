// The WebSocket fake upstream on its own (it is also a tool for users): handshake answers per key,
// where it finds a key, validation that never names a key, control events, and attaching it to the
// HTTP fake's server so one port serves both.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { attachWsFake, startWsFakeUpstream, type WsFakeUpstream } from '../../src/fake-upstream/ws-server.js';
import { waitFor } from '../helpers/wait.js';
import { events, mustOpen, mustRefuse, openWs } from './websocket-helpers.js';

const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (closers.length > 0) await closers.pop()!();
});

async function fake(options: Parameters<typeof startWsFakeUpstream>[0] = {}): Promise<{ u: WsFakeUpstream; ws: string }> {
  const u = await startWsFakeUpstream(options);
  closers.push(() => u.close());
  return { u, ws: u.url.replace('http:', 'ws:') };
}

describe('WebSocket fake upstream', () => {
  it('answers handshakes per key: scripts first, then defaults, with OpenAI bodies and rate-limit headers', async () => {
    const { u, ws } = await fake({ keys: { 'k-bad': { kind: 'unauthorized' } } });
    u.script('k-1', { kind: 'rate_limit', style: 'retry-after-ms', ms: 1500 }, { kind: 'server_error', status: 502 });
    const auth = (k: string) => ({ headers: { authorization: `Bearer ${k}` } });
    const a = mustRefuse(await openWs(`${ws}/v1/responses`, auth('k-1')));
    expect([a.status, a.headers['retry-after-ms'], JSON.parse(a.body).error.code]).toEqual([429, '1500', 'rate_limit_exceeded']);
    expect(mustRefuse(await openWs(`${ws}/v1/responses`, auth('k-1'))).status).toBe(502);
    mustOpen(await openWs(`${ws}/v1/responses`, auth('k-1'))).ws.close();
    const b = mustRefuse(await openWs(`${ws}/v1/responses`, auth('k-bad')));
    expect([b.status, JSON.parse(b.body).error.code]).toEqual([401, 'invalid_api_key']);
    expect(b.body).not.toContain('k-bad');
    expect(u.handshakes.map((h) => h.status)).toEqual([429, 502, 101, 401]);
  });

  it('finds the key in Authorization, x-api-key, api-key or the browser subprotocol; acceptKeys refuses the rest', async () => {
    const { u, ws } = await fake({ acceptKeys: ['k-ok'] });
    mustOpen(await openWs(`${ws}/v1/realtime?model=m`, { protocols: ['realtime', 'openai-insecure-api-key.k-ok'] })).ws.close();
    mustOpen(await openWs(`${ws}/v1/echo`, { headers: { 'api-key': 'k-ok' } })).ws.close();
    expect(mustRefuse(await openWs(`${ws}/v1/echo`, { headers: { 'x-api-key': 'k-no' } })).status).toBe(401);
    expect(mustRefuse(await openWs(`${ws}/v1/echo`)).status).toBe(401);
    expect(u.handshakes.map((h) => h.keySource)).toEqual(['subprotocol', 'api-key', 'x-api-key', undefined]);
  });

  it('rejects a bad behaviour naming where it was given, never the key', async () => {
    await expect(fake({ keys: { 'sk-secret-name': { kind: 'rate_limit', ms: -1 } } })).rejects.toThrow(/keys entry #1/);
    await expect(fake({ keys: { 'sk-secret-name': { kind: 'nope' } as never } })).rejects.not.toThrow(/sk-secret-name/);
  });

  it('obeys control events: close with a code, ping, flood with sequence numbers', async () => {
    const { u, ws } = await fake();
    const c = mustOpen(await openWs(`${ws}/v1/echo`));
    await waitFor(() => u.sessions.length === 1);
    c.ws.send(JSON.stringify({ type: 'fake.flood', count: 5, bytes: 64, binary: false }));
    await waitFor(() => c.messages.length === 5);
    expect(events(c.messages).map((e) => [e.type, e.seq])).toEqual([0, 1, 2, 3, 4].map((i) => ['fake.chunk', i]));
    c.ws.send(JSON.stringify({ type: 'fake.ping', data: 'p' }));
    await waitFor(() => u.sessions[0]!.pongs.length === 1);
    c.ws.send(JSON.stringify({ type: 'fake.close', code: 4321, reason: 'told to' }));
    expect(await c.closed).toEqual({ code: 4321, reason: 'told to' });
  });

  it('attaches to an existing HTTP server: plain requests stay its own, upgrades are the fake\'s', async () => {
    const server = createServer((_req, res) => res.end('plain'));
    const control = attachWsFake(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    closers.push(async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    });
    const url = `127.0.0.1:${(server.address() as AddressInfo).port}`;
    expect(await (await fetch(`http://${url}/v1/models`)).text()).toBe('plain');
    const c = mustOpen(await openWs(`ws://${url}/v1/responses`));
    c.ws.send(JSON.stringify({ type: 'response.create', model: 'gpt-x' }));
    await waitFor(() => events(c.messages).some((e) => e.type === 'response.completed'));
    c.ws.terminate();
    await waitFor(() => control.connections === 0);
  });
});
