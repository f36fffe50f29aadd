// What keypool knows about one key, and the pure rules over it: its scopes, probes, headroom and the
// counting of a request (when it can take a demand is blocked.ts).
// OpenAI's request and token limits are per model, so rate-limit state is kept per model ("scope");
// credit and auth are key-wide. The empty scope '' holds what applies whatever the model.
import type { Key } from './key.js';
import { WINDOW_MS, countWindow, left, roll, type Bucket, type Mark, type Window } from './windows.js';

export { WINDOW_MS, type Bucket, type Mark, type Window } from './windows.js';
// The availability rule lives in blocked.ts; exported here too, where it always was.
export { blockedUntil } from './blocked.js';

/**
 * Why a key is skipped for a while: the upstream's rate limit (per model), out of credit (key-wide), or
 * the upstream said this key may not use this model (per model; another key's project may).
 */
export type CoolReason = 'rate_limited' | 'out_of_credit' | 'model_unavailable';
/** `admin`: an operator disabled the key (admin API); it stays disabled until enabled. */
export type DisableReason = 'unauthorized' | 'forbidden' | 'admin';

/** What a request needs from a key. */
export interface Demand {
  /** The request's model, '' when unknown. Rate-limit cooldowns apply per model. */
  readonly model: string;
  /** Estimated tokens: max output tokens + prompt bytes / 4. */
  readonly tokens: number;
}

export const ANY_MODEL: Demand = Object.freeze({ model: '', tokens: 0 });

