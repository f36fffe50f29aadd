// WebSockets through keypool against the WebSocket fake upstream on loopback: the Responses API and
// Realtime paths, the key injected into the upstream handshake and the client's credential stripped,
// rotation on a refused handshake (and only there), both-way streaming, ping/pong, close propagation.
import { afterEach, describe, expect, it } from 'vitest';
import { startWsFakeUpstream, type WsFakeUpstream } from '../../src/fake-upstream/ws-server.js';
import { startProxy, type TestProxy } from '../helpers/proxy.js';
import { waitFor } from '../helpers/wait.js';
import { events, mustOpen, mustRefuse, openWs, waitAllClosed, waitForEvent } from './websocket-helpers.js';

const KEYS = ['sk-ws-key-one-aaaaaaaaaaaa', 'sk-ws-key-two-bbbbbbbbbbbb'];
const CLIENT_TOKEN = 'sk-client-own-token-zzzzzzzz';

const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (closers.length > 0) await closers.pop()!();
});

async function setup(opts: Partial<Parameters<typeof startProxy>[0]> = {}): Promise<{ u: WsFakeUpstream; p: TestProxy; ws: string }> {
  const u = await startWsFakeUpstream();
  closers.push(() => u.close());
  const p = await startProxy({ upstreamUrl: u.url, keys: KEYS, ...opts });
  closers.push(() => p.close());
  return { u, p, ws: p.url.replace('http:', 'ws:') };
}

describe('WebSocket proxying', () => {
  it('Responses API: the pool key goes upstream, the client token does not, and the events stream back', async () => {
    const { u, p, ws } = await setup();
    const c = mustOpen(await openWs(`${ws}/v1/responses`, { headers: { authorization: `Bearer ${CLIENT_TOKEN}`, 'x-api-key': CLIENT_TOKEN, 'openai-beta': 'responses_websockets=2026-02-06' } }));
    expect(c.headers['x-keypool-key']).toBe('openai-1');
    expect(c.headers['x-request-id']).toMatch(/^req_fake_ws_/);
    const hs = u.handshakes[0]!;
    expect(hs.path).toBe('/v1/responses');
    expect(hs.key).toBe(KEYS[0]);
    expect(hs.keySource).toBe('authorization');
    expect(hs.headers['x-api-key']).toBeUndefined();
    expect(hs.headers['openai-beta']).toBe('responses_websockets=2026-02-06');
    expect(JSON.stringify(hs.headers)).not.toContain(CLIENT_TOKEN);
    expect(p.pool.states()[0]!.inflight).toBe(1);

    c.ws.send(JSON.stringify({ type: 'response.create', model: 'gpt-5-codex', input: 'hi' }));
    await waitForEvent(c.messages, 'response.completed');
    const types = events(c.messages).map((e) => e.type);
    expect(types[0]).toBe('response.created');
    expect(types.filter((t) => t === 'response.output_text.delta')).toHaveLength(3);
    expect(types.at(-1)).toBe('response.completed');

    c.ws.close(1000, 'done');
    expect(await c.closed).toEqual({ code: 1000, reason: 'done' });
    await waitAllClosed(p);
    // The session's usage is counted for its key, like an HTTP answer's.
    expect(p.pool.states()[0]!.tokens).toEqual({ input: 12, output: 3 });
    const line = p.logs.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === 'websocket');
    expect(line).toMatchObject({ status: 101, key: 'openai-1', path: '/v1/responses', websocket: true, closedBy: 'client', closeCode: 1000, tokensOut: 3 });
  });
});
