// An upstream's non-101 answer to a handshake, as websocket-connect.ts's key rotation uses it: its body
// read (bounded), the answer as the client may see it (decoded, scrubbed of secrets, framing headers
// gone), and what a penalty means for the pool's counts. Pure apart from reading the body.
import type { UpstreamAnswer } from '../keys/pool.js';
import type { Scrubber } from '../keys/scrub.js';
import { answerOf as answerOfRead, decodeBody } from './body-text.js';
import { SNIPPET_LIMIT, SNIPPET_TIMEOUT_MS } from './rotate.js';
import type { HandshakeResult } from './websocket-handshake.js';

export type Answered = Extract<HandshakeResult, { kind: 'answered' }>;

/** The answer's body as text, at most SNIPPET_LIMIT bytes, decoded. */
export async function readText(r: Answered): Promise<string> {
  const raw = await r.read(SNIPPET_LIMIT, SNIPPET_TIMEOUT_MS);
  return decodeBody(raw, r.headers['content-encoding'], SNIPPET_LIMIT);
}

/** The upstream's answer as the client may see it (body-text.ts answerOf), without its Sec-WebSocket-* headers. */
export function answerOf(r: Answered, body: string, scrub: Scrubber): UpstreamAnswer {
  return answerOfRead(r, body, scrub, (name) => name.startsWith('sec-websocket-'));
}
