// A config reload's effect on a pool's keys: a key whose secret stays keeps all its state (cooldowns,
// counts, slots in flight) under its new name, position and options; a new or changed secret starts
// clean; a removed key is dropped (attempts in flight on it end normally). Pure over the old states.
import type { Key } from './key.js';
import { newKeyState, type KeyState } from './key-state.js';

export interface Rekeyed {
  readonly states: KeyState[];
  readonly byFingerprint: Map<string, KeyState>;
  /** Key names, for the reload's log line. */
  readonly added: string[];
  readonly removed: string[];
  readonly kept: string[];
}

export function rekey(before: ReadonlyMap<string, KeyState>, keys: readonly Key[]): Rekeyed {
  const states = keys.map((k, i) => {
    const s = before.get(k.fingerprint) ?? newKeyState(k, i);
    s.key = k;
    s.index = i;
    return s;
  });
  const now = new Set(keys.map((k) => k.fingerprint));
  const added = keys.filter((k) => !before.has(k.fingerprint)).map((k) => k.name);
  const removed = [...before.values()].filter((s) => !now.has(s.key.fingerprint)).map((s) => s.key.name);
  const kept = keys.filter((k) => before.has(k.fingerprint)).map((k) => k.name);
  return { states, byFingerprint: new Map(states.map((s) => [s.key.fingerprint, s] as const)), added, removed, kept };
}
