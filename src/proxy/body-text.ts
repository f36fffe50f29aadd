// Turns the first bytes of an upstream error body into text for the policy and the client's message:
// gzip, deflate and br are decoded, bounded in output, and a truncated or broken encoding yields what
// could be read (or nothing), never an exception; and an answer read that way, as the client gets it
// (scrubbed).
import zlib from 'node:zlib';
import type { UpstreamAnswer } from '../keys/pool.js';
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
 * An answer whose body was read (and decoded), as the client may see it: its headers without the ones
 * that described the raw bytes (and any `skip` names), every value and the text scrubbed of secrets (a
 * gateway may quote the credential it refused, in its text or in a header). HTTP attempts and WebSocket
 * handshakes both hand answers on through here.
 */
export function answerOf(
  head: { readonly status: number; readonly headers: Readonly<Record<string, string | string[] | undefined>> },
  body: string,
  scrub: (t: string) => string,
  skip: (name: string) => boolean = () => false,
): UpstreamAnswer {
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(clientResponseHeaders(head.headers))) {
    if (value === undefined || name === 'content-length' || name === 'content-encoding' || skip(name)) continue;
    headers[name] = Array.isArray(value) ? value.map((v) => scrub(String(v))) : scrub(String(value));
  }
  return { status: head.status, headers, body: scrub(body) };
}
