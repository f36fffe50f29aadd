// Anthropic's error envelope `{"type":"error","error":{"type","message"}}` with the statuses of
// https://docs.anthropic.com/en/api/errors: 400 invalid_request_error, 401 authentication_error,
// 402 billing_error, 403 permission_error, 404 not_found_error, 429 rate_limit_error, 500 api_error,
// 529 overloaded_error; the same envelope arrives as an `event: error` inside a 200 stream
// (https://docs.anthropic.com/en/docs/build-with-claude/streaming#error-events). Messages follow the
// real ones but never echo a key.
import { json } from './personality.js';

export type AnthropicErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'billing_error'
  | 'permission_error'
  | 'not_found_error'
  | 'rate_limit_error'
  | 'api_error'
  | 'overloaded_error';

export function anthropicError(type: AnthropicErrorType, message: string): Buffer {
  return json({ type: 'error', error: { type, message } });
}

/** Anthropic answers 400 to any request without the header (https://docs.anthropic.com/en/api/versioning). */
export const MISSING_VERSION_BODY = anthropicError('invalid_request_error', 'anthropic-version: header is required');
export const MISSING_KEY_BODY = anthropicError('authentication_error', 'x-api-key header is required');
export const INVALID_KEY_BODY = anthropicError('authentication_error', 'invalid x-api-key');

export const RATE_LIMIT_BODY = anthropicError(
  'rate_limit_error',
  'This request would exceed the rate limit for your organization of 50 requests per minute. ' +
    'For details, refer to: https://docs.anthropic.com/en/api/rate-limits. You can see the response headers for current usage.',
);

export const TOKENS_PER_DAY_BODY = anthropicError(
  'rate_limit_error',
  'This request would exceed your organization\u2019s rate limit of 1,000,000 input tokens per day. ' +
    'For details, refer to: https://docs.anthropic.com/en/api/rate-limits.',
);

/** Out of prepaid credit: a 400, not a 429, which is what makes it easy to miss. */
export const CREDIT_TOO_LOW_BODY = anthropicError(
  'invalid_request_error',
  'Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.',
);

export const BILLING_BODY = anthropicError(
  'billing_error',
  'There is an issue with your billing or payment information. Please go to Plans & Billing to resolve it.',
);

export const PERMISSION_BODY = anthropicError('permission_error', 'Your API key does not have permission to use the specified resource.');

export const ORG_DISABLED_BODY = anthropicError('permission_error', 'This organization has been disabled.');

export function modelNotFoundBody(model: string, status: 403 | 404): Buffer {
  return status === 403
    ? anthropicError('permission_error', `Your API key does not have access to model: ${model}`)
    : anthropicError('not_found_error', `model: ${model}`);
}

export const API_ERROR_BODY = anthropicError('api_error', 'Internal server error');

export const OVERLOADED_BODY = anthropicError('overloaded_error', 'Overloaded');

export const NOT_FOUND_BODY = anthropicError('not_found_error', 'Not Found');

/** The stream's error event: the overloaded envelope after a 200 head. */
export const STREAM_ERROR_FRAME = Buffer.from(`event: error\ndata: ${OVERLOADED_BODY.toString('utf8')}\n\n`);
