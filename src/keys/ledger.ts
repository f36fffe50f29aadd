// The port the pool needs from a shared store: a ledger that confirms each local key choice against
// every replica (slots, rpm/tpm windows, the upstream's buckets, round-robin tickets, usage counters).
// Defined here, in the core, and implemented by the stores in state/ (memory-store.ts, redis-store.ts):
// keys/ imports nothing from state/.
import type { KeyStats, Mark } from './key-state.js';

/** A key's hand-set limits, as configured. Each is enforced across all replicas. */
export interface KeyLimits {
  readonly rpm?: number | undefined;
  readonly tpm?: number | undefined;
  readonly maxConcurrent?: number | undefined;
}

export interface TakeRequest {
  readonly upstream: string;
  readonly fingerprint: string;
  /** The request's model ('' when unknown): buckets are kept per key and model. */
  readonly model: string;
  readonly tokens: number;
  readonly limits: KeyLimits;
  readonly now: number;
  /** Also count the key's slots over all replicas (least_inflight wants it; maxConcurrent always does). */
  readonly countInflight?: boolean;
}

/** Why the store refused a key: a limit that frees at a time, or all in-flight slots taken. */
export type Refusal = 'rpm' | 'tpm' | 'requests' | 'tokens' | 'slots';

/** A rate-limit bucket as the upstream reported it. */
export interface BucketReport {
  readonly limit: number;
  readonly remaining: number;
  readonly resetAt: number;
  readonly period: number;
}

export type TakeResult =
  | {
      readonly ok: true;
      /** Requests and tokens sent on the key+model by all replicas, this one included: the report mark. */
      readonly mark: Mark;
      /** In-flight attempts on the key across live replicas, this one included; undefined when not counted. */
      readonly inflight: number | undefined;
      /** The upstream's round-robin ticket: consecutive over all replicas. */
      readonly ticket: number;
      /** The key+model's shared buckets, `remaining` being what is left after this request. */
      readonly requests: BucketReport | undefined;
      readonly tokens: BucketReport | undefined;
    }
  /** `until` is when the limit frees (epoch ms); Infinity for `slots` (a release frees one). */
  | { readonly ok: false; readonly why: Refusal; readonly until: number }
  /** The store is unreachable: the replica decides alone. */
  | { readonly ok: 'local' };

/** Usage counters kept per key; `attempts` is counted by `take`, the others by `release`. */
export type UsageCounter = Exclude<keyof KeyStats, 'attempts'>;

/**
 * One take, as a value: its answer, and the one way to end it. `release` frees exactly the slot this
 * take holds: nothing when it was refused, and, when it comes before the answer, the slot the answer
 * grants. Calling it again does nothing.
 */
export interface LedgerTake {
  /** The store's answer. Never rejects. */
  readonly answer: Promise<TakeResult>;
  /** The attempt is over: counts its outcome and frees its slot, if it holds one. Idempotent. */
  release(outcome: UsageCounter | undefined): void;
}

export interface ReportRequest {
  readonly upstream: string;
  readonly fingerprint: string;
  readonly model: string;
  /** The shared mark `take` returned for the request that carried the report. */
  readonly mark: Mark;
  readonly requests: BucketReport | undefined;
  readonly tokens: BucketReport | undefined;
  readonly now: number;
}

/** What the pool asks of the shared store on its request path. */
export interface Ledger {
  /**
   * One atomic step: if the key can take the request under every shared limit (in-flight slots of live
   * replicas, rpm/tpm windows, the upstream's buckets for this model), takes a slot for this replica,
   * counts the request in the windows and buckets and the key's `attempts`, and draws a round-robin ticket.
   * A refusal changes nothing.
   */
  take(req: TakeRequest): LedgerTake;
  /** Records the upstream's rate-limit headers; a report older than the one held is dropped. Fire and forget. */
  report(req: ReportRequest): void;
  /** Usage counters of an upstream's keys, summed over every replica, by fingerprint. */
  usage(upstream: string): Promise<Record<string, Partial<KeyStats>>>;
  /** A slot of a key that was full freed up (on any replica): waiting requests may try it again. */
  onFreed(fn: (upstream: string, fingerprint: string) => void): void;
}
