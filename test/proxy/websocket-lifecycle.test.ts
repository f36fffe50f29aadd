// WebSocket sessions at their worst moments: a client that leaves mid-handshake or mid-session, a
// handshake that never answers, a client that reads slowly while the upstream floods it (and the
// reverse), bytes sent before the handshake was answered. Nothing may stay behind: no lease, no socket,
// no upstream connection; and memory stays bounded by backpressure, not by the size of the flood.
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startWsFakeUpstream, type WsFakeUpstream } from '../../src/fake-upstream/ws-server.js';
import { HANDSHAKE_TIMEOUT_MS } from '../../src/proxy/websocket-proxy.js';
import { HIGH_WATER_BYTES } from '../../src/proxy/websocket-relay.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { startProxy, type TestProxy } from '../helpers/proxy.js';
import { waitFor } from '../helpers/wait.js';
import { HANDSHAKE, mustOpen, openWs, rawSocket, waitAllClosed } from './websocket-helpers.js';

const KEYS = ['sk-life-key-one-aaaaaaaaaa', 'sk-life-key-two-bbbbbbbbbb'];
/** Floods (32 MiB) are larger than every socket buffer on the way together (about 11 MiB measured here). */
const FLOOD_COUNT = 512;
const FLOOD_BYTES = 64 * 1024;
/** What backpressure allows to wait in keypool for one side: the mark, one message, one socket read. */
const BOUND = HIGH_WATER_BYTES + FLOOD_BYTES + 64 * 1024;

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

function logLines(p: TestProxy): Record<string, unknown>[] {
  return p.logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'websocket');
}

