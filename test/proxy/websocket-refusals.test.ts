// Upgrades keypool will not carry out, on raw sockets (a WebSocket client would refuse to send most of
// them): outside every prefix, keypool's own paths, other protocols, malformed handshakes. Each gets an
// OpenAI-shaped HTTP error and its socket closed, and no key is used. Plus the client-token hook, which
// runs before anything else.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/clock.js';
import { loadConfigObject } from '../../src/config/load.js';
import { KeypoolError } from '../../src/errors.js';
import { startWsFakeUpstream, type WsFakeUpstream } from '../../src/fake-upstream/ws-server.js';
import { KeyPool } from '../../src/keys/pool.js';
import { createLogger } from '../../src/logger.js';
import { createWebSocketProxy, type Authenticate } from '../../src/proxy/websocket-proxy.js';
import { startProxy, type TestProxy } from '../helpers/proxy.js';
import { waitFor } from '../helpers/wait.js';
import { HANDSHAKE, mustOpen, mustRefuse, openWs, rawSocket, waitAllClosed } from './websocket-helpers.js';

const KEYS = ['sk-refuse-key-one-aaaaaaaa', 'sk-refuse-key-two-bbbbbbbb'];

const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (closers.length > 0) await closers.pop()!();
});

async function setup(): Promise<{ u: WsFakeUpstream; p: TestProxy }> {
  const u = await startWsFakeUpstream();
  closers.push(() => u.close());
  const p = await startProxy({ upstreamUrl: u.url, keys: KEYS });
  closers.push(() => p.close());
  return { u, p };
}

/** Sends `request` on a raw socket; resolves with the status, the JSON error code and whether keypool closed. */
async function rawUpgrade(url: string, request: string): Promise<{ status: number; code: string | undefined; head: string }> {
  const raw = await rawSocket(url);
  raw.socket.write(request);
  await raw.ended;
  const text = raw.received();
  const [head = '', body = ''] = text.split('\r\n\r\n');
  const status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(head)?.[1] ?? 0);
  let code: string | undefined;
  try {
    code = (JSON.parse(body) as { error: { code: string } }).error.code;
  } catch {
    code = undefined;
  }
  return { status, code, head };
}

describe('refused upgrades', () => {
  it.each([
    ['a path under no prefix', HANDSHAKE('/v2/responses'), 404, 'keypool_route_not_found'],
    ["keypool's own path", HANDSHAKE('/healthz'), 404, 'keypool_route_not_found'],
    ['an upgrade to another protocol', 'GET /v1/responses HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n', 400, 'keypool_invalid_request'],
    ['another protocol with a WebSocket key', HANDSHAKE('/v1/responses').replace('Upgrade: websocket', 'Upgrade: h2c'), 400, 'keypool_invalid_request'],
    ['a POST upgrade', HANDSHAKE('/v1/responses').replace('GET', 'POST'), 400, 'keypool_invalid_request'],
    ['a missing Sec-WebSocket-Key', HANDSHAKE('/v1/responses').replace(/Sec-WebSocket-Key: [^\r]+\r\n/, ''), 400, 'keypool_invalid_request'],
    ['a malformed Sec-WebSocket-Key', HANDSHAKE('/v1/responses').replace('dGhlIHNhbXBsZSBub25jZQ==', 'short'), 400, 'keypool_invalid_request'],
    ['an old protocol version', HANDSHAKE('/v1/responses').replace('Version: 13', 'Version: 8'), 426, 'keypool_invalid_request'],
    ['a malformed subprotocol list', HANDSHAKE('/v1/responses', 'Sec-WebSocket-Protocol: realtime,,x\r\n'), 400, 'keypool_invalid_request'],
    ['a duplicated subprotocol', HANDSHAKE('/v1/responses', 'Sec-WebSocket-Protocol: realtime, realtime\r\n'), 400, 'keypool_invalid_request'],
  ])('%s: %i, socket closed, no key used', async (_name, request, status, code) => {
    const { u, p } = await setup();
    const r = await rawUpgrade(p.url, request);
    expect(r.status).toBe(status);
    expect(r.code).toBe(code);
    expect(r.head).toMatch(/\r\nconnection: close/i);
    if (status === 426) expect(r.head).toMatch(/\r\nsec-websocket-version: 13/);
    expect(u.handshakes).toHaveLength(0);
    expect(p.pool.states().every((s) => s.stats.attempts === 0)).toBe(true);
    await waitAllClosed(p);
  });

  it('plain HTTP requests on the same routes still work beside WebSockets', async () => {
    const { p } = await setup();
    const res = await fetch(`${p.url}/healthz`);
    expect(res.status).toBe(200);
  });
});

describe('client-token hook', () => {
  async function direct(authenticate: Authenticate): Promise<{ url: string; u: WsFakeUpstream; pool: KeyPool; logs: string[] }> {
    const u = await startWsFakeUpstream();
    closers.push(() => u.close());
    const { config } = loadConfigObject({ upstreams: [{ name: 'openai', baseUrl: `${u.url}/v1`, keys: KEYS }] }, {});
    const upstream = config.upstreams[0]!;
    const pool = new KeyPool('openai', upstream.keys);
    const logs: string[] = [];
    const logger = createLogger('info', { write: (l: string) => void logs.push(l) });
    const proxy = createWebSocketProxy({ config, pools: new Map([['openai', pool]]), route: (url) => (url.startsWith('/v1') ? { upstream, group: [upstream] } : undefined), clock: systemClock, random: () => 0.5, logger, authenticate });
    const server: Server = createServer((_q, s) => s.end()).on('upgrade', proxy.upgrade);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    closers.push(async () => {
      proxy.closeAll('test over');
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    });
    return { url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}`, u, pool, logs };
  }

  it('a refused token gets 401 with an OpenAI-shaped body before any key is used; an accepted one names the client', async () => {
    const seen: (string | undefined)[] = [];
    const { url, u, pool, logs } = await direct((headers, remote) => {
      seen.push(remote);
      return headers.authorization === 'Bearer kp-good-token'
        ? { ok: true, client: 'team-a' }
        : { ok: false, error: new KeypoolError('keypool_invalid_request', 'Missing or unknown keypool client token.', { status: 401 }) };
    });
    const r = mustRefuse(await openWs(`${url}/v1/responses`, { headers: { authorization: 'Bearer kp-wrong' } }));
    expect(r.status).toBe(401);
    expect(JSON.parse(r.body)).toEqual({ error: { message: 'Missing or unknown keypool client token.', type: 'invalid_request_error', param: null, code: 'keypool_invalid_request' } });
    expect(u.handshakes).toHaveLength(0);
    // Checked before the route: an unknown path is not even revealed.
    expect(mustRefuse(await openWs(`${url}/nope`)).status).toBe(401);

    const c = mustOpen(await openWs(`${url}/v1/responses`, { headers: { authorization: 'Bearer kp-good-token' } }));
    expect(u.handshakes[0]!.key).toBe(KEYS[0]);
    expect(JSON.stringify(u.handshakes[0]!.headers)).not.toContain('kp-good-token');
    c.ws.close();
    await c.closed;
    expect(seen.every((a) => a === '127.0.0.1')).toBe(true);
    await waitFor(() => pool.states().every((s) => s.inflight === 0) && logs.some((l) => l.includes('"status":101')));
    expect(logs.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.status === 101)).toMatchObject({ client: 'team-a' });
  });
});
