// The fault upstream's answers: what each action sends on the raw socket, byte for byte, including the
// malformed ones no HTTP server library would write.
import type { Socket } from 'node:net';
import type { RecordedRequest } from './fault-upstream.js';

/** Size of the header `oversizedHeader` sends: four times undici's default limit (16 KiB). */
export const OVERSIZED_HEADER_BYTES = 64 * 1024;

export interface StreamOptions {
  /** Send this many events, then nothing more (the socket stays open). */
  readonly stallAfter?: number;
  /** Send this many events, then close the socket mid-body (no terminating chunk). */
  readonly truncateAfter?: number;
  /** End the chunked body cleanly but without the `data: [DONE]` event. */
  readonly endWithoutTerminator?: boolean;
  readonly status?: number;
  readonly headers?: Readonly<Record<string, string>>;
}

export type FaultAction =
  /** RST the connection as soon as the head is read, without reading the body. */
  | { readonly kind: 'resetBeforeBody' }
  /** Read the whole request, then RST. */
  | { readonly kind: 'resetAfterRequest' }
  /** Read the whole request, never answer. */
  | { readonly kind: 'stallBeforeHeaders' }
  /** A well-formed answer; Content-Length is added unless the headers frame the body themselves. */
  | { readonly kind: 'respond'; readonly status: number; readonly headers: Readonly<Record<string, string>>; readonly body: string | Buffer }
  /** An SSE answer, chunked, one `data: <event>` per chunk, `data: [DONE]` at the end. */
  | { readonly kind: 'stream'; readonly events: readonly string[]; readonly options: StreamOptions }
  /** A status line no parser accepts. */
  | { readonly kind: 'garbageStatusLine' }
  /** A 200 with one 64 KiB header. */
  | { readonly kind: 'oversizedHeader' }
  /** A 200 framed by both Content-Length and Transfer-Encoding (RFC 9112 §6.3 forbids it). */
  | { readonly kind: 'clAndTe' }
  /** A 200 whose Content-Length promises more than is sent; then the socket closes, or stalls. */
  | { readonly kind: 'clMismatch'; readonly then: 'close' | 'stall' }
  /** These bytes, then: keep the socket open, end it (FIN) or reset it (RST). */
  | { readonly kind: 'raw'; readonly bytes: string | Buffer; readonly then: 'keep' | 'end' | 'reset' }
  /** Decide once the whole body is in (the script itself runs at the head, before any body byte). */
  | { readonly kind: 'afterBody'; readonly decide: (req: RecordedRequest) => FaultAction };

/** What an action is once decided: `afterBody` resolved. */
export type Resolved = Exclude<FaultAction, { kind: 'afterBody' }>;

/** Builders for the actions, so scripts read as sentences. */
export const act = {
  resetBeforeBody: (): FaultAction => ({ kind: 'resetBeforeBody' }),
  resetAfterRequest: (): FaultAction => ({ kind: 'resetAfterRequest' }),
  stallBeforeHeaders: (): FaultAction => ({ kind: 'stallBeforeHeaders' }),
  respond: (status: number, headers: Readonly<Record<string, string>> = {}, body: string | Buffer = ''): FaultAction => ({ kind: 'respond', status, headers, body }),
  json: (status: number, body: unknown, headers: Readonly<Record<string, string>> = {}): FaultAction => ({
    kind: 'respond',
    status,
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  }),
  stream: (events: readonly string[], options: StreamOptions = {}): FaultAction => ({ kind: 'stream', events, options }),
  garbageStatusLine: (): FaultAction => ({ kind: 'garbageStatusLine' }),
  oversizedHeader: (): FaultAction => ({ kind: 'oversizedHeader' }),
  clAndTe: (): FaultAction => ({ kind: 'clAndTe' }),
  clMismatch: (then: 'close' | 'stall' = 'close'): FaultAction => ({ kind: 'clMismatch', then }),
  raw: (bytes: string | Buffer, then: 'keep' | 'end' | 'reset' = 'end'): FaultAction => ({ kind: 'raw', bytes, then }),
  afterBody: (decide: (req: RecordedRequest) => FaultAction): FaultAction => ({ kind: 'afterBody', decide }),
} as const;

