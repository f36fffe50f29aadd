// The Anthropic personality: POST /v1/messages (plain and streamed), /v1/messages/count_tokens and
// GET /v1/models (any prefix); the key in `x-api-key` (a bearer token too, as OAuth clients send it);
// every request must carry `anthropic-version` (https://docs.anthropic.com/en/api/versioning);
// rate limits told through retry-after and anthropic-ratelimit-* (https://docs.anthropic.com/en/api/rate-limits).
import {
  ANTHROPIC_MODEL,
  ANTHROPIC_MODELS_BODY,
  anthropicMessageBody,
  anthropicModelBody,
  anthropicStreamFrames,
  countTokensBody,
} from './anthropic-bodies.js';
import {
  API_ERROR_BODY,
  BILLING_BODY,
  CREDIT_TOO_LOW_BODY,
  INVALID_KEY_BODY,
  MISSING_KEY_BODY,
  MISSING_VERSION_BODY,
  NOT_FOUND_BODY,
  ORG_DISABLED_BODY,
  OVERLOADED_BODY,
  PERMISSION_BODY,
  RATE_LIMIT_BODY,
  STREAM_ERROR_FRAME,
  TOKENS_PER_DAY_BODY,
  modelNotFoundBody,
} from './anthropic-errors.js';
import {
  bearerOr,
  decodeOr,
  headerKey,
  jsonReply,
  parseObject,
  requestModel,
  roughTokens,
  type FailureBehavior,
  type FailureEnv,
  type FakeRequest,
  type Personality,
  type Reply,
} from './personality.js';
import { anthropicRateLimitHeaders, limitHeaders, retryAfterSeconds } from './rate-limit-headers.js';
import { DEFAULT_RATE_LIMIT_MS, DEFAULT_STREAM_CHUNKS } from './stream-defaults.js';

const MODEL_ID = /\/models\/([^/]+)$/;

function ok(request: FakeRequest): Reply {
  const { method, path, body } = request;
  if (method === 'POST') {
    if (path.endsWith('/messages/count_tokens')) return jsonReply(200, countTokensBody(roughTokens(body)));
    if (path.endsWith('/messages')) {
      const parsed = parseObject(body);
      const model = typeof parsed?.['model'] === 'string' ? parsed['model'] : ANTHROPIC_MODEL;
      if (parsed?.['stream'] === true) return { kind: 'stream', frames: anthropicStreamFrames(model, DEFAULT_STREAM_CHUNKS) };
      return jsonReply(200, anthropicMessageBody(model));
    }
  } else if (method === 'GET') {
    if (path.endsWith('/models')) return jsonReply(200, ANTHROPIC_MODELS_BODY);
    const id = MODEL_ID.exec(path)?.[1];
    if (id !== undefined) return jsonReply(200, anthropicModelBody(decodeOr(id)));
  }
  return jsonReply(404, NOT_FOUND_BODY);
}

function stream(request: FakeRequest, chunks: number): Reply {
  return { kind: 'stream', frames: anthropicStreamFrames(requestModel(request.body, ANTHROPIC_MODEL), chunks) };
}

function failure(behavior: FailureBehavior, request: FakeRequest, env: FailureEnv): Reply {
  switch (behavior.kind) {
    case 'rate_limit': {
      const ms = behavior.ms ?? DEFAULT_RATE_LIMIT_MS;
      return jsonReply(429, RATE_LIMIT_BODY, limitHeaders(behavior.style, ms, env, ['retry-after', 'anthropic-ratelimit']));
    }
    case 'resource_exhausted': {
      const ms = behavior.ms ?? DEFAULT_RATE_LIMIT_MS;
      const body = behavior.daily === true ? TOKENS_PER_DAY_BODY : RATE_LIMIT_BODY;
      return jsonReply(429, body, limitHeaders(undefined, ms, env, ['retry-after', 'anthropic-ratelimit']));
    }
    case 'insufficient_quota':
      return jsonReply(400, CREDIT_TOO_LOW_BODY);
    case 'payment_required':
      return jsonReply(402, BILLING_BODY);
    case 'unauthorized':
      return jsonReply(401, INVALID_KEY_BODY);
    case 'forbidden':
      return jsonReply(403, PERMISSION_BODY);
    case 'key_revoked':
      return jsonReply(403, ORG_DISABLED_BODY);
    case 'model_not_found': {
      const status = behavior.status ?? 404;
      return jsonReply(status, modelNotFoundBody(requestModel(request.body, 'unknown'), status));
    }
    case 'server_error':
      return jsonReply(behavior.status ?? 500, API_ERROR_BODY);
    case 'overloaded':
      return jsonReply(529, OVERLOADED_BODY);
    case 'error_in_stream': {
      const after = behavior.after ?? 0;
      const frames = anthropicStreamFrames(requestModel(request.body, ANTHROPIC_MODEL), after).slice(0, after);
      return { kind: 'stream', frames: [...frames, STREAM_ERROR_FRAME] };
    }
  }
}

export const anthropicPersonality: Personality = {
  provider: 'anthropic',
  requestIdHeader: 'request-id',
  keyOf: (headers) => headerKey(headers, 'x-api-key') ?? bearerOr(headers, 'x-api-key'),
  precheck: (request) => {
    const version = request.headers['anthropic-version'];
    return typeof version === 'string' && version !== '' ? undefined : jsonReply(400, MISSING_VERSION_BODY);
  },
  refuseKey: (_request, missing) => jsonReply(401, missing ? MISSING_KEY_BODY : INVALID_KEY_BODY),
  ok,
  stream,
  failure,
  windowExceeded: (_request, limit, resetMs, now) =>
    jsonReply(429, RATE_LIMIT_BODY, { 'retry-after': retryAfterSeconds(resetMs), ...anthropicRateLimitHeaders(limit, 0, resetMs, now) }),
  windowHeaders: (limit, remaining, resetMs, now) => anthropicRateLimitHeaders(limit, remaining, resetMs, now),
};
