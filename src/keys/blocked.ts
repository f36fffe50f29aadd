// When a key can take a demand (blockedUntil, the rule every choice applies), and what of that an index
// may remember for every demand of one model (blockEntry): the choice index (choice-index.ts) skips
// keys it knows blocked without asking blockedUntil for each. Pure: `now` and the states are inputs.
import type { Demand, KeyState, Scope } from './key-state.js';
import { WINDOW_MS, requestsShortUntil, tokensShortUntil, windowFullUntil } from './windows.js';

/** When a scope lets a request of `tokens` through: 0 = now. */
function scopeBlockedUntil(scope: Scope | undefined, tokens: number, now: number): number {
  if (scope === undefined) return 0;
  const until = Math.max(
    scope.cooldownUntil,
    scope.heldUntil,
    requestsShortUntil(scope.requests, scope.sent, now),
    tokensShortUntil(scope.tokens, scope.sentTokens, tokens, now),
  );
  return until > now ? until : 0;
}

/**
 * When the key can take this demand: 0 if now, an epoch ms, or Infinity when it waits for an event rather
 * than a time (a free in-flight slot, the end of a probe). A disabled key is back at `disabledUntil`.
 * `groupScopes` are the key's group's scopes, if it has a group.
 */
export function blockedUntil(s: KeyState, d: Demand, now: number, groupScopes: Map<string, Scope> | undefined): number {
  if (s.disabled !== undefined && s.disabledUntil > now) return s.disabledUntil;
  let until = s.creditUntil > now ? s.creditUntil : 0;
  until = Math.max(until, scopeBlockedUntil(s.scopes.get(''), d.tokens, now));
  if (d.model !== '') until = Math.max(until, scopeBlockedUntil(s.scopes.get(d.model), d.tokens, now));
  if (groupScopes !== undefined) {
    until = Math.max(until, scopeBlockedUntil(groupScopes.get(''), 0, now));
    if (d.model !== '') until = Math.max(until, scopeBlockedUntil(groupScopes.get(d.model), 0, now));
  }
  const o = s.key.options;
  until = Math.max(until, windowFullUntil(s.rpm, o.rpm, 1, now), windowFullUntil(s.tpm, o.tpm, d.tokens, now));
  if (until > now) return until;
  if (probing(s.scopes.get(''), now) || (d.model !== '' && probing(s.scopes.get(d.model), now))) return Infinity;
  if (o.maxConcurrent !== undefined && s.inflight >= o.maxConcurrent) return Infinity;
  return 0;
}

function probing(scope: Scope | undefined, now: number): boolean {
  return scope !== undefined && scope.probePending && scope.probeUntil > now;
}

/**
 * What holds for every demand of one model (any token count ≥ 0), from `now` until the key's state
 * changes. A change that can let the key through sooner must be told to an index at once. One that only
 * blocks it further leaves `notBefore` true, and `bound` too when the key is blocked until a time (its
 * checks' times only move later), but not when it waits for an event (`event`): a new time block (a
 * cooldown on a busy key) makes blockedUntil a time instead of Infinity. A disable is never "further":
 * blockedUntil then answers its end, even when a cooldown ends later (see choice-index.ts).
 */
export interface BlockEntry {
  /** No demand of the model can take the key before this; 0 (or any time ≤ now): it may be free now. */
  notBefore: number;
  /** While notBefore > now: a lower bound of blockedUntil for every demand of the model. */
  bound: number;
  /** `bound` is blockedUntil itself, whatever the demand's tokens. */
  exact: boolean;
  /** Blocked by an event (a full key, a probe running), not by a time. */
  event: boolean;
}

/** When a token check of the scope can block: its bucket's reset, if still ahead; else 0. */
function tokensReset(scope: Scope | undefined, now: number): number {
  const b = scope?.tokens;
  return b !== undefined && b.resetAt > now ? b.resetAt : 0;
}

/**
 * Fills `out` with what blockedUntil says of the key for every demand of `model` at `now`. Every check
 * but the token ones is the same for all demands of the model; a token check only adds a block ending
 * at its bucket's reset or its window's end, so evaluating the rest at 0 tokens gives a lower bound, and
 * the exact answer when no token check could end later. Writes into `out` (no allocation per key).
 */
export function blockEntry(s: KeyState, model: string, now: number, groupScopes: Map<string, Scope> | undefined, out: BlockEntry): BlockEntry {
  if (s.disabled !== undefined && s.disabledUntil > now) return put(out, s.disabledUntil, s.disabledUntil, true, false);
  const wide = s.scopes.get('');
  const own = model === '' ? undefined : s.scopes.get(model);
  const o = s.key.options;
  let until = s.creditUntil > now ? s.creditUntil : 0;
  until = Math.max(until, scopeBlockedUntil(wide, 0, now), scopeBlockedUntil(own, 0, now));
  if (groupScopes !== undefined) {
    until = Math.max(until, scopeBlockedUntil(groupScopes.get(''), 0, now));
    if (model !== '') until = Math.max(until, scopeBlockedUntil(groupScopes.get(model), 0, now));
  }
  until = Math.max(until, windowFullUntil(s.rpm, o.rpm, 1, now), windowFullUntil(s.tpm, o.tpm, 0, now));
  const a = tokensReset(wide, now);
  const b = tokensReset(own, now);
  const end = s.tpm.start + WINDOW_MS;
  const c = o.tpm !== undefined && s.tpm.count !== 0 && now < end ? end : 0;
  if (until > now) return put(out, until, until, Math.max(a, b, c) <= until, false);
  const slots = o.maxConcurrent !== undefined && s.inflight >= o.maxConcurrent;
  const probeEnd = Math.min(probing(wide, now) ? wide!.probeUntil : Infinity, probing(own, now) ? own!.probeUntil : Infinity);
  if (!slots && probeEnd === Infinity) return put(out, 0, Infinity, false, false);
  // Waiting for an event: blockedUntil says Infinity, unless a token check blocks the demand until a time.
  const tokensFrom = Math.min(a || Infinity, b || Infinity, c || Infinity);
  return put(out, slots ? Infinity : probeEnd, tokensFrom, tokensFrom === Infinity, true);
}

function put(out: BlockEntry, notBefore: number, bound: number, exact: boolean, event: boolean): BlockEntry {
  out.notBefore = notBefore;
  out.bound = bound;
  out.exact = exact;
  out.event = event;
  return out;
}