/** Rate-limit state of a key (or a group) for one model. */
export interface Scope {
  cooldownUntil: number;
  reason: CoolReason | undefined;
  /** Consecutive rate-limit failures; a success clears it. */
  streak: number;
  requests: Bucket | undefined;
  tokens: Bucket | undefined;
  /** Requests and estimated tokens sent on this scope, ever. */
  sent: number;
  sentTokens: number;
  /**
   * The shared store refused this scope's key until then (another replica used up a limit). Local only:
   * not a cooldown, never persisted or published, no streak.
   */
  heldUntil: number;
  /** What the latest-ending hold waits for: only a slot hold is lifted by a "freed" message. */
  heldFor: 'slots' | 'limit';
  /** The last long cooldown of this scope has not been followed by a successful probe yet. */
  probePending: boolean;
  /**
   * A probe is in flight until its answer, at the latest until then (a lease: a probe whose end is never
   * reported cannot block the scope for good). 0: none. While it runs nobody else may use the scope.
   */
  probeUntil: number;
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

/** Tokens the upstream reported for this key's answers (their `usage`), this process only. */
export interface KeyTokens {
  input: number;
  output: number;
}

export interface KeyState {
  /** Replaced by a reload when the same secret comes back with other settings (name, weight, group, limits). */
  key: Key;
  /** Position in the pool's order; a reload may move it. */
  index: number;
  /** The upstream rejected the key itself (401, or a 403 blaming it): unusable until `disabledUntil`. */
  disabled: DisableReason | undefined;
  disabledUntil: number;
  /** Out of credit until then (key-wide). Only ever moves later. */
  creditUntil: number;
  inflight: number;
  /** In-flight attempts on this key at other replicas, as of the last shared take (least_inflight). */
  remoteInflight: number;
  readonly scopes: Map<string, Scope>;
  readonly rpm: Window;
  readonly tpm: Window;
  readonly stats: KeyStats;
  readonly tokens: KeyTokens;
}

export function newKeyState(key: Key, index: number): KeyState {
  return {
    key,
    index,
    disabled: undefined,
    disabledUntil: 0,
    creditUntil: 0,
    inflight: 0,
    remoteInflight: 0,
    scopes: new Map(),
    rpm: { start: 0, count: 0 },
    tpm: { start: 0, count: 0 },
    stats: { attempts: 0, successes: 0, rateLimited: 0, outOfCredit: 0, serverErrors: 0 },
    tokens: { input: 0, output: 0 },
  };
}

export function newScope(): Scope {
  return {
    cooldownUntil: 0,
    reason: undefined,
    streak: 0,
    requests: undefined,
    tokens: undefined,
    sent: 0,
    sentTokens: 0,
    heldUntil: 0,
    heldFor: 'limit',
    probePending: false,
    probeUntil: 0,
  };
}

/**
 * Models tracked per key (or group). Model names come from clients: past this many, a scope that holds
 * nothing (no cooldown, hold, probe or live bucket) makes room for the new one; only when all of them
 * are live does a further model share the key-wide scope '' (stricter, never looser). A model refusal
 * is never put there: it would bar the key from every model (see `scopeFor`).
 */
export const MAX_SCOPES = 512;

/** Whether a scope holds nothing worth keeping at `now`: it can be forgotten to make room. */
function idle(sc: Scope, now: number): boolean {
  return (
    sc.cooldownUntil <= now &&
    sc.heldUntil <= now &&
    !sc.probePending &&
    sc.probeUntil <= now &&
    (sc.requests === undefined || sc.requests.resetAt <= now) &&
    (sc.tokens === undefined || sc.tokens.resetAt <= now)
  );
}

/** Forgets the oldest idle scope (not ''); whether there was one. */
function evictIdle(scopes: Map<string, Scope>, now: number): boolean {
  for (const [model, sc] of scopes) {
    if (model !== '' && idle(sc, now)) {
      scopes.delete(model);
      return true;
    }
  }
  return false;
}

/**
 * The model's scope, created if need be (making room at `now` when full). Without `now` (or when every
 * scope is live) a new model falls back to the key-wide scope.
 */
export function scopeOf(scopes: Map<string, Scope>, model: string, now = -Infinity): Scope {
  return scopeFor(scopes, model, now) ?? scopeOf(scopes, '');
}

/** The model's own scope, created if need be; undefined when there is no room for it even after evicting idle ones. */
export function scopeFor(scopes: Map<string, Scope>, model: string, now = -Infinity): Scope | undefined {
  let s = scopes.get(model);
  if (s === undefined) {
    if (scopes.size >= MAX_SCOPES && model !== '' && !evictIdle(scopes, now)) return undefined;
    s = newScope();
    scopes.set(model, s);
  }
  return s;
}

/**
 * Makes the request just chosen for this key the probe of a scope that owes one (key-wide first, then
 * the model's), leased until `leaseEnd`. Returns that scope, or undefined when no probe is owed.
 */
export function claimProbe(s: KeyState, d: Demand, now: number, leaseEnd: number): Scope | undefined {
  // Runs on every acquire: two lookups, no allocation.
  let scope = s.scopes.get('');
  if (!owesProbe(scope, now)) {
    scope = d.model === '' ? undefined : s.scopes.get(d.model);
    if (!owesProbe(scope, now)) return undefined;
  }
  scope.probeUntil = leaseEnd;
  return scope;
}

/** The scope owes a probe and none is running: the next request on it is the probe. */
function owesProbe(scope: Scope | undefined, now: number): scope is Scope {
  return scope !== undefined && scope.probePending && scope.probeUntil <= now;
}

/** Share of the key's limit left for this model, 0..1; 1 when nothing is known (an unused key is worth a try). */
export function headroomOf(s: KeyState, d: Demand, now: number): number {
  const scope = s.scopes.get(d.model) ?? s.scopes.get('');
  if (scope === undefined) return 1;
  let share = 1;
  const r = scope.requests;
  if (r !== undefined && r.limit > 0) share = Math.min(share, Math.max(0, left(r, scope.sent, now)) / r.limit);
  const t = scope.tokens;
  if (t !== undefined && t.limit > 0) share = Math.min(share, Math.max(0, left(t, scope.sentTokens, now)) / t.limit);
  return share;
}

/** A bucket is near its end below this share of its limit... */
const TIGHT_SHARE = 0.2;
/** ...or below this many requests (tokens: this many requests' worth of the demand). */
const TIGHT_MIN = 50;

/** The shared store refused the scope within the last window. */
function heldLately(scope: Scope, now: number): boolean {
  return scope.heldUntil !== 0 && scope.heldUntil > now - WINDOW_MS;
}

/**
 * Whether the key is near a limit for this demand: its bucket for the model is low, or the shared
 * store refused it within the last window. Replicas then wait for the store's yes on every attempt;
 * far from every limit they need not (see KeyPool.confirm).
 */
export function isTight(s: KeyState, d: Demand, now: number): boolean {
  const keyWide = s.scopes.get('');
  if (keyWide !== undefined && heldLately(keyWide, now)) return true;
  const scope = d.model === '' ? keyWide : s.scopes.get(d.model);
  if (scope === undefined) return false;
  if (heldLately(scope, now)) return true;
  const r = scope.requests;
  if (r !== undefined && left(r, scope.sent, now) < Math.max(TIGHT_SHARE * r.limit, TIGHT_MIN)) return true;
  const t = scope.tokens;
  return t !== undefined && left(t, scope.sentTokens, now) < Math.max(TIGHT_SHARE * t.limit, TIGHT_MIN * Math.max(1, d.tokens));
}

/** Counts a request against the key's local windows and its model's scope; returns where it stood. */
export function countRequest(s: KeyState, d: Demand, now: number): Mark {
  countWindow(s.rpm, 1, now);
  countWindow(s.tpm, d.tokens, now);
  const scope = scopeOf(s.scopes, d.model, now);
  if (scope.requests) roll(scope.requests, scope.sent, now);
  if (scope.tokens) roll(scope.tokens, scope.sentTokens, now);
  scope.sent++;
  scope.sentTokens += d.tokens;
  return { requests: scope.sent, tokens: scope.sentTokens };
}

