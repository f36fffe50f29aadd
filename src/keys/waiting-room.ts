// The waiting room: requests that no key can take now wait here, bounded in number and time, and are
// handed a key the moment one frees up (a cooldown ends, a slot frees, headers report headroom).
// A scheduler of its own: each client has one FIFO line per model (room-queues.ts). Every line's head is
// a candidate on every dispatch, so a request for a model with a free key never waits behind requests
// for a blocked one; within one line requests go in order (a small token demand does not overtake a
// large one of its model: that would starve the large one). Fair across clients: each pass serves each
// client at most one request, and a client served moves to the back of the rotation, so one agent with
// 500 queued requests does not starve one with 5.
import type { Clock } from '../clock.js';
import type { Demand } from './key-state.js';
import type { Lease } from './lease.js';
import type { RoomGauges, RoomPool, WaitingRoomMetrics, WaitRequest, WaitResult } from './room-contract.js';
import { RoomQueues, type ClientLines } from './room-queues.js';
import { enterWaiter, type Waiter } from './room-waiter.js';

export type { RoomGauges, RoomPool, WaitingRoomMetrics, WaitRequest, WaitResult } from './room-contract.js';

/**
 * Shortest timer the room sets. A head the pool calls free that the dispatch just passed over would
 * otherwise have the room wake at once, over and over; time never jumps back, so a later wake loses nothing.
 */
const MIN_TIMER_MS = 1;

export class WaitingRoom {
  readonly #pool: RoomPool;
  readonly #clock: Clock;
  #maxSize: number;
  readonly #queues = new RoomQueues<Waiter>();
  /** Bumped by every pool change: what the room learnt about the pool holds while it stands. */
  #gen = 0;
  /** Per model, within one generation: the smallest token demand found blocked, and until when. */
  readonly #blocked = new Map<string, { tokens: number; at: number }>();
  #blockedGen = -1;
  #visits = 0;
  #scheduled = false;
  /** A dispatch is awaiting a shared store; changes meanwhile ask for one more pass. */
  #dispatching = false;
  #again = false;
  #cancelTimer: (() => void) | undefined;
  #timerAt = Infinity;
  readonly metrics: WaitingRoomMetrics = { deferred: 0, served: 0, timedOut: 0, rejectedFull: 0, servedWhileFull: 0, noKeys: 0, waitMsTotal: 0 };

  /** A reload changed queue.maxSize: it bounds arrivals from now on; nobody waiting is sent away. */
  setMaxSize(n: number): void {
    this.#maxSize = n;
  }

  constructor(pool: RoomPool, clock: Clock, maxSize: number) {
    this.#pool = pool;
    this.#clock = clock;
    this.#maxSize = maxSize;
    pool.watch(() => {
      this.#gen++;
      this.#schedule();
    });
  }

  get size(): number {
    return this.#queues.size;
  }

  gauges(): RoomGauges {
    const now = this.#clock.now();
    const oldest = this.#queues.oldest;
    return {
      waiting: this.#queues.size,
      oldestWaitMs: oldest === undefined ? 0 : Math.max(0, now - oldest.since),
      clients: this.#queues.rotation().map((c) => ({ client: c.client, waiting: c.length, oldestWaitMs: Math.max(0, now - c.oldestSince()) })),
    };
  }

  wait(req: WaitRequest): Promise<WaitResult> {
    if (req.signal.aborted) return Promise.reject(req.signal.reason);
    const full = this.#queues.size >= this.#maxSize;
    // A full room still serves what a free key can, but only for a model nobody waits for: it overtakes no one.
    if (full && this.#queues.waitingFor(req.demand.model) > 0) {
      this.metrics.rejectedFull++;
      return Promise.resolve({ kind: 'full' });
    }
    return new Promise<WaitResult>((resolve, reject) => {
      const w = enterWaiter(req, full, this.#clock, this.metrics, (e) => this.#queues.remove(e), resolve, reject);
      if (full) {
        const r = this.#attempt(w);
        if (r instanceof Promise) void r.then((ok) => ok || w.settle({ kind: 'full' }));
        else if (!r) w.settle({ kind: 'full' });
        return;
      }
      this.metrics.deferred++;
      w.entry = this.#queues.add(req.client, req.demand.model, w.started, w);
      this.#schedule();
    });
  }

  /** Asks for the waiter's key and serves it. Whether it was served; a promise when a store confirms. */
  #attempt(w: Waiter): boolean | Promise<boolean> {
    let got: Lease | undefined | Promise<Lease | undefined>;
    try {
      got = w.req.tryAcquire();
    } catch {
      // Stores answer "no key" when they fail; this keeps a bug from killing the room.
      return false;
    }
    if (got instanceof Promise) return got.then((l) => this.#hand(w, l), () => false);
    return this.#hand(w, got);
  }

  #hand(w: Waiter, lease: Lease | undefined): boolean {
    if (lease === undefined) return false;
    if (w.settle({ kind: 'acquired', lease })) return true;
    // It left (timeout, abort) while the store was confirming: the key goes back.
    w.req.giveBack(lease);
    return false;
  }

