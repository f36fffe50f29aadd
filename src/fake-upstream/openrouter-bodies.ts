// OpenRouter's own bodies: its model list, its error envelope `{"error":{"code":<status>,"message",
// "metadata"?}}` (https://openrouter.ai/docs/api-reference/errors) and the error chunk it sends inside
// a 200 stream once the model has started (https://openrouter.ai/docs/api-reference/streaming, "Handling
// errors during streaming"). Chat bodies and chunks are OpenAI's (ok-routes.ts).
import { CREATED } from './openai-bodies.js';
import { json } from './personality.js';

export const OPENROUTER_MODEL = 'openai/gpt-4o-mini';

export const OPENROUTER_MODELS_BODY = json({
  data: [
    { id: OPENROUTER_MODEL, name: 'OpenAI: GPT-4o-mini', context_length: 128_000, pricing: { prompt: '0.00000015', completion: '0.0000006' } },
    { id: 'anthropic/claude-sonnet-4.5', name: 'Anthropic: Claude Sonnet 4.5', context_length: 1_000_000, pricing: { prompt: '0.000003', completion: '0.000015' } },
    { id: 'google/gemini-2.5-flash', name: 'Google: Gemini 2.5 Flash', context_length: 1_048_576, pricing: { prompt: '0.0000003', completion: '0.0000025' } },
  ].map((model) => ({ ...model, created: CREATED, architecture: { modality: 'text->text' } })),
});

function routerError(code: number, message: string, metadata?: Record<string, unknown>): Buffer {
  return json({ error: { code, message, ...(metadata === undefined ? {} : { metadata }) } });
}

export const NO_CREDENTIALS_BODY = routerError(401, 'No auth credentials found');
export const USER_NOT_FOUND_BODY = routerError(401, 'User not found.');
export const KEY_DISABLED_BODY = routerError(401, 'API key is disabled.');

/** 402: out of credits (`limit_source` says whose: the account's balance or the key's own limit). */
export const INSUFFICIENT_CREDITS_BODY = routerError(
  402,
  'Insufficient credits. Add more using https://openrouter.ai/settings/credits',
  { limit_source: 'openrouter_credits' },
);

export const KEY_LIMIT_BODY = routerError(402, 'Key limit exceeded. Raise the limit of this key at https://openrouter.ai/settings/keys', {
  limit_source: 'openrouter_key_limit',
});

/** 429 with the X-RateLimit-* values OpenRouter puts in the body's metadata (reset in epoch ms). */
export function rateLimitBody(daily: boolean, limit: number, resetAt: number): Buffer {
  const window = daily ? 'free-models-per-day' : 'free-models-per-min';
  return routerError(429, `Rate limit exceeded: ${window}. `, {
    headers: { 'X-RateLimit-Limit': String(limit), 'X-RateLimit-Remaining': '0', 'X-RateLimit-Reset': String(resetAt) },
    provider_name: null,
  });
}

/** 403 from moderation: the input was flagged (metadata as documented). */
export const MODERATION_BODY = routerError(
  403,
  'openai/gpt-4o-mini requires moderation on OpenAI. Your input was flagged for "harassment". No credits were charged.',
  { reasons: ['harassment'], flagged_input: '...', provider_name: 'OpenAI', model_slug: OPENROUTER_MODEL },
);

export function noEndpointsBody(model: string, status: number): Buffer {
  return routerError(status, `No endpoints found for ${model}.`);
}

export function internalBody(status: number): Buffer {
  return routerError(status, 'Internal Server Error');
}

/** 502: the provider behind the model answered that it is overloaded. */
export const PROVIDER_OVERLOADED_BODY = routerError(502, 'Provider returned error', {
  raw: '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}',
  provider_name: 'Anthropic',
});

export function notFoundBody(path: string): Buffer {
  return routerError(404, `Not Found (${path})`);
}

/** Sent while the request waits for a provider; SSE comments a conforming parser skips. */
export const PROCESSING_FRAME = Buffer.from(': OPENROUTER PROCESSING\n\n');

/** The error chunk of a stream the model had started: a chunk with `error` and finish_reason "error". */
export const STREAM_ERROR_FRAME = Buffer.from(
  `data: ${JSON.stringify({
    id: 'gen-fake-stream',
    object: 'chat.completion.chunk',
    created: CREATED,
    model: OPENROUTER_MODEL,
    provider: 'OpenAI',
    error: { code: 'server_error', message: 'Provider disconnected unexpectedly' },
    choices: [{ index: 0, delta: { content: '' }, finish_reason: 'error' }],
  })}\n\n`,
);
