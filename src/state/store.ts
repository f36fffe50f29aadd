// The state contract between keypool replicas: everything the pool must agree on with the others.
//  - Facts: cooldown deadlines (only ever extended) and disabled keys. One replica learns them and every
//    other must respect them at once: recorded, expired at their deadline, pushed to the others.
//  - The ledger: in-flight slots, hand-set rpm/tpm windows, the upstream's rate-limit buckets (with the
//    requests sent against them), the round-robin ticket and per-key usage counters. `take` checks one
//    key against all of them and takes a slot in one atomic step.
// Each replica still chooses a key from its own in-memory pool (strategies stay pure and local); the
// store confirms the choice. `memory` (memory-store.ts) is the reference semantics; `redis` the real one.
// A single process needs neither: its pool is the whole truth (see docs/ARCHITECTURE.md).
import type { Ledger } from '../keys/ledger.js';
import type { SharedFact } from '../keys/shared-facts.js';

export type {
  BucketReport,
  KeyLimits,
  Ledger,
  LedgerTake,
  Refusal,
  ReportRequest,
  TakeRequest,
  TakeResult,
  UsageCounter,
} from '../keys/ledger.js';

/** A fact with the upstream it belongs to: about one of its keys, or its circuit (open until `until`). */
export type StoredFact = (SharedFact & { readonly upstream: string }) | CircuitFact;

/** An upstream's circuit opened (proxy/circuit.ts): every replica skips it until `until`. */
export interface CircuitFact {
  readonly kind: 'circuit';
  readonly upstream: string;
  readonly until: number;
}

/** Facts replicas share: cooldowns (only ever extended) and disabled keys. */
export interface FactStore {
  /**
   * Records a fact and tells the other replicas. Cooldowns only ever extend: a deadline at or before
   * the stored one is dropped. Never throws: while the store is unreachable the fact stays local.
   */
  publish(fact: StoredFact): Promise<void>;
  /** Every fact that still holds (for start-up and resync). */
  load(): Promise<StoredFact[]>;
  /** Facts published by other replicas, as they arrive. */
  subscribe(fn: (fact: StoredFact) => void): void;
  /** Called when the store comes back after being unreachable, so the replica can resync. */
  onReconnect(fn: () => void): void;
  /** False while the store is unreachable (requests are then served from local state alone). */
  readonly healthy: boolean;
}

/** A shared store: the facts, the ledger the pools confirm their choices with, and a way to leave. */
export interface StateStore extends FactStore, Ledger {
  close(): Promise<void>;
}

/**
 * How long a disabled key stays disabled in the shared store without a restart or config change, unless
 * a store is given `disabledTtlMs`.
 */
export const DEFAULT_DISABLED_TTL_MS = 24 * 3_600_000;
/** A replica not heard from for this long is presumed dead: its in-flight slots stop counting. */
export const DEFAULT_REPLICA_TIMEOUT_MS = 5_000;

/** When a fact stops holding: a cooldown at its deadline, a disabled flag `disabledTtlMs` from now. */
export function expiryOf(f: StoredFact, now: number, disabledTtlMs: number): number {
  // A disable carries its own end (cooldown.disabledMs from where it happened); older replicas' do not.
  if (f.kind === 'disabled') return f.until !== undefined && Number.isFinite(f.until) ? f.until : now + disabledTtlMs;
  return f.until;
}

/** Identity of a fact in the store: one cooldown per key and model, one disabled flag per key. */
export function factId(f: StoredFact): string {
  if (f.kind === 'circuit') return `${f.upstream}:circuit`;
  return f.kind === 'disabled' ? `${f.upstream}:dis:${f.fingerprint}` : `${f.upstream}:cd:${f.fingerprint}:${f.model}:${f.reason}`;
}

