// Answers a WebSocket handshake that will not be completed with a plain HTTP response written on the
// raw socket (after node:http's 'upgrade' event there is no ServerResponse), then closes it. The head is
// built from validated parts only, so no header value can inject a line.
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { ErrorFormat, KeypoolError } from '../errors.js';

/** RFC 9110 §5.1 field name. */
const FIELD_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** RFC 9110 §5.5 field value: visible characters, spaces and tabs, obs-text; no CR, LF or NUL. */
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
/** Headers keypool writes itself on every refusal. */
const OWN = new Set(['content-length', 'connection', 'transfer-encoding', 'upgrade']);
const JSON_TYPE = 'application/json; charset=utf-8';

export type HeadValues = Readonly<Record<string, string | readonly string[] | undefined>>;

/** `name: value` lines for the valid headers not in `skip` (lower-case names); invalid ones are left out. Pure. */
export function headerLines(headers: HeadValues, skip: ReadonlySet<string>): string[] {
  const lines: string[] = [];
  for (const [name, value] of Object.entries(headers)) {
    const lower = name.toLowerCase();
    if (value === undefined || skip.has(lower) || !FIELD_NAME.test(name)) continue;
    for (const v of typeof value === 'string' ? [value] : value) if (FIELD_VALUE.test(v)) lines.push(`${lower}: ${v}`);
  }
  return lines;
}

/** The response head: status line and the headers that are valid, each on its own line. Pure. */
export function formatHead(status: number, headers: HeadValues, length: number): string {
  const code = Number.isInteger(status) && status >= 200 && status <= 599 ? status : 502;
  const lines = [`HTTP/1.1 ${code} ${STATUS_CODES[code] ?? 'Unknown'}`, ...headerLines(headers, OWN)];
  // One content type: the upstream's first, else JSON (keypool's own errors).
  const typeAt = lines.findIndex((l) => l.startsWith('content-type: '));
  const out = lines.filter((l, i) => i === typeAt || !l.startsWith('content-type: '));
  if (typeAt === -1) out.push(`content-type: ${JSON_TYPE}`);
  out.push(`content-length: ${length}`, 'connection: close');
  return `${out.join('\r\n')}\r\n\r\n`;
}

/** Writes the response and closes the socket once it is out (at once if the client is gone). */
export function answerOnSocket(socket: Duplex, status: number, headers: HeadValues, body: string): void {
  if (socket.destroyed || !socket.writable) {
    socket.destroy();
    return;
  }
  const bytes = Buffer.from(body, 'utf8');
  socket.end(Buffer.concat([Buffer.from(formatHead(status, headers, bytes.length), 'latin1'), bytes]), () => socket.destroy());
}

/** keypool's own error in the upstream's shape (OpenAI's unless told), with its headers (Retry-After, x-should-retry...). */
export function refuseWithError(socket: Duplex, error: KeypoolError, extra: HeadValues = {}, format: ErrorFormat = 'openai'): void {
  answerOnSocket(socket, error.status, { ...error.headers, ...extra }, JSON.stringify(error.toBody(format)));
}
