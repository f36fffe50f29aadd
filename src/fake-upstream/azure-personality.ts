// The Azure OpenAI personality: {prefix}/openai/deployments/{deployment}/chat/completions (and
// /completions, /embeddings, /responses) with a required `api-version` query parameter, or the v1 API at
// /openai/v1/…; the key in the `api-key` header (an Entra bearer token too); OpenAI's bodies and streams
// (https://learn.microsoft.com/azure/ai-foundry/openai/reference); a 429 tells its wait in retry-after,
// retry-after-ms and x-ms-retry-after-ms.
import {
  DEPLOYMENT_NOT_FOUND_BODY,
  FIREWALL_BODY,
  INVALID_KEY_BODY,
  KEY_AUTH_DISABLED_BODY,
  MISSING_KEY_BODY,
  QUOTA_BODY,
  RESOURCE_NOT_FOUND_BODY,
  UNAVAILABLE_BODY,
  rateLimitBody,
} from './azure-errors.js';
import { routeOk } from './ok-routes.js';
import { SERVER_ERROR_BODY } from './openai-errors.js';
import { openAiErrorInStream, openAiStream } from './openai-personality.js';
import {
  bearerOr,
  headerKey,
  jsonReply,
  queryParam,
  type FailureBehavior,
  type FailureEnv,
  type FakeRequest,
  type Personality,
  type Reply,
} from './personality.js';
import { limitHeaders, retryAfterSeconds, windowExceededHeaders, xRateLimitHeaders } from './rate-limit-headers.js';
import { DEFAULT_RATE_LIMIT_MS } from './stream-defaults.js';

const DEPLOYMENT = /^(?:.*)\/openai\/deployments\/([^/]+)(\/.*)$/;
const V1 = /^(?:.*)\/openai\/v1(\/.*)$/;
/** What Azure's own 429 names when the request gave no api-version (the v1 API). */
const V1_VERSION = 'v1';

const AZURE_STYLES = ['retry-after', 'retry-after-ms', 'x-ms-retry-after-ms'] as const;

/** The OpenAI route under Azure's path, or undefined when the path is not one Azure serves. */
function routeOf(request: FakeRequest): string | undefined {
  const deployment = DEPLOYMENT.exec(request.path);
  if (deployment !== null) return queryParam(request.query, 'api-version') === undefined ? undefined : deployment[2];
  return V1.exec(request.path)?.[1];
}

function ok(request: FakeRequest): Reply {
  const route = routeOf(request);
  if (route === undefined) return jsonReply(404, RESOURCE_NOT_FOUND_BODY);
  return routeOk(request.method, route, request.body);
}

function rateLimited(request: FakeRequest, ms: number, headers: Record<string, string>, tokens: boolean): Reply {
  const version = queryParam(request.query, 'api-version') ?? V1_VERSION;
  return jsonReply(429, rateLimitBody(request.path, version, retryAfterSeconds(ms), tokens), headers);
}

function failure(behavior: FailureBehavior, request: FakeRequest, env: FailureEnv): Reply {
  switch (behavior.kind) {
    case 'rate_limit': {
      const ms = behavior.ms ?? DEFAULT_RATE_LIMIT_MS;
      return rateLimited(request, ms, limitHeaders(behavior.style, ms, env, AZURE_STYLES), false);
    }
    case 'resource_exhausted': {
      const ms = behavior.ms ?? DEFAULT_RATE_LIMIT_MS;
      return rateLimited(request, ms, limitHeaders(undefined, ms, env, AZURE_STYLES), true);
    }
    case 'insufficient_quota':
    case 'payment_required':
      return jsonReply(403, QUOTA_BODY);
    case 'unauthorized':
      return jsonReply(401, INVALID_KEY_BODY);
    case 'forbidden':
      return jsonReply(403, FIREWALL_BODY);
    case 'key_revoked':
      return jsonReply(403, KEY_AUTH_DISABLED_BODY);
    case 'model_not_found':
      return jsonReply(behavior.status ?? 404, DEPLOYMENT_NOT_FOUND_BODY);
    case 'server_error':
      return jsonReply(behavior.status ?? 500, SERVER_ERROR_BODY);
    case 'overloaded':
      return jsonReply(503, UNAVAILABLE_BODY);
    case 'error_in_stream':
      return openAiErrorInStream({ ...request, path: routeOf(request) ?? request.path }, behavior.after ?? 0);
  }
}

export const azurePersonality: Personality = {
  provider: 'azure',
  requestIdHeader: 'x-request-id',
  keyOf: (headers) => headerKey(headers, 'api-key') ?? bearerOr(headers, 'api-key'),
  precheck: () => undefined,
  refuseKey: (_request, missing) => jsonReply(401, missing ? MISSING_KEY_BODY : INVALID_KEY_BODY),
  ok,
  stream: (request, chunks) => openAiStream({ ...request, path: routeOf(request) ?? request.path }, chunks),
  failure,
  windowExceeded: (request, limit, resetMs) =>
    rateLimited(request, resetMs, { ...windowExceededHeaders(limit, resetMs), 'x-ms-retry-after-ms': String(Math.max(0, Math.ceil(resetMs))) }, false),
  windowHeaders: (limit, remaining, resetMs) => xRateLimitHeaders(limit, remaining, resetMs),
};
