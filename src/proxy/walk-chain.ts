// A request's walk along its chain of targets (chain.ts): each target gets the request in turn until one
// serves it, says something final, or the request is over. The arithmetic, as the README states it:
//  - every target's own walk (each of its keys once) is free, and moving on to the next target is free;
//  - charged attempts share one budget, retry.maxRetries, across the whole chain;
//  - so a request makes at most sum(keys of each target walked) + retry.maxRetries attempts.
// A target is left when it gives up for a reason another upstream may not share (its pool exhausted past
// maxWaitMs, every key disabled or out of credit, server faults after its walk while another target
// follows, its circuit open, every key refusing the model) and never when the upstream may already be
// running the request (a replay refused), at the deadline, or at shutdown. A 400 saying the prompt is too
// long goes to the context-length chain instead, once. I/O only through `run`.
import type { ChainStep } from './chain.js';
import type { RequestBudget, RotateOutcome, TrailStep } from './rotate.js';
import type { Target } from './targets.js';

export interface ChainRun {
  readonly target: Target;
  /** The model to ask this target for (undefined: the request's own). */
  readonly model: string | undefined;
  /** The request's budget (charged attempts, time waited), shared by every target. */
  readonly budget: RequestBudget;
  /** Another target follows: leave this one after its walk ends in server faults. */
  readonly leaveOnFault: boolean;
  /** Look into 400s for "context length exceeded": there is a larger model to go to. */
  readonly rerouteContextLength: boolean;
}

export interface WalkRequest {
  readonly steps: readonly ChainStep[];
  /** Where a request goes after a context-length 400 (the primary's errorFallbacks.contextLengthExceeded). */
  readonly contextSteps: readonly ChainStep[];
  readonly targets: ReadonlyMap<string, Target>;
  /** Whether the client may be served by this upstream with this model (undefined: the request's own), by its token's allow-lists. */
  readonly allowed: (upstream: string, model: string | undefined) => boolean;
  readonly run: (r: ChainRun) => Promise<RotateOutcome>;
  /** The request's own model: a step asking a target already walked for the same model is skipped. */
  readonly model: string;
}

export interface Walked {
  /** The outcome to give the client, its tallies summed over every target walked. */
  readonly outcome: RotateOutcome;
  /** The target of that outcome. */
  readonly target: Target;
  /** The model it was asked for (undefined: the request's own). */
  readonly model: string | undefined;
  /** Every target tried, in order (upstream names). */
  readonly walked: readonly string[];
}

interface Step {
  readonly outcome: RotateOutcome;
  readonly target: Target;
  readonly model: string | undefined;
}

export async function walkChain(w: WalkRequest): Promise<Walked> {
  const budget: RequestBudget = { charged: 0, waitedMs: 0 };
  const only = w.steps.length === 1 && w.contextSteps.length === 0 ? w.steps[0] : undefined;
  const alone = only === undefined ? undefined : w.targets.get(only.upstream);
  if (only !== undefined && alone !== undefined) {
    // Most requests have no chain: their one outcome is the answer, nothing to sum.
    const outcome = await w.run({ target: alone, model: only.model, budget, leaveOnFault: false, rerouteContextLength: false });
    return { outcome, target: alone, model: only.model, walked: [alone.upstream.name] };
  }
  const done: Step[] = [];
  let steps = w.steps;
  let inContextChain = false;
  let i = 0;
  // Bounded: every pass moves one step on, and the context chain replaces the rest once.
  const maxPasses = w.steps.length + w.contextSteps.length + 1;
  for (let pass = 0; pass < maxPasses && i < steps.length; pass++) {
    const step = steps[i]!;
    const target = w.targets.get(step.upstream);
    // The same model on a pool already walked is the same request again (a glob's fallback naming the
    // very model asked for): that pool has said its word.
    const again = done.some((d) => d.target === target && (d.model ?? w.model) === (step.model ?? w.model));
    if (target === undefined || again || (done.length > 0 && !w.allowed(step.upstream, step.model))) {
      i++;
      continue;
    }
    const hasNext = i + 1 < steps.length;
    const canReroute = inContextChain ? hasNext : w.contextSteps.length > 0;
    const outcome = await w.run({ target, model: step.model, budget, leaveOnFault: hasNext, rerouteContextLength: canReroute });
    done.push({ outcome, target, model: step.model });
    if (outcome.kind === 'answer' && outcome.next === 'context_length' && canReroute) {
      if (inContextChain) i++;
      else {
        steps = w.contextSteps;
        inContextChain = true;
        i = 0;
      }
      continue;
    }
    const movesOn = (outcome.kind === 'error' && outcome.next) || (outcome.kind === 'answer' && outcome.next === 'model_refused');
    if (!movesOn || !hasNext) break;
    i++;
  }
  return summed(done, budget.charged);
}

/**
 * What the client gets: the last target's outcome when it served or ended the request; when every target
 * gave up, the one a client can act on soonest (a retryable error with the shortest wait), else the
 * primary's word.
 */
function summed(done: readonly Step[], charged: number): Walked {
  const last = done[done.length - 1];
  if (last === undefined) throw new Error('a chain always has its primary');
  const gaveUp = (o: RotateOutcome): boolean => (o.kind === 'error' && o.next) || (o.kind === 'answer' && o.next !== undefined);
  const chosen = done.length > 1 && gaveUp(last.outcome) ? soonest(done) : last;
  const trail: TrailStep[] = [];
  let attempts = 0;
  let waitedMs = 0;
  let upstreamMs = 0;
  for (const d of done) {
    attempts += d.outcome.attempts;
    waitedMs += d.outcome.waitedMs;
    upstreamMs += d.outcome.upstreamMs;
    trail.push(...d.outcome.trail);
  }
  const outcome = { ...chosen.outcome, attempts, retries: charged, waitedMs, upstreamMs, trail } as RotateOutcome;
  return { outcome, target: chosen.target, model: chosen.model, walked: done.map((d) => d.target.upstream.name) };
}

function soonest(done: readonly Step[]): Step {
  let best: { step: Step; wait: number } | undefined;
  for (const step of done) {
    const o = step.outcome;
    if (o.kind !== 'error' || o.error.headers['x-should-retry'] === 'false') continue;
    const ms = Number(o.error.headers['retry-after-ms'] ?? Number(o.error.headers['retry-after'] ?? 1) * 1000);
    const wait = Number.isFinite(ms) ? ms : Infinity;
    if (best === undefined || wait < best.wait) best = { step, wait };
  }
  return best?.step ?? done[0]!;
}
