// The waiting room: requests that no key can take now wait here, bounded in number and time, and are
// handed a key the moment one frees up (a cooldown ends, a slot frees, headers report headroom).
// Served in fair order across clients: each pass serves each waiting client at most one request, so one
// agent with 500 queued requests does not starve one with 5. Within a client, requests for one model go
// in order; a request for a model that has a free key does not wait behind one for a model that has none.
import type { Clock } from '../clock.js';
import type { Lease } from './lease.js';
import type { KeyPool } from './pool.js';
import type { Demand } from './key-state.js';

export interface WaitRequest {
  /** Who is asking, for fairness: an agent id or the remote address. */
  readonly client: string;
  readonly demand: Demand;
  /** Longest this request may wait. */
  readonly maxWaitMs: number;
  /** Aborting removes the request from the room at once; the promise rejects with the signal's reason. */
  readonly signal: AbortSignal;
  /**
   * Takes a key if one can serve this request now (called only by the room, in fair order). A promise
   * when a shared store confirms the choice: the room waits for it before serving the next client.
   */
  readonly tryAcquire: () => Lease | undefined | Promise<Lease | undefined>;
  /** Returns a key `tryAcquire` took after the request left (timed out or aborted while a store confirmed). */
  readonly giveBack: (lease: Lease) => void;
}

export type WaitResult =
  | { readonly kind: 'acquired'; readonly lease: Lease }
  | { readonly kind: 'timeout' }
  | { readonly kind: 'full' }
  /** Every key is disabled: nothing will ever free up, so waiting on is pointless. */
  | { readonly kind: 'no_keys' };

/**
 * Per client and pass, the room looks this far into the client's queue for requests of other models,
 * and tries at most this many models: bounded work per pass whatever the queue length.
 */
const SCAN_DEPTH = 64;
const MAX_MODELS_PER_PASS = 4;

interface Waiter {
  readonly req: WaitRequest;
  /** Timed out, aborted or served: no longer in the room. */
  settled: boolean;
  /** Serves the request (a key) or sends it away (no keys). */
  readonly resolve: (r: WaitResult) => void;
  readonly cleanup: () => void;
}

export interface WaitingRoomMetrics {
  /** Requests that had to wait for a key. */
  deferred: number;
  /** Of those, how many were served a key. */
  served: number;
  timedOut: number;
  rejectedFull: number;
  /** Sent away at once because every key was disabled while they waited. */
  noKeys: number;
  /** Total ms spent waiting by served and timed-out requests. */
  waitMsTotal: number;
}

export class WaitingRoom {
  readonly #pool: KeyPool;
  readonly #clock: Clock;
  readonly #maxSize: number;
  /** Per client, its waiters oldest first. Map order is the fair rotation order. */
  readonly #queues = new Map<string, Waiter[]>();
  #size = 0;
  #scheduled = false;
  /** A dispatch is awaiting a shared store; changes meanwhile ask for one more pass. */
  #dispatching = false;
  #again = false;
  #cancelTimer: (() => void) | undefined;
  #timerAt = Infinity;
  readonly metrics: WaitingRoomMetrics = { deferred: 0, served: 0, timedOut: 0, rejectedFull: 0, noKeys: 0, waitMsTotal: 0 };

