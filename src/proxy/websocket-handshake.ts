// One WebSocket handshake with the upstream, made with one key before the client's handshake is
// answered: it opens (the socket is handed over paused, so no early message is lost), is answered with
// an HTTP status (429, 401... whose head and a bounded body the retry policy reads), or fails (no
// connection, a broken answer, the handshake timeout). Bounded in time by the injected Clock.
import type { IncomingHttpHeaders } from 'node:http';
import WebSocket from 'ws';
import type { Clock } from '../clock.js';

/** How long a closing handshake keypool started may take before the socket is destroyed (ws's default is 30 s). */
export const CLOSE_TIMEOUT_MS = 10_000;

/** Errors that mean no TCP/TLS connection was made: nothing reached the upstream. */
const CONNECT_ERRORS = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNABORTED']);

/** ws 8.23 takes `closeTimeout` (client and server); @types/ws 8.18 does not list it yet. */
export interface CloseTimeout {
  readonly closeTimeout: number;
}

export interface HandshakeRequest {
  /** http(s):// or ws(s):// URL of the upstream endpoint, query included. */
  readonly url: string;
  /** Headers for the upstream, the key already in them. */
  readonly headers: Readonly<Record<string, string | string[]>>;
  readonly protocols: readonly string[];
  /** Longest time from the request to the upgrade (or the answer's head). */
  readonly timeoutMs: number;
  /** Largest message either side may send on the session (ws closes with 1009 past it). */
  readonly maxMessageBytes: number;
}

export type HandshakeResult =
  /** 101: `socket` is open and paused; the caller resumes it once its listeners are on. */
  | { readonly kind: 'open'; readonly socket: WebSocket; readonly headers: IncomingHttpHeaders }
  /** The upstream answered with a status instead. Reading the body ends the attempt (or cancel()). */
  | {
      readonly kind: 'answered';
      readonly status: number;
      readonly headers: IncomingHttpHeaders;
      /** At most `limit` raw bytes of the body, or what arrived within `timeoutMs`; then the connection is closed. */
      readonly read: (limit: number, timeoutMs: number) => Promise<Buffer>;
    }
  | { readonly kind: 'failed'; readonly phase: 'connect' | 'sent'; readonly timedOut: boolean; readonly error: Error };

export class UpstreamHandshake {
  readonly result: Promise<HandshakeResult>;
  readonly #ws: WebSocket;
  #settle!: (r: HandshakeResult) => void;
  #settled = false;
  #timedOut = false;
  #connected = false;
  readonly #cancelTimer: () => void;

  constructor(req: HandshakeRequest, clock: Clock) {
    this.result = new Promise((resolve) => (this.#settle = resolve));
    let upgradeHeaders: IncomingHttpHeaders = {};
    const options: WebSocket.ClientOptions & CloseTimeout = {
      headers: flatten(req.headers),
      // Both hops stay uncompressed: no zlib contexts per session, and what one side sends is what the other gets.
      perMessageDeflate: false,
      // Pings and pongs are relayed end to end (websocket-relay.ts), not answered here.
      autoPong: false,
      followRedirects: false,
      maxPayload: req.maxMessageBytes,
      closeTimeout: CLOSE_TIMEOUT_MS,
      finishRequest: (request) => {
        request.once('socket', (s) => {
          if (!s.connecting) this.#connected = true;
          else s.once('connect', () => (this.#connected = true));
        });
        request.end();
      },
    };
    this.#ws = new WebSocket(req.url, [...req.protocols], options);
    this.#cancelTimer = req.timeoutMs > 0 ? clock.timer(req.timeoutMs, () => this.#timeout()) : () => {};
    const ws = this.#ws;
    ws.on('upgrade', (res) => (upgradeHeaders = res.headers));
    ws.once('open', () => {
      ws.pause();
      this.#finish({ kind: 'open', socket: ws, headers: upgradeHeaders });
    });
    ws.on('unexpected-response', (_request, res) => {
      this.#finish({
        kind: 'answered',
        status: res.statusCode ?? 502,
        headers: res.headers,
        read: (limit, timeoutMs) => readBounded(res, limit, timeoutMs, clock).finally(() => ws.terminate()),
      });
    });
    // An error listener is always on: ws emits one for every failure, before and after the handshake.
    ws.on('error', (error) => {
      if (this.#settled) return;
      const code = (error as { code?: unknown }).code;
      const phase = !this.#connected || (typeof code === 'string' && CONNECT_ERRORS.has(code)) ? 'connect' : 'sent';
      this.#finish({ kind: 'failed', phase, timedOut: this.#timedOut, error });
    });
  }

  /** Gives up on the handshake (the client left, shutdown): the connection is closed, whatever its state. */
  cancel(): void {
    // Before or after the result: an open socket nobody took over, or an answer whose body is being read.
    if (this.#ws.readyState !== WebSocket.CLOSED) this.#ws.terminate();
  }

  #timeout(): void {
    if (this.#settled) return;
    this.#timedOut = true;
    this.#ws.terminate();
  }

  #finish(r: HandshakeResult): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#cancelTimer();
    this.#settle(r);
  }
}

function readBounded(res: NodeJS.ReadableStream & { destroy(): void }, limit: number, timeoutMs: number, clock: Clock): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (): void => {
      cancel();
      res.removeListener('data', onData);
      res.removeListener('end', done);
      res.removeListener('error', done);
      res.removeListener('close', done);
      resolve(Buffer.concat(chunks, Math.min(size, limit)));
    };
    const onData = (c: Buffer): void => {
      if (size < limit) chunks.push(c.subarray(0, limit - size));
      size += c.length;
      if (size >= limit) done();
    };
    const cancel = clock.timer(timeoutMs, done);
    res.on('data', onData);
    res.once('end', done);
    res.once('error', done);
    res.once('close', done);
  });
}

/** ws takes one string per header; node:http joins a request's repeated headers with ", " anyway. */
function flatten(headers: Readonly<Record<string, string | string[]>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) out[name] = typeof value === 'string' ? value : value.join(', ');
  return out;
}
