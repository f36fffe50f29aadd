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
 * or "\r\r"), or -1 when there is none. `prev` is the byte before `buf` (the stream so far), -1 if none.
 */
export function lastEventEnd(buf: Buffer, prev: number): number {
  for (let i = buf.length - 1; i >= 0; i--) {
    const c = buf[i]!;
    if (c !== LF && c !== CR) continue;
    // A line terminator at i: is the line before it empty (another terminator right before)?
    const before = i > 0 ? buf[i - 1]! : prev;
    if (c === LF && before === LF) return i + 1;
    if (c === CR && before === CR && buf[i + 1] !== LF) return i + 1;
    if (c === LF && before === CR) {
      const b2 = i > 1 ? buf[i - 2]! : i === 1 ? prev : -1;
      if (b2 === LF) return i + 1;
    }
  }
  return -1;
}

/**
 * Passes an event stream through whole events only: bytes after the last complete event wait for the
 * rest of it. Well-behaved upstreams send whole events per chunk, so nothing waits in practice.
 */
export class EventAligner {
  #pending: Buffer | undefined;
  #last = -1;

  /** What may go to the client now (possibly empty). */
  push(chunk: Buffer): Buffer {
    const buf = this.#pending === undefined ? chunk : Buffer.concat([this.#pending, chunk]);
    // What is held starts right after the last byte passed on, so that byte precedes `buf` either way.
    const end = lastEventEnd(buf, this.#last);
    if (end === -1 && buf.length < MAX_PENDING) {
      this.#pending = buf;
      return EMPTY;
    }
    const cut = end === -1 ? buf.length : end;
    this.#pending = cut === buf.length ? undefined : buf.subarray(cut);
    if (cut > 0) this.#last = buf[cut - 1]!;
    return cut === buf.length ? buf : buf.subarray(0, cut);
  }

  /** The stream ended normally: whatever is held goes out as it is. */
  flush(): Buffer {
    const p = this.#pending ?? EMPTY;
    this.#pending = undefined;
    return p;
  }

  /** Whether a partial event is held (dropped when the stream is cut). */
  get holding(): boolean {
    return this.#pending !== undefined;
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