  constructor(pool: KeyPool, clock: Clock, maxSize: number) {
    this.#pool = pool;
    this.#clock = clock;
    this.#maxSize = maxSize;
    pool.watch(() => this.#schedule());
  }

  get size(): number {
    return this.#size;
  }

  wait(req: WaitRequest): Promise<WaitResult> {
    if (this.#size >= this.#maxSize) {
      this.metrics.rejectedFull++;
      return Promise.resolve({ kind: 'full' });
    }
    if (req.signal.aborted) return Promise.reject(req.signal.reason);
    this.metrics.deferred++;
    const started = this.#clock.now();
    return new Promise<WaitResult>((resolve, reject) => {
      const finish = (): void => {
        waiter.settled = true;
        cancelTimeout();
        req.signal.removeEventListener('abort', onAbort);
        this.#remove(waiter);
      };
      const onAbort = (): void => {
        finish();
        reject(req.signal.reason);
      };
      const cancelTimeout = this.#clock.timer(req.maxWaitMs, () => {
        finish();
        this.metrics.timedOut++;
        this.metrics.waitMsTotal += this.#clock.now() - started;
        resolve({ kind: 'timeout' });
      });
      const waiter: Waiter = {
        req,
        settled: false,
        cleanup: finish,
        resolve: (r) => {
          finish();
          if (r.kind === 'acquired') {
            this.metrics.served++;
            this.metrics.waitMsTotal += this.#clock.now() - started;
          } else if (r.kind === 'no_keys') {
            this.metrics.noKeys++;
          }
          resolve(r);
        },
      };
      req.signal.addEventListener('abort', onAbort, { once: true });
      let q = this.#queues.get(req.client);
      if (q === undefined) {
        q = [];
        this.#queues.set(req.client, q);
      }
      q.push(waiter);
      this.#size++;
      this.#schedule();
    });
  }

  #remove(w: Waiter): void {
    const q = this.#queues.get(w.req.client);
    if (q === undefined) return;
    const i = q.indexOf(w);
    if (i === -1) return;
    q.splice(i, 1);
    this.#size--;
    if (q.length === 0) this.#queues.delete(w.req.client);
  }

  /** Coalesces the many pool changes of one tick into one dispatch. */
  #schedule(): void {
    if (this.#scheduled || this.#size === 0) return;
    this.#scheduled = true;
    queueMicrotask(() => {
      this.#scheduled = false;
      void this.#dispatch();
    });
  }

  /**
   * Passes over the clients in rotation order; a client served moves to the back of the rotation. Runs
   * synchronously unless a shared store confirms keys; then one dispatch runs at a time.
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
        let progress = true;
        while (progress && this.#size > 0) {
          progress = false;
          for (const [client, q] of [...this.#queues]) {
            if (!(await this.#serveOne(q))) continue;
            progress = true;
            const rest = this.#queues.get(client);
            if (rest !== undefined) {
              this.#queues.delete(client);
              this.#queues.set(client, rest);
            }
          }
        }
      } while (this.#again);
    } finally {
      this.#dispatching = false;
    }
    if (this.#pool.usable === 0) this.#sendAllAway();
    else this.#armTimer();
  }

  /** Serves the client's oldest request a key can be found for (one per model tried). Whether it served one. */
  async #serveOne(q: readonly Waiter[]): Promise<boolean> {
    for (const w of [...candidates(q)]) {
      if (w.settled) continue;
      const got = w.req.tryAcquire();
      // A store that fails answers "no key" (stores never reject; this keeps a bug from killing the process).
      const lease = got instanceof Promise ? await got.catch(() => undefined) : got;
      if (lease === undefined) continue;
      if (w.settled) {
        // It left (timeout, abort) while the store was confirming: the key goes back.
        w.req.giveBack(lease);
        continue;
      }
      w.resolve({ kind: 'acquired', lease });
      return true;
    }
    return false;
  }

  /** Every key is disabled: no waiter can ever be served. */
  #sendAllAway(): void {
    for (const q of [...this.#queues.values()]) for (const w of [...q]) w.resolve({ kind: 'no_keys' });
  }

  /** Wakes the room when the earliest cooling key of any waiting request is due. */
  #armTimer(): void {
    if (this.#size === 0) return;
    const now = this.#clock.now();
    let soonest = Infinity;
    // The demands dispatch would try; a larger token demand of the same model may come back later.
    const seen = new Set<string>();
    for (const q of this.#queues.values()) {
      for (const w of candidates(q)) {
        const d = w.req.demand;
        const id = `${d.model}\0${d.tokens}`;
        if (seen.has(id)) continue;
        seen.add(id);
        const at = this.#pool.nextAvailableAt(d, now) ?? Infinity;
        if (at < soonest) soonest = at;
      }
    }
    if (soonest === Infinity || soonest >= this.#timerAt) return;
    this.#cancelTimer?.();
    this.#timerAt = soonest;
    this.#cancelTimer = this.#clock.timer(Math.max(0, soonest - now), () => {
      this.#timerAt = Infinity;
      this.#cancelTimer = undefined;
      void this.#dispatch();
    });
  }
}

/**
 * The requests of one client a pass may serve: the oldest of each model, for the first few models among
 * the oldest waiters. Requests of one model stay in order (a small request does not overtake a large
 * one of the same model: that would starve the large one).
 */
function* candidates(q: readonly Waiter[]): Generator<Waiter> {
  const models = new Set<string>();
  const depth = Math.min(q.length, SCAN_DEPTH);
  for (let i = 0; i < depth && models.size < MAX_MODELS_PER_PASS; i++) {
    const w = q[i];
    if (w === undefined || models.has(w.req.demand.model)) continue;
    models.add(w.req.demand.model);
    yield w;
  }
}
