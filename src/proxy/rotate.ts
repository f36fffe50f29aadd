// The attempt loop: picks a key per attempt, rotates on rate limits and out-of-credit answers, and
// spends the retry budget only once the pool is exhausted for this request (walking the pool is free).
// Rules, per client request:
//  1. An attempt with an untried key that is available now costs nothing.
//  2. Otherwise (every key tried or cooling), an attempt costs one unit of retry.maxRetries, after
//     waiting for the earliest key if that fits in retry.maxWaitMs and the deadline.
//  3. The attempt after a 5xx / connection error always costs one unit, after a short backoff.
// So N keys that all fail see exactly N + maxRetries attempts.
import type { Clock } from '../clock.js';
import type { Config } from '../config/load.js';
import { KeypoolError } from '../errors.js';
import { decide, type Verdict } from '../keys/cooldown.js';
import type { Demand, KeyPool, KeyState, Lease } from '../keys/pool.js';
import type { WaitingRoom, WaitResult } from '../keys/waiting-room.js';
import type { UsageCounter } from '../keys/ledger.js';
import { describeNetworkError, giveUp, queueFull, type Failure } from './give-up.js';
import { readSnippet, type UpstreamResponse } from './forward.js';

/** Why a request's signal was aborted. */
export type AbortWhy = 'client_closed' | 'deadline';
export class RequestAborted extends Error {
  constructor(readonly why: AbortWhy) {
    super(why === 'deadline' ? 'request deadline passed' : 'client closed the connection');
  }
}

export interface RotateDeps {
  readonly pool: KeyPool;
  readonly room: WaitingRoom;
  readonly clock: Clock;
  readonly random: () => number;
  readonly retry: Config['retry'];
  readonly cooldown: Config['cooldown'];
  /** Removes anything secret from upstream text before it is shown to a client. */
  readonly scrub: (text: string) => string;
}

export interface RotateRequest {
  /** Aborted with a RequestAborted reason when the client leaves or the deadline passes. */
  readonly signal: AbortSignal;
  /** Epoch ms by which the request must be done. */
  readonly deadline: number;
  /** Sends one attempt with this key. */
  readonly send: (state: KeyState, signal: AbortSignal) => Promise<UpstreamResponse>;
  /** What the request needs from a key (model, token estimate). */
  readonly demand: Demand;
  /** Who is asking, for fair queueing. */
  readonly client: string;
  /** Sticky session id, if sticky sessions are on and the request has one. */
  readonly session?: string | undefined;
  /** Called each time the request starts waiting for a key (stream keep-alive hooks in here). */
  readonly onWait?: () => void;
}

export type RotateOutcome = Outcome & {
  /** Time spent waiting for a key (the waiting room), in ms. */
  readonly waitedMs: number;
};

type Outcome =
  /** Hand this response to the client. The key stays in flight until the caller ends the lease. */
  | { readonly kind: 'deliver'; readonly response: UpstreamResponse; readonly lease: Lease; readonly attempts: number }
  | { readonly kind: 'error'; readonly error: KeypoolError; readonly attempts: number; readonly state: KeyState | undefined }
  /** The client left: nothing to answer. */
  | { readonly kind: 'aborted'; readonly attempts: number; readonly state: KeyState | undefined };

/** Statuses that may mean "another key, or another try, would do better". Others are delivered as they are. */
export function isFailureStatus(status: number): boolean {
  return status === 429 || status === 402 || status === 401 || status === 403 || status === 408 || status >= 500;
}

