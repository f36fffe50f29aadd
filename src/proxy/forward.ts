// One attempt against the upstream over a shared keep-alive undici Agent, and the small helpers to
// read or discard a response body that will not be delivered.
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import { Readable } from 'node:stream';
import { Agent, type Dispatcher } from 'undici';

export interface UpstreamRequest {
  readonly origin: string;
  readonly path: string;
  readonly method: Dispatcher.HttpMethod;
  readonly headers: Record<string, string | string[]>;
  readonly body: Buffer | undefined;
}

export interface UpstreamResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: Dispatcher.ResponseData['body'];
}

export interface Forwarder {
  send(req: UpstreamRequest, signal: AbortSignal): Promise<UpstreamResponse>;
  close(): Promise<void>;
}

export interface ForwarderOptions {
  connectTimeoutMs: number;
}

export function createForwarder(options: ForwarderOptions): Forwarder {
  const agent = new Agent({
    connect: { timeout: options.connectTimeoutMs },
    // keypool's own deadline (retry.timeoutMs) bounds every attempt; undici's 300 s defaults would cut
    // long completions and quiet streams short.
    headersTimeout: 0,
    bodyTimeout: 0,
    keepAliveTimeout: 30_000,
  });
  return {
    async send(req, signal) {
      const res = await agent.request({
        origin: req.origin,
        path: req.path,
        method: req.method,
        headers: req.headers,
        body: req.body,
        signal,
      });
      return { status: res.statusCode, headers: res.headers, body: res.body };
    },
    async close() {
      await agent.close();
    },
  };
}

/** Largest part of an error body keypool reads to decide (e.g. find `insufficient_quota`). */
export const SNIPPET_LIMIT = 64 * 1024;

/** Reads at most `limit` bytes of a body as text (decoding gzip/deflate/br), then discards the rest. */
export async function readSnippet(res: UpstreamResponse, limit = SNIPPET_LIMIT): Promise<string> {
  const encoding = String(res.headers['content-encoding'] ?? '').trim().toLowerCase();
  const decoder =
    encoding === 'gzip' || encoding === 'x-gzip'
      ? createGunzip()
      : encoding === 'deflate'
        ? createInflate()
        : encoding === 'br'
          ? createBrotliDecompress()
          : undefined;
  const source: Readable = decoder ? res.body.pipe(decoder) : res.body;
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    // Reading a small body to its end keeps the keep-alive connection; only a huge one is cut off.
    for await (const chunk of source) {
      const buf = chunk as Buffer;
      chunks.push(buf);
      size += buf.length;
      if (size >= limit) break;
    }
  } catch {
    // A broken error body still tells us the status; decide on what was read.
  } finally {
    if (!res.body.readableEnded) res.body.destroy();
    decoder?.destroy();
  }
  return Buffer.concat(chunks).subarray(0, limit).toString('utf8');
}

/** Drops a body we will not deliver; a small one is drained so its connection can be reused. */
export async function discard(res: UpstreamResponse): Promise<void> {
  try {
    await res.body.dump({ limit: SNIPPET_LIMIT });
  } catch {
    // Nothing to deliver, nothing to report: the attempt's outcome is already decided.
  }
}
