// Server-sent events, as far as a proxy must understand them: where one event ends (so a stream cut by
// the upstream never leaves half an event with the client), and how keypool says "this stream broke" as
// a last event the client's SDK raises as an error (OpenAI: a `data:` line holding `{"error":{...}}`).
// https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation
import type { ErrorFormat, KeypoolError } from '../errors.js';

const LF = 0x0a;
const CR = 0x0d;
/** An upstream that never ends an event this far in is not speaking SSE: pass its bytes on regardless. */
const MAX_PENDING = 1024 * 1024;

/** Whether a response's content type is an event stream. */
export function isEventStream(contentType: string | string[] | undefined): boolean {
  const ct = Array.isArray(contentType) ? contentType[0] : contentType;
  return ct !== undefined && ct.toLowerCase().includes('text/event-stream');
}

/**
 * The index just after the last blank line in `buf` (an event ends at a blank line: "\n\n", "\r\n\r\n"
 * or "\r\r"), or -1 when there is none. `before` gives the bytes just before `buf` (1: the last one, up
 * to 3), -1 when there are none: a blank line may start in an earlier chunk.
 */
export function lastEventEnd(buf: Buffer, before: (back: number) => number = () => -1): number {
  const at = (i: number): number => (i >= 0 ? buf[i]! : before(-i));
  for (let i = buf.length - 1; i >= 0; i--) {
    const c = buf[i]!;
    if (c !== LF && c !== CR) continue;
    // A line terminator at i: is the line before it empty (another terminator right before)?
    const b1 = at(i - 1);
    if (c === LF && b1 === LF) return i + 1;
    if (c === CR && b1 === CR && buf[i + 1] !== LF) return i + 1;
    if (c === LF && b1 === CR && at(i - 2) === LF) return i + 1;
  }
  return -1;
}

/** Of an event's bytes, this much of the last one is kept to tell whether a stream ended on an error. */
const LAST_EVENT_BYTES = 8 * 1024;

/**
 * Passes an event stream through whole events only: bytes after the last complete event wait for the
 * rest of it. Well-behaved upstreams send whole events per chunk, so nothing waits in practice. Linear in
 * the bytes passed: held bytes are joined once, when their event ends, and each chunk is scanned once.
 */
export class EventAligner {
  #pending: Buffer[] = [];
  #pendingSize = 0;
  /** The last three bytes pushed, newest first (a blank line can straddle chunks). */
  #b1 = -1;
  #b2 = -1;
  #b3 = -1;
  /** The end of what was last passed on, to tell whether the stream's last event was an error. */
  #lastOut: Buffer = EMPTY;
  readonly #before = (back: number): number => (back === 1 ? this.#b1 : back === 2 ? this.#b2 : back === 3 ? this.#b3 : -1);

  /** What may go to the client now (possibly empty). */
  push(chunk: Buffer): Buffer {
    if (chunk.length === 0) return EMPTY;
    const end = lastEventEnd(chunk, this.#before);
    this.#remember(chunk);
    if (end === -1) {
      if (this.#pendingSize + chunk.length < MAX_PENDING) {
        this.#pending.push(chunk);
        this.#pendingSize += chunk.length;
        return EMPTY;
      }
      // Not an event stream after all: pass everything on as it is.
      return this.#emit(chunk, chunk.length);
    }
    return this.#emit(chunk, end);
  }

  /** The stream ended normally: whatever is held goes out as it is. */
  flush(): Buffer {
    const p = this.#pending.length === 0 ? EMPTY : this.#pending.length === 1 ? this.#pending[0]! : Buffer.concat(this.#pending, this.#pendingSize);
    this.#pending = [];
    this.#pendingSize = 0;
    return p;
  }

  /** Whether a partial event is held (dropped when the stream is cut). */
  get holding(): boolean {
    return this.#pendingSize > 0;
  }

  /** The last complete event passed on, parsed (undefined if there was none, or it was not readable). */
  lastEvent(): StreamEvent | undefined {
    const text = this.#lastOut.toString('utf8');
    const blocks = text.split(/\r\n\r\n|\n\n|\r\r/).filter((b) => b.trim() !== '');
    const last = blocks.at(-1);
    return last === undefined ? undefined : firstDataEvent(`${last}\n\n`);
  }

  #emit(chunk: Buffer, end: number): Buffer {
    const head = end === chunk.length ? chunk : chunk.subarray(0, end);
    const out = this.#pendingSize === 0 ? head : Buffer.concat([...this.#pending, head], this.#pendingSize + head.length);
    this.#pending = end === chunk.length ? [] : [chunk.subarray(end)];
    this.#pendingSize = chunk.length - end;
    this.#lastOut = out.length > LAST_EVENT_BYTES ? out.subarray(out.length - LAST_EVENT_BYTES) : out;
    return out;
  }

  #remember(chunk: Buffer): void {
    const n = chunk.length;
    if (n >= 3) {
      this.#b3 = chunk[n - 3]!;
      this.#b2 = chunk[n - 2]!;
      this.#b1 = chunk[n - 1]!;
    } else if (n === 2) {
      this.#b3 = this.#b1;
      this.#b2 = chunk[0]!;
      this.#b1 = chunk[1]!;
    } else {
      this.#b3 = this.#b2;
      this.#b2 = this.#b1;
      this.#b1 = chunk[0]!;
    }
  }
}

const EMPTY = Buffer.alloc(0);

/** One parsed event: its `event:` name (if any) and its `data:` lines joined. */
export interface StreamEvent {
  readonly event: string | undefined;
  readonly data: string;
}

/**
 * The first event of a stream that carries data, if `text` holds all of it; comment-only blocks (OpenRouter's
 * ": OPENROUTER PROCESSING" while it waits) and events without data are skipped. undefined: not there yet.
 */
export function firstDataEvent(text: string): StreamEvent | undefined {
  const blocks = text.split(/\r\n\r\n|\n\n|\r\r/);
  // The last piece has no blank line after it yet: incomplete.
  for (let i = 0; i < blocks.length - 1; i++) {
    let event: string | undefined;
    const data: string[] = [];
    for (const line of blocks[i]!.split(/\r\n|\n|\r/)) {
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon === -1 ? line : line.slice(0, colon);
      const value = colon === -1 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'event') event = value;
      else if (field === 'data') data.push(value);
    }
    if (data.length > 0) return { event, data: data.join('\n') };
  }
  return undefined;
}

/**
 * The last event of a stream keypool had to cut, in the upstream's format, so the client's SDK raises it:
 * OpenAI's `data: {"error":{...}}` (the openai SDK throws an APIError), Anthropic's `event: error` (the
 * Anthropic SDK throws), Google's `data: {"error":{...}}`.
 */
export function streamErrorEvent(error: KeypoolError, format: ErrorFormat = 'openai'): string {
  const data = JSON.stringify(error.toBody(format));
  return format === 'anthropic' ? `event: error\ndata: ${data}\n\n` : `data: ${data}\n\n`;
}
