// The StateStore on Redis, for several keypool replicas against one set of keys. Three parts:
// redis-link.ts (the connections, outages and the resync after any gap), redis-facts.ts (cooldowns and
// disabled keys) and redis-ledger.ts (slots, windows, buckets, tickets, usage), every atomic change one
// Lua script (redis-scripts.ts). Replicas hear new facts and freed slots over pub/sub at once. While
// Redis is unreachable every replica serves from its own state; whenever both connections are up again
// (or up for the first time: a replica may start before Redis), the replica resyncs: its heartbeat, its
// own in-flight slots, then the facts (Replication.sync, through onReconnect).
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { KeyStats } from '../keys/key-state.js';
import { RedisFacts, parseMessage } from './redis-facts.js';
import { RedisLedger } from './redis-ledger.js';
import { RedisLink } from './redis-link.js';
import {
  DEFAULT_DISABLED_TTL_MS,
  DEFAULT_REPLICA_TIMEOUT_MS,
  type LedgerTake,
  type ReportRequest,
  type StateStore,
  type StoredFact,
  type TakeRequest,
} from './store.js';

export interface RedisStoreOptions {
  url: string;
  /** Prefix of every key and channel; any characters (keys are never looked up by pattern). @default "keypool:" */
  prefix: string;
  /** A replica not heard from for this long is presumed dead and its slots freed. @default 5000 */
  replicaTimeoutMs?: number | undefined;
  /** How long a disabled key stays disabled in Redis. @default 86400000 (24 h) */
  disabledTtlMs?: number | undefined;
  logger: Logger;
  now?: () => number;
}

export class RedisStore implements StateStore {
  readonly #origin = randomUUID();
  readonly #link: RedisLink;
  readonly #facts: RedisFacts;
  readonly #ledger: RedisLedger;
  readonly #factFns: ((f: StoredFact) => void)[] = [];
  readonly #freedFns: ((upstream: string, fingerprint: string) => void)[] = [];
  readonly #reconnectFns: (() => void)[] = [];

  constructor(o: RedisStoreOptions) {
    const now = o.now ?? Date.now;
    const channel = `${o.prefix}events`;
    this.#link = new RedisLink({ url: o.url, channel, logger: o.logger, onMessage: (text) => this.#deliver(text), onLinked: () => this.#resync() });
    this.#facts = new RedisFacts(this.#link, {
      prefix: o.prefix,
      channel,
      origin: this.#origin,
      disabledTtlMs: o.disabledTtlMs ?? DEFAULT_DISABLED_TTL_MS,
      now,
    });
    this.#ledger = new RedisLedger(this.#link, { prefix: o.prefix, origin: this.#origin, replicaTimeoutMs: o.replicaTimeoutMs ?? DEFAULT_REPLICA_TIMEOUT_MS, now });
  }

  get healthy(): boolean {
    return this.#link.healthy;
  }

  /** Connects; resolves even when Redis is down (the store then starts degraded and joins when it answers). */
  async connect(): Promise<void> {
    this.#ledger.start();
    await this.#link.connect();
  }

  publish(fact: StoredFact): Promise<void> {
    return this.#facts.publish(fact);
  }

  load(): Promise<StoredFact[]> {
    return this.#facts.load();
  }

  subscribe(fn: (fact: StoredFact) => void): void {
    this.#factFns.push(fn);
  }

  onFreed(fn: (upstream: string, fingerprint: string) => void): void {
    this.#freedFns.push(fn);
  }

  onReconnect(fn: () => void): void {
    this.#reconnectFns.push(fn);
  }

  take(req: TakeRequest): LedgerTake {
    return this.#ledger.take(req);
  }

  report(req: ReportRequest): void {
    this.#ledger.report(req);
  }

  usage(upstream: string): Promise<Record<string, Partial<KeyStats>>> {
    return this.#ledger.usage(upstream);
  }

  /** Sends what waits to ride with the next take (releases, reports, usage counts) now. */
  flush(): Promise<void> {
    return this.#ledger.flush(true);
  }

  /** Stops as a crashed process would: no release, no goodbye (tests play a crash with it). */
  abandon(): void {
    this.#ledger.stop();
    this.#link.disconnect();
  }

  /** Leaves cleanly: this replica's slots are freed for the others at once. */
  async close(): Promise<void> {
    this.#link.stop();
    await this.#ledger.leave();
    this.#link.disconnect();
  }

  async #resync(): Promise<void> {
    await this.#ledger.resync();
    for (const fn of this.#reconnectFns) fn();
  }

  #deliver(text: string): void {
    const m = parseMessage(text);
    if (m === undefined) return;
    if (typeof m.freed === 'object' && m.freed !== null) {
      // Every replica, this one too: its own waiters may hold back from a key another replica filled.
      for (const fn of this.#freedFns) fn(m.freed.upstream, m.freed.fingerprint);
      return;
    }
    if (m.origin === this.#origin || typeof m.fact !== 'object' || m.fact === null) return;
    for (const fn of this.#factFns) fn(m.fact);
  }
}
