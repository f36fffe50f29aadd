// Turns the first bytes of an upstream error body into text for the policy and the client's message:
// gzip, deflate and br are decoded, bounded in output, and a truncated or broken encoding yields what
// could be read (or nothing), never an exception; and an answer read that way, as the client gets it.
import zlib from 'node:zlib';
import type { UpstreamAnswer } from '../keys/pool.js';
import type { AttemptHead } from './attempt.js';
import { clientResponseHeaders } from './headers.js';

export function decodeBody(raw: Buffer, encoding: string | string[] | undefined, limit: number): string {
  const e = (Array.isArray(encoding) ? encoding[0] : encoding)?.trim().toLowerCase() ?? '';
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
/**
 * An answer whose body was read (and decoded): its headers without the ones that described the raw bytes,
 * its text scrubbed of secrets (a gateway may quote the credential it refused).
 */
export function answerOf(head: Extract<AttemptHead, { kind: 'head' }>, body: string, scrub: (t: string) => string): UpstreamAnswer {
  const headers = clientResponseHeaders(head.headers) as Record<string, string | string[]>;
  delete headers['content-length'];
  delete headers['content-encoding'];
  return { status: head.status, headers, body: scrub(body) };
}
