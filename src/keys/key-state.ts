// What keypool knows about one key, and the pure rules over it: when the key can take a request with a
// given demand (model, token estimate), and how rate-limit headers update its headroom.
// OpenAI's request and token limits are per model, so rate-limit state is kept per model ("scope");
// credit and auth are key-wide. The empty scope '' holds what applies whatever the model.
import type { Key } from './key.js';
import { header, parseDuration, parseResetTimestamp, type HeaderBag } from './rate-limit-headers.js';

export type CoolReason = 'rate_limited' | 'out_of_credit';
export type DisableReason = 'unauthorized' | 'forbidden';

/** What a request needs from a key. */
export interface Demand {
  /** The request's model, '' when unknown. Rate-limit cooldowns apply per model. */
  readonly model: string;
  /** Estimated tokens: max output tokens + prompt bytes / 4. */
  readonly tokens: number;
}

export const ANY_MODEL: Demand = Object.freeze({ model: '', tokens: 0 });

/** A limit as the upstream last reported it, minus what was sent since. */
export interface Bucket {
  limit: number;
  remaining: number;
  resetAt: number;
  /** Requests (or tokens) sent since the report: the upstream had not counted them yet. */
  used: number;
}

/** Rate-limit state of a key (or a group) for one model. */
export interface Scope {
  cooldownUntil: number;
  reason: CoolReason | undefined;
  /** Consecutive rate-limit failures; a success clears it. */
  streak: number;
  requests: Bucket | undefined;
  tokens: Bucket | undefined;
}

/** A local fixed window for hand-set rpm/tpm. */
export interface Window {
  start: number;
  count: number;
}

export interface KeyStats {
  /** Attempts sent with this key. */
  attempts: number;
  /** Attempts that got a 2xx. */
  successes: number;
  rateLimited: number;
  outOfCredit: number;
  serverErrors: number;
}

export interface KeyState {
  readonly key: Key;
  readonly index: number;
  disabled: DisableReason | undefined;
  /** Out of credit until then (key-wide). Only ever moves later. */
  creditUntil: number;
  /** The last long cooldown has not been followed by a successful probe yet. */
  probePending: boolean;
  /** A probe request is in flight: nobody else may use the key. */
  probing: boolean;
  inflight: number;
  readonly scopes: Map<string, Scope>;
  readonly rpm: Window;
  readonly tpm: Window;
  readonly stats: KeyStats;
}

/** Local rpm/tpm windows are fixed minutes. */
export const WINDOW_MS = 60_000;

export function newKeyState(key: Key, index: number): KeyState {
  return {
    key,
    index,
    disabled: undefined,
    creditUntil: 0,
    probePending: false,
    probing: false,
    inflight: 0,
    scopes: new Map(),
    rpm: { start: 0, count: 0 },
    tpm: { start: 0, count: 0 },
    stats: { attempts: 0, successes: 0, rateLimited: 0, outOfCredit: 0, serverErrors: 0 },
  };
}

export function newScope(): Scope {
  return { cooldownUntil: 0, reason: undefined, streak: 0, requests: undefined, tokens: undefined };
}

export function scopeOf(scopes: Map<string, Scope>, model: string): Scope {
  let s = scopes.get(model);
  if (s === undefined) {
    s = newScope();
    scopes.set(model, s);
  }
  return s;
}

/** When a scope lets a request of `tokens` through: 0 = now. */
function scopeBlockedUntil(scope: Scope | undefined, tokens: number, now: number): number {
  if (scope === undefined) return 0;
  let until = scope.cooldownUntil;
  const r = scope.requests;
  if (r !== undefined && now < r.resetAt && r.remaining - r.used <= 0) until = Math.max(until, r.resetAt);
  const t = scope.tokens;
  // A request larger than the whole limit is let through once the window is fresh, or it would never run.
  if (t !== undefined && now < t.resetAt && t.remaining - t.used < Math.min(tokens, t.limit)) until = Math.max(until, t.resetAt);
  return until > now ? until : 0;
}

/**
 * When the key can take this demand: 0 if now, an epoch ms, or Infinity when it waits for an event rather
 * than a time (a free in-flight slot, the end of a probe, never for a disabled key).
 * `groupScopes` are the key's group's scopes, if it has a group.
 */