  /** Coalesces the many pool changes of one tick into one dispatch. */
  #schedule(): void {
    if (this.#scheduled || this.#queues.size === 0) return;
    this.#scheduled = true;
    queueMicrotask(() => {
      this.#scheduled = false;
      void this.#dispatch();
    });
  }

  /**
   * Passes over the clients in rotation order until a pass serves no one. Synchronous unless a shared
   * store confirms a key; then one dispatch runs at a time and changes meanwhile ask for another round.
   */
  async #dispatch(): Promise<void> {
    if (this.#dispatching) {
      this.#again = true;
      return;
    }
    this.#dispatching = true;
    try {
      do {
        this.#again = false;
        for (let progress = true; progress && this.#queues.size > 0; ) {
          progress = false;
          for (const c of this.#queues.rotation()) {
            if (c.length === 0) continue;
            const visit = this.#visits++;
            let r = this.#serveOne(c, visit);
            while (r instanceof Promise) r = (await r) || this.#serveOne(c, visit);
            if (!r) continue;
            progress = true;
            this.#queues.toBack(c);
          }
        }
      } while (this.#again);
    } finally {
      this.#dispatching = false;
    }
    if (this.#pool.usable === 0) this.#sendAllAway();
    else this.#armTimer();
  }

  /**
   * Serves the client's oldest request a key can be found for, trying the head of each of its model lines
   * (each at most once per visit). Skips in O(1) a client found stuck earlier in this pool
   * generation, and models found blocked for a smaller demand. A promise when a store confirms: the visit
   * then goes on from a fresh look at the client's heads.
   */
  #serveOne(c: ClientLines<Waiter>, visit: number): boolean | Promise<boolean> {
    const gen = this.#gen;
    const now = this.#clock.now();
    if (c.stallGen === gen && now < c.stallUntil) return false;
    let until = Infinity;
    // False once a head is passed over without being known stuck in this generation.
    let known = true;
    for (const e of c.heads()) {
      const w = e.value;
      if (w.declinedGen === gen) continue;
      if (w.visit === visit) {
        known = false;
        continue;
      }
      const at = this.#availableAt(w.req.demand, now);
      if (at > now) {
        if (at < until) until = at;
        continue;
      }
      w.visit = visit;
      const r = this.#attempt(w);
      // A no is the waiter's own only if the pool did not change meanwhile (a store's refusal holds the
      // key, and the pool then says when to look again): only then may the waiter skip the timer.
      if (r instanceof Promise) {
        return r.then((ok) => {
          if (!ok && gen === this.#gen) w.declinedGen = gen;
          return ok;
        });
      }
      if (r) return true;
      if (gen === this.#gen) w.declinedGen = gen;
    }
    // Nothing here moves before `until` unless the pool changes (bumping the generation) or a line grows.
    if (known && gen === this.#gen) {
      c.stallGen = gen;
      c.stallUntil = until;
    }
    return false;
  }

  /** The pool's nextAvailableAt, with what this generation found blocked remembered per model. */
  #availableAt(d: Demand, now: number): number {
    if (this.#blockedGen !== this.#gen) {
      this.#blocked.clear();
      this.#blockedGen = this.#gen;
    }
    const hit = this.#blocked.get(d.model);
    // Blocked for fewer tokens means blocked for these too, at least as long (RoomPool.nextAvailableAt).
    if (hit !== undefined && d.tokens >= hit.tokens && now < hit.at) return hit.at;
    const at = this.#pool.nextAvailableAt(d, now) ?? Infinity;
    if (at > now) this.#blocked.set(d.model, { tokens: d.tokens, at });
    return at;
  }

  /** Every key is disabled: no waiter can ever be served. */
  #sendAllAway(): void {
    for (const e of this.#queues.all()) e.value.settle({ kind: 'no_keys' });
  }

  /**
   * Wakes the room when the earliest head of any line can go: per model, the head with the smallest
   * demand (no larger one goes sooner). Heads whose tryAcquire said no while the pool had a key wait for
   * a pool change instead, or the timer would spin.
   */
  #armTimer(): void {
    if (this.#queues.size === 0) return;
    const now = this.#clock.now();
    const least = new Map<string, Demand>();
    for (const e of this.#queues.heads()) {
      const w = e.value;
      if (w.declinedGen === this.#gen) continue;
      const d = least.get(e.model);
      if (d === undefined || w.req.demand.tokens < d.tokens) least.set(e.model, w.req.demand);
    }
    let soonest = Infinity;
    for (const d of least.values()) {
      const at = this.#pool.nextAvailableAt(d, now) ?? Infinity;
      if (at < soonest) soonest = at;
    }
    if (soonest === Infinity || soonest >= this.#timerAt) return;
    this.#cancelTimer?.();
    this.#timerAt = soonest;
    this.#cancelTimer = this.#clock.timer(Math.max(MIN_TIMER_MS, soonest - now), () => {
      this.#timerAt = Infinity;
      this.#cancelTimer = undefined;
      void this.#dispatch();
    });
  }
}
