// What a response's rate-limit headers say about a key's buckets for one model, and how a scope takes
// a report in: a report older than the one held (its request went out earlier) is dropped, and the
// shared store's view is adopted only where it leaves less. Pure.
import { header, parseDuration, parseResetTimestamp, type HeaderBag } from './rate-limit-headers.js';
import type { Scope } from './key-state.js';
import { left, type Bucket, type Mark } from './windows.js';

/** What one response's rate-limit headers say, if anything. */
export interface Report {
  readonly requests: Omit<Bucket, 'base'> | undefined;
  readonly tokens: Omit<Bucket, 'base'> | undefined;
}

/**
 * Reads OpenAI's `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` and Anthropic's
 * `anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}`; undefined when there are none.
 */
export function readReport(headers: HeaderBag, now: number): Report | undefined {
  const requests =
    bucketFrom(headers, 'x-ratelimit-limit-requests', 'x-ratelimit-remaining-requests', 'x-ratelimit-reset-requests', now) ??
    bucketFrom(headers, 'anthropic-ratelimit-requests-limit', 'anthropic-ratelimit-requests-remaining', 'anthropic-ratelimit-requests-reset', now);
  const tokens =
    bucketFrom(headers, 'x-ratelimit-limit-tokens', 'x-ratelimit-remaining-tokens', 'x-ratelimit-reset-tokens', now) ??
    bucketFrom(headers, 'anthropic-ratelimit-tokens-limit', 'anthropic-ratelimit-tokens-remaining', 'anthropic-ratelimit-tokens-reset', now);
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
export function observeHeaders(scope: Scope, headers: HeaderBag, now: number, mark: Mark): boolean {
  const report = readReport(headers, now);
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

function bucketFrom(h: HeaderBag, limitName: string, remainingName: string, resetName: string, now: number): Bucket | undefined {
  const remainingText = header(h, remainingName);
  if (remainingText === undefined) return undefined;
  const remaining = Number(remainingText);
  const limit = Number(header(h, limitName) ?? remainingText);
  const resetText = header(h, resetName);
  const resetIn = parseDuration(resetText) ?? parseResetTimestamp(resetText, now);
  if (!Number.isFinite(remaining) || !Number.isFinite(limit) || resetIn === undefined) return undefined;
  // Whole ms (a reset may read 33.0125s): the shared store's scripts and TTLs take integers.
  return { limit, remaining, resetAt: Math.ceil(now + resetIn), period: Math.ceil(resetIn), base: 0 };
}
