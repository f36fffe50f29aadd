// Pure parsers for the headers upstreams use to say when a rate limit resets. Every time they return is
// whole ms in [0, maxMs]; anything they cannot read with confidence is undefined, so callers back off.
// Sources: RFC 9110 §10.2.3 (Retry-After: delay-seconds | HTTP-date); OpenAI's `retry-after-ms` and
// `x-ratelimit-reset-{requests,tokens}` (Go-style durations such as "20ms", "1s", "6m0s"); Azure's
// `x-ms-retry-after-ms`; Anthropic's `anthropic-ratelimit-*-reset` (RFC 3339 timestamps).
//
// What a value above the cap (`cooldown.maxMs`) means, per header: every header here is *capped*, not
// discarded. An upstream that says "wait 2 days" (Retry-After, retry-after-ms, x-ms-retry-after-ms) or
// "this window resets in 20 h" (a daily quota in x-ratelimit-reset-*, anthropic-*-reset) is telling the
// truth more often than not; ignoring it would send the next request straight into another 429, while
// waiting maxMs is the longest the operator agreed to wait. Only values that are not numbers an upstream
// could mean are discarded: garbage, negative, non-finite, parts JavaScript cannot hold exactly, or a
// value longer than MAX_VALUE_CHARS.

/** Header lookup: lower-case name to value, as undici and node:http give them. */
export type HeaderBag = Readonly<Record<string, string | string[] | undefined>>;

