// Builds the headers a 429 (or a throttled success) uses to say when to come back, in each dialect
// a client may meet: Retry-After seconds or HTTP-date (RFC 9110 §10.2.3), retry-after-ms (OpenAI,
// read by openai-node before Retry-After), OpenAI's x-ratelimit-* family
// (https://platform.openai.com/docs/guides/rate-limits#rate-limits-in-headers), Anthropic's
// anthropic-ratelimit-* with RFC 3339 resets (https://docs.anthropic.com/en/api/rate-limits#response-headers)
// and Azure's x-ms-retry-after-ms (https://learn.microsoft.com/azure/ai-services/openai/how-to/quota).
import type { RateLimitStyle } from './behaviors.js';

const MS_PER_SECOND = 1000;
const MS_PER_MINUTE = 60 * MS_PER_SECOND;
const MS_PER_HOUR = 60 * MS_PER_MINUTE;

/** Whole milliseconds, never negative: headers must not promise a reset in the past. */
function wholeMs(ms: number): number {
  return Math.max(0, Math.ceil(ms));
}

/** OpenAI's x-ratelimit-reset-* format (Go's time.Duration string): `20ms`, `1s`, `1.5s`, `6m0s`, `1h2m3s`. */
export function openAiDuration(ms: number): string {
  const total = wholeMs(ms);
  if (total === 0) return '0s';
  if (total < MS_PER_SECOND) return `${total}ms`;
  const hours = Math.floor(total / MS_PER_HOUR);
  const minutes = Math.floor((total % MS_PER_HOUR) / MS_PER_MINUTE);
  const seconds = `${(total % MS_PER_MINUTE) / MS_PER_SECOND}s`;
  if (hours > 0) return `${hours}h${minutes}m${seconds}`;
  if (minutes > 0) return `${minutes}m${seconds}`;
  return seconds;
}

/** Retry-After in whole seconds, rounded up so a client that obeys it is never early. */
export function retryAfterSeconds(ms: number): string {
  return String(Math.ceil(wholeMs(ms) / MS_PER_SECOND));
}

/** An HTTP-date `ms` after `now`, rounded up to the next second because the format has no finer unit. */
export function retryAfterDate(ms: number, now: number): string {
  return new Date(Math.ceil((now + wholeMs(ms)) / MS_PER_SECOND) * MS_PER_SECOND).toUTCString();
}

/** x-ratelimit-* headers for the requests budget. */
export function xRateLimitHeaders(limit: number, remaining: number, resetMs: number): Record<string, string> {
  return {
    'x-ratelimit-limit-requests': String(limit),
    'x-ratelimit-remaining-requests': String(remaining),
    'x-ratelimit-reset-requests': openAiDuration(resetMs),
  };
}

/** anthropic-ratelimit-requests-*: the reset is an RFC 3339 instant, rounded up to the second. */
export function anthropicRateLimitHeaders(limit: number, remaining: number, resetMs: number, now: number): Record<string, string> {
  const reset = new Date(Math.ceil((now + wholeMs(resetMs)) / MS_PER_SECOND) * MS_PER_SECOND).toISOString();
  return {
    'anthropic-ratelimit-requests-limit': String(limit),
    'anthropic-ratelimit-requests-remaining': String(remaining),
    'anthropic-ratelimit-requests-reset': reset.replace('.000Z', 'Z'),
  };
}

/** The headers of a scripted 429: only the one dialect `style` names, so clients are tested per dialect. */
export function scriptedRateLimitHeaders(
  style: RateLimitStyle,
  ms: number,
  now: number,
  limit: number,
): Record<string, string> {
  switch (style) {
    case 'retry-after':
      return { 'retry-after': retryAfterSeconds(ms) };
    case 'retry-after-ms':
      return { 'retry-after-ms': String(wholeMs(ms)) };
    case 'retry-after-date':
      return { 'retry-after': retryAfterDate(ms, now) };
    case 'x-ratelimit':
      return xRateLimitHeaders(limit, 0, ms);
    case 'anthropic-ratelimit':
      return anthropicRateLimitHeaders(limit, 0, ms, now);
    case 'x-ms-retry-after-ms':
      return { 'x-ms-retry-after-ms': String(wholeMs(ms)) };
    case 'none':
      return {};
  }
}

/**
 * The headers a scripted 429 carries: the named style's dialect alone, or (style omitted) every
 * dialect the provider itself sends (`own`).
 */
export function limitHeaders(
  style: RateLimitStyle | undefined,
  ms: number,
  env: { readonly now: number; readonly scriptedLimit: number },
  own: readonly RateLimitStyle[],
): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const each of style === undefined ? own : [style]) {
    Object.assign(headers, scriptedRateLimitHeaders(each, ms, env.now, env.scriptedLimit));
  }
  return headers;
}

/** The headers of an OpenAI 429 from the fixed window: every dialect at once, so any client finds the one it reads. */
export function windowExceededHeaders(limit: number, resetMs: number): Record<string, string> {
  return {
    'retry-after-ms': String(wholeMs(resetMs)),
    'retry-after': retryAfterSeconds(resetMs),
    ...xRateLimitHeaders(limit, 0, resetMs),
  };
}
