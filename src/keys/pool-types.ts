// The shapes of KeyPool's surface: what it tells its listener, how it is built and reloaded, and what a
// request brings to acquire a key.
import type { CoolReason, Demand, DisableReason, KeyState } from './key-state.js';
import type { Lease } from './lease.js';
import type { Ledger } from './ledger.js';
import type { StrategyName } from './strategies.js';

/** What `observe` needs of an attempt: a Lease has all of it. */
export type ObservedAttempt = Pick<Lease, 'state' | 'demand' | 'mark' | 'sharedMark'>;

export type PoolEvent =
  | {
      type: 'cooldown';
      upstream: string;
      key: string;
      fingerprint: string;
      model: string;
      reason: CoolReason;
      until: number;
      extended: boolean;
      /** Consecutive rate limits of the key on this model (0 for credit stops). */
      streak: number;
    }
  | { type: 'disabled'; upstream: string; key: string; fingerprint: string; reason: DisableReason; until: number };

export type PoolListener = (event: PoolEvent) => void;

/** What a reload may change about a pool (everything but its upstream name, listener and ledger). */
export type PoolSettings = Pick<PoolOptions, 'strategy' | 'probeAfterMs' | 'probeLeaseMs' | 'maxSessions' | 'maxHeaderMs'>;

export interface PoolOptions {
  /** @default "round_robin" */
  strategy?: StrategyName;
  /** @default Math.random */
  random?: () => number;
  /** A cooldown at least this long ends with a single probe request. @default 60000 */
  probeAfterMs?: number;
  /** Longest a probe may hold its scope if its end is never reported (the request deadline). @default 600000 */
  probeLeaseMs?: number;
  /** Sessions remembered for sticky routing; 0 turns stickiness off. @default 0 */
  maxSessions?: number;
  listener?: PoolListener;
  /** Shared store confirming every choice against the other replicas. Absent: this pool is the whole truth. */
  ledger?: Ledger;
  /** Ceiling on a reset time read from rate-limit headers (config `cooldown.maxMs`). @default 3600000 */
  maxHeaderMs?: number;
  /**
   * Choose by asking every key (the reference the choice index is tested against, and a way to rule the
   * index out when debugging). Not a config setting. @default false
   */
  plainScan?: boolean;
}

export interface AcquireRequest {
  readonly demand: Demand;
  readonly now: number;
  /** Keys this request already tried. */
  readonly exclude?: ReadonlySet<KeyState>;
  /** Groups that already failed this request: keys outside them are preferred. */
  readonly avoidGroups?: ReadonlySet<string>;
  /** Sticky session id: the same key while it is usable. */
  readonly session?: string | undefined;
}
