// The rules that keep a key out and let it back in: cooling (per model, key-wide, spread to the group),
// disabling and enabling, the end of a model refusal, an operator's reset, undoing an attempt's counts.
// Pure functions over a KeyState and its group's scopes; the pool counts, tells its listener and its
// choice index what they changed.
import type { CoolReason, Demand, DisableReason, KeyState, Scope } from './key-state.js';
import { scopeFor, scopeOf } from './key-state.js';
import { extend } from './shared-facts.js';

export interface Cooled {
  /** The scope that owes the probe, if the cooldown is long. */
  readonly scope: Scope;
  /** The cooldown moved later. */
  readonly extended: boolean;
  /** Consecutive rate limits of the key on this model (0 for credit stops and model refusals). */
  readonly streak: number;
  /** The group's scopes changed too. */
  readonly group: boolean;
}

/**
 * Cools a key until `until`: for this model when rate-limited or not allowed the model, key-wide when
 * out of credit; the whole group too for limits and credit when the key has one (its keys share the
 * organisation's limits; model access is per project, so it is not spread). Only ever extended.
 * Undefined when there is nothing to cool (a model refusal without a model, or no room for its scope).
 */
export function coolKey(
  s: KeyState,
  group: Map<string, Scope> | undefined,
  model: string,
  until: number,
  reason: CoolReason,
  now: number,
  refining: boolean,
  probeAfterMs: number,
): Cooled | undefined {
  let extended: boolean;
  let streak = 0;
  let scope: Scope;
  if (reason === 'rate_limited') {
    // Refining a cooldown set at the head from what the body says is the same 429: counted once.
    if (!refining) s.stats.rateLimited++;
    scope = scopeOf(s.scopes, model, now);
    // Requests already in flight when the first 429 cooled the key come back 429 too; they are the same
    // event, not a longer streak (else one burst would push the backoff to its ceiling).
    if (scope.cooldownUntil <= now) scope.streak++;
    streak = scope.streak;
    extended = extend(scope, until, reason);
    if (group) extend(scopeOf(group, model), until, reason);
  } else if (reason === 'model_unavailable') {
    // Never on the key-wide scope: a refusal of one model must not bar the key from every model.
    const own = model === '' ? undefined : scopeFor(s.scopes, model, now);
    if (own === undefined) return undefined;
    scope = own;
    extended = extend(scope, until, reason);
  } else {
    s.stats.outOfCredit++;
    scope = scopeOf(s.scopes, '');
    extended = until > s.creditUntil;
    if (extended) s.creditUntil = until;
    if (group) extend(scopeOf(group, ''), until, reason);
  }
  // The probe is owed where the limit was hit: this model's scope, or key-wide for credit.
  if (until - now >= probeAfterMs) scope.probePending = true;
  return { scope, extended, streak, group: group !== undefined && reason !== 'model_unavailable' };
}

/** Disables the key until `until` (a later end only extends it). Whether anything changed. */
export function disableKey(s: KeyState, reason: DisableReason, until: number): boolean {
  if (s.disabled !== undefined && s.disabledUntil >= until) return false;
  s.disabled = reason;
  s.disabledUntil = until;
  return true;
}

/** Makes a disabled key usable again. Whether it was disabled. */
export function enableKey(s: KeyState): boolean {
  if (s.disabled === undefined) return false;
  s.disabled = undefined;
  s.disabledUntil = 0;
  return true;
}

/** The key may use the model again (a probe said so): its refusal of that model ends now. Whether it had one. */
export function reopenModel(s: KeyState, model: string): boolean {
  const scope = s.scopes.get(model);
  if (scope === undefined || scope.reason !== 'model_unavailable') return false;
  scope.cooldownUntil = 0;
  scope.reason = undefined;
  scope.probePending = false;
  return true;
}

/**
 * An operator's reset, but for the disable (the pool enables the key): the key forgets its credit stop,
 * cooldowns, streaks, store holds and probes. Its group's scopes stay: they speak for the group's other keys too.
 */
export function resetKey(s: KeyState): void {
  s.creditUntil = 0;
  for (const scope of s.scopes.values()) {
    scope.cooldownUntil = 0;
    scope.reason = undefined;
    scope.streak = 0;
    scope.heldUntil = 0;
    scope.probePending = false;
    scope.probeUntil = 0;
  }
}

/** Undoes what acquiring counted for an attempt that never went out. */
export function uncount(s: KeyState, demand: Demand): void {
  s.stats.attempts--;
  s.rpm.count = Math.max(0, s.rpm.count - 1);
  s.tpm.count = Math.max(0, s.tpm.count - demand.tokens);
  // The scope's counts are what its buckets are measured against: a request never sent must not use them up.
  const scope = scopeOf(s.scopes, demand.model);
  scope.sent = Math.max(0, scope.sent - 1);
  scope.sentTokens = Math.max(0, scope.sentTokens - demand.tokens);
}

/**
 * Enables, through `enable`, every disabled key whose period has run out by `now`; returns the
 * earliest end among the disables left (Infinity: none).
 */
export function expireDisables(states: readonly KeyState[], now: number, enable: (s: KeyState) => void): number {
  let next = Infinity;
  for (const s of states) {
    if (s.disabled === undefined) continue;
    if (s.disabledUntil <= now) enable(s);
    else next = Math.min(next, s.disabledUntil);
  }
  return next;
}

/** The earliest end among disabled keys (Infinity: none). */
export function earliestEnable(states: readonly KeyState[]): number {
  let next = Infinity;
  for (const s of states) if (s.disabled !== undefined) next = Math.min(next, s.disabledUntil);
  return next;
}
