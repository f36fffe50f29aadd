// The Gemini personality: POST {prefix}/models/{model}:generateContent, :streamGenerateContent (SSE with
// `?alt=sse`, a JSON array without), :countTokens, GET {prefix}/models; the key in `x-goog-api-key` or
// the `key` query parameter (https://ai.google.dev/gemini-api/docs/api-key). No rate-limit headers:
// a 429 carries its wait in the body's RetryInfo.
import type { IncomingHttpHeaders } from 'node:http';
import {
  GEMINI_MODEL,
  GEMINI_MODELS_BODY,
  countTokensBody,
  geminiChunks,
  geminiModelBody,
  geminiSseFrame,
  generateContentBody,
  jsonArrayFrames,
} from './gemini-bodies.js';
import {
  API_KEY_EXPIRED_BODY,
  API_KEY_INVALID_BODY,
  BILLING_BODY,
  PERMISSION_DENIED_BODY,
  UNAVAILABLE_BODY,
  UNREGISTERED_CALLER_BODY,
  internalBody,
  modelNotFoundBody,
  notFoundBody,
  resourceExhaustedBody,
} from './gemini-errors.js';
import {
  decodeOr,
  headerKey,
  jsonReply,
  queryParam,
  roughTokens,
  type FailureBehavior,
  type FailureEnv,
  type FakeRequest,
  type Personality,
  type Reply,
} from './personality.js';
import { limitHeaders } from './rate-limit-headers.js';
import { DEFAULT_RATE_LIMIT_MS, DEFAULT_STREAM_CHUNKS } from './stream-defaults.js';

const METHOD = /\/models\/([^/:]+):([A-Za-z]+)$/;
const MODEL_ID = /\/models\/([^/:]+)$/;

/** The model a request names in its path (`…/models/gemini-2.5-flash:generateContent`). */
function pathModel(path: string): string {
  const id = METHOD.exec(path)?.[1] ?? MODEL_ID.exec(path)?.[1];
  return id === undefined ? GEMINI_MODEL : decodeOr(id);
}

function keyOf(headers: IncomingHttpHeaders, query: string): string | undefined {
  const key = headerKey(headers, 'x-goog-api-key') ?? queryParam(query, 'key');
  return key === '' ? undefined : key;
}

/** A stream in the form the request asked for: SSE with `alt=sse`, else one JSON array. */
function streamReply(request: FakeRequest, values: readonly unknown[], tail?: unknown): Reply {
  const all = tail === undefined ? values : [...values, tail];
  if (queryParam(request.query, 'alt') === 'sse') return { kind: 'stream', frames: all.map(geminiSseFrame) };
  return { kind: 'stream', frames: jsonArrayFrames(all), contentType: 'application/json; charset=UTF-8' };
}

function ok(request: FakeRequest): Reply {
  const { method, path } = request;
  if (method === 'POST') {
    const call = METHOD.exec(path);
    const model = pathModel(path);
    switch (call?.[2]) {
      case 'generateContent':
        return jsonReply(200, generateContentBody(model));
      case 'streamGenerateContent':
        return streamReply(request, geminiChunks(model, DEFAULT_STREAM_CHUNKS));
      case 'countTokens':
        return jsonReply(200, countTokensBody(roughTokens(request.body)));
    }
  } else if (method === 'GET') {
    if (path.endsWith('/models')) return jsonReply(200, GEMINI_MODELS_BODY);
    if (MODEL_ID.test(path)) return jsonReply(200, geminiModelBody(pathModel(path)));
  }
  return jsonReply(404, notFoundBody(path));
}

function failure(behavior: FailureBehavior, request: FakeRequest, env: FailureEnv): Reply {
  const model = pathModel(request.path);
  switch (behavior.kind) {
    case 'rate_limit': {
      const ms = behavior.ms ?? DEFAULT_RATE_LIMIT_MS;
      return jsonReply(429, resourceExhaustedBody(model, false, ms), limitHeaders(behavior.style, ms, env, []));
    }
    case 'resource_exhausted':
      return jsonReply(429, resourceExhaustedBody(model, behavior.daily === true, behavior.ms ?? DEFAULT_RATE_LIMIT_MS));
    case 'insufficient_quota':
      // What Gemini says when the plan's quota is spent: the per-day quota, with its misleading short delay.
      return jsonReply(429, resourceExhaustedBody(model, true, DEFAULT_RATE_LIMIT_MS));
    case 'payment_required':
      return jsonReply(400, BILLING_BODY);
    case 'unauthorized':
      return jsonReply(400, API_KEY_INVALID_BODY);
    case 'forbidden':
      return jsonReply(403, PERMISSION_DENIED_BODY);
    case 'key_revoked':
      return jsonReply(400, API_KEY_EXPIRED_BODY);
    case 'model_not_found': {
      const status = behavior.status ?? 404;
      return jsonReply(status, modelNotFoundBody(model, status));
    }
    case 'server_error': {
      const status = behavior.status ?? 500;
      return jsonReply(status, internalBody(status));
    }
    case 'overloaded':
      return jsonReply(503, UNAVAILABLE_BODY);
    case 'error_in_stream': {
      const after = behavior.after ?? 0;
      // Chunks of a longer answer, so none of the `after` carries the closing finishReason.
      const chunks = geminiChunks(model, after + 1).slice(0, after);
      return streamReply(request, chunks, JSON.parse(UNAVAILABLE_BODY.toString('utf8')));
    }
  }
}

export const geminiPersonality: Personality = {
  provider: 'gemini',
  requestIdHeader: 'x-request-id',
  keyOf,
  precheck: () => undefined,
  refuseKey: (_request, missing) => (missing ? jsonReply(403, UNREGISTERED_CALLER_BODY) : jsonReply(400, API_KEY_INVALID_BODY)),
  ok,
  stream: (request, chunks) => streamReply(request, geminiChunks(pathModel(request.path), chunks)),
  failure,
  windowExceeded: (request, _limit, resetMs) => jsonReply(429, resourceExhaustedBody(pathModel(request.path), false, resetMs)),
  windowHeaders: () => undefined,
};
