// A fault-injecting upstream for tests: a loopback server on raw node:net (no HTTP library between the
// script and the wire, so it can send what no HTTP server would) that records every request it gets and
// answers each as a script says: resets at chosen moments, stalls, cut or malformed answers, raw bytes.
import { createServer, type Server, type Socket } from 'node:net';
import { RequestReader, type RequestHead } from './http-request-reader.js';

/** Request bodies are recorded up to this size; past it only the byte count grows. */
export const BODY_RECORD_LIMIT = 8 * 1024 * 1024;
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
  | { readonly kind: 'raw'; readonly bytes: string | Buffer; readonly then: 'keep' | 'end' | 'reset' };

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
} as const;

/** One request as the upstream received it. Fields after the head fill in as the body arrives. */
export interface RecordedRequest {
  /** Position among all requests this upstream received (0-based). */
  readonly index: number;
  /** Position among the requests that carried the same credential (0-based). */
  readonly keyIndex: number;
  /** Which connection it came on (0-based, in accept order). */
  readonly connection: number;
  readonly method: string;
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  /** The credential: the bearer token of `authorization`, else `x-api-key`. */
  readonly key: string | undefined;
  /** performance.now() when the head arrived. */
  readonly at: number;
  readonly action: FaultAction['kind'];
  /** The body, up to BODY_RECORD_LIMIT bytes. */
  readonly body: Buffer;
  readonly bodyBytes: number;
  /** The whole body reached the upstream (the request is a "copy" the upstream could act on). */
  readonly complete: boolean;
  /** The connection it came on has closed (by either side). */
  readonly socketClosed: boolean;
}

export type Script = (req: RecordedRequest, attempt: number, perKey: number) => FaultAction;

export interface FaultUpstreamOptions {
  /** RST this connection (by accept order) before reading a byte. @default never */
  readonly resetConnection?: (connection: number) => boolean;
}

export interface FaultUpstream {
  /** http://127.0.0.1:<port> */
  readonly url: string;
  readonly requests: readonly RecordedRequest[];
  /** Requests whose whole body reached the upstream. */
  readonly copies: number;
  /** Connections accepted so far. */
  readonly connections: number;
  /** Connections open now. */
  readonly openSockets: number;
  /** Replaces the script for requests from now on. */
  setScript(script: Script): void;
  close(): Promise<void>;
}

/** A request being received: the body is kept as chunks and joined only when read. */
class Recorded implements RecordedRequest {
  readonly #chunks: Buffer[] = [];
  #recorded = 0;
  action: FaultAction['kind'] = 'respond';
  bodyBytes = 0;
  complete = false;
  socketClosed = false;
  readonly at = performance.now();

  constructor(
    readonly index: number,
    readonly keyIndex: number,
    readonly connection: number,
    readonly method: string,
    readonly path: string,
    readonly headers: Readonly<Record<string, string>>,
    readonly key: string | undefined,
  ) {}

  get body(): Buffer {
    return Buffer.concat(this.#chunks);
  }

  take(data: Buffer): void {
    this.bodyBytes += data.length;
    const room = BODY_RECORD_LIMIT - this.#recorded;
    if (room <= 0) return;
    // A copy: the slice would otherwise keep the whole socket chunk alive.
    const kept = Buffer.from(data.subarray(0, room));
    this.#chunks.push(kept);
    this.#recorded += kept.length;
  }
}

const REASONS: Readonly<Record<number, string>> = { 200: 'OK', 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 429: 'Too Many Requests', 500: 'Internal Server Error', 503: 'Service Unavailable' };

export async function startFaultUpstream(script: Script, options: FaultUpstreamOptions = {}): Promise<FaultUpstream> {
  let current = script;
  const requests: Recorded[] = [];
  const perKey = new Map<string, number>();
  const sockets = new Set<Socket>();
  let connections = 0;

  const server: Server = createServer((socket) => {
    const connection = connections++;
    sockets.add(socket);
    const mine: Recorded[] = [];
    socket.on('close', () => {
      sockets.delete(socket);
      for (const r of mine) r.socketClosed = true;
    });
    // Resets from the other side are the point of these tests, not failures of the server.
    socket.on('error', () => {});
    if (options.resetConnection?.(connection) === true) {
      socket.resetAndDestroy();
      return;
    }
    const reader = new RequestReader();
    let pending: Recorded | undefined;
    let pendingAction: FaultAction | undefined;
    // Requests on one connection are answered in order: the next waits for the previous answer.
    let chain: Promise<void> = Promise.resolve();

    socket.on('data', (chunk: Buffer) => {
      for (const ev of reader.push(chunk)) {
        if (socket.destroyed) return;
        if (ev.kind === 'error') {
          socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
          return;
        }
        if (ev.kind === 'head') {
          pending = record(ev.head, connection);
          mine.push(pending);
          pendingAction = current(pending, pending.index, pending.keyIndex);
          pending.action = pendingAction.kind;
          if (pendingAction.kind === 'resetBeforeBody') {
            socket.resetAndDestroy();
            return;
          }
        } else if (ev.kind === 'body' && pending !== undefined) {
          pending.take(ev.data);
        } else if (ev.kind === 'end' && pending !== undefined && pendingAction !== undefined) {
          pending.complete = true;
          const req = pending;
          const action = pendingAction;
          pending = undefined;
          pendingAction = undefined;
          chain = chain.then(() => perform(socket, req, action));
        }
      }
    });
  });

  const record = (head: RequestHead, connection: number): Recorded => {
    const key = credential(head.headers);
    const keyIndex = perKey.get(key ?? '') ?? 0;
    perKey.set(key ?? '', keyIndex + 1);
    const r = new Recorded(requests.length, keyIndex, connection, head.method, head.target, head.headers, key);
    requests.push(r);
    return r;
  };

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('fault upstream has no port');

  return {
    url: `http://127.0.0.1:${address.port}`,
    requests,
    get copies() {
      return requests.filter((r) => r.complete).length;
    },
    get connections() {
      return connections;
    },
    get openSockets() {
      return sockets.size;
    },
    setScript(s) {
      current = s;
    },
    async close() {
      const closing = new Promise<void>((resolve) => server.close(() => resolve()));
      await Promise.all(
        [...sockets].map(
          (s) =>
            new Promise<void>((resolve) => {
              s.once('close', () => resolve());
              s.destroy();
            }),
        ),
      );
      await closing;
    },
  };
}

function credential(headers: Readonly<Record<string, string>>): string | undefined {
  const auth = headers['authorization'];
  if (auth !== undefined) return /^bearer\s+(\S+)\s*$/i.exec(auth)?.[1] ?? auth;
  return headers['x-api-key'];
}

/** Answers one fully read request as its action says. Resolves once the answer is out (or never will be). */
async function perform(socket: Socket, req: RecordedRequest, action: FaultAction): Promise<void> {
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

/** A loopback URL where nothing listens: connecting to it is refused (ECONNREFUSED). */
export async function closedPortUrl(): Promise<string> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', () => resolve()));
  const address = s.address();
  await new Promise<void>((resolve) => s.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return `http://127.0.0.1:${address.port}`;
}
