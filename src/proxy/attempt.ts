// One attempt against the upstream, as undici dispatch handler: it knows which phase a failure happened
// in (connecting, writing the request, sent and waiting for the head, after the head), which decides
// whether the request may be sent again (retry-policy.ts). After the head the body is paused until the
// attempt loop decides: delivered chunk by chunk straight into the client's response (backpressure
// both ways, no Readable in between), read as a short snippet for the policy, or dropped.
// The legacy handler hooks are used on purpose: only they include onRequestSent (undici 7 does not
// forward it to onRequestStart-style handlers), and they cost no wrapper per request.
import type { ServerResponse } from 'node:http';
import { util, type Dispatcher } from 'undici';
import type { EventAligner } from './sse.js';

/** Where an attempt was when it failed. */
export type FailPhase = 'connect' | 'writing' | 'sent';

export type AttemptHead =
  | { readonly kind: 'head'; readonly status: number; readonly headers: Record<string, string | string[] | undefined> }
  | { readonly kind: 'failed'; readonly phase: FailPhase; readonly timedOut: boolean; readonly error: Error };

/** How a delivered body ended. */
export type BodyEnd =
  | { readonly kind: 'complete' }
  /** The upstream went quiet for longer than the idle timeout. */
  | { readonly kind: 'idle' }
  /** The upstream broke off (reset, truncated chunking, Content-Length mismatch). */
  | { readonly kind: 'upstream'; readonly error: Error }
  /** We cancelled it: the client left, or the request's deadline passed. */
  | { readonly kind: 'cancelled'; readonly error: Error };

export interface AttemptRequest {
  readonly origin: string;
  readonly path: string;
  readonly method: Dispatcher.HttpMethod;
  readonly headers: Record<string, string | string[]>;
  readonly body: Buffer | undefined;
  /** Longest wait for the response head once the request is on the wire; 0 = none. */
  readonly headersTimeoutMs: number;
  /** Longest gap between two body chunks; 0 = none. */
  readonly idleTimeoutMs: number;
}

const NO_CHUNKS: Buffer[] = [];

/**
 * A body up to this size goes out in one write; a larger one in slices of it. undici reports a Buffer
 * body "sent" as soon as it is handed to the socket, even when most of it still waits in buffers: a
 * reset then looks like "the upstream had it all" and a POST would not be retried although it safely
 * could. Sliced, undici writes with backpressure and says "sent" only after the last slice left. Small
 * bodies fit the socket's buffers either way.
 */
const WHOLE_WRITE_BYTES = 64 * 1024;

function* slices(body: Buffer): Generator<Buffer> {
  for (let i = 0; i < body.length; i += WHOLE_WRITE_BYTES) yield body.subarray(i, i + WHOLE_WRITE_BYTES);
}

/** Marks an error as ours (cancel) rather than the upstream's. */
class Cancelled extends Error {}

type Mode =
  /** Before the head, or paused after it while the loop decides. */
  | { readonly kind: 'held' }
  | { readonly kind: 'deliver'; readonly res: ServerResponse; readonly events: EventAligner | undefined; readonly tap: ((chunk: Buffer) => void) | undefined }
  | { readonly kind: 'snippet'; readonly limit: number }
  /** Reading ahead (commit on content): chunks are kept for delivery until `enough` says so. */
  | { readonly kind: 'peek'; readonly limit: number; readonly enough: (seen: Buffer) => boolean; readonly done: (seen: Buffer) => void }
  | { readonly kind: 'discard' };

export class Attempt {
  #phase: FailPhase | 'head' | 'done' = 'connect';
  #abort: ((err?: Error) => void) | undefined;
  #resume: (() => void) | undefined;
  #mode: Mode = { kind: 'held' };
  /** Chunks that arrived while the body was held (the parser may have had them already). */
  #early: Buffer[] = NO_CHUNKS;
  #snippet: Buffer[] = NO_CHUNKS;
  #snippetSize = 0;
  #cancelError: Error | undefined;
  #settleHead!: (h: AttemptHead) => void;
  #settleBody: ((e: BodyEnd) => void) | undefined;
  #ended: BodyEnd | undefined;
  #drainWaiting = false;
  readonly head: Promise<AttemptHead>;

