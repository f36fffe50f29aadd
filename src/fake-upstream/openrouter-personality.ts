// The OpenRouter personality: OpenAI-compatible at {prefix}/api/v1 (chat/completions, completions,
// embeddings, responses, models in OpenRouter's shape), bearer keys, streams that open with OpenRouter's
// `: OPENROUTER PROCESSING` comment, its own error envelope, 402 for insufficient credits and the error
// chunk inside a 200 stream (https://openrouter.ai/docs/api-reference/errors, .../streaming).
import { routeOk } from './ok-routes.js';
import { openAiStream } from './openai-personality.js';
import {
  INSUFFICIENT_CREDITS_BODY,
  KEY_DISABLED_BODY,
  KEY_LIMIT_BODY,
  MODERATION_BODY,
  NO_CREDENTIALS_BODY,
  OPENROUTER_MODEL,
  OPENROUTER_MODELS_BODY,
  PROCESSING_FRAME,
  PROVIDER_OVERLOADED_BODY,
  STREAM_ERROR_FRAME,
  USER_NOT_FOUND_BODY,
  internalBody,
  noEndpointsBody,
  notFoundBody,
  rateLimitBody,
} from './openrouter-bodies.js';
import { streamFrames } from './openai-bodies.js';
import {
  bearerOr,
  jsonReply,
  requestModel,
  type FailureBehavior,
  type FailureEnv,
  type FakeRequest,
  type Personality,
  type Reply,
} from './personality.js';
import { limitHeaders, retryAfterSeconds } from './rate-limit-headers.js';
import { DEFAULT_RATE_LIMIT_MS } from './stream-defaults.js';

/** OpenRouter's streams open with its keep-alive comment, which a conforming SSE parser skips. */
function withComment(reply: Reply): Reply {
  return reply.kind === 'stream' ? { ...reply, frames: [PROCESSING_FRAME, ...reply.frames] } : reply;
}

function ok(request: FakeRequest): Reply {
  if (request.method === 'GET' && request.path.endsWith('/models')) return jsonReply(200, OPENROUTER_MODELS_BODY);
  const reply = routeOk(request.method, request.path, request.body);
  if (reply.kind === 'json' && reply.status === 404) return jsonReply(404, notFoundBody(request.path));
  return withComment(reply);
}

function failure(behavior: FailureBehavior, request: FakeRequest, env: FailureEnv): Reply {
  switch (behavior.kind) {
    case 'rate_limit': {
      const ms = behavior.ms ?? DEFAULT_RATE_LIMIT_MS;
      return jsonReply(429, rateLimitBody(false, env.scriptedLimit, env.now + ms), limitHeaders(behavior.style, ms, env, ['retry-after']));
    }
    case 'resource_exhausted': {
      const ms = behavior.ms ?? DEFAULT_RATE_LIMIT_MS;
      return jsonReply(429, rateLimitBody(behavior.daily === true, env.scriptedLimit, env.now + ms), limitHeaders(undefined, ms, env, ['retry-after']));
    }
    case 'insufficient_quota':
      return jsonReply(402, KEY_LIMIT_BODY);
    case 'payment_required':
      return jsonReply(402, INSUFFICIENT_CREDITS_BODY);
    case 'unauthorized':
      return jsonReply(401, USER_NOT_FOUND_BODY);
    case 'forbidden':
      return jsonReply(403, MODERATION_BODY);
    case 'key_revoked':
      return jsonReply(401, KEY_DISABLED_BODY);
    case 'model_not_found': {
      const status = behavior.status ?? 404;
      return jsonReply(status, noEndpointsBody(requestModel(request.body, OPENROUTER_MODEL), status));
    }
    case 'server_error': {
      const status = behavior.status ?? 500;
      return jsonReply(status, internalBody(status));
    }
    case 'overloaded':
      return jsonReply(502, PROVIDER_OVERLOADED_BODY);
    case 'error_in_stream': {
      const after = behavior.after ?? 0;
      // Chunks of a longer stream, so none of the `after` carries the closing finish_reason.
      const chunks = streamFrames(after + 1, false).slice(0, after);
      return { kind: 'stream', frames: [PROCESSING_FRAME, ...chunks, STREAM_ERROR_FRAME] };
    }
  }
}

export const openRouterPersonality: Personality = {
  provider: 'openrouter',
  requestIdHeader: 'x-generation-id',
  keyOf: (headers) => bearerOr(headers, 'x-api-key'),
  precheck: () => undefined,
  refuseKey: (_request, missing) => jsonReply(401, missing ? NO_CREDENTIALS_BODY : USER_NOT_FOUND_BODY),
  ok,
  stream: (request, chunks) => withComment(openAiStream(request, chunks)),
  failure,
  windowExceeded: (_request, limit, resetMs, now) =>
    jsonReply(429, rateLimitBody(false, limit, now + resetMs), { 'retry-after': retryAfterSeconds(resetMs) }),
  windowHeaders: () => undefined,
};
