// Pure parsers for the headers upstreams use to say when a rate limit resets.
// Sources: RFC 9110 §10.2.3 (Retry-After: delay-seconds | HTTP-date); OpenAI's `retry-after-ms` and
// `x-ratelimit-reset-{requests,tokens}` (Go-style durations such as "20ms", "1s", "6m0s");
// Anthropic's `anthropic-ratelimit-*-reset` (RFC 3339 timestamps).

/** Header lookup: lower-case name to value, as undici and node:http give them. */
export type HeaderBag = Readonly<Record<string, string | string[] | undefined>>;

export function header(headers: HeaderBag, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** `retry-after-ms`: a non-negative number of milliseconds. */
export function parseRetryAfterMs(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const t = value.trim();
  if (!/^\d+(\.\d+)?$/.test(t)) return undefined;
  return Number(t);
}

/** `Retry-After`: delay-seconds or an HTTP-date, as milliseconds from `now`. A past date means 0. */
export function parseRetryAfter(value: string | undefined, now: number): number | undefined {
  if (value === undefined) return undefined;
  const t = value.trim();
  if (/^\d+(\.\d+)?$/.test(t)) return Number(t) * 1000;
  // Only accept something that looks like a date: Date.parse takes far too much ("1", "a 2").
  if (!/^[A-Za-z]{3},? /.test(t)) return undefined;
  const at = Date.parse(t);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - now);
}

const DURATION_PART = /(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)/g;
const UNIT_MS: Readonly<Record<string, number>> = { h: 3_600_000, m: 60_000, s: 1_000, ms: 1, us: 1e-3, µs: 1e-3, ns: 1e-6 };

/** OpenAI's reset durations: "1s", "6m0s", "20ms", "1h2m3.5s"; a bare number is seconds. */
export function parseDuration(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const t = value.trim();
  if (/^\d+(\.\d+)?$/.test(t)) return Number(t) * 1000;
  if (!/^((\d+(\.\d+)?)(ms|us|µs|ns|h|m|s))+$/.test(t)) return undefined;
  let total = 0;
  for (const m of t.matchAll(DURATION_PART)) total += Number(m[1]) * (UNIT_MS[m[2] ?? ''] ?? 0);
  return total;
}

/** RFC 3339 timestamp (Anthropic's reset headers), as milliseconds from `now`. */
export function parseResetTimestamp(value: string | undefined, now: number): number | undefined {
  if (value === undefined || !/^\d{4}-\d{2}-\d{2}T/.test(value.trim())) return undefined;
  const at = Date.parse(value.trim());
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/**
 * How long the upstream says to wait, in ms from `now`, or undefined when it says nothing usable.
 * Precedence follows openai-node: `retry-after-ms`, then `Retry-After`, then the reset of the limit
 * that is exhausted (remaining = 0), then the longest reset given.
 */
export function resetDelayMs(headers: HeaderBag, now: number): number | undefined {
  const ms = parseRetryAfterMs(header(headers, 'retry-after-ms'));
  if (ms !== undefined) return ms;
  const ra = parseRetryAfter(header(headers, 'retry-after'), now);
  if (ra !== undefined) return ra;

  const resets: { reset: number; exhausted: boolean }[] = [];
  for (const kind of ['requests', 'tokens'] as const) {
    const reset = parseDuration(header(headers, `x-ratelimit-reset-${kind}`));
    if (reset !== undefined) {
      resets.push({ reset, exhausted: header(headers, `x-ratelimit-remaining-${kind}`)?.trim() === '0' });
    }
  }
  for (const kind of ['requests', 'tokens', 'input-tokens', 'output-tokens'] as const) {
    const reset = parseResetTimestamp(header(headers, `anthropic-ratelimit-${kind}-reset`), now);
    if (reset !== undefined) {
      resets.push({ reset, exhausted: header(headers, `anthropic-ratelimit-${kind}-remaining`)?.trim() === '0' });
    }
  }
  const exhausted = resets.filter((r) => r.exhausted);
  const pool = exhausted.length > 0 ? exhausted : resets;
  if (pool.length === 0) return undefined;
  return Math.max(...pool.map((r) => r.reset));
}