/** A repeated header counts by its first value. */
export function header(headers: HeaderBag, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/**
 * Longest header value looked at. The longest legitimate one is an RFC 3339 timestamp with nanoseconds
 * and an offset (35 chars); the cap comes before any regex, so no input makes a parser work hard.
 */
export const MAX_VALUE_CHARS = 64;

/**
 * A bare number this large is an epoch timestamp, not a duration. As a duration, 1e12 ms and 1e9 s are
 * both 31.7 years, and no rate-limit window lasts 31 years; as epoch times they are 2001-09-09, long
 * before any of these headers existed. So ≥ 1e12 is epoch ms, ≥ 1e9 (in a seconds header) epoch s.
 * A millisecond header only knows epoch ms: 1e9 ms is 11.6 days, a (capped) duration; reading it as
 * epoch seconds would turn a long wait into "the past: retry now".
 */
export const EPOCH_MS_FROM = 1e12;
export const EPOCH_S_FROM = 1e9;

const BARE_NUMBER = /^\d+(?:\.\d+)?$/;
const DURATION_PART = /(\d+(?:\.\d+)?)(ms|us|µs|μs|ns|h|m|s)/y;
const UNIT_MS: Readonly<Record<string, number>> = { h: 3_600_000, m: 60_000, s: 1_000, ms: 1, us: 1e-3, µs: 1e-3, μs: 1e-3, ns: 1e-6 };
const RFC3339_START = /^\d{4}-\d{2}-\d{2}T/;
// Only something that looks like an HTTP-date reaches Date.parse, which takes far too much ("1", "a 2").
const HTTP_DATE_START = /^[A-Za-z]{3},? /;

/** `retry-after-ms` (OpenAI) and `x-ms-retry-after-ms` (Azure): milliseconds, or an epoch-ms time. */
export function parseRetryAfterMs(value: string | undefined, now: number, maxMs: number): number | undefined {
  const t = clean(value);
  if (t === undefined || !BARE_NUMBER.test(t)) return undefined;
  return bareToMs(t, 1, now, maxMs);
}

/** `Retry-After`: delay-seconds (or an epoch time, see EPOCH_S_FROM) or an HTTP-date. The past means 0. */
export function parseRetryAfter(value: string | undefined, now: number, maxMs: number): number | undefined {
  const t = clean(value);
  if (t === undefined) return undefined;
  if (BARE_NUMBER.test(t)) return bareToMs(t, 1000, now, maxMs);
  if (!HTTP_DATE_START.test(t)) return undefined;
  return untilMs(Date.parse(t), now, maxMs);
}

/**
 * OpenAI's reset durations: "1s", "6m0s", "20ms", "1h2m3.5s". A bare number is seconds, or an epoch
 * time when it is that large (a time in the past: the window has already reset, 0).
 */
export function parseDuration(value: string | undefined, now: number, maxMs: number): number | undefined {
  const t = clean(value);
  if (t === undefined) return undefined;
  if (BARE_NUMBER.test(t)) return bareToMs(t, 1000, now, maxMs);
  let total = 0;
  DURATION_PART.lastIndex = 0;
  while (DURATION_PART.lastIndex < t.length) {
    const m = DURATION_PART.exec(t);
    if (m === null) return undefined;
    const n = exactNumber(m[1] ?? '');
    if (n === undefined) return undefined;
    total += n * (UNIT_MS[m[2] ?? ''] ?? 0);
  }
  return capMs(total, maxMs);
}

/** RFC 3339 timestamp (Anthropic's reset headers), as milliseconds from `now`; the past means 0. */
export function parseResetTimestamp(value: string | undefined, now: number, maxMs: number): number | undefined {
  const t = clean(value);
  if (t === undefined || !RFC3339_START.test(t)) return undefined;
  return untilMs(Date.parse(t), now, maxMs);
}

/** A reset header of either family: a duration (or bare seconds / epoch) or an RFC 3339 timestamp. */
export function parseReset(value: string | undefined, now: number, maxMs: number): number | undefined {
  return parseDuration(value, now, maxMs) ?? parseResetTimestamp(value, now, maxMs);
}

const RESET_HEADERS: readonly { readonly reset: string; readonly remaining: string }[] = [
  ...(['requests', 'tokens'] as const).map((k) => ({ reset: `x-ratelimit-reset-${k}`, remaining: `x-ratelimit-remaining-${k}` })),
  ...(['requests', 'tokens', 'input-tokens', 'output-tokens'] as const).map((k) => ({
    reset: `anthropic-ratelimit-${k}-reset`,
    remaining: `anthropic-ratelimit-${k}-remaining`,
  })),
];

/**
 * How long the upstream says to wait, in whole ms from `now` within [0, maxMs], or undefined when it says
 * nothing usable. Precedence follows openai-node and Azure's core-rest-pipeline: `retry-after-ms`, then
 * `x-ms-retry-after-ms`, then `Retry-After`, then the reset of the limit that is exhausted
 * (remaining = 0), then the longest reset given. A header that cannot be read gives way to the next.
 * `now` is a whole epoch ms; `maxMs` is `cooldown.maxMs`.
 */
export function resetDelayMs(headers: HeaderBag, now: number, maxMs: number): number | undefined {
  const told =
    parseRetryAfterMs(header(headers, 'retry-after-ms'), now, maxMs) ??
    parseRetryAfterMs(header(headers, 'x-ms-retry-after-ms'), now, maxMs) ??
    parseRetryAfter(header(headers, 'retry-after'), now, maxMs);
  if (told !== undefined) return told;

  let longest: number | undefined;
  let longestExhausted: number | undefined;
  for (const h of RESET_HEADERS) {
    const reset = parseReset(header(headers, h.reset), now, maxMs);
    if (reset === undefined) continue;
    longest = Math.max(longest ?? 0, reset);
    if (isZero(header(headers, h.remaining))) longestExhausted = Math.max(longestExhausted ?? 0, reset);
  }
  return longestExhausted ?? longest;
}

/** A non-negative decimal count (remaining, limit), or undefined. Not capped: callers clamp. */
export function parseCount(value: string | undefined): number | undefined {
  const t = clean(value);
  if (t === undefined || !BARE_NUMBER.test(t)) return undefined;
  const n = Number(t);
  return Number.isFinite(n) ? n : undefined;
}

function isZero(value: string | undefined): boolean {
  return parseCount(value) === 0;
}

/** Trimmed, or undefined when absent, empty or too long to be a real value. */
function clean(value: string | undefined): string | undefined {
  if (typeof value !== 'string' || value.length > MAX_VALUE_CHARS) return undefined;
  const t = value.trim();
  return t === '' ? undefined : t;
}

/**
 * A decimal JavaScript holds exactly enough to mean what it says; larger ones ("999999999999999999999h",
 * a 400-digit number that reads as Infinity) are not times any upstream meant.
 */
function exactNumber(text: string): number | undefined {
  const n = Number(text);
  return Number.isFinite(n) && n <= Number.MAX_SAFE_INTEGER ? n : undefined;
}

function bareToMs(text: string, unitMs: number, now: number, maxMs: number): number | undefined {
  const n = exactNumber(text);
  if (n === undefined) return undefined;
  if (n >= EPOCH_MS_FROM) return untilMs(n, now, maxMs);
  if (unitMs >= 1000 && n >= EPOCH_S_FROM) return untilMs(n * 1000, now, maxMs);
  return capMs(n * unitMs, maxMs);
}

/** From `now` to the epoch-ms time `at`: 0 if it has passed. */
function untilMs(at: number, now: number, maxMs: number): number | undefined {
  if (!Number.isFinite(at)) return undefined;
  return capMs(Math.max(0, at - now), maxMs);
}

/** Whole ms (Redis TTLs and deadlines take integers), rounded up (never sooner than told), capped. */
function capMs(ms: number, maxMs: number): number | undefined {
  if (!Number.isFinite(ms) || ms < 0) return undefined;
  const cap = maxMs > 0 ? Math.floor(maxMs) : 0;
  return Math.min(Math.ceil(ms), cap);
}
