// Facts about keys that replicas share (cooldowns with their streak, disabled keys), and the pure rules
// for taking one in: cooldowns only ever extend, and a fact counts nothing and tells no listener.
import type { CoolReason, DisableReason, KeyState, Scope } from './key-state.js';
import { scopeOf } from './key-state.js';

/** A fact about a key learnt elsewhere (another replica, via the shared store). */
export type SharedFact =
  | {
      kind: 'cooldown';
      fingerprint: string;
      model: string;
      reason: CoolReason;
      until: number;
      /** The failure streak behind it, so the next replica to be refused backs off further. */
      streak?: number | undefined;
    }
  /** `until`: when the disable ends (absent from replicas that predate disable periods: the store's TTL applies). */
  | { kind: 'disabled'; fingerprint: string; reason: DisableReason; until?: number | undefined };

/** Moves a scope's cooldown later (never earlier); whether it moved. */
export function extend(scope: Scope, until: number, reason: CoolReason): boolean {
  if (until <= scope.cooldownUntil) return false;
  scope.cooldownUntil = until;
  scope.reason = reason;
  return true;
}

/**
 * Takes a fact into the key's state (and its group's, if it has one). Returns true when it disabled a
 * key that was usable, so the pool can count it.
 */
export function applyFact(s: KeyState, group: Map<string, Scope> | undefined, f: SharedFact, now: number, probeAfterMs: number): boolean {
  if (f.kind === 'disabled') {
    const until = f.until ?? Infinity;
    if (until <= now) return false;
    const was = s.disabled === undefined;
    s.disabled = f.reason;
    s.disabledUntil = Math.max(s.disabledUntil, until);
    return was;
  }
  if (f.until <= now) return false;
  let scope: Scope;
  if (f.reason === 'rate_limited') {
    scope = scopeOf(s.scopes, f.model);
    extend(scope, f.until, f.reason);
    scope.streak = Math.max(scope.streak, f.streak ?? 0);
    if (group) extend(scopeOf(group, f.model), f.until, f.reason);
  } else if (f.reason === 'model_unavailable') {
    scope = scopeOf(s.scopes, f.model);
    extend(scope, f.until, f.reason);
  } else {
    scope = scopeOf(s.scopes, '');
    s.creditUntil = Math.max(s.creditUntil, f.until);
    if (group) extend(scopeOf(group, ''), f.until, f.reason);
  }
  if (f.until - now >= probeAfterMs) scope.probePending = true;
  return false;
}

/** Facts worth sharing that hold now: active cooldowns and disabled keys (for a resync). */
export function factsOf(states: readonly KeyState[], now: number): SharedFact[] {
  const out: SharedFact[] = [];
  for (const s of states) {
    const fingerprint = s.key.fingerprint;
    if (s.disabled !== undefined && s.disabledUntil > now) out.push({ kind: 'disabled', fingerprint, reason: s.disabled, until: s.disabledUntil });
    if (s.creditUntil > now) out.push({ kind: 'cooldown', fingerprint, model: '', reason: 'out_of_credit', until: s.creditUntil });
    for (const [model, sc] of s.scopes) {
      if (sc.cooldownUntil > now) out.push({ kind: 'cooldown', fingerprint, model, reason: sc.reason ?? 'rate_limited', until: sc.cooldownUntil, streak: sc.streak });
    }
  }
  return out;
}
