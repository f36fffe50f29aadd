// Writes one behaviour's response: the personality decides what (a Reply), this decides how (delays,
// one write per stream event, the request id). Only the ok path is hot, so it sends precomputed bytes
// and creates a timer only when a delay is actually configured.
import type { ServerResponse } from 'node:http';
import type { Behavior } from './behaviors.js';
import type { FakeRequest, HeaderMap, Personality, Reply } from './personality.js';
import { DEFAULT_STREAM_CHUNKS } from './stream-defaults.js';

export { DEFAULT_RATE_LIMIT_MS, DEFAULT_STREAM_CHUNKS, SCRIPTED_REQUEST_LIMIT } from './stream-defaults.js';
export type { HeaderMap } from './personality.js';

export interface Exchange {
  readonly request: FakeRequest;
  readonly res: ServerResponse;
  readonly requestId: string;
}

export interface RespondEnv {
  readonly personality: Personality;
  /** The header carrying the request id (x-request-id; Anthropic's request-id). */
  readonly requestIdHeader: string;
  readonly latencyMs: number;
  readonly now: () => number;
  /** The limit a scripted 429 reports (the server's window, else SCRIPTED_REQUEST_LIMIT). */
  readonly scriptedLimit: number;
}

/** Answers `exchange` as `behavior` says; `extra` headers (rate-window state) go on ok/stream replies. */
export function respond(behavior: Behavior, exchange: Exchange, env: RespondEnv, extra?: HeaderMap): void {
  const { personality } = env;
  switch (behavior.kind) {
    case 'ok': {
      const reply = personality.ok(exchange.request);
      afterDelay(exchange.res, env.latencyMs + (behavior.delayMs ?? 0), () => send(exchange, env, reply, 0, extra));
      return;
    }
    case 'stream': {
      const reply = personality.stream(exchange.request, behavior.chunks ?? DEFAULT_STREAM_CHUNKS);
      afterDelay(exchange.res, env.latencyMs + (behavior.delayMs ?? 0), () => {
        send(exchange, env, reply, behavior.gapMs ?? 0, extra);
      });
      return;
    }
    case 'error_in_stream': {
      const reply = personality.failure(behavior, exchange.request, { now: env.now(), scriptedLimit: env.scriptedLimit });
      afterDelay(exchange.res, env.latencyMs, () => send(exchange, env, reply, behavior.gapMs ?? 0, extra));
      return;
    }
    case 'hang':
      // Deliberately nothing: the server's socket set lets close() destroy this exchange.
      return;
    case 'status':
      sendStatus(exchange, env, behavior.status, behavior.body, behavior.headers);
      return;
    default:
      send(exchange, env, personality.failure(behavior, exchange.request, { now: env.now(), scriptedLimit: env.scriptedLimit }), 0);
  }
}

/** Writes a reply; a stream gets one write per frame, `gapMs` before each when set. */
export function send(exchange: Exchange, env: RespondEnv, reply: Reply, gapMs: number, extra?: HeaderMap): void {
  if (reply.kind === 'json') {
    const headers: Record<string, string | number> = {
      'content-type': 'application/json',
      'content-length': reply.body.length,
      [env.requestIdHeader]: exchange.requestId,
    };
    if (reply.headers !== undefined) Object.assign(headers, reply.headers);
    if (extra !== undefined) Object.assign(headers, extra);
    exchange.res.writeHead(reply.status, headers);
    exchange.res.end(reply.body);
    return;
  }
  const headers: HeaderMap = {
    'content-type': reply.contentType ?? 'text/event-stream',
    'cache-control': 'no-cache',
    [env.requestIdHeader]: exchange.requestId,
  };
  if (reply.headers !== undefined) Object.assign(headers, reply.headers);
  if (extra !== undefined) Object.assign(headers, extra);
  sendFrames(exchange.res, headers, reply.frames, gapMs);
}

function sendFrames(res: ServerResponse, headers: HeaderMap, frames: readonly Buffer[], gapMs: number): void {
  res.writeHead(200, headers);
  if (gapMs <= 0) {
    // One write per event even without gaps, so readers still see event-sized chunks.
    for (const frame of frames) res.write(frame);
    res.end();
    return;
  }
  // The head goes out at once, as a real upstream's does before its first token.
  res.flushHeaders();
  let next = 0;
  const writeNext = (): void => {
    const frame = frames[next++];
    if (next >= frames.length) {
      res.end(frame);
      return;
    }
    res.write(frame);
    afterDelay(res, gapMs, writeNext);
  };
  afterDelay(res, gapMs, writeNext);
}

function sendStatus(exchange: Exchange, env: RespondEnv, status: number, body: string | undefined, custom?: HeaderMap): void {
  const headers: Record<string, string | number> = { [env.requestIdHeader]: exchange.requestId };
  if (body !== undefined) headers['content-type'] = 'application/json';
  // Lower-case so a caller's `Content-Type` replaces ours instead of being sent next to it.
  for (const [name, value] of Object.entries(custom ?? {})) headers[name.toLowerCase()] = value;
  // RFC 9110 §15.3.5, §15.4.5: 204 and 304 carry no content, so no body and no length.
  const bodyless = status === 204 || status === 304;
  const bytes = bodyless || body === undefined ? undefined : Buffer.from(body);
  if (!bodyless) headers['content-length'] = bytes?.length ?? 0;
  exchange.res.writeHead(status, headers);
  exchange.res.end(bytes);
}

/** Runs `fn` after `ms` unless the response closes first (client abort or server close). */
function afterDelay(res: ServerResponse, ms: number, fn: () => void): void {
  if (ms <= 0) {
    fn();
    return;
  }
  const cancel = (): void => clearTimeout(timer);
  const timer = setTimeout(() => {
    res.off('close', cancel);
    fn();
  }, ms);
  res.once('close', cancel);
}
