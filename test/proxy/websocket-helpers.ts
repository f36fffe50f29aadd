// Shared pieces of the WebSocket tests: a client that reports a refused handshake as data, message
// collection, a raw-socket handshake, and counts of what is still open.
import type { IncomingHttpHeaders } from 'node:http';
import { connect as netConnect, type Socket } from 'node:net';
import WebSocket from 'ws';
import type { TestProxy } from '../helpers/proxy.js';
import { waitFor } from '../helpers/wait.js';

export type Opened =
  | { readonly kind: 'open'; readonly ws: WebSocket; readonly headers: IncomingHttpHeaders; readonly messages: Message[]; readonly closed: Promise<Closed> }
  | { readonly kind: 'refused'; readonly status: number; readonly headers: IncomingHttpHeaders; readonly body: string };

export interface Message {
  readonly data: Buffer;
  readonly isBinary: boolean;
}

export interface Closed {
  readonly code: number;
  readonly reason: string;
}

/** Opens a WebSocket to `url`; a non-101 answer resolves as `refused` with its status, headers and body. */
/** `keepData: false` keeps only each message's first 8 bytes (floods). */
export function openWs(url: string, options: { headers?: Record<string, string>; protocols?: string[]; pauseOnOpen?: boolean; keepData?: boolean } = {}): Promise<Opened> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, options.protocols ?? [], { headers: options.headers, perMessageDeflate: false });
    const messages: Message[] = [];
    let headers: IncomingHttpHeaders = {};
    const closed = new Promise<Closed>((r) => ws.once('close', (code, reason) => r({ code, reason: reason.toString('utf8') })));
    const keep = options.keepData ?? true;
    ws.on('message', (data, isBinary) => {
      const b = data as Buffer;
      messages.push({ data: keep ? b : Buffer.from(b.subarray(0, 8)), isBinary });
    });
    ws.on('upgrade', (res) => (headers = res.headers));
    ws.once('open', () => {
      if (options.pauseOnOpen === true) ws.pause();
      resolve({ kind: 'open', ws, headers, messages, closed });
    });
    ws.on('unexpected-response', (_req, res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        resolve({ kind: 'refused', status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') });
        ws.terminate();
      });
    });
    ws.on('error', (err) => reject(err));
  });
}

export function mustOpen(o: Opened): Extract<Opened, { kind: 'open' }> {
  if (o.kind !== 'open') throw new Error(`expected 101, got ${o.status}: ${o.body}`);
  return o;
}

export function mustRefuse(o: Opened): Extract<Opened, { kind: 'refused' }> {
  if (o.kind !== 'refused') {
    o.ws.terminate();
    throw new Error('expected the handshake to be refused');
  }
  return o;
}

/** JSON events received so far. */
export function events(messages: readonly Message[]): { type: string; [k: string]: unknown }[] {
  return messages.filter((m) => !m.isBinary).map((m) => JSON.parse(m.data.toString('utf8')) as { type: string });
}

/** Waits until an event of `type` arrived. */
export async function waitForEvent(messages: readonly Message[], type: string): Promise<void> {
  await waitFor(() => events(messages).some((e) => e.type === type));
}

export const HANDSHAKE = (path: string, extra = ''): string =>
  `GET ${path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`;

/** A raw TCP client: what keypool writes back, byte for byte, and whether it closed the socket. */
export async function rawSocket(url: string): Promise<{ socket: Socket; received: () => string; ended: Promise<void> }> {
  const { hostname, port } = new URL(url);
  const socket = netConnect(Number(port), hostname);
  await new Promise<void>((r, j) => socket.once('connect', r).once('error', j));
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  socket.on('error', () => {});
  const ended = new Promise<void>((r) => socket.once('close', () => r()));
  return { socket, received: () => Buffer.concat(chunks).toString('latin1'), ended };
}

/** TCP connections keypool's server holds now (upgraded ones included). */
export function serverConnections(p: TestProxy): Promise<number> {
  return new Promise((resolve, reject) => p.app.server.getConnections((err, n) => (err ? reject(err) : resolve(n))));
}

/** Everything settled: no lease, no handshake, no session, no socket on keypool's side. */
export async function waitAllClosed(p: TestProxy): Promise<void> {
  await waitFor(async () => p.pool.states().every((s) => s.inflight === 0) && p.app.websockets.handshaking === 0 && p.app.websockets.sessions().length === 0 && (await serverConnections(p)) === 0);
}
