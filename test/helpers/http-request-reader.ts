// Incremental HTTP/1.1 request framing for the fault upstream: request line, headers, Content-Length and
// chunked bodies, several requests per connection. Just enough to know where a request starts and ends;
// no I/O, every buffer bounded, so a hostile peer cannot make it grow.

/** Largest request head (request line + headers) accepted. */
export const MAX_HEAD_BYTES = 64 * 1024;
/** Largest chunk-size line or trailer section accepted. */
const MAX_LINE_BYTES = 8 * 1024;

export interface RequestHead {
  readonly method: string;
  readonly target: string;
  readonly version: string;
  /** Lower-case names; repeated headers joined with ", ". */
  readonly headers: Readonly<Record<string, string>>;
}

export type ReadEvent =
  | { readonly kind: 'head'; readonly head: RequestHead }
  | { readonly kind: 'body'; readonly data: Buffer }
  | { readonly kind: 'end' }
  /** The bytes are not a request keypool could have sent; the connection should be dropped. */
  | { readonly kind: 'error'; readonly reason: string };

type State =
  | { readonly at: 'head' }
  | { readonly at: 'length'; left: number }
  | { readonly at: 'chunk-size' }
  | { readonly at: 'chunk-data'; left: number }
  | { readonly at: 'chunk-crlf' }
  | { readonly at: 'trailers' }
  | { readonly at: 'failed' };

const CRLF = Buffer.from('\r\n');
const HEAD_END = Buffer.from('\r\n\r\n');

export class RequestReader {
  #buf: Buffer = Buffer.alloc(0);
  #state: State = { at: 'head' };

  /** Feeds bytes as they arrive; returns what they completed, in order. */
  push(chunk: Buffer): ReadEvent[] {
    if (this.#state.at === 'failed') return [];
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
    const out: ReadEvent[] = [];
    // Bounded: every pass consumes bytes or returns.
    for (;;) {
      const step = this.#step(out);
      if (!step) return out;
    }
  }

  #fail(out: ReadEvent[], reason: string): false {
    this.#state = { at: 'failed' };
    this.#buf = Buffer.alloc(0);
    out.push({ kind: 'error', reason });
    return false;
  }

  /** One state transition; false when more bytes are needed (or the stream failed). */
  #step(out: ReadEvent[]): boolean {
    const s = this.#state;
    switch (s.at) {
      case 'failed':
        return false;
      case 'head': {
        // Tolerate the blank lines RFC 9112 §2.2 lets a client send between requests.
        while (this.#buf.subarray(0, 2).equals(CRLF)) this.#buf = this.#buf.subarray(2);
        const end = this.#buf.indexOf(HEAD_END);
        if (end === -1) return this.#buf.length > MAX_HEAD_BYTES ? this.#fail(out, 'request head too large') : false;
        if (end > MAX_HEAD_BYTES) return this.#fail(out, 'request head too large');
        const head = parseHead(this.#buf.subarray(0, end).toString('latin1'));
        this.#buf = this.#buf.subarray(end + 4);
        if (typeof head === 'string') return this.#fail(out, head);
        out.push({ kind: 'head', head });
        const te = head.headers['transfer-encoding'];
        const cl = head.headers['content-length'];
        if (te !== undefined) {
          if (te.trim().toLowerCase() !== 'chunked' || cl !== undefined) return this.#fail(out, 'unsupported request framing');
          this.#state = { at: 'chunk-size' };
        } else if (cl !== undefined) {
          if (!/^\d{1,15}$/.test(cl.trim())) return this.#fail(out, 'bad content-length');
          this.#state = { at: 'length', left: Number(cl.trim()) };
        } else {
          this.#state = { at: 'length', left: 0 };
        }
        return true;
      }
      case 'length': {
        if (s.left === 0) {
          out.push({ kind: 'end' });
          this.#state = { at: 'head' };
          return true;
        }
        if (this.#buf.length === 0) return false;
        const n = Math.min(s.left, this.#buf.length);
        out.push({ kind: 'body', data: this.#buf.subarray(0, n) });
        this.#buf = this.#buf.subarray(n);
        s.left -= n;
        return true;
      }
      case 'chunk-size': {
        const eol = this.#buf.indexOf(CRLF);
        if (eol === -1) return this.#buf.length > MAX_LINE_BYTES ? this.#fail(out, 'chunk size line too long') : false;
        const line = this.#buf.subarray(0, eol).toString('latin1');
        this.#buf = this.#buf.subarray(eol + 2);
        // Chunk extensions (";name=value") are allowed and ignored.
        const m = /^([0-9A-Fa-f]{1,12})(?:;.*)?$/.exec(line);
        if (!m) return this.#fail(out, 'bad chunk size');
        const size = parseInt(m[1]!, 16);
        this.#state = size === 0 ? { at: 'trailers' } : { at: 'chunk-data', left: size };
        return true;
      }
      case 'chunk-data': {
        if (this.#buf.length === 0) return false;
        const n = Math.min(s.left, this.#buf.length);
        out.push({ kind: 'body', data: this.#buf.subarray(0, n) });
        this.#buf = this.#buf.subarray(n);
        s.left -= n;
        if (s.left === 0) this.#state = { at: 'chunk-crlf' };
        return true;
      }
      case 'chunk-crlf': {
        if (this.#buf.length < 2) return false;
        if (!this.#buf.subarray(0, 2).equals(CRLF)) return this.#fail(out, 'chunk not followed by CRLF');
        this.#buf = this.#buf.subarray(2);
        this.#state = { at: 'chunk-size' };
        return true;
      }
      case 'trailers': {
        // Trailer lines, then an empty line.
        const eol = this.#buf.indexOf(CRLF);
        if (eol === -1) return this.#buf.length > MAX_LINE_BYTES ? this.#fail(out, 'trailers too long') : false;
        this.#buf = this.#buf.subarray(eol + 2);
        if (eol === 0) {
          out.push({ kind: 'end' });
          this.#state = { at: 'head' };
        }
        return true;
      }
    }
  }
}

/** The request line and headers, or why they are not a request. */
export function parseHead(text: string): RequestHead | string {
  const lines = text.split('\r\n');
  const m = /^([A-Z]+) (\S+) (HTTP\/1\.[01])$/.exec(lines[0] ?? '');
  if (!m) return 'bad request line';
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0) return 'bad header line';
    const name = line.slice(0, colon).trim().toLowerCase();
    if (!/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(name)) return 'bad header name';
    const value = line.slice(colon + 1).trim();
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
  }
  return { method: m[1]!, target: m[2]!, version: m[3]!, headers };
}