export async function rotate(deps: RotateDeps, req: RotateRequest): Promise<RotateOutcome> {
  const { pool, clock, retry } = deps;
  const { signal, deadline } = req;
  // Allocated on the first failure: most requests never need it.
  let tried: Set<KeyState> | undefined;
  let attempts = 0;
  let retries = 0;
  let waited = 0;
  let faults = 0;
  let chargeNext = false;
  let last: Failure | undefined;
  let lastState: KeyState | undefined;
  let failedGroups: Set<string> | undefined;
  const { demand } = req;

  const stopped = (): RotateOutcome => {
    const why = signal.reason instanceof RequestAborted ? signal.reason.why : 'client_closed';
    if (why === 'deadline') {
      const error = new KeypoolError('keypool_upstream_timeout', `No answer within the request deadline (${retry.timeoutMs} ms).`);
      return { kind: 'error', error, attempts, state: lastState, waitedMs: waited };
    }
    return { kind: 'aborted', attempts, state: lastState, waitedMs: waited };
  };
  const fail = (): RotateOutcome => ({
    kind: 'error',
    error: giveUp(deps, demand, last, retries),
    attempts,
    state: lastState,
    waitedMs: waited,
  });

  /**
   * With a shared store the store confirms each local choice; a refusal holds that key back and the
   * pool chooses again (bounded: each refusal holds another key). Without one, nothing to await.
   */
  const confirmed = async (pick: () => Lease | undefined): Promise<Lease | undefined> => {
    for (let i = 0; i <= pool.size; i++) {
      const l = pick();
      if (l === undefined) return undefined;
      if (await pool.confirm(l, clock.now())) return l;
    }
    return undefined;
  };
  const acquireLocal = (exclude: ReadonlySet<KeyState> | undefined): Lease | undefined =>
    pool.acquire({ demand, now: clock.now(), exclude, avoidGroups: failedGroups, session: req.session });
  const take = (pick: () => Lease | undefined): Lease | undefined | Promise<Lease | undefined> => (pool.shared ? confirmed(pick) : pick());
  const anyLocal = (): Lease | undefined => acquireLocal(tried) ?? acquireLocal(undefined);
  const untriedLocal = (): Lease | undefined => acquireLocal(tried);
  const acquireAny = () => take(anyLocal);
  const acquireUntried = () => take(untriedLocal);
  /** How long this request may still wait for a key; 0 when it may not, or when no key comes back in time. */
  const waitBudget = (): number => {
    const now = clock.now();
    const limit = Math.min(retry.maxWaitMs - waited, deadline - now);
    const next = pool.nextAvailableAt(demand, now);
    // An event-bound wait (a free in-flight slot) has no known time, so it may wait up to the limit.
    if (next === undefined || limit <= 0 || (Number.isFinite(next) && next - now > limit)) return 0;
    return limit;
  };
  /** Waits in the room for a key: the key, undefined on timeout, or why it could not wait. */
  const waitInRoom = async (tryAcquire: () => Lease | undefined | Promise<Lease | undefined>, limit: number): Promise<Lease | undefined | 'full' | 'stopped'> => {
    const t0 = clock.now();
    req.onWait?.();
    let result: WaitResult;
    try {
      const giveBack = (l: Lease): void => l.abandon();
      result = await deps.room.wait({ client: req.client, demand, maxWaitMs: limit, signal, tryAcquire, giveBack });
    } catch {
      return 'stopped';
    }
    waited += clock.now() - t0;
    return result.kind === 'acquired' ? result.lease : result.kind === 'full' ? 'full' : undefined;
  };

  // Bounded: each pass either makes an attempt or spends a unit of budget.
  const maxPasses = pool.size + retry.maxRetries + 1;
  for (let pass = 0; pass < maxPasses; pass++) {
    if (signal.aborted) return stopped();
    let lease: Lease | undefined;
    let fairWait = 0;
    if (attempts === 0 && deps.room.size > 0 && (fairWait = waitBudget()) > 0) {
      // Others are already waiting: queue behind them (fairly) instead of taking a key that frees up in
      // front of them. Free of budget: this request has not failed anything yet.
      const got = await waitInRoom(acquireUntried, fairWait);
      if (got === 'stopped') return stopped();
      if (got === 'full') return { kind: 'error', error: queueFull(deps, demand), attempts, state: lastState, waitedMs: waited };
      lease = got;
    } else if (!chargeNext) {
      const got = acquireUntried();
      lease = got instanceof Promise ? await got : got;
    }
    if (lease === undefined) {
      // The pool is exhausted for this request (or a server fault makes the next attempt cost anyway).
      if (pool.usable === 0 || retries >= retry.maxRetries) return fail();
      if (chargeNext) {
        const backoff = serverBackoffMs(faults, deps);
        if (clock.now() + backoff >= deadline) return fail();
        if (backoff > 0) {
          try {
            await clock.sleep(backoff, signal);
          } catch {
            return stopped();
          }
        }
        chargeNext = false;
      }
      const any = acquireAny();
      lease = any instanceof Promise ? await any : any;
      if (lease === undefined) {
        // Fail fast, with Retry-After, when the earliest key is known to come back too late.
        const limit = waitBudget();
        if (limit === 0) return fail();
        retries++;
        const got = await waitInRoom(acquireAny, limit);
        if (got === 'stopped') return stopped();
        if (got === 'full') return { kind: 'error', error: queueFull(deps, demand), attempts, state: lastState, waitedMs: waited };
        if (got === undefined) return fail();
        lease = got;
      } else {
        retries++;
      }
    }

    attempts++;
    const state = lease.state;
    lastState = state;
    let res: UpstreamResponse;
    try {
      res = await req.send(state, signal);
    } catch (err) {
      // Connection errors are not server answers: not counted as a key's serverErrors.
      lease.end(undefined);
      if (signal.aborted) return stopped();
      faults++;
      chargeNext = true;
      last = { kind: 'network', reason: describeNetworkError(err) };
      continue;
    }
    pool.observe(lease, res.headers, clock.now());

    if (!isFailureStatus(res.status)) {
      // At the head, not the end of the stream: a good answer opens the key to everyone at once.
      lease.answered(res.status < 300);
      if (res.status < 300) pool.succeeded(state, demand.model);
      return { kind: 'deliver', response: res, lease, attempts, waitedMs: waited };
    }

    const bodyText = await readSnippet(res, (ms, fn) => clock.timer(ms, fn));
    if (signal.aborted) {
      lease.end(undefined);
      return stopped();
    }
    const now = clock.now();
    const verdict = decide(
      { status: res.status, headers: res.headers, bodyText },
      { now, streak: pool.streakOf(state, demand.model) + 1, random: deps.random(), settings: deps.cooldown },
    );
    // A failed probe frees its scope only once the key is cooled or disabled: the lease ends after that, in the same tick.
    switch (verdict.kind) {
      case 'rotate':
        pool.cool(state, demand.model, verdict.until, verdict.reason, now);
        (tried ??= new Set()).add(state);
        if (state.key.options.group !== undefined) (failedGroups ??= new Set()).add(state.key.options.group);
        last = { kind: 'limit', status: res.status, body: bodyText };
        break;
      case 'disable':
        pool.disable(state, verdict.reason);
        (tried ??= new Set()).add(state);
        last = { kind: 'auth', status: res.status, body: bodyText };
        break;
      case 'retry':
        pool.serverError(state);
        faults++;
        chargeNext = true;
        last = { kind: 'server', status: res.status, body: bodyText };
        break;
      case 'deliver':
        // isFailureStatus and decide agree by construction; reaching here is a keypool bug.
        throw new Error(`policy delivered failure status ${res.status}`);
    }
    lease.end(outcomeOf(verdict));
  }
  return fail();
}

/** The usage counter a failed attempt adds to (shared usage mirrors the pool's own stats). */
function outcomeOf(v: Verdict): UsageCounter | undefined {
  if (v.kind === 'rotate') return v.reason === 'rate_limited' ? 'rateLimited' : 'outOfCredit';
  return v.kind === 'retry' ? 'serverErrors' : undefined;
}

function serverBackoffMs(faults: number, deps: RotateDeps): number {
  const { serverErrorBackoffMs: base, serverErrorBackoffMaxMs: max } = deps.retry;
  const raw = Math.min(max, base * 2 ** Math.min(20, Math.max(0, faults - 1)));
  return Math.round(raw * (0.5 + 0.5 * deps.random()));
}
