// Getting a key for the attempt loop's next attempt (rotate.ts): free when an untried key can go now,
// else charged (one unit of the request's budget) after the backoff and, when a key comes back within
// retry.maxWaitMs and the deadline, a fair wait in the waiting room. With a shared store each choice is
// confirmed by the store first. What ends the request instead of a key is a value (`Ending`) the loop turns
// into its outcome; this module keeps the request's memory of which keys failed it.
import type { KeyState, Lease } from '../keys/pool.js';
import { abortSignalOf } from './request-signal.js';
import { retryDelayMs } from './retry-policy.js';
import type { RequestBudget, RotateDeps, RotateRequest } from './rotate-types.js';

/** Why no key: the request gives up here, it was stopped (client gone, deadline, shutdown), or the room was full. */
export type Ending = { readonly kind: 'give_up' } | { readonly kind: 'stopped' } | { readonly kind: 'full' };

const GIVE_UP: Ending = { kind: 'give_up' };
const STOPPED: Ending = { kind: 'stopped' };
const FULL: Ending = { kind: 'full' };

export class LeaseFinder {
  readonly #deps: RotateDeps;
  readonly #req: RotateRequest;
  readonly #budget: RequestBudget;
  /** Keys that failed this request (allocated on the first failure: most requests never need it). */
  #tried: Set<KeyState> | undefined;
  /**
   * Keys whose answer was about the request or model (a 403/404 refusal): no charged attempt goes back
   * to them either, since they would say the same again. A subset of `#tried`.
   */
  #barred: Set<KeyState> | undefined;
  #failedGroups: Set<string> | undefined;
  /** Time this loop waited in the room (the budget's `waitedMs` is the whole chain's). */
  waitedMs = 0;

  constructor(deps: RotateDeps, req: RotateRequest, budget: RequestBudget) {
    this.#deps = deps;
    this.#req = req;
    this.#budget = budget;
  }

  /** A key failed this request: not tried again for free; `barred`: not even for a charged attempt. */
  failed(state: KeyState, barred: boolean, avoidGroup: string | undefined): void {
    (this.#tried ??= new Set()).add(state);
    if (barred) (this.#barred ??= new Set()).add(state);
    if (avoidGroup !== undefined) (this.#failedGroups ??= new Set()).add(avoidGroup);
  }

  /** The keys that failed this request so far. */
  get tried(): ReadonlySet<KeyState> | undefined {
    return this.#tried;
  }

  /** A free attempt if an untried key can go now; else the charged path. `first`: no attempt made yet. */
  async free(first: boolean, leaveNow: boolean): Promise<Lease | Ending> {
    const { room } = this.#deps;
    if (first && room.size > 0) {
      const limit = this.#waitBudget();
      if (limit > 0) {
        // Others are already waiting: queue behind them (fairly) instead of taking a key that frees up in
        // front of them. Free of budget: this request has not failed anything yet.
        const got = await this.#waitInRoom(() => this.#take(() => this.#local(this.#tried)), limit);
        if (got !== undefined) return got;
      }
    }
    const lease = await this.#take(() => this.#local(this.#tried));
    return lease ?? this.charged(leaveNow);
  }

  /**
   * An attempt that costs one unit: after the request's backoff, with any key, waiting for one if it
   * comes back in time. `leaveNow`: the request should leave this upstream rather than spend on it.
   */
  async charged(leaveNow: boolean): Promise<Lease | Ending> {
    const { pool, clock, retry, random } = this.#deps;
    if (pool.usable === 0 || this.#budget.charged >= retry.maxRetries || leaveNow) return GIVE_UP;
    // The backoff is a floor, not an addition: when the earliest key is back later than it, waiting for
    // that key is the pacing; only a key back sooner (a 5xx, a connection error: it is free now) waits it out.
    const now = clock.now();
    const delay = retryDelayMs(this.#budget.charged + 1, random(), retry.backoffBaseMs, retry.backoffMaxMs);
    if (now + delay >= this.#req.deadline) return GIVE_UP;
    const next = pool.nextAvailableAt(this.#req.demand, now);
    if (delay > 0 && next !== undefined && next < now + delay) {
      try {
        await clock.sleep(delay, abortSignalOf(this.#req.signal));
      } catch {
        return STOPPED;
      }
    }
    const any = (): Lease | undefined => this.#local(this.#tried) ?? this.#local(this.#barred);
    let lease = await this.#take(any);
    if (lease === undefined) {
      // Fail fast, with Retry-After, when the earliest key is known to come back too late.
      const limit = this.#waitBudget();
      if (limit === 0) return GIVE_UP;
      const got = await this.#waitInRoom(() => this.#take(any), limit);
      if (got === undefined) return GIVE_UP;
      if ('kind' in got) return got;
      lease = got;
    }
    this.#budget.charged++;
    return lease;
  }

  #local(exclude: ReadonlySet<KeyState> | undefined): Lease | undefined {
    const { pool, clock } = this.#deps;
    return pool.acquire({ demand: this.#req.demand, now: clock.now(), exclude, avoidGroups: this.#failedGroups, session: this.#req.session });
  }

  /**
   * With a shared store the store confirms each local choice; a refusal holds that key back and the pool
   * chooses again (bounded: each refusal holds another key). Without one, nothing to await.
   */
  #take(pick: () => Lease | undefined): Lease | undefined | Promise<Lease | undefined> {
    const { pool, clock } = this.#deps;
    if (!pool.shared) return pick();
    return (async () => {
      for (let i = 0; i <= pool.size; i++) {
        const lease = pick();
        if (lease === undefined) return undefined;
        const ok = await pool.confirm(lease, clock.now());
        // The client may have left (or the deadline passed) while the store answered: nothing is sent for nobody.
        if (ok && this.#req.signal.aborted) {
          lease.abandon();
          return undefined;
        }
        if (ok) return lease;
      }
      return undefined;
    })();
  }

  /** How long this request may still wait for a key; 0 when it may not, or when no key comes back in time. */
  #waitBudget(): number {
    const { pool, clock, retry } = this.#deps;
    const now = clock.now();
    const limit = Math.min(retry.maxWaitMs - this.#budget.waitedMs, this.#req.deadline - now);
    const next = pool.nextAvailableAt(this.#req.demand, now);
    // An event-bound wait (a free in-flight slot) has no known time, so it may wait up to the limit.
    if (next === undefined || limit <= 0 || (Number.isFinite(next) && next - now > limit)) return 0;
    return limit;
  }

  /** Waits in the room for a key: the lease, undefined on timeout, or what ends the request. */
  async #waitInRoom(tryAcquire: () => Lease | undefined | Promise<Lease | undefined>, limit: number): Promise<Lease | Ending | undefined> {
    const { room, clock } = this.#deps;
    const t0 = clock.now();
    this.#req.onWait?.();
    try {
      const result = await room.wait({
        client: this.#req.client,
        demand: this.#req.demand,
        maxWaitMs: limit,
        signal: abortSignalOf(this.#req.signal),
        tryAcquire,
        giveBack: (l) => l.abandon(),
      });
      if (result.kind === 'acquired') return result.lease;
      if (result.kind === 'full') return FULL;
      if (result.kind === 'no_keys') return GIVE_UP;
      return undefined;
    } catch {
      return STOPPED;
    } finally {
      const waited = clock.now() - t0;
      this.waitedMs += waited;
      this.#budget.waitedMs += waited;
    }
  }
}
