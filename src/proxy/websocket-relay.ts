// One WebSocket session between a client and the upstream, once both handshakes are done: every message
// goes on as the same message (text stays text, binary stays binary, one message stays one), pings and
// pongs are relayed end to end, and a close on either side closes the other (websocket-close.ts).
// Backpressure both ways: bytes sent to one side and not yet flushed to its socket are counted, and past
// a high-water mark the other side's socket is paused until they drain, so a slow reader holds its
// sender back through TCP instead of growing keypool's memory. The key never changes mid-session.
import WebSocket from 'ws';
import { closeForOther, scrubReason, type Side } from './websocket-close.js';

/** Bytes waiting to be flushed to one side past which the other side is paused. */
export const HIGH_WATER_BYTES = 1024 * 1024;
/** The paused side resumes once the waiting bytes are down to this. */
export const LOW_WATER_BYTES = 256 * 1024;

/** One direction's counts, for the log line and the admin view. */
export interface FlowStats {
  readonly messages: number;
  readonly bytes: number;
  /** Bytes handed to the receiving socket and not yet flushed. */
  readonly pending: number;
  /** The most that ever waited at once: what backpressure bounds. */
  readonly peakPending: number;
  /** How often the sending side was paused for it. */
  readonly pauses: number;
  /** True while the sending side is paused. */
  readonly paused: boolean;
}

export interface RelayEnd {
  /** Who closed first: a side, or keypool (shutdown). */
  readonly closedBy: Side | 'keypool';
  /** The first close as it was received (1006: a connection that dropped without a close frame). */
  readonly code: number;
  readonly reason: string;
  readonly toClient: FlowStats;
  readonly toUpstream: FlowStats;
}

export interface RelayOptions {
  readonly highWaterBytes: number;
  readonly lowWaterBytes: number;
  /** Removes secrets from the upstream's close reason before the client sees it. */
  readonly scrub: (text: string) => string;
  /** Told of every message passed on (usage counting); must not throw or keep the data. */
  readonly onMessage?: (to: Side, data: Buffer, isBinary: boolean) => void;
  /** Socket errors, for a debug line (ws closes the connection after one by itself). */
  readonly onError?: (side: Side, err: Error) => void;
}

/** One direction: messages from `from` go to `to`, and `from` is paused while `to` is behind. */
class Flow {
  messages = 0;
  bytes = 0;
  pending = 0;
  peakPending = 0;
  pauses = 0;
  paused = false;

  constructor(
    readonly from: WebSocket,
    readonly to: WebSocket,
    readonly options: RelayOptions,
  ) {}

  pass(data: Buffer, isBinary: boolean): void {
    this.messages++;
    this.bytes += data.length;
    // The receiving side is closing: nothing can reach it any more.
    if (this.to.readyState !== WebSocket.OPEN) return;
    const size = data.length;
    this.pending += size;
    if (this.pending > this.peakPending) this.peakPending = this.pending;
    this.to.send(data, { binary: isBinary }, () => {
      this.pending -= size;
      if (this.paused && this.pending <= this.options.lowWaterBytes) this.resume();
    });
    if (!this.paused && this.pending >= this.options.highWaterBytes) {
      this.paused = true;
      this.pauses++;
      this.from.pause();
    }
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.from.resume();
  }

  stats(): FlowStats {
    const { messages, bytes, pending, peakPending, pauses, paused } = this;
    return { messages, bytes, pending, peakPending, pauses, paused };
  }
}

export class Relay {
  readonly ended: Promise<RelayEnd>;
  readonly #client: WebSocket;
  readonly #upstream: WebSocket;
  readonly #toClient: Flow;
  readonly #toUpstream: Flow;
  readonly #options: RelayOptions;
  #first: { by: Side | 'keypool'; code: number; reason: string } | undefined;
  #open = 2;
  #settle!: (end: RelayEnd) => void;

  /** `upstream` arrives paused (websocket-handshake.ts); it is resumed once every listener is on. */
  constructor(client: WebSocket, upstream: WebSocket, options: RelayOptions) {
    this.ended = new Promise((resolve) => (this.#settle = resolve));
    this.#client = client;
    this.#upstream = upstream;
    this.#options = options;
    this.#toClient = new Flow(upstream, client, options);
    this.#toUpstream = new Flow(client, upstream, options);
    this.#wire('client', client, upstream, this.#toUpstream, this.#toClient);
    this.#wire('upstream', upstream, client, this.#toClient, this.#toUpstream);
    upstream.resume();
  }

  /** For a side that closed before its listeners were on (its 'close' is not emitted again): as if it dropped. */
  #closedAlready(ws: WebSocket, onClose: (code: number, reason: Buffer) => void): boolean {
    if (ws.readyState !== WebSocket.CLOSED) return false;
    queueMicrotask(() => onClose(1006, Buffer.alloc(0)));
    return true;
  }

  get toClient(): FlowStats {
    return this.#toClient.stats();
  }

  get toUpstream(): FlowStats {
    return this.#toUpstream.stats();
  }

  /** keypool ends the session (shutdown): both sides get the same close frame. */
  close(code: number, reason: string): void {
    this.#first ??= { by: 'keypool', code, reason };
    this.#toClient.resume();
    this.#toUpstream.resume();
    for (const ws of [this.#client, this.#upstream]) {
      if (ws.readyState === WebSocket.OPEN) ws.close(code, reason);
    }
  }

  /** `side`'s socket: its messages go out through `out`; `back` carries the other way and is resumed when it closes. */
  #wire(side: Side, ws: WebSocket, other: WebSocket, out: Flow, back: Flow): void {
    const { onMessage, onError } = this.#options;
    const to: Side = side === 'client' ? 'upstream' : 'client';
    ws.on('message', (data, isBinary) => {
      const bytes = asBuffer(data);
      onMessage?.(to, bytes, isBinary);
      out.pass(bytes, isBinary);
    });
    ws.on('ping', (data) => {
      if (other.readyState === WebSocket.OPEN) other.ping(data);
    });
    ws.on('pong', (data) => {
      if (other.readyState === WebSocket.OPEN) other.pong(data);
    });
    ws.on('error', (err) => onError?.(side, err));
    const onClose = (code: number, reason: Buffer): void => {
      this.#first ??= { by: side, code, reason: this.#options.scrub(reason.toString('utf8')) };
      // The other side may be paused behind this one: it must read again to finish its own close.
      back.resume();
      out.resume();
      if (other.readyState === WebSocket.OPEN) {
        const frame = closeForOther(side, code, side === 'upstream' ? scrubReason(reason, this.#options.scrub) : reason);
        other.close(frame.code, frame.reason);
      } else if (other.readyState === WebSocket.CONNECTING) {
        other.terminate();
      }
      if (--this.#open === 0) this.#finish();
    };
    if (!this.#closedAlready(ws, onClose)) ws.once('close', onClose);
  }

  #finish(): void {
    const first = this.#first ?? { by: 'keypool' as const, code: 1006, reason: '' };
    this.#settle({ closedBy: first.by, code: first.code, reason: first.reason, toClient: this.toClient, toUpstream: this.toUpstream });
  }
}

function asBuffer(data: WebSocket.RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}
