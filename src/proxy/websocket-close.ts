// What one side's close tells the other (RFC 6455 §7.4): a code an endpoint may send passes through
// with its reason; "no status" (1005) passes as a close frame without one; a connection that dropped
// without a close frame (1006, or a TLS failure, 1015) cannot be told as such, so the other side gets the
// nearest code it may receive. Pure.

export type Side = 'client' | 'upstream';

export interface CloseFrame {
  /** undefined: a close frame without a status code (the other side then sees 1005). */
  readonly code: number | undefined;
  readonly reason: Buffer;
}

/** A close reason is at most 123 bytes: a control frame's 125 minus the two of the code. */
export const MAX_CLOSE_REASON_BYTES = 123;

/** Sent when a side dropped without a close frame. */
export const GOING_AWAY = 1001;
/** RFC 6455 §7.4.1 registry: a gateway got an invalid response from its upstream (here: none). */
export const BAD_GATEWAY = 1014;

const EMPTY = Buffer.alloc(0);
const UPSTREAM_LOST = Buffer.from('keypool: the upstream connection was lost');
const CLIENT_LOST = Buffer.from('keypool: the client went away');

/** RFC 6455 §7.4.1-2 and the IANA registry: codes an endpoint may put in a close frame. */
export function isSendableCode(code: number): boolean {
  if (!Number.isInteger(code)) return false;
  if (code >= 3000 && code <= 4999) return true;
  return code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006;
}

/** The close frame for the other side, after `from` closed with `code` and `reason`. */
export function closeForOther(from: Side, code: number, reason: Buffer): CloseFrame {
  if (isSendableCode(code)) return { code, reason: reason.length <= MAX_CLOSE_REASON_BYTES ? reason : EMPTY };
  if (code === 1005) return { code: undefined, reason: EMPTY };
  return from === 'upstream' ? { code: BAD_GATEWAY, reason: UPSTREAM_LOST } : { code: GOING_AWAY, reason: CLIENT_LOST };
}

/**
 * A close reason with `scrub` applied, still within 123 bytes (cut at a character boundary). The
 * upstream's reason reaches the client: it must not carry a key.
 */
export function scrubReason(reason: Buffer, scrub: (text: string) => string): Buffer {
  if (reason.length === 0) return reason;
  const text = reason.toString('utf8');
  const clean = scrub(text);
  if (clean === text) return reason;
  const out = Buffer.from(clean, 'utf8');
  if (out.length <= MAX_CLOSE_REASON_BYTES) return out;
  let cut = '';
  let bytes = 0;
  for (const ch of clean) {
    const n = Buffer.byteLength(ch, 'utf8');
    if (bytes + n > MAX_CLOSE_REASON_BYTES) break;
    bytes += n;
    cut += ch;
  }
  return Buffer.from(cut, 'utf8');
}
