// An upstream's non-101 answer to a handshake, as websocket-connect.ts's key rotation uses it: its body
// read (bounded), the answer as the client may see it (decoded, scrubbed of secrets, framing headers
// gone), and what a penalty means for the pool's counts. Pure apart from reading the body.
import type { UpstreamAnswer } from '../keys/pool.js';
import type { Scrubber } from '../keys/scrub.js';
import { decodeBody } from './body-text.js';
import { clientResponseHeaders } from './headers.js';
import { SNIPPET_LIMIT, SNIPPET_TIMEOUT_MS } from './rotate.js';
import type { HandshakeResult } from './websocket-handshake.js';

export type Answered = Extract<HandshakeResult, { kind: 'answered' }>;

/** The answer's body as text, at most SNIPPET_LIMIT bytes, decoded. */
export async function readText(r: Answered): Promise<string> {
  const raw = await r.read(SNIPPET_LIMIT, SNIPPET_TIMEOUT_MS);
  return decodeBody(raw, r.headers['content-encoding'], SNIPPET_LIMIT);
}

/** The upstream's answer as the client may see it: decoded, scrubbed of secrets, its framing headers gone. */
export function answerOf(r: Answered, body: string, scrub: Scrubber): UpstreamAnswer {
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(clientResponseHeaders(r.headers))) {
    if (value === undefined || name === 'content-length' || name === 'content-encoding' || name.startsWith('sec-websocket-')) continue;
    headers[name] = Array.isArray(value) ? value.map((v) => scrub(String(v))) : scrub(String(value));
  }
  return { status: r.status, headers, body: scrub(body) };
}
