// The OpenAI personality (the default): bearer keys (x-api-key too, for clients that send it), the
// endpoint-aware successes of ok-routes.ts, and OpenAI's error envelope for every failure
// (https://platform.openai.com/docs/guides/error-codes). Azure reuses its successes and streams.
import { streamFrames } from './openai-bodies.js';
import {
  FORBIDDEN_BODY,
  INSUFFICIENT_QUOTA_BODY,
  MISSING_KEY_BODY,
  ORG_DISABLED_BODY,
  OVERLOADED_BODY,
  PAYMENT_REQUIRED_BODY,
  RATE_LIMIT_BODY,
  SERVER_ERROR_BODY,
  STREAM_ERROR_FRAME,
  UNAUTHORIZED_BODY,
  modelNotFoundBody,
  requestsPerBody,
} from './openai-errors.js';
import { responseErrorFrame, responseStreamFrames } from './openai-responses-stream.js';
import { routeOk, wantsUsage } from './ok-routes.js';
import {
  bearerOr,
  jsonReply,
  parseObject,
  requestModel,
  type FailureBehavior,
  type FailureEnv,
  type FakeRequest,
  type Personality,
  type Reply,
} from './personality.js';
import { limitHeaders, openAiDuration, windowExceededHeaders, xRateLimitHeaders } from './rate-limit-headers.js';
import { DEFAULT_RATE_LIMIT_MS } from './stream-defaults.js';

/** The `stream` behaviour on OpenAI's paths: Responses events on /responses, chat chunks elsewhere. */
export function openAiStream(request: FakeRequest, chunks: number): Reply {
  if (request.path.endsWith('/responses')) return { kind: 'stream', frames: responseStreamFrames(chunks) };
  return { kind: 'stream', frames: streamFrames(chunks, wantsUsage(parseObject(request.body))) };
}

/** A 200 stream with `after` ordinary events, then OpenAI's error event (Responses: `event: error`). */
export function openAiErrorInStream(request: FakeRequest, after: number): Reply {
  if (request.path.endsWith('/responses')) {
    return { kind: 'stream', frames: [...responseStreamFrames(after).slice(0, after), responseErrorFrame(after)] };
  }
  // Chunks of a longer stream, so none of the `after` carries the closing finish_reason.
  return { kind: 'stream', frames: [...streamFrames(after + 1, false).slice(0, after), STREAM_ERROR_FRAME] };
}

export function openAiFailure(behavior: FailureBehavior, request: FakeRequest, env: FailureEnv): Reply {
  switch (behavior.kind) {
    case 'rate_limit': {
      const ms = behavior.ms ?? DEFAULT_RATE_LIMIT_MS;
      return jsonReply(429, RATE_LIMIT_BODY, limitHeaders(behavior.style, ms, env, ['retry-after']));
    }
    case 'resource_exhausted': {
      const ms = behavior.ms ?? DEFAULT_RATE_LIMIT_MS;
      const body = requestsPerBody(requestModel(request.body, 'gpt-4o-mini'), behavior.daily === true, openAiDuration(ms));
      return jsonReply(429, body, limitHeaders(undefined, ms, env, ['retry-after', 'x-ratelimit']));
    }
    case 'insufficient_quota':
      return jsonReply(429, INSUFFICIENT_QUOTA_BODY);
    case 'payment_required':
      return jsonReply(402, PAYMENT_REQUIRED_BODY);
    case 'unauthorized':
      return jsonReply(401, UNAUTHORIZED_BODY);
    case 'forbidden':
      return jsonReply(403, FORBIDDEN_BODY);
    case 'key_revoked':
      return jsonReply(403, ORG_DISABLED_BODY);
    case 'model_not_found': {
      const status = behavior.status ?? 404;
      return jsonReply(status, modelNotFoundBody(requestModel(request.body, 'unknown'), status));
    }
    case 'server_error':
      return jsonReply(behavior.status ?? 500, SERVER_ERROR_BODY);
    case 'overloaded':
      return jsonReply(503, OVERLOADED_BODY);
    case 'error_in_stream':
      return openAiErrorInStream(request, behavior.after ?? 0);
  }
}

export const openAiPersonality: Personality = {
  provider: 'openai',
  requestIdHeader: 'x-request-id',
  keyOf: (headers) => bearerOr(headers, 'x-api-key'),
  precheck: () => undefined,
  refuseKey: (_request, missing) => jsonReply(401, missing ? MISSING_KEY_BODY : UNAUTHORIZED_BODY),
  ok: (request) => routeOk(request.method, request.path, request.body),
  stream: openAiStream,
  failure: openAiFailure,
  windowExceeded: (_request, limit, resetMs) => jsonReply(429, RATE_LIMIT_BODY, windowExceededHeaders(limit, resetMs)),
  windowHeaders: (limit, remaining, resetMs) => xRateLimitHeaders(limit, remaining, resetMs),
};
