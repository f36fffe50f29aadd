// The waiting room's contract: what it needs of a pool, what a waiting request brings and gets back,
// and what the room reports about itself (counters since start, gauges of now).
import type { Demand } from './key-state.js';
import type { Lease } from './lease.js';

/** What the room needs of a pool. */
export interface RoomPool {
  /** Called after any change that may let a waiting request through. */
  watch(fn: () => void): () => void;
  /**
   * When some key can take the demand: `now` (or 0) if one can, a later epoch ms, Infinity when only an
   * event frees one, undefined when every key is disabled. The room relies on it being monotone in
   * tokens: a larger demand of a model is never available sooner than a smaller one.
   */
  nextAvailableAt(demand: Demand, now: number): number | undefined;
  /** Keys not disabled. */
  readonly usable: number;
}

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

export interface WaitingRoomMetrics {
  /** Requests that had to wait for a key. */
  deferred: number;
  /** Of those, how many were served a key. */
  served: number;
  timedOut: number;
  rejectedFull: number;
  /** Requests a full room served straight from the pool (their model had no one waiting). */
  servedWhileFull: number;
  /** Sent away at once because every key was disabled while they waited. */
  noKeys: number;
  /** Total ms spent waiting by served and timed-out requests. */
  waitMsTotal: number;
}

/** What the room holds now, for the admin and metrics endpoints. */
export interface RoomGauges {
  readonly waiting: number;
  /** How long the longest-waiting request has waited, ms; 0 when the room is empty. */
  readonly oldestWaitMs: number;
  /** Per waiting client, in rotation order (next to be served first). */
  readonly clients: readonly { readonly client: string; readonly waiting: number; readonly oldestWaitMs: number }[];
}