const REASONS: Readonly<Record<number, string>> = { 200: 'OK', 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 429: 'Too Many Requests', 500: 'Internal Server Error', 503: 'Service Unavailable' };

/** Answers one fully read request as its action says. Resolves once the answer is out (or never will be). */
export async function perform(socket: Socket, req: Pick<RecordedRequest, 'method' | 'headers'>, action: Resolved): Promise<void> {
  if (socket.destroyed) return;
  const closeAfter = req.headers['connection']?.toLowerCase() === 'close';
  const head = (status: number, headers: Readonly<Record<string, string>>): string => {
    let text = `HTTP/1.1 ${status} ${REASONS[status] ?? 'Status'}\r\n`;
    for (const [name, value] of Object.entries(headers)) text += `${name}: ${value}\r\n`;
    if (closeAfter) text += 'connection: close\r\n';
    return `${text}\r\n`;
  };
  const finish = (): void => {
    if (closeAfter) socket.end();
  };
  switch (action.kind) {
    case 'resetBeforeBody':
    case 'resetAfterRequest':
      socket.resetAndDestroy();
      return;
    case 'stallBeforeHeaders':
      return;
    case 'respond': {
      const body = typeof action.body === 'string' ? Buffer.from(action.body) : action.body;
      const framed = Object.keys(action.headers).some((n) => ['content-length', 'transfer-encoding'].includes(n.toLowerCase()));
      const headers = framed ? action.headers : { ...action.headers, 'content-length': String(body.length) };
      socket.write(head(action.status, headers));
      if (req.method !== 'HEAD') socket.write(body);
      finish();
      return;
    }
    case 'stream': {
      const o = action.options;
      socket.write(head(o.status ?? 200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', ...o.headers, 'transfer-encoding': 'chunked' }));
      const chunk = (text: string): void => {
        const data = Buffer.from(text);
        socket.write(`${data.length.toString(16)}\r\n`);
        socket.write(data);
        socket.write('\r\n');
      };
      const stop = o.stallAfter ?? o.truncateAfter;
      const events = stop === undefined ? action.events : action.events.slice(0, stop);
      for (const e of events) chunk(`data: ${e}\n\n`);
      if (o.stallAfter !== undefined) return;
      if (o.truncateAfter !== undefined) {
        // Let the events leave before the FIN, so the client sees them and then the cut.
        socket.end();
        return;
      }
      if (o.endWithoutTerminator !== true) chunk('data: [DONE]\n\n');
      socket.write('0\r\n\r\n');
      finish();
      return;
    }
    case 'garbageStatusLine':
      socket.end('HTTP/1.1 2xx W\u00e4t\r\ncontent-length: 2\r\n\r\n{}', 'latin1');
      return;
    case 'oversizedHeader':
      socket.write(head(200, { 'x-oversized': 'a'.repeat(OVERSIZED_HEADER_BYTES), 'content-length': '2' }));
      socket.write('{}');
      finish();
      return;
    case 'clAndTe':
      socket.write(head(200, { 'content-type': 'application/json', 'content-length': '2', 'transfer-encoding': 'chunked' }));
      socket.write('2\r\n{}\r\n0\r\n\r\n');
      finish();
      return;
    case 'clMismatch':
      socket.write(head(200, { 'content-type': 'application/json', 'content-length': '1000' }));
      socket.write('{"id":"chatcmpl-cut","choices":[');
      if (action.then === 'close') socket.end();
      return;
    case 'raw':
      socket.write(action.bytes);
      if (action.then === 'end') socket.end();
      else if (action.then === 'reset') socket.resetAndDestroy();
      return;
  }
}
