// OpenAI's error envelope `{"error":{"message","type","param","code"}}` for each failure the fake can
// play, serialised once. Messages follow the real ones but never echo a key, not even masked.

const errorBody = (message: string, type: string, code: string | null): Buffer =>
  Buffer.from(JSON.stringify({ error: { message, type, param: null, code } }));

export const RATE_LIMIT_BODY = errorBody(
  'Rate limit reached for requests. Please retry after the time given in the response headers.',
  'requests',
  'rate_limit_exceeded',
);

export const INSUFFICIENT_QUOTA_BODY = errorBody(
  'You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.',
  'insufficient_quota',
  'insufficient_quota',
);

export const PAYMENT_REQUIRED_BODY = errorBody(
  'Insufficient credits: add credits to this account to continue.',
  'insufficient_quota',
  'payment_required',
);

export const UNAUTHORIZED_BODY = errorBody(
  'Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.',
  'invalid_request_error',
  'invalid_api_key',
);

export const MISSING_KEY_BODY = errorBody(
  "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
  'invalid_request_error',
  'invalid_api_key',
);

export const FORBIDDEN_BODY = errorBody(
  'You have insufficient permissions for this operation.',
  'invalid_request_error',
  'permission_denied',
);

export const ORG_DISABLED_BODY = errorBody('Your organization has been disabled.', 'invalid_request_error', 'organization_deactivated');

/** OpenAI's answer for a model this key's project may not use (403) or that does not exist for it (404). */
export function modelNotFoundBody(model: string, status: 403 | 404): Buffer {
  return status === 403
    ? errorBody(`Project \`proj_fake\` does not have access to model \`${model}\``, 'invalid_request_error', 'model_not_found')
    : errorBody(`The model \`${model}\` does not exist or you do not have access to it.`, 'invalid_request_error', 'model_not_found');
}

export const SERVER_ERROR_BODY = errorBody(
  'The server had an error while processing your request. Sorry about that!',
  'server_error',
  null,
);

/** OpenAI's answer to an unknown route. */
export function invalidUrlBody(method: string, path: string): Buffer {
  return errorBody(`Invalid URL (${method} ${path})`, 'invalid_request_error', null);
}

/** 503 when the service is busy for everyone (https://platform.openai.com/docs/guides/error-codes). */
export const OVERLOADED_BODY = errorBody('The engine is currently overloaded, please try again later.', 'server_error', null);

/** OpenAI's 429 naming the window it counts: requests per minute, or per day (RPD). */
export function requestsPerBody(model: string, daily: boolean, waitText: string): Buffer {
  const [window, limit] = daily ? ['requests per day (RPD)', 10_000] : ['requests per min (RPM)', 500];
  return errorBody(
    `Rate limit reached for ${model} in organization org-fake on ${window}: Limit ${limit}, Used ${limit}, Requested 1. Please try again in ${waitText}.`,
    'requests',
    'rate_limit_exceeded',
  );
}

/** The error event a chat stream ends with when the failure comes after the 200 head. */
export const STREAM_ERROR_FRAME = Buffer.from(`data: ${SERVER_ERROR_BODY.toString('utf8')}\n\n`);
