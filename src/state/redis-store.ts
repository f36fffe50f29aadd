// The StateStore on Redis, for several keypool replicas against one set of keys. Facts are keys with a
// PX TTL at their deadline; the ledger (slots, windows, buckets, tickets, usage) lives in small hashes
// with TTLs (a dead replica leaves nothing stale behind: its slot hash stops being refreshed and its
// heartbeat stops counting it). Every change that must be atomic is one Lua script (redis-scripts.ts),
// one round trip; releases, usage counts and rate-limit reports wait (a millisecond at most) to ride
// along with the next take, so an attempt costs one round trip. Replicas hear new facts and freed slots
// over pub/sub at once. While Redis is unreachable every replica serves from its own state; when it
// returns, the replica resyncs (facts, and its own in-flight slots).
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { KeyStats } from '../keys/key-state.js';
import { LedgerBatch, type Arg, type ReleaseRequest } from './ledger-batch.js';
import { EXTEND_AND_PUBLISH, FLUSH, HEARTBEAT, RESET_SLOTS, TAKE } from './redis-scripts.js';
import {
  DEFAULT_REPLICA_TIMEOUT_MS,
  LEDGER_WINDOW_MS,
  expiryOf,
  factId,
  type BucketReport,
  type LedgerTake,
  type Refusal,
  type ReportRequest,
  type StateStore,
  type StoredFact,
  type TakeRequest,
  type TakeResult,
} from './store.js';

/** Keys read per SCAN / MGET round when loading. */
const SCAN_BATCH = 500;
/** Longest a single Redis command may take before the store counts as unreachable. */
const COMMAND_TIMEOUT_MS = 1_000;
/** Heartbeats per replica timeout: a replica misses several before the others give up on it. */
const BEATS_PER_TIMEOUT = 5;
/** After a failed command on a live connection, how soon to check whether Redis answers again. */
const RECOVER_CHECK_MS = 500;
/** Longest a release, usage count or report waits for a take to carry it before it goes alone. */
const PENDING_FLUSH_MS = 1;
/** Usage counters are summed locally and sent this often. */
const USAGE_FLUSH_MS = 1_000;

type Message =
  | { origin: string; fact: StoredFact; freed?: undefined }
  | { origin: string; fact?: undefined; freed: { upstream: string; fingerprint: string } };

type ScriptedRedis = Redis & {
  keypoolExtend(...args: Arg[]): Promise<number>;
  keypoolTake(...args: Arg[]): Promise<[0, Refusal, number] | [1, ...number[]]>;
  keypoolFlush(...args: Arg[]): Promise<number>;
  keypoolHeartbeat(...args: Arg[]): Promise<number>;
  keypoolResetSlots(...args: Arg[]): Promise<number>;
};


export interface RedisStoreOptions {
  url: string;
  /** Prefix of every key and channel. @default "keypool:" */
  prefix: string;
  /** A replica not heard from for this long is presumed dead and its slots freed. @default 5000 */
  replicaTimeoutMs?: number;
  logger: Logger;
  now?: () => number;
}

export class RedisStore implements StateStore {
  readonly #cmd: ScriptedRedis;
  readonly #sub: Redis;
  readonly #prefix: string;
  readonly #channel: string;
  readonly #origin = randomUUID();
  readonly #slots: string;
  readonly #replicas: string;
  readonly #replicaTimeoutMs: number;
  readonly #logger: Logger;
  readonly #now: () => number;
  readonly #subscribers: ((f: StoredFact) => void)[] = [];
  readonly #freedFns: ((upstream: string, fingerprint: string) => void)[] = [];
  readonly #reconnectFns: (() => void)[] = [];
  #heartbeat: NodeJS.Timeout | undefined;
  readonly #batch = new LedgerBatch();
  #flushTimer: NodeJS.Timeout | undefined;
  #usageTimer: NodeJS.Timeout | undefined;
  #recoverTimer: NodeJS.Timeout | undefined;
  #healthy = false;
  #everReady = false;
  #downLogged = false;
  #closing = false;

