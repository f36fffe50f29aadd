// The state contract between keypool replicas: everything the pool must agree on with the others.
//  - Facts: cooldown deadlines (only ever extended) and disabled keys. One replica learns them and every
//    other must respect them at once: recorded, expired at their deadline, pushed to the others.
//  - The ledger: in-flight slots, hand-set rpm/tpm windows, the upstream's rate-limit buckets (with the
//    requests sent against them), the round-robin ticket and per-key usage counters. `take` checks one
//    key against all of them and takes a slot in one atomic step.
// Each replica still chooses a key from its own in-memory pool (strategies stay pure and local); the
// store confirms the choice. `memory` (memory-store.ts) is the reference semantics; `redis` the real one.
// A single process needs neither: its pool is the whole truth (see docs/ARCHITECTURE.md).
import type { KeyStats, Mark, SharedFact } from '../keys/pool.js';

/** A fact with the upstream it belongs to. */
export type StoredFact = SharedFact & { readonly upstream: string };

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

export interface ReleaseRequest {
  readonly upstream: string;
  readonly fingerprint: string;
  readonly outcome: UsageCounter | undefined;
  /** The key's limit, so a release that frees a slot of a full key can tell the others. */
  readonly maxConcurrent: number | undefined;
}

/** A rate-limit bucket as the upstream reported it. */
export interface BucketReport {
  readonly limit: number;
  readonly remaining: number;
  readonly resetAt: number;
  readonly period: number;
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

export interface StateStore {
  /**
   * Records a fact and tells the other replicas. Cooldowns only ever extend: a deadline at or before
   * the stored one is dropped. Never throws: while the store is unreachable the fact stays local.
   */
  publish(fact: StoredFact): Promise<void>;
  /** Every fact that still holds (for start-up and resync). */
  load(): Promise<StoredFact[]>;
  /** Facts published by other replicas, as they arrive. */
  subscribe(fn: (fact: StoredFact) => void): void;
  /** A slot of a key that was full freed up (on any replica): waiting requests may try it again. */
  onFreed(fn: (upstream: string, fingerprint: string) => void): void;
  /** Called when the store comes back after being unreachable, so the replica can resync. */
  onReconnect(fn: () => void): void;
  /**
   * One atomic step: if the key can take the request under every shared limit (in-flight slots of live
   * replicas, rpm/tpm windows, the upstream's buckets for this model), takes a slot for this replica,
   * counts the request in the windows and buckets and the key's `attempts`, and draws a round-robin ticket.
   * A refusal changes nothing. Never throws.
   */
  take(req: TakeRequest): Promise<TakeResult>;
  /**
   * The attempt is over: frees this replica's slot and counts its outcome. Fire and forget; the Redis
   * store sends it with the next take (within a millisecond).
   */
  release(req: ReleaseRequest): void;
  /** Records the upstream's rate-limit headers; a report older than the one held is dropped. Fire and forget. */
  report(req: ReportRequest): void;
  /** Usage counters of an upstream's keys, summed over every replica, by fingerprint. */
  usage(upstream: string): Promise<Record<string, Partial<KeyStats>>>;
  /** False while the store is unreachable (requests are then served from local state alone). */
  readonly healthy: boolean;
  close(): Promise<void>;
}

/** How long a disabled key stays disabled in the shared store without a restart or config change. */
export const DISABLED_TTL_MS = 24 * 3_600_000;
/** Hand-set rpm/tpm windows are fixed minutes, as in the pool. */
export { WINDOW_MS as LEDGER_WINDOW_MS } from '../keys/key-state.js';
/** A replica not heard from for this long is presumed dead: its in-flight slots stop counting. */
export const DEFAULT_REPLICA_TIMEOUT_MS = 5_000;

/** When a fact stops holding: a cooldown at its deadline, a disabled flag after DISABLED_TTL_MS. */
export function expiryOf(f: StoredFact, now: number): number {
  return f.kind === 'disabled' ? now + DISABLED_TTL_MS : f.until;
}

/** Identity of a fact in the store: one cooldown per key and model, one disabled flag per key. */
export function factId(f: StoredFact): string {
  return f.kind === 'disabled' ? `${f.upstream}:dis:${f.fingerprint}` : `${f.upstream}:cd:${f.fingerprint}:${f.model}:${f.reason}`;
}

