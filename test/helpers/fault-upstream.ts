// A fault-injecting upstream for tests: a loopback server on raw node:net (no HTTP library between the
// script and the wire, so it can send what no HTTP server would) that records every request it gets and
// answers each as a script says: resets at chosen moments, stalls, cut or malformed answers, raw bytes.
import { createServer, type Server, type Socket } from 'node:net';
import { perform, type FaultAction, type Resolved } from './fault-actions.js';
import { RequestReader, type RequestHead } from './http-request-reader.js';

export { act, OVERSIZED_HEADER_BYTES, type FaultAction, type StreamOptions } from './fault-actions.js';

/** Request bodies are recorded up to this size; past it only the byte count grows. */
export const BODY_RECORD_LIMIT = 8 * 1024 * 1024;

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
  /** The action it got (an `afterBody` action is recorded as what it decided). */
  readonly action: Resolved['kind'];
  /** The body, up to BODY_RECORD_LIMIT bytes. */
  readonly body: Buffer;
  readonly bodyBytes: number;
  /** The whole body reached the upstream (the request is a "copy" the upstream could act on). */
  readonly complete: boolean;
  /** The connection it came on has closed (by either side). */
  readonly socketClosed: boolean;
}

/**
 * Chooses the answer to a request when its head arrives (attempt: index among all requests, perKey: among
 * those with the same credential). The body is not in yet: return `act.afterBody(...)` to decide on it.
 */
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
  /** Errors thrown by the script (the request's connection was reset); a test should expect none. */
  readonly scriptErrors: readonly unknown[];
  /** Replaces the script for requests from now on. */
  setScript(script: Script): void;
  close(): Promise<void>;
}

/** A request being received: the body is kept as chunks and joined only when read. */
class Recorded implements RecordedRequest {
  readonly #chunks: Buffer[] = [];
  #recorded = 0;
  action: Resolved['kind'] = 'respond';
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

export async function startFaultUpstream(script: Script, options: FaultUpstreamOptions = {}): Promise<FaultUpstream> {
  let current = script;
  const requests: Recorded[] = [];
  const perKey = new Map<string, number>();
  const sockets = new Set<Socket>();
  const scriptErrors: unknown[] = [];
  let connections = 0;
  /** Runs the script; a throw is kept for the test and ends the connection rather than the process. */
  const decide = (fn: () => FaultAction): FaultAction | undefined => {
    try {
      return fn();
    } catch (err) {
      scriptErrors.push(err);
      return undefined;
    }
  };

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
          const req = pending;
          pendingAction = decide(() => current(req, req.index, req.keyIndex));
          if (pendingAction === undefined) {
            socket.resetAndDestroy();
            return;
          }
          if (pendingAction.kind !== 'afterBody') pending.action = pendingAction.kind;
          if (pendingAction.kind === 'resetBeforeBody') {
            socket.resetAndDestroy();
            return;
          }
        } else if (ev.kind === 'body' && pending !== undefined) {
          pending.take(ev.data);
        } else if (ev.kind === 'end' && pending !== undefined && pendingAction !== undefined) {
          pending.complete = true;
          const req = pending;
          const chosen = pendingAction;
          pending = undefined;
          pendingAction = undefined;
          const action = chosen.kind === 'afterBody' ? decide(() => chosen.decide(req)) : chosen;
          if (action === undefined || action.kind === 'afterBody') {
            if (action?.kind === 'afterBody') scriptErrors.push(new Error('afterBody decided afterBody'));
            socket.resetAndDestroy();
            return;
          }
          req.action = action.kind;
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
    scriptErrors,
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

/** A loopback URL where nothing listens: connecting to it is refused (ECONNREFUSED). */
export async function closedPortUrl(): Promise<string> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', () => resolve()));
  const address = s.address();
  await new Promise<void>((resolve) => s.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return `http://127.0.0.1:${address.port}`;
}