export function blockedUntil(s: KeyState, d: Demand, now: number, groupScopes: Map<string, Scope> | undefined): number {
  if (s.disabled !== undefined) return Infinity;
  let until = s.creditUntil > now ? s.creditUntil : 0;
  until = Math.max(until, scopeBlockedUntil(s.scopes.get(''), d.tokens, now));
  if (d.model !== '') until = Math.max(until, scopeBlockedUntil(s.scopes.get(d.model), d.tokens, now));
  if (groupScopes !== undefined) {
    until = Math.max(until, scopeBlockedUntil(groupScopes.get(''), 0, now));
    if (d.model !== '') until = Math.max(until, scopeBlockedUntil(groupScopes.get(d.model), 0, now));
  }
  const o = s.key.options;
  if (o.rpm !== undefined && now < s.rpm.start + WINDOW_MS && s.rpm.count >= o.rpm) until = Math.max(until, s.rpm.start + WINDOW_MS);
  if (o.tpm !== undefined && now < s.tpm.start + WINDOW_MS && s.tpm.count > 0 && s.tpm.count + d.tokens > o.tpm) {
    until = Math.max(until, s.tpm.start + WINDOW_MS);
  }
  if (until > now) return until;
  if (s.probing) return Infinity;
  if (o.maxConcurrent !== undefined && s.inflight >= o.maxConcurrent) return Infinity;
  return 0;
}

/** Share of the key's limit left for this model, 0..1; 1 when nothing is known (an unused key is worth a try). */
export function headroomOf(s: KeyState, d: Demand, now: number): number {
  const scope = s.scopes.get(d.model) ?? s.scopes.get('');
  if (scope === undefined) return 1;
  let share = 1;
  for (const b of [scope.requests, scope.tokens]) {
    if (b === undefined || now >= b.resetAt || b.limit <= 0) continue;
    share = Math.min(share, Math.max(0, b.remaining - b.used) / b.limit);
  }
  return share;
}

/** Counts a request against the key's local windows and the upstream's last report. */
export function countRequest(s: KeyState, d: Demand, now: number): void {
  if (now >= s.rpm.start + WINDOW_MS) {
    s.rpm.start = now;
    s.rpm.count = 0;
  }
  s.rpm.count++;
  if (now >= s.tpm.start + WINDOW_MS) {
    s.tpm.start = now;
    s.tpm.count = 0;
  }
  s.tpm.count += d.tokens;
  const scope = s.scopes.get(d.model);
  if (scope?.requests) scope.requests.used++;
  if (scope?.tokens) scope.tokens.used += d.tokens;
}

/**
 * Reads a response's rate-limit headers into the scope: OpenAI's `x-ratelimit-{limit,remaining,reset}-
 * {requests,tokens}` and Anthropic's `anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}`.
 * Returns whether anything was learnt.
 */
export function observeHeaders(scope: Scope, headers: HeaderBag, now: number): boolean {
  const req =
    bucketFrom(headers, 'x-ratelimit-limit-requests', 'x-ratelimit-remaining-requests', 'x-ratelimit-reset-requests', now) ??
    bucketFrom(headers, 'anthropic-ratelimit-requests-limit', 'anthropic-ratelimit-requests-remaining', 'anthropic-ratelimit-requests-reset', now);
  const tok =
    bucketFrom(headers, 'x-ratelimit-limit-tokens', 'x-ratelimit-remaining-tokens', 'x-ratelimit-reset-tokens', now) ??
    bucketFrom(headers, 'anthropic-ratelimit-tokens-limit', 'anthropic-ratelimit-tokens-remaining', 'anthropic-ratelimit-tokens-reset', now);
  if (req) scope.requests = req;
  if (tok) scope.tokens = tok;
  return req !== undefined || tok !== undefined;
}

function bucketFrom(h: HeaderBag, limitName: string, remainingName: string, resetName: string, now: number): Bucket | undefined {
  const remainingText = header(h, remainingName);
  if (remainingText === undefined) return undefined;
  const remaining = Number(remainingText);
  const limit = Number(header(h, limitName) ?? remainingText);
  const resetText = header(h, resetName);
  const resetIn = parseDuration(resetText) ?? parseResetTimestamp(resetText, now);
  if (!Number.isFinite(remaining) || !Number.isFinite(limit) || resetIn === undefined) return undefined;
  return { limit, remaining, resetAt: now + resetIn, used: 0 };
}
