// The client's socket while its handshake waits on the upstream's: whatever it sends meanwhile is kept
// (it is the session's first bytes) up to a bound past which the socket is closed, and its leaving
// aborts the upstream handshake.
import type { Duplex } from 'node:stream';
import { RequestAborted } from './rotate.js';

export class HeldClient {
  readonly #ctl = new AbortController();
  readonly #socket: Duplex;
  readonly #early: Buffer[];
  #size: number;
  readonly #onData: (chunk: Buffer) => void;
  readonly #onGone = (): void => this.abort(new RequestAborted('client_closed'));

  /** `head`: what node:http read past the request head; more than `maxEarlyBytes` in all closes the socket. */
  constructor(socket: Duplex, head: Buffer, maxEarlyBytes: number) {
    this.#socket = socket;
    this.#early = head.length > 0 ? [head] : [];
    this.#size = head.length;
    this.#onData = (chunk) => {
      this.#size += chunk.length;
      if (this.#size <= maxEarlyBytes) this.#early.push(chunk);
      else socket.destroy();
    };
    socket.on('data', this.#onData);
    socket.once('end', this.#onGone);
    socket.once('close', this.#onGone);
  }

  /** Aborted when the client leaves, or by `abort` (shutdown). */
  get signal(): AbortSignal {
    return this.#ctl.signal;
  }

  /** Why the handshake was aborted, if it was. */
  get why(): RequestAborted['why'] | undefined {
    const reason: unknown = this.#ctl.signal.reason;
    return reason instanceof RequestAborted ? reason.why : undefined;
  }

  abort(why: RequestAborted): void {
    this.#ctl.abort(why);
  }

  /** Stops watching the socket; what the client sent while held. */
  release(): Buffer {
    this.#socket.off('data', this.#onData);
    this.#socket.off('end', this.#onGone);
    this.#socket.off('close', this.#onGone);
    return Buffer.concat(this.#early);
  }
}
