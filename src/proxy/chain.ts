// Which upstreams a request may be served by, in order: the one it arrived for (the one that serves
// its model, when several share a prefix), then its fallbacks (per model first, else per upstream).
// A chain does not chain: a fallback's own fallbacks are not followed. Pure.
import type { FallbackStep, Upstream } from '../config/load.js';

/** One target of a chain: the upstream, and the model to ask it for (undefined: the request's own). */
export type ChainStep = FallbackStep;

/** Of the upstreams sharing a prefix, the one that serves this model: the first that lists it, else the one that lists none. */
export function upstreamForModel(group: readonly Upstream[], model: string): Upstream | undefined {
  return group.find((u) => u.models !== undefined && u.models.some((re) => re.test(model))) ?? group.find((u) => u.models === undefined);
}

/** The chain for a request of `model` that arrived for `primary`. */
export function chainFor(primary: Upstream, model: string): readonly ChainStep[] {
  const own: ChainStep = { upstream: primary.name, model: undefined };
  const byModel = model === '' ? undefined : primary.modelFallbacks.find((m) => m.pattern.test(model));
  return [own, ...(byModel?.steps ?? primary.fallbacks)];
}
