// Writes one behaviour's response. Only the ok path is hot, so it sends precomputed bytes and
// creates a timer only when a delay is actually configured.
import type { ServerResponse } from 'node:http';
import type { Behavior } from './behaviors.js';
import { routeOk, parseObject, wantsUsage } from './ok-routes.js';
import { streamFrames } from './openai-bodies.js';
import {
  FORBIDDEN_BODY,
  ORG_DISABLED_BODY,
  modelNotFoundBody,
  INSUFFICIENT_QUOTA_BODY,
  PAYMENT_REQUIRED_BODY,
  RATE_LIMIT_BODY,
  SERVER_ERROR_BODY,
  UNAUTHORIZED_BODY,
} from './openai-errors.js';
import { scriptedRateLimitHeaders } from './rate-limit-headers.js';

/** @default chunks of a `stream` behaviour and of an ok chat request with `stream: true`. */
export const DEFAULT_STREAM_CHUNKS = 5;
/** @default wait told by a scripted rate_limit behaviour. */
export const DEFAULT_RATE_LIMIT_MS = 1000;
/** x-ratelimit-limit-requests of a scripted 429 when the server has no rateLimit of its own. */
export const SCRIPTED_REQUEST_LIMIT = 60;

export type HeaderMap = Record<string, string>;

export interface Exchange {
  method: string;
  /** Without the query string. */
  path: string;
  body: Buffer;
  res: ServerResponse;
  requestId: string;
}

export interface RespondEnv {
  latencyMs: number;
  now: () => number;
  /** x-ratelimit-limit-requests reported by a scripted `x-ratelimit` 429. */
  scriptedLimit: number;
}

/** Answers `exchange` as `behavior` says; `extra` headers (rate-window state) go on ok/stream replies. */
export function respond(behavior: Behavior, exchange: Exchange, env: RespondEnv, extra?: HeaderMap): void {
  switch (behavior.kind) {
    case 'ok': {
      const route = routeOk(exchange.method, exchange.path, exchange.body);
      afterDelay(exchange.res, env.latencyMs + (behavior.delayMs ?? 0), () => {
        if (route.kind === 'stream') {
          sendStream(exchange, streamFrames(DEFAULT_STREAM_CHUNKS, route.includeUsage), 0, extra);
        } else {
          sendJson(exchange, route.status, route.body, extra);
        }
      });
      return;
    }
    case 'stream': {
      const frames = streamFrames(behavior.chunks ?? DEFAULT_STREAM_CHUNKS, wantsUsage(parseObject(exchange.body)));
      afterDelay(exchange.res, env.latencyMs + (behavior.delayMs ?? 0), () => {
        sendStream(exchange, frames, behavior.gapMs ?? 0, extra);
      });
      return;
    }
    case 'rate_limit': {
      const headers = scriptedRateLimitHeaders(
        behavior.style ?? 'retry-after',
        behavior.ms ?? DEFAULT_RATE_LIMIT_MS,
        env.now(),
        env.scriptedLimit,
      );
      sendJson(exchange, 429, RATE_LIMIT_BODY, headers);
      return;
    }
    case 'insufficient_quota':
      sendJson(exchange, 429, INSUFFICIENT_QUOTA_BODY);
      return;
    case 'payment_required':
      sendJson(exchange, 402, PAYMENT_REQUIRED_BODY);
      return;
    case 'unauthorized':
      sendJson(exchange, 401, UNAUTHORIZED_BODY);
      return;
    case 'forbidden':
      sendJson(exchange, 403, FORBIDDEN_BODY);
      return;
    case 'key_revoked':
      sendJson(exchange, 403, ORG_DISABLED_BODY);
      return;
    case 'model_not_found':
      sendJson(exchange, behavior.status ?? 404, modelNotFoundBody(modelOf(exchange.body), behavior.status ?? 404));
      return;
    case 'server_error':
      sendJson(exchange, behavior.status ?? 500, SERVER_ERROR_BODY);
      return;
    case 'hang':
      // Deliberately nothing: the server's socket set lets close() destroy this exchange.
      return;
    case 'status':
      sendStatus(exchange, behavior.status, behavior.body, behavior.headers);
      return;
  }
}

export function sendJson(exchange: Exchange, status: number, body: Buffer, extra?: HeaderMap): void {
  const headers: Record<string, string | number> = {
    'content-type': 'application/json',
    'content-length': body.length,
    'x-request-id': exchange.requestId,
  };
  if (extra !== undefined) Object.assign(headers, extra);
  exchange.res.writeHead(status, headers);
  exchange.res.end(body);
}

function sendStream(exchange: Exchange, frames: readonly Buffer[], gapMs: number, extra?: HeaderMap): void {
  const { res } = exchange;
  const headers: HeaderMap = {
    'content-type': 'text/event-stream',
    'cache-control': 'no-cache',
    'x-request-id': exchange.requestId,
  };
  if (extra !== undefined) Object.assign(headers, extra);
  res.writeHead(200, headers);
  if (gapMs <= 0) {
    // One write per event even without gaps, so readers still see event-sized chunks.
    for (const frame of frames) res.write(frame);
    res.end();
    return;
  }
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
  writeNext();
}

function sendStatus(exchange: Exchange, status: number, body: string | undefined, custom?: HeaderMap): void {
  const headers: Record<string, string | number> = { 'x-request-id': exchange.requestId };
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

function modelOf(body: Buffer): string {
  const m = parseObject(body)?.model;
  return typeof m === 'string' ? m : 'unknown';
}