  constructor(dispatcher: Dispatcher, req: AttemptRequest) {
    this.head = new Promise((resolve) => (this.#settleHead = resolve));
    const large = req.body !== undefined && req.body.length > WHOLE_WRITE_BYTES;
    if (large) req.headers['content-length'] = String(req.body!.length);
    dispatcher.dispatch(
      {
        origin: req.origin,
        path: req.path,
        method: req.method,
        headers: req.headers,
        // undici takes any iterable body (documented for request(); dispatch's type omits it).
        body: large ? (slices(req.body!) as unknown as Buffer) : req.body,
        headersTimeout: req.headersTimeoutMs,
        bodyTimeout: req.idleTimeoutMs,
      },
      this,
    );
  }

  /** Cancels the attempt wherever it is (client gone, deadline, or the loop dropping it); closes its connection. */
  cancel(reason: Error): void {
    if (this.#phase === 'done') return;
    this.#cancelError ??= new Cancelled(reason.message, { cause: reason });
    if (this.#abort) this.#abort(this.#cancelError);
    else this.onError(this.#cancelError);
  }

  /**
   * Streams the body into the client's response (its head must be written already). Resolves when the
   * body ended or broke; the caller decides what the client is told of a break.
   */
  deliver(res: ServerResponse, events?: EventAligner, tap?: (chunk: Buffer) => void): Promise<BodyEnd> {
    return this.#consume({ kind: 'deliver', res, events, tap });
  }

  /** Reads at most `limit` raw bytes of the body (the rest is drained and dropped); resolves at the end or on a break. */
  async snippet(limit: number): Promise<Buffer> {
    await this.#consume({ kind: 'snippet', limit });
    return this.#snippet.length === 1 ? this.#snippet[0]! : Buffer.concat(this.#snippet);
  }

  /**
   * Reads ahead without consuming: chunks are kept (and delivered first by `deliver`) until `enough` says
   * what arrived suffices, `limit` bytes arrived, the body ended, or `stopPeek` is called. Resolves with
   * what arrived so far.
   */
  peek(limit: number, enough: (seen: Buffer) => boolean): Promise<Buffer> {
    if (this.#ended || this.#mode.kind !== 'held') return Promise.resolve(this.#seen());
    return new Promise((resolve) => {
      this.#mode = { kind: 'peek', limit, enough, done: resolve };
      if (this.#early.length > 0 && (this.#seenSize() >= limit || enough(this.#seen()))) return this.stopPeek();
      this.#resume?.();
    });
  }

  /** Stops reading ahead (its time is up): the peek resolves with what arrived, the body stays held. */
  stopPeek(): void {
    const mode = this.#mode;
    if (mode.kind !== 'peek') return;
    this.#mode = { kind: 'held' };
    mode.done(this.#seen());
  }

  #seen(): Buffer {
    return this.#early.length === 1 ? this.#early[0]! : Buffer.concat(this.#early);
  }

  #seenSize(): number {
    let n = 0;
    for (const c of this.#early) n += c.length;
    return n;
  }

  /** Drops the body; a small one is drained so the connection can be reused. */
  discard(): void {
    void this.#consume({ kind: 'discard' });
  }

  #consume(mode: Mode): Promise<BodyEnd> {
    this.stopPeek();
    if (this.#ended) {
      for (const c of this.#early) this.#take(c, mode);
      if (mode.kind === 'deliver') this.#finishDelivery(mode, this.#ended);
      return Promise.resolve(this.#ended);
    }
    this.#mode = mode;
    const p = new Promise<BodyEnd>((resolve) => (this.#settleBody = resolve));
    const early = this.#early;
    this.#early = NO_CHUNKS;
    for (const c of early) this.#take(c, mode);
    if (!this.#drainWaiting) this.#resume?.();
    return p;
  }

  /** Handles one chunk in a consuming mode; false when the consumer wants the upstream paused. */
  #take(chunk: Buffer, mode: Mode): boolean {
    switch (mode.kind) {
      case 'deliver': {
        mode.tap?.(chunk);
        const out = mode.events === undefined ? chunk : mode.events.push(chunk);
        if (out.length === 0 || mode.res.write(out)) return true;
        if (!this.#drainWaiting) {
          this.#drainWaiting = true;
          mode.res.once('drain', () => {
            this.#drainWaiting = false;
            this.#resume?.();
          });
        }
        return false;
      }
      case 'snippet':
        if (this.#snippetSize < mode.limit) {
          const room = mode.limit - this.#snippetSize;
          const part = chunk.length > room ? chunk.subarray(0, room) : chunk;
          if (this.#snippet === NO_CHUNKS) this.#snippet = [];
          this.#snippet.push(part);
          this.#snippetSize += part.length;
        }
        return true;
      default:
        return true;
    }
  }

  #finishDelivery(mode: Extract<Mode, { kind: 'deliver' }>, end: BodyEnd): void {
    if (end.kind !== 'complete' || mode.res.writableEnded) return;
    const rest = mode.events?.flush();
    if (rest !== undefined && rest.length > 0) mode.res.end(rest);
    else mode.res.end();
  }

  #endBody(end: BodyEnd): void {
    this.#phase = 'done';
    this.#ended = end;
    this.stopPeek();
    const mode = this.#mode;
    if (mode.kind === 'held') return;
    if (mode.kind === 'deliver') this.#finishDelivery(mode, end);
    const settle = this.#settleBody;
    this.#settleBody = undefined;
    settle?.(end);
  }

  // --- undici DispatchHandler (legacy hooks) ---

  onConnect(abort: (err?: Error) => void): void {
    this.#abort = abort;
    if (this.#phase === 'connect') this.#phase = 'writing';
    if (this.#cancelError) abort(this.#cancelError);
  }

  onRequestSent(): void {
    if (this.#phase === 'writing') this.#phase = 'sent';
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    // 1xx (100 Continue, 103 Early Hints): not the answer.
    if (statusCode < 200) return true;
    this.#phase = 'head';
    this.#resume = resume;
    const headers = util.parseHeaders(rawHeaders) as Record<string, string | string[] | undefined>;
    this.#settleHead({ kind: 'head', status: statusCode, headers });
    // Paused until the loop decides what to do with the body (unless it already did, synchronously).
    return this.#mode.kind !== 'held';
  }

  onData(chunk: Buffer): boolean {
    const mode = this.#mode;
    if (mode.kind === 'held' || mode.kind === 'peek') {
      if (this.#early === NO_CHUNKS) this.#early = [];
      this.#early.push(chunk);
      if (mode.kind === 'held') return false;
      if (this.#seenSize() < mode.limit && !mode.enough(this.#seen())) return true;
      this.stopPeek();
      return false;
    }
    return this.#take(chunk, mode);
  }

  onComplete(): void {
    this.#endBody({ kind: 'complete' });
  }

  onError(err: Error): void {
    const phase = this.#phase;
    if (phase === 'done') return;
    if (phase !== 'head') {
      this.#phase = 'done';
      const timedOut = (err as { code?: unknown }).code === 'UND_ERR_HEADERS_TIMEOUT';
      this.#settleHead({ kind: 'failed', phase, timedOut, error: err });
      return;
    }
    const ours = err instanceof Cancelled || err === this.#cancelError;
    const code = (err as { code?: unknown }).code;
    this.#endBody(ours ? { kind: 'cancelled', error: err } : code === 'UND_ERR_BODY_TIMEOUT' ? { kind: 'idle' } : { kind: 'upstream', error: err });
  }
}
