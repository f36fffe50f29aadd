// What a response's rate-limit headers say about a key's buckets for one model, and how a scope takes
// a report in: a report older than the one held (its request went out earlier) is dropped, and the
// shared store's view is adopted only where it leaves less. Pure.
import { header, parseCount, parseReset, type HeaderBag } from './rate-limit-headers.js';
import type { Scope } from './key-state.js';
import { left, type Bucket, type Mark } from './windows.js';

/** What one response's rate-limit headers say, if anything. */
export interface Report {
  readonly requests: Omit<Bucket, 'base'> | undefined;
  readonly tokens: Omit<Bucket, 'base'> | undefined;
}

/**
 * Largest limit or remaining count kept: the shared store holds them as integers in Lua, and no real
 * bucket is larger (OpenAI's biggest token limits are in the tens of millions).
 */
export const MAX_BUCKET_COUNT = 1e9;

/**
 * Reads OpenAI's `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` and Anthropic's
 * `anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}`; undefined when there are none.
 * Every resetAt is a whole epoch ms in [now, now + maxMs] and every period a whole ms in [0, maxMs]
 * (`now` a whole epoch ms, `maxMs` = `cooldown.maxMs`): a reset of "3,000 years" blocks a model for
 * maxMs, not until restart. A reset in the past is "reset now": the bucket is fresh.
 */
export function readReport(headers: HeaderBag, now: number, maxMs: number): Report | undefined {
  const requests =
    bucketFrom(headers, 'x-ratelimit-limit-requests', 'x-ratelimit-remaining-requests', 'x-ratelimit-reset-requests', now, maxMs) ??
    bucketFrom(headers, 'anthropic-ratelimit-requests-limit', 'anthropic-ratelimit-requests-remaining', 'anthropic-ratelimit-requests-reset', now, maxMs);
  const tokens =
    bucketFrom(headers, 'x-ratelimit-limit-tokens', 'x-ratelimit-remaining-tokens', 'x-ratelimit-reset-tokens', now, maxMs) ??
    bucketFrom(headers, 'anthropic-ratelimit-tokens-limit', 'anthropic-ratelimit-tokens-remaining', 'anthropic-ratelimit-tokens-reset', now, maxMs);
  return requests === undefined && tokens === undefined ? undefined : { requests, tokens };
}

/**
 * Takes a report into the scope. A report older than the one held (its request went out earlier) is
 * ignored. Returns whether anything was learnt.
 */
export function observeReport(scope: Scope, report: Report, mark: Mark): boolean {
  const req = report.requests === undefined ? undefined : { ...report.requests, base: 0 };
  const tok = report.tokens === undefined ? undefined : { ...report.tokens, base: 0 };
  const a = req !== undefined && accept(scope.requests, req, mark.requests);
  if (a) scope.requests = req;
  const b = tok !== undefined && accept(scope.tokens, tok, mark.tokens);
  if (b) scope.tokens = tok;
  return a || b;
}

/** Reads a response's rate-limit headers into the scope (readReport + observeReport). */
export function observeHeaders(scope: Scope, headers: HeaderBag, now: number, maxMs: number, mark: Mark): boolean {
  const report = readReport(headers, now, maxMs);
  return report !== undefined && observeReport(scope, report, mark);
}

/**
 * Takes the shared store's view of the scope's buckets (what is left after the request just counted)
 * where it leaves less than the local view: other replicas spent the difference. Never raises headroom:
 * the local view may hold a fresher report. Returns whether anything changed.
 */
export function adoptShared(scope: Scope, shared: Report, now: number): boolean {
  let changed = false;
  const r = shared.requests;
  if (r !== undefined && (scope.requests === undefined || left(scope.requests, scope.sent, now) > r.remaining)) {
    scope.requests = { ...r, base: scope.sent, period: Math.max(r.period, scope.requests?.period ?? 0) };
    changed = true;
  }
  const t = shared.tokens;
  if (t !== undefined && (scope.tokens === undefined || left(scope.tokens, scope.sentTokens, now) > t.remaining)) {
    scope.tokens = { ...t, base: scope.sentTokens, period: Math.max(t.period, scope.tokens?.period ?? 0) };
    changed = true;
  }
  return changed;
}

/** Fills in `fresh` from the mark and the held bucket; false when `fresh` is older than what is held. */
function accept(held: Bucket | undefined, fresh: Bucket, base: number): boolean {
  if (held !== undefined && base < held.base) return false;
  fresh.base = base;
  fresh.period = Math.max(fresh.period, held?.period ?? 0);
  return true;
}

/**
 * One bucket, or undefined when its numbers cannot be trusted (absent, garbage, negative, non-finite) or
 * it names no reset. Counts are whole (floored: never more headroom than told) and at most
 * MAX_BUCKET_COUNT. A limit is at least 1: a limit of 0 would keep the scope shut window after window
 * with no request ever sent to report fresh numbers; at 1, the first request after a reset asks again.
 */
function bucketFrom(
  h: HeaderBag,
  limitName: string,
  remainingName: string,
  resetName: string,
  now: number,
  maxMs: number,
): Bucket | undefined {
  const remaining = countFrom(header(h, remainingName));
  if (remaining === undefined) return undefined;
  const limitText = header(h, limitName);
  const limit = limitText === undefined ? remaining : countFrom(limitText);
  const resetIn = parseReset(header(h, resetName), now, maxMs);
  if (limit === undefined || resetIn === undefined) return undefined;
  return { limit: Math.max(1, limit), remaining, resetAt: now + resetIn, period: resetIn, base: 0 };
}

function countFrom(text: string | undefined): number | undefined {
  const n = parseCount(text);
  return n === undefined ? undefined : Math.min(MAX_BUCKET_COUNT, Math.floor(n));
}
