// The running proxy's health probes (health.probeIntervalMs): every interval, each key the upstream
// refused (disabled after a 401 or a revoked key) and each model a key was refused is probed once; a key
// that answers well is enabled again, a model refusal that answers well ends. Keys cooling for rate
// limits or credit are left to their cooldowns and the pool's own probe. A disable an operator made is
// not the upstream's verdict and is never undone here. Rounds never overlap; each is bounded in count.
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import type { Config, Upstream } from '../config/load.js';
import type { KeyPool, KeyState } from '../keys/pool.js';
import { createHttpSender, type ProbeSend } from './http-sender.js';
import { probeOne } from './probe-keys.js';

/** Disables the upstream decided; a probe may undo them. Other reasons (an operator's) stay. */
const PROBED_DISABLES: ReadonlySet<string> = new Set(['unauthorized', 'forbidden']);

/** Probes per round, all upstreams together: a pool of refused keys must not become a probe storm. */
export const MAX_PROBES_PER_ROUND = 64;
/** Probes in flight at once. */
export const PROBE_CONCURRENCY = 2;

export interface ProberDeps {
  readonly pools: ReadonlyMap<string, KeyPool>;
  readonly upstreams: readonly Upstream[];
  readonly send: ProbeSend;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Time between the end of one round and the start of the next. */
  readonly intervalMs: number;
  /** cooldown.maxMs. */
  readonly maxMs: number;
}

/** One thing to probe: a disabled key (model undefined) or one model refused to a key. */
interface Work {
  readonly upstream: Upstream;
  readonly pool: KeyPool;
  readonly state: KeyState;
  readonly model: string | undefined;
}

export interface RoundResult {
  readonly probed: number;
  /** Keys enabled and model refusals ended. */
  readonly restored: number;
}

export interface Prober {
  /** Runs one round now (tests; the timer runs them otherwise). Waits for a round in progress first. */
  round(): Promise<RoundResult>;
  /** No round starts after this; resolves once the one in progress (if any) has ended. */
  stop(): Promise<void>;
}

export function startProber(d: ProberDeps): Prober {
  let stopped = false;
  let cancelTimer: (() => void) | undefined;
  let running: Promise<RoundResult> | undefined;
  const abort = new AbortController();
  // Where the next round starts in the list of work, so that past MAX_PROBES_PER_ROUND every item gets its turn.
  let offset = 0;

  const runRound = async (): Promise<RoundResult> => {
    const work = collect(d);
    if (work.length === 0) return { probed: 0, restored: 0 };
    const start = offset % work.length;
    const batch = [...work.slice(start), ...work.slice(0, start)].slice(0, MAX_PROBES_PER_ROUND);
    offset = start + batch.length;
    let next = 0;
    let restored = 0;
    const worker = async (): Promise<void> => {
      while (next < batch.length && !stopped) {
        const w = batch[next++];
        if (w !== undefined && (await probe(d, w, abort.signal))) restored++;
      }
    };
    await Promise.all(Array.from({ length: Math.min(PROBE_CONCURRENCY, batch.length) }, worker));
    return { probed: batch.length, restored };
  };

  const round = async (): Promise<RoundResult> => {
    while (running !== undefined) await running.catch(() => undefined);
    const r = runRound();
    running = r;
    try {
      return await r;
    } finally {
      running = undefined;
    }
  };

  const schedule = (): void => {
    if (stopped) return;
    cancelTimer = d.clock.timer(d.intervalMs, () => {
      cancelTimer = undefined;
      round().then(schedule, (err: unknown) => {
        d.logger.error({ err }, 'health probe round failed');
        schedule();
      });
    });
  };
  schedule();

  return {
    round,
    async stop(): Promise<void> {
      stopped = true;
      cancelTimer?.();
      abort.abort();
      await running?.catch(() => undefined);
    },
  };
}

/** What is worth a probe right now: disabled keys the upstream refused, and live model refusals. */
function collect(d: ProberDeps): Work[] {
  const now = d.clock.now();
  const work: Work[] = [];
  for (const upstream of d.upstreams) {
    const pool = d.pools.get(upstream.name);
    if (pool === undefined) continue;
    for (const state of pool.states()) {
      if (state.disabled !== undefined) {
        if (PROBED_DISABLES.has(state.disabled) && state.disabledUntil > now) work.push({ upstream, pool, state, model: undefined });
        // A disabled key's model refusals wait until it is back.
        continue;
      }
      for (const [model, scope] of state.scopes) {
        if (model !== '' && scope.reason === 'model_unavailable' && scope.cooldownUntil > now) work.push({ upstream, pool, state, model });
      }
    }
  }
  return work;
}

/** Probes one item; true when it brought something back. */
async function probe(d: ProberDeps, w: Work, signal: AbortSignal): Promise<boolean> {
  const { state, pool } = w;
  const result = await probeOne({ upstream: w.upstream, key: state.key, model: w.model }, { send: d.send, now: () => d.clock.now(), maxMs: d.maxMs, signal });
  const where = { upstream: w.upstream.name, key: state.key.name, model: w.model };
  if (result.outcome.kind !== 'ok') {
    d.logger.debug({ ...where, probe: result.outcome.kind }, 'health probe: still refused');
    return false;
  }
  if (w.model === undefined) {
    // The key may have been enabled (or disabled by an operator) while the probe was out.
    if (state.disabled === undefined || !PROBED_DISABLES.has(state.disabled)) return false;
    pool.enable(state);
    d.logger.info(where, 'key enabled again: its health probe was answered');
  } else {
    if (state.scopes.get(w.model)?.reason !== 'model_unavailable') return false;
    pool.reopenModel(state, w.model);
    d.logger.info(where, 'model open to the key again: its health probe was answered');
  }
  return true;
}

/**
 * The prober the app runs when health.probeIntervalMs is set: probes go over their own HTTP agent,
 * timed by the app's clock. Undefined when off.
 */
export function startHealthProbes(a: {
  readonly config: Config;
  readonly pools: ReadonlyMap<string, KeyPool>;
  readonly clock: Clock;
  readonly logger: Logger;
}): { stop(): Promise<void> } | undefined {
  const { health } = a.config;
  if (health.probeIntervalMs === 0) return undefined;
  const sender = createHttpSender({ clock: a.clock, timeoutMs: health.probeTimeoutMs });
  const prober = startProber({
    pools: a.pools,
    upstreams: a.config.upstreams,
    send: sender.send,
    clock: a.clock,
    logger: a.logger,
    intervalMs: health.probeIntervalMs,
    maxMs: a.config.cooldown.maxMs,
  });
  return {
    async stop(): Promise<void> {
      await prober.stop();
      await sender.close();
    },
  };
}
