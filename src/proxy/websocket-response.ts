// What the client's handshake answer carries besides what ws writes (Upgrade, Connection, Accept, the
// subprotocol): the upstream's end-to-end 101 headers (request id, rate-limit state), scrubbed, and
// keypool's own x-keypool-* headers. Pure.
import type { IncomingHttpHeaders } from 'node:http';
import { clientResponseHeaders } from './headers.js';
import { headerLines } from './websocket-refuse.js';

/** Written by ws for this hop, or meaningless on a 101. */
const SKIP = new Set(['content-length', 'content-type', 'content-encoding', 'upgrade', 'connection']);

/** x-keypool-* on every handshake answer: the request id, attempts, the key's name (never its secret). */
export function keypoolHeaders(id: string, attempts: number, key: string | undefined): Record<string, string> {
  const h: Record<string, string> = { 'x-keypool-request-id': id, 'x-keypool-attempts': String(attempts) };
  if (key !== undefined) h['x-keypool-key'] = key;
  return h;
}

/** Header lines for the client's 101: the upstream's, scrubbed, without its Sec-WebSocket-* ones; then keypool's. */
export function handshakeLines(upstream: IncomingHttpHeaders, scrub: (text: string) => string, own: Readonly<Record<string, string>>): string[] {
  const relayed: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(clientResponseHeaders(upstream))) {
    // clientResponseHeaders has dropped hop-by-hop and the upstream's own x-keypool-* headers already.
    if (value === undefined || name.startsWith('sec-websocket-')) continue;
    relayed[name] = Array.isArray(value) ? value.map((v) => scrub(String(v))) : scrub(String(value));
  }
  return [...headerLines(relayed, SKIP), ...headerLines(own, SKIP)];
}
