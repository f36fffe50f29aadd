// A raw-socket upstream for attack tests whose answers need more than the fault upstream's actions:
// a handler gets the socket itself once a request's body is in (to drip, gzip, hold or cut), and the
// server can read slowly (a slow upstream link) so a large upload takes a while to be written.
import { createServer, type Server, type Socket } from 'node:net';
import { RequestReader, type RequestHead } from '../helpers/http-request-reader.js';

export interface RawRequest {
  readonly head: RequestHead;
  readonly body: Buffer;
  /** The connection it came on (0-based, in accept order). */
  readonly connection: number;
  readonly socket: Socket;
}

export interface RawUpstreamOptions {
  /**
   * Read at most this many bytes per `readEveryMs` (a slow link). The socket is paused in between, so
   * the sender's buffers fill and its writes wait. @default unthrottled
   */
  readonly readBytes?: number;
  /** @default 10 */
  readonly readEveryMs?: number;
}

export interface RawUpstream {
  readonly url: string;
  /** Requests whose whole body arrived, in order. */
  readonly requests: readonly RawRequest[];
  /** Request heads seen (a request whose body never completed is here, not in `requests`). */
  readonly heads: readonly RequestHead[];
  readonly openSockets: number;
  close(): Promise<void>;
}

export async function startRawUpstream(handle: (req: RawRequest) => void, o: RawUpstreamOptions = {}): Promise<RawUpstream> {
  const requests: RawRequest[] = [];
  const heads: RequestHead[] = [];
  const sockets = new Set<Socket>();
  let connections = 0;
  const server: Server = createServer((socket) => {
    const connection = connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    const reader = new RequestReader();
    let head: RequestHead | undefined;
    let chunks: Buffer[] = [];
    const take = (data: Buffer): void => {
      for (const ev of reader.push(data)) {
        if (ev.kind === 'head') {
          head = ev.head;
          heads.push(ev.head);
          chunks = [];
        } else if (ev.kind === 'body') chunks.push(Buffer.from(ev.data));
        else if (ev.kind === 'end' && head !== undefined) {
          const req: RawRequest = { head, body: Buffer.concat(chunks), connection, socket };
          requests.push(req);
          handle(req);
        } else if (ev.kind === 'error') socket.destroy();
      }
    };
    if (o.readBytes === undefined) {
      socket.on('data', take);
      return;
    }
    // Throttled: pull a few bytes at a time from a paused socket.
    const every = o.readEveryMs ?? 10;
    const timer = setInterval(() => {
      const data = socket.read(Math.min(o.readBytes!, socket.readableLength || o.readBytes!)) as Buffer | null;
      if (data !== null) take(data);
    }, every);
    socket.on('close', () => clearInterval(timer));
    socket.pause();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return {
    url: `http://127.0.0.1:${address.port}`,
    requests,
    heads,
    get openSockets() {
      return sockets.size;
    },
    async close() {
      const closing = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await closing;
    },
  };
}

/** A complete JSON answer on the raw socket (keep-alive). */
export function writeJson(socket: Socket, status: number, body: unknown, headers: Readonly<Record<string, string>> = {}): void {
  const text = Buffer.from(JSON.stringify(body));
  let head = `HTTP/1.1 ${status} X\r\ncontent-type: application/json\r\ncontent-length: ${text.length}\r\n`;
  for (const [n, v] of Object.entries(headers)) head += `${n}: ${v}\r\n`;
  socket.write(`${head}\r\n`);
  socket.write(text);
}

/** One chunk of a chunked body. */
export function writeChunk(socket: Socket, data: Buffer | string): void {
  const b = typeof data === 'string' ? Buffer.from(data) : data;
  socket.write(`${b.length.toString(16)}\r\n`);
  socket.write(b);
  socket.write('\r\n');
}
