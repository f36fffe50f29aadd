// What a client is told when keypool gives up on a request: an OpenAI-shaped error chosen by what failed
// last, with Retry-After from the pool and the upstream's own words (scrubbed of secrets).
import { KeypoolError } from '../errors.js';
import type { Demand, KeyPool } from '../keys/pool.js';
import type { Scrubber } from '../keys/scrub.js';

export type Failure =
  // The upstream's body is kept raw: it is only turned into a (scrubbed) message if the request fails.
  | { readonly kind: 'limit'; readonly status: number; readonly body: string }
  | { readonly kind: 'auth'; readonly status: number; readonly body: string }
  | { readonly kind: 'server'; readonly status: number; readonly body: string }
  | { readonly kind: 'network'; readonly reason: string };

export interface GiveUpDeps {
  readonly pool: KeyPool;
  readonly clock: { now(): number };
  readonly scrub: Scrubber;
}

/** The error a client gets when the request cannot be served, shaped by what failed last. */
export function giveUp(deps: GiveUpDeps, demand: Demand, last: Failure | undefined, retries: number): KeypoolError {
  const { pool, clock } = deps;
  const n = pool.size;
  if (pool.usable === 0) {
    return new KeypoolError(
      'keypool_no_usable_keys',
      `All ${n} key(s) of upstream ${pool.upstream} are disabled (the upstream answered 401/403). Fix the keys and restart keypool.`,
    );
  }
  const said = last && last.kind !== 'network' ? deps.scrub(upstreamMessage(last.body)) : '';
  const lastWords = said !== '' ? ` Last upstream error: ${said}` : '';
  if (last?.kind === 'server') {
    return new KeypoolError(
      'keypool_upstream_error',
      `Upstream ${pool.upstream} answered ${last.status} on every try (${retries} retries).${lastWords}`,
      { status: last.status },
    );
  }
  if (last?.kind === 'network') {
    return new KeypoolError(
      'keypool_upstream_unreachable',
      `Upstream ${pool.upstream} could not be reached (${last.reason}) after ${retries} retries.`,
    );
  }
  const { seconds, waitMs } = retryAfter(pool, demand, clock.now());
  const status = last?.kind === 'limit' ? last.status : 429;
  return new KeypoolError(
    'keypool_pool_exhausted',
    `All ${pool.usable} usable key(s) of upstream ${pool.upstream} are rate-limited or out of credit ` +
      `(${retries} retries used); the earliest is available again in ${seconds}s.${lastWords}`,
    { status, headers: { 'retry-after': String(seconds), 'retry-after-ms': String(Math.max(1, Math.ceil(waitMs))) } },
  );
}

/** When the earliest key can serve the demand again, as Retry-After seconds (at least 1) and ms. */
function retryAfter(pool: KeyPool, demand: Demand, now: number): { seconds: number; waitMs: number } {
  const next = pool.nextAvailableAt(demand, now) ?? now;
  // Event-bound (every slot busy): no time is known, so suggest a second.
  const waitMs = Number.isFinite(next) ? Math.max(0, next - now) : 1000;
  return { seconds: Math.max(1, Math.ceil(waitMs / 1000)), waitMs };
}

export function queueFull(deps: GiveUpDeps, demand: Demand): KeypoolError {
  const { seconds, waitMs } = retryAfter(deps.pool, demand, deps.clock.now());
  return new KeypoolError(
    'keypool_queue_full',
    `Every key of upstream ${deps.pool.upstream} is busy or cooling and the waiting room is full (queue.maxSize); retry in ${seconds}s.`,
    { headers: { 'retry-after': String(seconds), 'retry-after-ms': String(Math.max(1, Math.ceil(waitMs))) } },
  );
}

/** OpenAI's `error.message` when the body has one, else the start of the text. */
function upstreamMessage(bodyText: string): string {
  try {
    const parsed: unknown = JSON.parse(bodyText);
    const msg = (parsed as { error?: { message?: unknown } } | null)?.error?.message;
    if (typeof msg === 'string') return msg.slice(0, 500);
  } catch {
    // not JSON: fall through
  }
  return bodyText.replace(/\s+/g, ' ').trim().slice(0, 200);
}

export function describeNetworkError(err: unknown): string {
  const e = err as { code?: unknown; cause?: { code?: unknown } };
  const code = typeof e.code === 'string' ? e.code : typeof e.cause?.code === 'string' ? e.cause.code : undefined;
  return code ?? (err instanceof Error ? err.name : 'network error');
}

