// One attempt against the upstream over a shared keep-alive undici Agent, and the small helpers to
// read or discard a response body that will not be delivered.
import type { ServerResponse } from 'node:http';
import zlib from 'node:zlib';
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
/** How long keypool waits for an error body before deciding on status and headers alone. */
export const SNIPPET_TIMEOUT_MS = 1_000;

/**
 * Reads at most `limit` raw bytes of an error body, for at most `timeoutMs`, then decodes them
 * (gzip/deflate/br) as text. A stalled, broken or undecodable body yields what could be read: the
 * status and headers still decide, and rotation never waits on a slow error body.
 */
export async function readSnippet(
  res: UpstreamResponse,
  timer: (ms: number, fn: () => void) => () => void,
  limit = SNIPPET_LIMIT,
  timeoutMs = SNIPPET_TIMEOUT_MS,
): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  const cancel = timer(timeoutMs, () => res.body.destroy());
  try {
    // Reading a small body to its end keeps the keep-alive connection; only a huge one is cut off.
    for await (const chunk of res.body) {
      const buf = chunk as Buffer;
      chunks.push(buf);
      size += buf.length;
      if (size >= limit) break;
    }
  } catch {
    // Destroyed by the timer, or the upstream broke off: decide on what was read.
  } finally {
    cancel();
    if (!res.body.readableEnded) res.body.destroy();
  }
  return decode(Buffer.concat(chunks), String(res.headers['content-encoding'] ?? ''), limit);
}

function decode(raw: Buffer, encoding: string, limit: number): string {
  const e = encoding.trim().toLowerCase();
  // SYNC_FLUSH: a truncated stream yields what it has instead of throwing "unexpected end".
  const opts = { finishFlush: zlib.constants.Z_SYNC_FLUSH, maxOutputLength: limit };
  try {
    if (e === 'gzip' || e === 'x-gzip') return zlib.gunzipSync(raw, opts).toString('utf8');
    if (e === 'deflate') return zlib.inflateSync(raw, opts).toString('utf8');
    if (e === 'br') return zlib.brotliDecompressSync(raw, { maxOutputLength: limit }).toString('utf8');
  } catch {
    return '';
  }
  return raw.subarray(0, limit).toString('utf8');
}

/** Drops a body we will not deliver; a small one is drained so its connection can be reused. */
export async function discard(res: UpstreamResponse): Promise<void> {
  try {
    await res.body.dump({ limit: SNIPPET_LIMIT });
  } catch {
    // Nothing to deliver, nothing to report: the attempt's outcome is already decided.
  }
}

/**
 * Streams an upstream body to the client as it arrives. Resolves true when the client got all of it,
 * false when either side broke off (both are then destroyed, which cancels the upstream request).
 * Hand-rolled rather than stream.pipeline: pipeline builds an AbortController per call, measurable per request.
 */
export function pipeBody(body: UpstreamResponse['body'], raw: ServerResponse): Promise<boolean> {
  return new Promise((resolve) => {
    const settle = (ok: boolean): void => {
      body.off('error', onBroken);
      raw.off('error', onBroken);
      raw.off('finish', onFinish);
      raw.off('close', onClose);
      if (!ok) {
        body.destroy();
        raw.destroy();
      }
      resolve(ok);
    };
    const onBroken = (): void => settle(false);
    const onFinish = (): void => settle(true);
    const onClose = (): void => {
      if (!raw.writableFinished) settle(false);
    };
    body.on('error', onBroken);
    raw.on('error', onBroken);
    raw.on('finish', onFinish);
    raw.on('close', onClose);
    body.pipe(raw);
  });
}
