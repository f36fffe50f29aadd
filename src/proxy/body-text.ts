// Turns the first bytes of an upstream error body into text for the policy and the client's message:
// gzip, deflate and br are decoded, bounded in output, and a truncated or broken encoding yields what
// could be read (or nothing), never an exception.
import zlib from 'node:zlib';

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
