// Gemini's errors: google.rpc.Status as JSON, `{"error":{"code","message","status","details"}}`
// (https://cloud.google.com/apis/design/errors), with the statuses of
// https://ai.google.dev/gemini-api/docs/troubleshooting#error-codes. A 429 says when to come back only in
// its body: `google.rpc.RetryInfo.retryDelay` next to a `google.rpc.QuotaFailure` naming the quota
// (https://ai.google.dev/gemini-api/docs/rate-limits); a per-day quota is not lifted by that delay.
import { json } from './personality.js';

const TYPE = 'type.googleapis.com/google.rpc.';

function status(code: number, state: string, message: string, details?: unknown[]): Buffer {
  return json({ error: { code, message, status: state, ...(details === undefined ? {} : { details }) } });
}

/** A google.protobuf.Duration in JSON: seconds with up to three decimals, then `s` (e.g. "37s", "0.250s"). */
export function protoDuration(ms: number): string {
  const whole = Math.max(0, Math.ceil(ms));
  return whole % 1000 === 0 ? `${whole / 1000}s` : `${(whole / 1000).toFixed(3)}s`;
}

/** 429 RESOURCE_EXHAUSTED: the per-minute (or per-day) request quota for `model`, retry after `ms`. */
export function resourceExhaustedBody(model: string, daily: boolean, ms: number): Buffer {
  const violation = daily
    ? { quotaId: 'GenerateRequestsPerDayPerProjectPerModel-FreeTier', quotaValue: '250' }
    : { quotaId: 'GenerateRequestsPerMinutePerProjectPerModel-FreeTier', quotaValue: '10' };
  return status(
    429,
    'RESOURCE_EXHAUSTED',
    'You exceeded your current quota, please check your plan and billing details. For more information on this error, ' +
      'head to: https://ai.google.dev/gemini-api/docs/rate-limits.',
    [
      {
        '@type': `${TYPE}QuotaFailure`,
        violations: [
          {
            quotaMetric: 'generativelanguage.googleapis.com/generate_content_free_tier_requests',
            quotaId: violation.quotaId,
            quotaDimensions: { location: 'global', model },
            quotaValue: violation.quotaValue,
          },
        ],
      },
      { '@type': `${TYPE}Help`, links: [{ description: 'Learn more about Gemini API quotas', url: 'https://ai.google.dev/gemini-api/docs/rate-limits' }] },
      { '@type': `${TYPE}RetryInfo`, retryDelay: protoDuration(ms) },
    ],
  );
}

function apiKeyInvalid(message: string): Buffer {
  return status(400, 'INVALID_ARGUMENT', message, [
    { '@type': `${TYPE}ErrorInfo`, reason: 'API_KEY_INVALID', domain: 'googleapis.com', metadata: { service: 'generativelanguage.googleapis.com' } },
    { '@type': `${TYPE}LocalizedMessage`, locale: 'en-US', message },
  ]);
}

export const API_KEY_INVALID_BODY = apiKeyInvalid('API key not valid. Please pass a valid API key.');
export const API_KEY_EXPIRED_BODY = apiKeyInvalid('API key expired. Please renew the API key.');

export const UNREGISTERED_CALLER_BODY = status(
  403,
  'PERMISSION_DENIED',
  "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
);

export const PERMISSION_DENIED_BODY = status(403, 'PERMISSION_DENIED', 'The caller does not have permission');

export const BILLING_BODY = status(
  400,
  'FAILED_PRECONDITION',
  'Gemini API free tier is not available in your country. Please enable billing on your project in Google AI Studio.',
);

export function modelNotFoundBody(model: string, code: 403 | 404): Buffer {
  return code === 403
    ? status(403, 'PERMISSION_DENIED', `Permission denied on resource models/${model} (or it may not exist).`)
    : status(
        404,
        'NOT_FOUND',
        `models/${model} is not found for API version v1beta, or is not supported for generateContent. ` +
          'Call ListModels to see the list of available models and their supported methods.',
      );
}

export function internalBody(code: number): Buffer {
  return status(code, 'INTERNAL', 'An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting');
}

export const UNAVAILABLE_BODY = status(503, 'UNAVAILABLE', 'The model is overloaded. Please try again later.');

export function notFoundBody(path: string): Buffer {
  return status(404, 'NOT_FOUND', `Requested entity was not found. (${path})`);
}
