// What of a pool's state is worth keeping across a restart, as plain JSON-able data: cooldowns (per
// model and key-wide), disabled keys, failure streaks and usage counters. Keys are identified by
// fingerprint, never by secret. Pure: `now` decides what has already expired.
import type { CoolReason, DisableReason, KeyState, KeyStats, Scope } from './key-state.js';
import { scopeOf } from './key-state.js';

/** How long a disable restored from a file that does not say lasts (cooldown.disabledMs's default). */
export const DEFAULT_DISABLE_MS = 24 * 3_600_000;

export interface ScopeSnapshot {
  cooldownUntil: number;
  streak: number;
  /** Absent in files written before reasons were kept: a rate limit. */
  reason?: CoolReason | undefined;
}

export interface KeySnapshot {
  /** For people reading the file; matching is by fingerprint. */
  name: string;
  disabled?: DisableReason | undefined;
  /** When the disable ends; absent in files written before disables had periods (then `restore` gives it one). */
  disabledUntil?: number | undefined;
  creditUntil?: number | undefined;
  scopes?: Record<string, ScopeSnapshot> | undefined;
  stats: KeyStats;
}

export interface PoolSnapshot {
  /** By key fingerprint. */
  keys: Record<string, KeySnapshot>;
  /** By group name, then model. */
  groups?: Record<string, Record<string, ScopeSnapshot>> | undefined;
}

export function snapshotScopes(scopes: ReadonlyMap<string, Scope>, now: number): Record<string, ScopeSnapshot> | undefined {
  let out: Record<string, ScopeSnapshot> | undefined;
  for (const [model, sc] of scopes) {
    if (sc.cooldownUntil <= now && sc.streak === 0) continue;
    const cooling = sc.cooldownUntil > now;
    (out ??= {})[model] = { cooldownUntil: cooling ? sc.cooldownUntil : 0, streak: sc.streak, reason: cooling ? sc.reason : undefined };
  }
  return out;
}

export function snapshotKey(s: KeyState, now: number): KeySnapshot {
  return {
    name: s.key.name,
    disabled: s.disabled !== undefined && s.disabledUntil > now ? s.disabled : undefined,
    disabledUntil: s.disabled !== undefined && s.disabledUntil > now && Number.isFinite(s.disabledUntil) ? s.disabledUntil : undefined,
    creditUntil: s.creditUntil > now ? s.creditUntil : undefined,
    scopes: snapshotScopes(s.scopes, now),
    stats: { ...s.stats },
  };
}

/**
 * Applies saved scopes: cooldowns only ever extend, streaks take the larger. A cooldown still at least
 * `probeAfterMs` long ends with a probe, as it would have before the restart.
 */
export function restoreScopes(scopes: Map<string, Scope>, saved: Record<string, ScopeSnapshot> | undefined, now: number, probeAfterMs: number): void {
  for (const [model, snap] of Object.entries(saved ?? {})) {
    const sc = scopeOf(scopes, model);
    if (snap.cooldownUntil > now && snap.cooldownUntil > sc.cooldownUntil) {
      sc.cooldownUntil = snap.cooldownUntil;
      sc.reason = snap.reason ?? 'rate_limited';
      if (snap.cooldownUntil - now >= probeAfterMs) sc.probePending = true;
    }
    sc.streak = Math.max(sc.streak, snap.streak);
  }
}

/**
 * Applies a saved key; returns whether it disabled the key. A disable saved without its end (an older
 * file) lasts `legacyDisableMs` from now, so no restart brings back a disable for good.
 */
export function restoreKey(s: KeyState, snap: KeySnapshot, now: number, probeAfterMs: number, legacyDisableMs = DEFAULT_DISABLE_MS): boolean {
  if (snap.creditUntil !== undefined && snap.creditUntil > now && snap.creditUntil > s.creditUntil) {
    s.creditUntil = snap.creditUntil;
    if (snap.creditUntil - now >= probeAfterMs) scopeOf(s.scopes, '').probePending = true;
  }
  restoreScopes(s.scopes, snap.scopes, now, probeAfterMs);
  const st = s.stats;
  st.attempts += snap.stats.attempts;
  st.successes += snap.stats.successes;
  st.rateLimited += snap.stats.rateLimited;
  st.outOfCredit += snap.stats.outOfCredit;
  st.serverErrors += snap.stats.serverErrors;
  const until = snap.disabledUntil ?? now + legacyDisableMs;
  if (snap.disabled !== undefined && s.disabled === undefined && until > now) {
    s.disabled = snap.disabled;
    s.disabledUntil = until;
    return true;
  }
  return false;
}

/** A whole pool's snapshot: its keys by fingerprint, its groups' scopes that still hold something. */
export function snapshotPool(states: readonly KeyState[], groups: ReadonlyMap<string, Map<string, Scope>>, now: number): PoolSnapshot {
  const keys: PoolSnapshot['keys'] = {};
  for (const s of states) keys[s.key.fingerprint] = snapshotKey(s, now);
  let saved: PoolSnapshot['groups'];
  for (const [name, scopes] of groups) {
    const snap = snapshotScopes(scopes, now);
    if (snap) (saved ??= {})[name] = snap;
  }
  return { keys, groups: saved };
}

/**
 * Merges a snapshot into a pool's keys and groups: keys no longer configured are ignored; cooldowns only
 * ever extend. Returns how many usable keys it disabled.
 */
export function restorePool(
  snap: PoolSnapshot,
  byFingerprint: ReadonlyMap<string, KeyState>,
  groups: ReadonlyMap<string, Map<string, Scope>>,
  now: number,
  probeAfterMs: number,
): number {
  let disabled = 0;
  for (const [fp, k] of Object.entries(snap.keys)) {
    const s = byFingerprint.get(fp);
    if (s !== undefined && restoreKey(s, k, now, probeAfterMs)) disabled++;
  }
  for (const [name, scopes] of Object.entries(snap.groups ?? {})) {
    const g = groups.get(name);
    // Group scopes are never chosen, so never probed.
    if (g !== undefined) restoreScopes(g, scopes, now, Infinity);
  }
  return disabled;
}
