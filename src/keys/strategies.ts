// Key selection strategies: pure functions that choose among the keys a request may use now.
// They see the pool's states in config order, a predicate saying which are eligible, and a cursor for
// round-robin order; none touches the clock or mutates state.
import type { KeyState } from './key-state.js';

export type StrategyName = 'round_robin' | 'least_inflight' | 'random' | 'weighted' | 'fill_first' | 'headroom';

export interface ChoiceContext {
  /** Where round-robin order starts (the key after the last one chosen). */
  readonly start: number;
  readonly eligible: (s: KeyState) => boolean;
  /** Share of its limit a key has left, 0..1 (only `headroom` asks). */
  readonly headroom: (s: KeyState) => number;
  readonly random: () => number;
}

export type Strategy = (states: readonly KeyState[], ctx: ChoiceContext) => KeyState | undefined;

/** The next eligible key after the cursor. O(1) when the next key is free, whatever the pool size. */
const roundRobin: Strategy = (states, ctx) => {
  const n = states.length;
  for (let i = 0; i < n; i++) {
    const s = states[(ctx.start + i) % n]!;
    if (ctx.eligible(s)) return s;
  }
  return undefined;
};

/** The first eligible key in config order: drain one key before touching the next. */
const fillFirst: Strategy = (states, ctx) => states.find((s) => ctx.eligible(s));

/** Scans all keys in round-robin order, keeping the best by `better` (ties keep the earlier). */
function best(states: readonly KeyState[], ctx: ChoiceContext, better: (a: KeyState, b: KeyState) => boolean): KeyState | undefined {
  const n = states.length;
  let chosen: KeyState | undefined;
  for (let i = 0; i < n; i++) {
    const s = states[(ctx.start + i) % n]!;
    if (ctx.eligible(s) && (chosen === undefined || better(s, chosen))) chosen = s;
  }
  return chosen;
}

/** In flight here and, with a shared store, at the other replicas as last seen. */
const busy = (s: KeyState): number => s.inflight + s.remoteInflight;
const leastInflight: Strategy = (states, ctx) => best(states, ctx, (a, b) => busy(a) < busy(b));

/** Most headroom left; ties go to fewer in flight, then round-robin order. */
const headroom: Strategy = (states, ctx) => {
  const cache = new Map<KeyState, number>();
  const room = (s: KeyState): number => {
    let v = cache.get(s);
    if (v === undefined) {
      v = ctx.headroom(s);
      cache.set(s, v);
    }
    return v;
  };
  return best(states, ctx, (a, b) => room(a) > room(b) || (room(a) === room(b) && busy(a) < busy(b)));
};

/** Weighted random (Efraimidis-Spirakis): each eligible key draws u^(1/w); the largest wins. */
const weighted: Strategy = (states, ctx) => {
  let chosen: KeyState | undefined;
  let top = -1;
  for (const s of states) {
    if (!ctx.eligible(s)) continue;
    const draw = ctx.random() ** (1 / s.key.options.weight);
    if (draw > top) {
      top = draw;
      chosen = s;
    }
  }
  return chosen;
};

/** Uniform among eligible keys, in one pass without building a list (reservoir sampling). */
const random: Strategy = (states, ctx) => {
  let chosen: KeyState | undefined;
  let seen = 0;
  for (const s of states) {
    if (!ctx.eligible(s)) continue;
    seen++;
    if (ctx.random() * seen < 1) chosen = s;
  }
  return chosen;
};

export const STRATEGY: Readonly<Record<StrategyName, Strategy>> = Object.freeze({
  round_robin: roundRobin,
  least_inflight: leastInflight,
  random,
  weighted,
  fill_first: fillFirst,
  headroom,
});