  constructor(o: RedisStoreOptions) {
    this.#prefix = o.prefix;
    this.#channel = `${o.prefix}events`;
    this.#slots = `${o.prefix}slots:${this.#origin}`;
    this.#replicas = `${o.prefix}replicas`;
    this.#replicaTimeoutMs = o.replicaTimeoutMs ?? DEFAULT_REPLICA_TIMEOUT_MS;
    this.#logger = o.logger;
    this.#now = o.now ?? Date.now;
    const options = {
      lazyConnect: true,
      // Fail fast while Redis is away: a request must never wait on it.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: COMMAND_TIMEOUT_MS,
      retryStrategy: (times: number) => Math.min(100 * times, 2_000),
    };
    // Commands issued in one tick (a take, two releases, a report) go out in one write.
    this.#cmd = new Redis(o.url, { ...options, enableAutoPipelining: true }) as ScriptedRedis;
    this.#cmd.defineCommand('keypoolExtend', { numberOfKeys: 2, lua: EXTEND_AND_PUBLISH });
    this.#cmd.defineCommand('keypoolTake', { numberOfKeys: 0, lua: TAKE });
    this.#cmd.defineCommand('keypoolFlush', { numberOfKeys: 0, lua: FLUSH });
    this.#cmd.defineCommand('keypoolHeartbeat', { numberOfKeys: 2, lua: HEARTBEAT });
    this.#cmd.defineCommand('keypoolResetSlots', { numberOfKeys: 1, lua: RESET_SLOTS });
    // A subscriber connection must queue its SUBSCRIBE until connected.
    this.#sub = new Redis(o.url, { ...options, enableOfflineQueue: true });
    this.#cmd.on('ready', () => this.#up());
    this.#cmd.on('close', () => this.#down());
    this.#cmd.on('error', () => this.#down());
    this.#sub.on('error', () => {
      // Reported through the command connection; the subscriber reconnects and resubscribes by itself.
    });
    this.#sub.on('message', (_channel: string, text: string) => this.#deliver(text));
  }

  get healthy(): boolean {
    return this.#healthy;
  }

  /** Connects both connections; resolves even when Redis is down (the store then starts degraded). */
  async connect(): Promise<void> {
    await Promise.all([
      this.#cmd.connect().catch(() => undefined),
      this.#sub
        .connect()
        .then(() => this.#sub.subscribe(this.#channel))
        .catch(() => undefined),
    ]);
    await this.#beat();
    this.#heartbeat = setInterval(() => void this.#beat(), Math.max(1, Math.floor(this.#replicaTimeoutMs / BEATS_PER_TIMEOUT)));
    this.#heartbeat.unref();
  }

  async publish(fact: StoredFact): Promise<void> {
    if (!this.#healthy) return;
    const now = this.#now();
    // SET PX takes whole ms only; a fraction would fail the script and take the store down.
    const expiry = Math.ceil(expiryOf(fact, now));
    if (expiry <= now) return;
    const message = JSON.stringify({ origin: this.#origin, fact } satisfies Message);
    try {
      await this.#cmd.keypoolExtend(`${this.#prefix}f:${factId(fact)}`, this.#channel, expiry, Math.max(1, Math.ceil(expiry - now)), message);
    } catch {
      this.#down();
    }
  }

  async load(): Promise<StoredFact[]> {
    if (!this.#healthy) return [];
    const out: StoredFact[] = [];
    try {
      let cursor = '0';
      do {
        const [next, keys] = await this.#cmd.scan(cursor, 'MATCH', `${this.#prefix}f:*`, 'COUNT', SCAN_BATCH);
        cursor = next;
        if (keys.length === 0) continue;
        for (const value of await this.#cmd.mget(keys)) {
          const fact = value === null ? undefined : parseStored(value);
          if (fact !== undefined) out.push(fact);
        }
      } while (cursor !== '0');
    } catch {
      this.#down();
    }
    return out;
  }

  subscribe(fn: (fact: StoredFact) => void): void {
    this.#subscribers.push(fn);
  }

  onFreed(fn: (upstream: string, fingerprint: string) => void): void {
    this.#freedFns.push(fn);
  }

  onReconnect(fn: () => void): void {
    this.#reconnectFns.push(fn);
  }

  take(req: TakeRequest): LedgerTake {
    const answer = this.#take(req);
    let released = false;
    return {
      answer,
      release: (outcome) => {
        if (released) return;
        released = true;
        this.#release({ upstream: req.upstream, fingerprint: req.fingerprint, outcome, maxConcurrent: req.limits.maxConcurrent });
      },
    };
  }

  async #take(req: TakeRequest): Promise<TakeResult> {
    const { upstream, fingerprint, model, now, limits } = req;
    // Slots are tracked only where someone reads them: a key with maxConcurrent, a strategy comparing them.
    const slots = req.countInflight === true || limits.maxConcurrent !== undefined;
    if (!this.#healthy) {
      // Decided alone; still counted as held, so Redis learns of it when it returns.
      if (slots) this.#batch.hold(upstream, fingerprint);
      return { ok: 'local' };
    }
    if (slots) this.#batch.asked(upstream, fingerprint);
    try {
      const r = await this.#cmd.keypoolTake(
        ...this.#ledgerHead(now, false),
        upstream,
        fingerprint,
        model,
        req.tokens,
        limits.rpm ?? '',
        limits.tpm ?? '',
        limits.maxConcurrent ?? '',
        slots ? '1' : '',
      );
      if (slots && this.#batch.answered(upstream, fingerprint, r[0] !== 0, limits.maxConcurrent)) this.#scheduleFlush();
      if (r[0] === 0) return { ok: false, why: r[1], until: r[2] < 0 ? Infinity : r[2] };
      this.#count(upstream, `${fingerprint}:attempts`);
      const [, sent = 0, sentTokens = 0, inflight = -1, ticket = 0] = r;
      return {
        ok: true,
        mark: { requests: sent, tokens: sentTokens },
        inflight: inflight < 0 ? undefined : inflight,
        ticket,
        requests: bucketAt(r, 5),
        tokens: bucketAt(r, 9),
      };
    } catch {
      // The take may have landed without its answer: this replica's slots are reset once Redis answers.
      if (slots) this.#batch.answered(upstream, fingerprint, false, limits.maxConcurrent);
      this.#down();
      return { ok: 'local' };
    }
  }

  #release(req: ReleaseRequest): void {
    if (this.#batch.release(req)) this.#scheduleFlush();
    if (req.outcome !== undefined) this.#scheduleUsage();
  }

  report(req: ReportRequest): void {
    this.#batch.report(req);
    this.#scheduleFlush();
  }

  async usage(upstream: string): Promise<Record<string, Partial<KeyStats>>> {
    const out: Record<string, Partial<KeyStats>> = {};
    await this.#flush(true);
    if (!this.#healthy) return out;
    try {
      for (const [field, value] of Object.entries(await this.#cmd.hgetall(`${this.#prefix}usage:${upstream}`))) {
        const colon = field.lastIndexOf(':');
        const fp = field.slice(0, colon);
        (out[fp] ??= {})[field.slice(colon + 1) as keyof KeyStats] = Number(value);
      }
    } catch {
      this.#down();
    }
    return out;
  }

  /** Leading ARGV of the ledger scripts, draining what is pending into them (usage only when asked). */
  #ledgerHead(now: number, withUsage: boolean): Arg[] {
    return [this.#prefix, this.#origin, now, this.#replicaTimeoutMs, ...this.#batch.drain(withUsage)];
  }

  /** Usage counts are summed here and sent once a second: nobody waits on them. */
  #count(upstream: string, field: string): void {
    this.#batch.count(upstream, field);
    this.#scheduleUsage();
  }

  #scheduleUsage(): void {
    if (this.#usageTimer !== undefined) return;
    this.#usageTimer = setTimeout(() => void this.#flush(true), USAGE_FLUSH_MS);
    this.#usageTimer.unref();
  }

  #scheduleFlush(): void {
    if (this.#flushTimer !== undefined) return;
    this.#flushTimer = setTimeout(() => void this.#flush(false), PENDING_FLUSH_MS);
    this.#flushTimer.unref();
  }

  /** Sends what is pending now if no take carried it first (usage counts too when `withUsage`). */
  async #flush(withUsage: boolean): Promise<void> {
    clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    if (withUsage) {
      clearTimeout(this.#usageTimer);
      this.#usageTimer = undefined;
    }
    if (!this.#batch.pending(withUsage)) return;
    if (!this.#healthy) {
      // Slots are rewritten from the batch's count when Redis returns; counts and reports of an outage go.
      this.#batch.drop(withUsage);
      return;
    }
    await this.#cmd.keypoolFlush(...this.#ledgerHead(this.#now(), withUsage)).catch(() => this.#down());
  }

  /** Makes Redis hold exactly this replica's slots. */
  async #resetSlots(): Promise<void> {
    this.#batch.drop(false);
    try {
      await this.#cmd.keypoolResetSlots(this.#slots, this.#replicaTimeoutMs, ...this.#batch.heldPairs());
    } catch {
      this.#down();
    }
  }

  /** Stops as a crashed process would: no release, no goodbye (tests play a crash with it). */
  abandon(): void {
    this.#closing = true;
    clearInterval(this.#heartbeat);
    clearTimeout(this.#flushTimer);
    clearTimeout(this.#usageTimer);
    clearTimeout(this.#recoverTimer);
    this.#cmd.disconnect();
    this.#sub.disconnect();
  }

  /** Leaves cleanly: this replica's slots are freed for the others at once. */
  async close(): Promise<void> {
    await this.#flush(true);
    this.#closing = true;
    clearInterval(this.#heartbeat);
    clearTimeout(this.#recoverTimer);
    if (this.#healthy) await this.#cmd.multi().del(this.#slots).zrem(this.#replicas, this.#origin).exec().catch(() => undefined);
    this.#cmd.disconnect();
    this.#sub.disconnect();
  }

  async #beat(): Promise<void> {
    if (!this.#healthy) return;
    const now = this.#now();
    await this.#cmd
      .keypoolHeartbeat(this.#replicas, this.#slots, now, this.#origin, now - this.#replicaTimeoutMs, this.#replicaTimeoutMs)
      .catch(() => this.#down());
  }

  #deliver(text: string): void {
    let m: Message;
    try {
      m = JSON.parse(text) as Message;
    } catch {
      return;
    }
    if (typeof m !== 'object' || m === null) return;
    if (m.freed !== undefined) {
      // Every replica, this one too: its own waiters may hold back from a key another replica filled.
      for (const fn of this.#freedFns) fn(m.freed.upstream, m.freed.fingerprint);
      return;
    }
    if (m.origin === this.#origin || typeof m.fact !== 'object' || m.fact === null) return;
    for (const fn of this.#subscribers) fn(m.fact);
  }

  #up(): void {
    if (this.#healthy) return;
    this.#healthy = true;
    this.#downLogged = false;
    void this.#beat();
    if (this.#everReady) {
      this.#logger.warn('redis is back; resyncing pool state');
      void this.#resetSlots();
      for (const fn of this.#reconnectFns) fn();
    } else {
      this.#logger.info('redis connected');
    }
    this.#everReady = true;
  }

  /**
   * A failed command does not always close the connection (a timeout, a script error): check back, and
   * count Redis as back once it answers. A closed connection comes back through 'ready' instead.
   */
  async #tryRecover(): Promise<void> {
    this.#recoverTimer = undefined;
    if (this.#closing || this.#healthy || this.#cmd.status !== 'ready') return;
    try {
      await this.#cmd.ping();
      this.#up();
    } catch {
      this.#down();
    }
  }

  #down(): void {
    this.#healthy = false;
    if (!this.#closing && this.#recoverTimer === undefined) {
      this.#recoverTimer = setTimeout(() => void this.#tryRecover(), RECOVER_CHECK_MS);
      this.#recoverTimer.unref();
    }
    // 'error' repeats on every reconnect attempt: say it once per outage.
    if (this.#closing || this.#downLogged) return;
    this.#downLogged = true;
    this.#logger.warn('redis unreachable; serving from local state until it returns');
  }
}

/** A bucket from a take's reply at `i`: limit (-1 = none), left, reset at, period. */
function bucketAt(r: readonly number[], i: number): BucketReport | undefined {
  const limit = r[i] ?? -1;
  if (limit < 0) return undefined;
  return { limit, remaining: r[i + 1] ?? 0, resetAt: r[i + 2] ?? 0, period: r[i + 3] ?? 0 };
}


function parseStored(value: string): StoredFact | undefined {
  const bar = value.indexOf('|');
  if (bar === -1) return undefined;
  try {
    const m = JSON.parse(value.slice(bar + 1)) as Message;
    return m.fact;
  } catch {
    return undefined;
  }
}
