// WebSockets through keypool against the WebSocket fake upstream on loopback: the Responses API and
// Realtime paths, the key injected into the upstream handshake and the client's credential stripped,
// rotation on a refused handshake (and only there), both-way streaming, ping/pong, close propagation.
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
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

  it('Realtime API: credential subprotocols are stripped, the chosen one reaches the client, the model scopes the key', async () => {
    const { u, p, ws } = await setup();
    const c = mustOpen(
      await openWs(`${ws}/v1/realtime?model=gpt-realtime`, { protocols: ['realtime', `openai-insecure-api-key.${CLIENT_TOKEN}`, 'openai-organization.org-client', 'openai-beta.realtime-v1'] }),
    );
    expect(c.ws.protocol).toBe('realtime');
    const hs = u.handshakes[0]!;
    expect(hs.path).toBe('/v1/realtime?model=gpt-realtime');
    expect(hs.protocols).toEqual(['realtime', 'openai-beta.realtime-v1']);
    expect(hs.key).toBe(KEYS[0]);
    expect(hs.keySource).toBe('authorization');
    expect(JSON.stringify(hs.headers)).not.toContain(CLIENT_TOKEN);
    // The upstream speaks first: nothing it sends before the client's handshake is answered is lost.
    await waitForEvent(c.messages, 'session.created');
    expect(events(c.messages)[0]).toMatchObject({ type: 'session.created', session: { model: 'gpt-realtime' } });
    c.ws.send(JSON.stringify({ type: 'session.update', session: { instructions: 'be brief' } }));
    await waitForEvent(c.messages, 'session.updated');
    c.ws.send(JSON.stringify({ type: 'response.create' }));
    await waitForEvent(c.messages, 'response.done');
    c.ws.close();
    await waitAllClosed(p);
    const line = p.logs.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === 'websocket');
    expect(line).toMatchObject({ model: 'gpt-realtime', status: 101, closeCode: 1005, tokensIn: 12, tokensOut: 3 });
  });

  it('a 429 handshake rotates to the next key before the client is answered, and cools the first', async () => {
    const { u, p, ws } = await setup();
    u.script(KEYS[0]!, { kind: 'rate_limit', style: 'retry-after', ms: 60_000 });
    const c = mustOpen(await openWs(`${ws}/v1/responses`));
    expect(c.headers['x-keypool-key']).toBe('openai-2');
    expect(c.headers['x-keypool-attempts']).toBe('2');
    expect(u.handshakes.map((h) => [h.key, h.status])).toEqual([
      [KEYS[0], 429],
      [KEYS[1], 101],
    ]);
    const first = p.pool.states()[0]!;
    expect(first.scopes.get('')!.cooldownUntil).toBeGreaterThan(Date.now() + 50_000);
    expect(first.disabled).toBeUndefined();
    expect(first.inflight).toBe(0);
    expect(p.pool.states()[1]!.inflight).toBe(1);
    // A session never changes key: the upstream that accepted it serves it to the end.
    c.ws.send(JSON.stringify({ type: 'response.create' }));
    await waitForEvent(c.messages, 'response.completed');
    expect(u.sessions).toHaveLength(1);
    expect(u.sessions[0]!.key).toBe(KEYS[1]);
    c.ws.close();
    await waitAllClosed(p);
  });

  it('a 429 cools its key at the head, so a handshake arriving while its body is read skips the key', async () => {
    // A hand-driven upstream: the first key's 429 sends its head and holds the body; the second key is accepted.
    const seen: string[] = [];
    const held: Duplex[] = [];
    const wss = new WebSocketServer({ noServer: true });
    const server = createServer().on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      const key = (req.headers.authorization ?? '').replace('Bearer ', '');
      seen.push(key);
      if (key === KEYS[0]) {
        socket.write('HTTP/1.1 429 Too Many Requests\r\nretry-after: 60\r\ncontent-type: application/json\r\ncontent-length: 20\r\n\r\n{"error":');
        held.push(socket);
      } else {
        wss.handleUpgrade(req, socket, head, (ws) => ws.on('message', () => {}));
      }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    closers.push(async () => {
      for (const s of held) s.destroy();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    });
    const p = await startProxy({ upstreamUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, keys: KEYS, upstream: { strategy: 'fill_first' } });
    closers.push(() => p.close());
    const ws = p.url.replace('http:', 'ws:');
    const first = openWs(`${ws}/v1/responses`);
    await waitFor(() => held.length === 1);
    // fill_first would choose the first key again if it were not cooled already.
    const second = mustOpen(await openWs(`${ws}/v1/responses`));
    expect(second.headers['x-keypool-key']).toBe('openai-2');
    expect(seen).toEqual([KEYS[0], KEYS[1]]);
    held[0]!.end('"x"}      ');
    const a = mustOpen(await first);
    expect(a.headers['x-keypool-key']).toBe('openai-2');
    a.ws.close();
    second.ws.close();
    await waitAllClosed(p);
  });

  it('a 401 handshake disables the key and rotates', async () => {
    const { u, p, ws } = await setup();
    u.setDefault(KEYS[0]!, { kind: 'unauthorized' });
    const c = mustOpen(await openWs(`${ws}/v1/responses`));
    expect(c.headers['x-keypool-key']).toBe('openai-2');
    expect(p.pool.states()[0]!.disabled).toBe('unauthorized');
    c.ws.close();
    await waitAllClosed(p);
    // The next session does not try the disabled key at all.
    const d = mustOpen(await openWs(`${ws}/v1/responses`));
    expect(u.handshakes.map((h) => h.key)).toEqual([KEYS[0], KEYS[1], KEYS[1]]);
    d.ws.close();
    await waitAllClosed(p);
  });

  it('a 403 naming the key disables it; a 403 about nobody in particular does not', async () => {
    const { u, p, ws } = await setup();
    u.script(KEYS[0]!, { kind: 'key_revoked' });
    mustOpen(await openWs(`${ws}/v1/responses`)).ws.close();
    expect(p.pool.states()[0]!.disabled).toBe('forbidden');
    await waitAllClosed(p);

    const { u: u2, p: p2, ws: ws2 } = await setup();
    u2.script(KEYS[0]!, { kind: 'forbidden' });
    const c = mustOpen(await openWs(`${ws2}/v1/responses`));
    expect(c.headers['x-keypool-key']).toBe('openai-2');
    expect(p2.pool.states()[0]!.disabled).toBeUndefined();
    c.ws.close();
    await waitAllClosed(p2);
  });

  it('when every key refuses, the client handshake gets the status: 429 with Retry-After, or 503 when all are disabled', async () => {
    const { u, p, ws } = await setup({ retry: { maxRetries: 1, backoffBaseMs: 0 } });
    for (const k of KEYS) u.script(k, { kind: 'rate_limit', style: 'retry-after-ms', ms: 30_000 });
    const r = mustRefuse(await openWs(`${ws}/v1/responses`));
    expect(r.status).toBe(429);
    expect(Number(r.headers['retry-after'])).toBeGreaterThanOrEqual(29);
    expect(JSON.parse(r.body)).toMatchObject({ error: { code: 'keypool_pool_exhausted', type: 'rate_limit_error' } });
    expect(r.headers['x-keypool-attempts']).toBe('2');
    expect(u.sessions).toHaveLength(0);
    await waitAllClosed(p);

    const { u: u2, p: p2, ws: ws2 } = await setup();
    for (const k of KEYS) u2.setDefault(k, { kind: 'unauthorized' });
    const r2 = mustRefuse(await openWs(`${ws2}/v1/responses`));
    expect(r2.status).toBe(503);
    expect(JSON.parse(r2.body)).toMatchObject({ error: { code: 'keypool_no_usable_keys' } });
    expect(r2.headers['x-should-retry']).toBe('false');
    await waitAllClosed(p2);
  });

  it('a 5xx handshake is retried within the budget, then the client gets the status', async () => {
    const { u, p, ws } = await setup({ retry: { maxRetries: 1, backoffBaseMs: 0 } });
    for (const k of KEYS) u.setDefault(k, { kind: 'server_error', status: 503 });
    const r = mustRefuse(await openWs(`${ws}/v1/responses`));
    expect(r.status).toBe(503);
    expect(JSON.parse(r.body)).toMatchObject({ error: { code: 'keypool_upstream_error' } });
    // 5xx is not the key's fault: one attempt, then one charged retry.
    expect(u.handshakes).toHaveLength(2);
    expect(p.pool.states().every((s) => s.disabled === undefined)).toBe(true);
    await waitAllClosed(p);
  });

  it('an answer about the request (400) reaches the client as the upstream gave it, without rotating', async () => {
    const { u, p, ws } = await setup();
    u.script(KEYS[0]!, { kind: 'status', status: 400, body: '{"error":{"message":"bad beta header","type":"invalid_request_error"}}', headers: { 'x-upstream': 'yes' } });
    const r = mustRefuse(await openWs(`${ws}/v1/responses`));
    expect(r.status).toBe(400);
    expect(r.body).toBe('{"error":{"message":"bad beta header","type":"invalid_request_error"}}');
    expect(r.headers['x-upstream']).toBe('yes');
    expect(r.headers['content-type']).toBe('application/json');
    expect(u.handshakes).toHaveLength(1);
    await waitAllClosed(p);
  });

  it('streams text and binary frames both ways, one message staying one message', async () => {
    const { u, p, ws } = await setup();
    const c = mustOpen(await openWs(`${ws}/v1/echo`));
    await waitFor(() => u.sessions.length === 1);
    const s = u.sessions[0]!;
    const bin = Buffer.from([0, 1, 2, 0xff, 0xfe]);
    c.ws.send('héllo ✓');
    c.ws.send(bin);
    c.ws.send(Buffer.alloc(0));
    // Sent in two fragments: the upstream receives one message.
    c.ws.send('frag-', { fin: false });
    c.ws.send('ment', { fin: true });
    c.ws.send(Buffer.alloc(200_000, 7));
    await waitFor(() => s.received.length === 5);
    expect(s.received.map((m) => [m.isBinary, m.data.length])).toEqual([
      [false, Buffer.byteLength('héllo ✓')],
      [true, 5],
      [true, 0],
      [false, 9],
      [true, 200_000],
    ]);
    expect(s.received[0]!.data.toString('utf8')).toBe('héllo ✓');
    expect(s.received[1]!.data.equals(bin)).toBe(true);
    expect(s.received[3]!.data.toString()).toBe('frag-ment');
    // The echo comes back the same way, and the upstream can send on its own.
    s.send(Buffer.from([9, 8, 7]), true);
    s.send('from upstream', false);
    await waitFor(() => c.messages.length === 7);
    expect(c.messages.map((m) => m.isBinary)).toEqual([false, true, true, false, true, true, false]);
    expect(c.messages[5]!.data.equals(Buffer.from([9, 8, 7]))).toBe(true);
    expect(c.messages[6]!.data.toString()).toBe('from upstream');
    c.ws.close();
    await waitAllClosed(p);
  });

  it('relays pings and pongs end to end', async () => {
    const { u, p, ws } = await setup();
    const c = mustOpen(await openWs(`${ws}/v1/echo`));
    await waitFor(() => u.sessions.length === 1);
    const s = u.sessions[0]!;
    const pongs: string[] = [];
    c.ws.on('pong', (d: Buffer) => pongs.push(d.toString()));
    c.ws.ping('client-ping');
    // The upstream saw the client's ping, and its own pong came back.
    await waitFor(() => pongs.length === 1);
    expect(s.pings.map((b) => b.toString())).toEqual(['client-ping']);
    expect(pongs).toEqual(['client-ping']);
    const pings: string[] = [];
    c.ws.on('ping', (d: Buffer) => pings.push(d.toString()));
    s.ping(Buffer.from('upstream-ping'));
    await waitFor(() => s.pongs.length === 1);
    expect(pings).toEqual(['upstream-ping']);
    expect(s.pongs[0]!.toString()).toBe('upstream-ping');
    c.ws.close();
    await waitAllClosed(p);
  });

  it('a close on either side closes the other with the same code and reason', async () => {
    const { u, p, ws } = await setup();
    const a = mustOpen(await openWs(`${ws}/v1/echo`));
    await waitFor(() => u.sessions.length === 1);
    a.ws.close(4001, 'client bye');
    await waitFor(() => u.sessions[0]!.closed !== undefined);
    expect(u.sessions[0]!.closed).toEqual({ code: 4001, reason: 'client bye' });
    expect(await a.closed).toEqual({ code: 4001, reason: 'client bye' });

    const b = mustOpen(await openWs(`${ws}/v1/echo`));
    await waitFor(() => u.sessions.length === 2);
    u.sessions[1]!.close(4002, 'upstream done');
    expect(await b.closed).toEqual({ code: 4002, reason: 'upstream done' });
    expect(u.sessions[1]!.closed).toEqual({ code: 4002, reason: 'upstream done' });

    // Dropped without a close frame: the client is told it was the upstream (1014, bad gateway)...
    const c = mustOpen(await openWs(`${ws}/v1/echo`));
    await waitFor(() => u.sessions.length === 3);
    u.sessions[2]!.terminate();
    expect((await c.closed).code).toBe(1014);
    // ...and the upstream that a client went away (1001).
    const d = mustOpen(await openWs(`${ws}/v1/echo`));
    await waitFor(() => u.sessions.length === 4);
    d.ws.terminate();
    await waitFor(() => u.sessions[3]!.closed !== undefined);
    expect(u.sessions[3]!.closed?.code).toBe(1001);
    await waitAllClosed(p);
    const closes = p.logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'websocket').map((l) => [l.closedBy, l.closeCode]);
    expect(closes).toEqual([
      ['client', 4001],
      ['upstream', 4002],
      ['upstream', 1006],
      ['client', 1006],
    ]);
  });

  it('a message over the size limit closes the session with 1009 and never reaches the upstream', async () => {
    const { u, p, ws } = await setup();
    const { MAX_MESSAGE_BYTES } = await import('../../src/proxy/websocket-proxy.js');
    const c = mustOpen(await openWs(`${ws}/v1/echo`));
    await waitFor(() => u.sessions.length === 1);
    c.ws.send(Buffer.alloc(MAX_MESSAGE_BYTES + 1));
    expect((await c.closed).code).toBe(1009);
    await waitFor(() => u.sessions[0]!.closed !== undefined);
    expect(u.sessions[0]!.received).toHaveLength(0);
    await waitAllClosed(p);
  });

  it('shutdown closes open sessions with 1001 and refuses new upgrades with 503', async () => {
    const { u, p, ws } = await setup();
    const c = mustOpen(await openWs(`${ws}/v1/echo`));
    await waitFor(() => u.sessions.length === 1);
    expect(p.app.websockets.closeAll('is shutting down')).toBe(1);
    expect(await c.closed).toEqual({ code: 1001, reason: 'keypool is shutting down' });
    await waitFor(() => u.sessions[0]!.closed !== undefined);
    expect(u.sessions[0]!.closed).toEqual({ code: 1001, reason: 'keypool is shutting down' });
    const r = mustRefuse(await openWs(`${ws}/v1/echo`));
    expect(r.status).toBe(503);
    expect(JSON.parse(r.body)).toMatchObject({ error: { code: 'keypool_shutting_down' } });
    await waitAllClosed(p);
  });

  it('closing the app with a session open does not wait for the session to end', async () => {
    const { u, p, ws } = await setup();
    const c = mustOpen(await openWs(`${ws}/v1/echo`));
    await waitFor(() => u.sessions.length === 1);
    await p.app.close();
    expect((await c.closed).code).toBe(1001);
    await waitFor(() => u.sessions[0]!.closed?.code === 1001 && p.pool.states().every((s) => s.inflight === 0));
  });
});