describe('WebSocket lifecycle', () => {
  it('a client that leaves mid-handshake leaves no lease, no socket and no upstream connection', async () => {
    const { u, p } = await setup();
    u.setDefault(KEYS[0]!, { kind: 'hang' });
    const raw = await rawSocket(p.url);
    raw.socket.write(HANDSHAKE('/v1/responses', `Authorization: Bearer sk-client-token-xxxxxxxx\r\n`));
    await waitFor(() => u.handshakes.length === 1 && p.app.websockets.handshaking === 1);
    expect(p.pool.states()[0]!.inflight).toBe(1);
    raw.socket.destroy();
    await waitAllClosed(p);
    await waitFor(() => u.connections === 0);
    expect(u.sessions).toHaveLength(0);
    expect(logLines(p)[0]).toMatchObject({ status: 499, cut: 'client_closed', attempts: 1 });
  });

  it('a client that half-closes mid-handshake is treated as gone', async () => {
    const { u, p } = await setup();
    u.setDefault(KEYS[0]!, { kind: 'hang' });
    const raw = await rawSocket(p.url);
    raw.socket.write(HANDSHAKE('/v1/responses'));
    await waitFor(() => u.handshakes.length === 1);
    raw.socket.end();
    await raw.ended;
    await waitAllClosed(p);
    await waitFor(() => u.connections === 0);
  });

  it('a client that leaves mid-session closes the upstream session and frees the key', async () => {
    const { u, p, ws } = await setup();
    const c = mustOpen(await openWs(`${ws}/v1/responses`));
    await waitFor(() => u.sessions.length === 1);
    expect(p.pool.states()[0]!.inflight).toBe(1);
    c.ws.terminate();
    await waitFor(() => u.sessions[0]!.closed !== undefined);
    expect(u.sessions[0]!.closed?.code).toBe(1001);
    await waitAllClosed(p);
    await waitFor(() => u.connections === 0);
  });

  it('an upstream handshake that never answers times out (Clock) and the next key serves', async () => {
    const clock = new FakeClock();
    const { u, p, ws } = await setup({ clock, retry: { backoffBaseMs: 0 } });
    u.setDefault(KEYS[0]!, { kind: 'hang' });
    const opening = openWs(`${ws}/v1/responses`);
    await waitFor(() => u.handshakes.length === 1);
    clock.advance(HANDSHAKE_TIMEOUT_MS - 1);
    expect(u.handshakes).toHaveLength(1);
    clock.advance(1);
    const c = mustOpen(await opening);
    expect(c.headers['x-keypool-key']).toBe('openai-2');
    // The hung connection was closed by keypool; a timeout is not the key's fault.
    await waitFor(() => u.connections === 1);
    expect(p.pool.states()[0]!.disabled).toBeUndefined();
    c.ws.close();
    await waitAllClosed(p);
    expect(logLines(p)[0]).toMatchObject({ tried: ['openai-1:handshake_timeout:retry', 'openai-2:101:deliver'], retries: 1 });
  });

  it('bytes a client sends before its handshake is answered reach the upstream once the session opens', async () => {
    const { u, p } = await setup();
    u.setDefault(KEYS[0]!, { kind: 'accept', delayMs: 300 });
    const raw = await rawSocket(p.url);
    // A masked text frame "early" (RFC 6455 §5.3), sent while keypool waits for the upstream's 101.
    const mask = Buffer.from([1, 2, 3, 4]);
    const payload = Buffer.from('early').map((b, i) => b ^ mask[i % 4]!);
    raw.socket.write(HANDSHAKE('/v1/echo'));
    await waitFor(() => u.handshakes.length === 1);
    raw.socket.write(Buffer.concat([Buffer.from([0x81, 0x80 | 5]), mask, payload]));
    await waitFor(() => u.sessions.length === 1 && u.sessions[0]!.received.length === 1);
    expect(u.sessions[0]!.received[0]!.data.toString()).toBe('early');
    expect(raw.received()).toMatch(/^HTTP\/1\.1 101 /);
    raw.socket.destroy();
    await waitAllClosed(p);
  });

  it('a slow client holds a flooding upstream back: what waits in keypool stays bounded, nothing is lost', async () => {
    const { u, p, ws } = await setup();
    const c = mustOpen(await openWs(`${ws}/v1/echo`, { pauseOnOpen: true, keepData: false }));
    await waitFor(() => u.sessions.length === 1);
    const s = u.sessions[0]!;
    c.ws.send(JSON.stringify({ type: 'fake.flood', count: FLOOD_COUNT, bytes: FLOOD_BYTES, binary: true }));
    const view = () => p.app.websockets.sessions()[0]!;
    // Stalled: keypool paused the upstream and the upstream's own socket is full. Or (broken) it all went through.
    await waitFor(() => s.flood !== undefined && (s.flood.sent === FLOOD_COUNT || (s.flood.blocked && view().toClient.paused)), 15_000);
    expect(view().toClient.paused).toBe(true);
    expect(s.flood!.sent).toBeLessThan(FLOOD_COUNT);
    expect(view().toClient.peakPending).toBeLessThanOrEqual(BOUND);

    c.ws.resume();
    await waitFor(() => c.messages.length === FLOOD_COUNT, 30_000);
    expect(c.messages.every((m, i) => m.isBinary && m.data.readUInt32BE(0) === i)).toBe(true);
    expect(view().toClient.peakPending).toBeLessThanOrEqual(BOUND);
    expect(view().toClient.pauses).toBeGreaterThan(0);
    c.ws.close();
    await waitAllClosed(p);
  });

  it('a slow upstream holds a flooding client back the same way', async () => {
    const { u, p, ws } = await setup();
    const c = mustOpen(await openWs(`${ws}/v1/echo`, { keepData: false }));
    await waitFor(() => u.sessions.length === 1);
    const s = u.sessions[0]!;
    s.pause();
    // The client sends as fast as its own socket takes it, waiting while 1 MiB is unflushed.
    let sent = 0;
    let pending = 0;
    let blocked = false;
    const pump = (): void => {
      while (sent < FLOOD_COUNT && c.ws.readyState === WebSocket.OPEN) {
        if (pending >= 1024 * 1024) {
          blocked = true;
          return;
        }
        const msg = Buffer.alloc(FLOOD_BYTES, 0x62);
        msg.writeUInt32BE(sent, 0);
        pending += msg.length;
        sent++;
        c.ws.send(msg, { binary: true }, () => {
          pending -= msg.length;
          if (blocked && pending <= 512 * 1024) {
            blocked = false;
            setImmediate(pump);
          }
        });
      }
    };
    pump();
    const view = () => p.app.websockets.sessions()[0]!;
    await waitFor(() => sent === FLOOD_COUNT || (blocked && view().toUpstream.paused), 15_000);
    expect(view().toUpstream.paused).toBe(true);
    expect(sent).toBeLessThan(FLOOD_COUNT);
    expect(view().toUpstream.peakPending).toBeLessThanOrEqual(BOUND);

    s.resume();
    await waitFor(() => s.received.length === FLOOD_COUNT, 30_000);
    expect(s.received.every((m, i) => m.isBinary && m.data.readUInt32BE(0) === i)).toBe(true);
    expect(view().toUpstream.peakPending).toBeLessThanOrEqual(BOUND);
    c.ws.close();
    await waitAllClosed(p);
  });
});
