// Buffering a request body once, within the size limit, so every attempt replays the same bytes; a
// client that leaves mid-upload is told apart from one that finished.
import type { IncomingMessage } from 'node:http';

/** Buffers the request body once, up to `limit` bytes (every attempt replays the same bytes). */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer | undefined | 'too_large' | 'aborted'> {
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (declared > limit) {
    req.resume();
    return Promise.resolve('too_large');
  }
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer): void => {
      size += c.length;
      // Past the limit nothing more is read: the answer (413) goes now, not when the body ends.
      if (size > limit) finish('too_large');
      else chunks.push(c);
    };
    const finish = (r: Buffer | undefined | 'too_large' | 'aborted'): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onFail);
      req.off('close', onClose);
      resolve(r);
    };
    const onEnd = (): void => finish(size === 0 ? undefined : chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    const onFail = (): void => finish('aborted');
    const onClose = (): void => {
      if (!req.complete) finish('aborted');
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onFail);
    req.on('close', onClose);
  });
}
