// Stream keep-alive (opt-in, queue.streamKeepAlive): while a streaming request waits for a key, commit a
// 200 text/event-stream response and send SSE comments so the client's read timeout does not fire.
// The trade-off: once committed, a later failure can only be told as an SSE `error` event.
import type { ServerResponse } from 'node:http';
import type { Clock } from '../clock.js';
import type { ErrorFormat, KeypoolError } from '../errors.js';

export class StreamKeepAlive {
  readonly #raw: ServerResponse;
  readonly #clock: Clock;
  readonly #intervalMs: number;
  #cancel: (() => void) | undefined;
  #committed = false;

  constructor(raw: ServerResponse, clock: Clock, intervalMs: number) {
    this.#raw = raw;
    this.#clock = clock;
    this.#intervalMs = intervalMs;
  }

  /** Whether the 200 and its headers have gone out. */
  get committed(): boolean {
    return this.#committed;
  }

  /** Commits the response (once) and starts the comments. */
  start(): void {
    if (!this.#committed) {
      this.#committed = true;
      this.#raw.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'x-keypool-keep-alive': '1' });
      this.#raw.write(': keypool: waiting for a key\n\n');
    }
    this.#tick();
  }

  #tick(): void {
    this.#cancel?.();
    this.#cancel = this.#clock.timer(this.#intervalMs, () => {
      if (this.#raw.writableEnded || this.#raw.destroyed) return;
      this.#raw.write(': keep-alive\n\n');
      this.#tick();
    });
  }

  stop(): void {
    this.#cancel?.();
    this.#cancel = undefined;
  }

  /** Ends a committed stream with an SSE error event carrying OpenAI's error body. */
  fail(body: string): void {
    this.stop();
    this.#raw.end(`event: error\ndata: ${body.replace(/\n/g, ' ')}\n\n`);
  }

  failWith(error: KeypoolError, format: ErrorFormat = 'openai'): void {
    this.fail(JSON.stringify(error.toBody(format)));
  }
}
