// Key selection strategies: pure functions that choose among the keys a request may use now.
// They see the pool's states in config order, a predicate saying which are eligible, a cursor for
// round-robin order, and `next`, which skips keys known not to be eligible (the pool's choice index):
// each strategy asks `eligible` of the keys `next` offers, in the order a plain scan would, so it chooses
// what a scan of every key would. None touches the clock or mutates state.
import type { KeyState } from './key-state.js';

export type StrategyName = 'round_robin' | 'least_inflight' | 'random' | 'weighted' | 'fill_first' | 'headroom';

export interface ChoiceContext {
  /** Where round-robin order starts (the key after the last one chosen). */
  readonly start: number;
  /**
   * The first position ≥ from whose key may be eligible, -1 when none: every key it passes over is
   * known not to be. A plain scan: `from < states.length ? from : -1`.
   */
  readonly next: (from: number) => number;
  readonly eligible: (s: KeyState) => boolean;
  /** Share of its limit a key has left, 0..1 (only `headroom` asks). */
  readonly headroom: (s: KeyState) => number;
  readonly random: () => number;
}

export type Strategy = (states: readonly KeyState[], ctx: ChoiceContext) => KeyState | undefined;

/** The next eligible key after the cursor: O(1) steps of `next` when the next key is free, whatever the pool size. */
const roundRobin: Strategy = (states, ctx) => {
  const { start } = ctx;
  for (let i = ctx.next(start); i !== -1; i = ctx.next(i + 1)) if (ctx.eligible(states[i]!)) return states[i];
  for (let i = ctx.next(0); i !== -1 && i < start; i = ctx.next(i + 1)) if (ctx.eligible(states[i]!)) return states[i];
  return undefined;
};

/** The first eligible key in config order: drain one key before touching the next. */
const fillFirst: Strategy = (states, ctx) => {
  for (let i = ctx.next(0); i !== -1; i = ctx.next(i + 1)) if (ctx.eligible(states[i]!)) return states[i];
  return undefined;
};

/** Visits the keys `next` offers in round-robin order (from the cursor, wrapping). */
function forEachFrom(states: readonly KeyState[], ctx: ChoiceContext, visit: (s: KeyState) => void): void {
  const { start } = ctx;
  for (let i = ctx.next(start); i !== -1; i = ctx.next(i + 1)) visit(states[i]!);
  for (let i = ctx.next(0); i !== -1 && i < start; i = ctx.next(i + 1)) visit(states[i]!);
}

/** Visits the keys `next` offers in config order. */
function forEach(states: readonly KeyState[], ctx: ChoiceContext, visit: (s: KeyState) => void): void {
  for (let i = ctx.next(0); i !== -1; i = ctx.next(i + 1)) visit(states[i]!);
}

/** Looks at every eligible key in round-robin order, keeping the best by `better` (ties keep the earlier). */
function best(states: readonly KeyState[], ctx: ChoiceContext, better: (a: KeyState, b: KeyState) => boolean): KeyState | undefined {
  let chosen: KeyState | undefined;
  forEachFrom(states, ctx, (s) => {
    if (ctx.eligible(s) && (chosen === undefined || better(s, chosen))) chosen = s;
  });
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
  forEach(states, ctx, (s) => {
    if (!ctx.eligible(s)) return;
    const draw = ctx.random() ** (1 / s.key.options.weight);
    if (draw > top) {
      top = draw;
      chosen = s;
    }
  });
  return chosen;
};

/** Uniform among eligible keys, in one pass without building a list (reservoir sampling). */
const random: Strategy = (states, ctx) => {
  let chosen: KeyState | undefined;
  let seen = 0;
  forEach(states, ctx, (s) => {
    if (!ctx.eligible(s)) return;
    seen++;
    if (ctx.random() * seen < 1) chosen = s;
  });
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
