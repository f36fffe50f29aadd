// The ledger side of the Redis store: one TAKE script per attempt; releases, usage counts and reports
// wait (a millisecond at most; usage a second) in the LedgerBatch to ride along with the next take, so
// an attempt costs one round trip. Each take's slot is a Claim, released exactly once. A heartbeat keeps
// this replica's slots counting; on every resync Redis is reset to the slots this replica really holds.
import type { KeyStats } from '../keys/key-state.js';
import { LedgerBatch, type Claim } from './ledger-batch.js';
import type { RedisLink } from './redis-link.js';
import type { Arg } from './redis-scripts.js';
import type { BucketReport, LedgerTake, ReportRequest, TakeRequest, TakeResult, UsageCounter } from './store.js';

/** Heartbeats per replica timeout: a replica misses several before the others give up on it. */
const BEATS_PER_TIMEOUT = 5;
/** Longest a release, usage count or report waits for a take to carry it before it goes alone. */
const PENDING_FLUSH_MS = 1;
/** Usage counters are summed locally and sent this often. */
const USAGE_FLUSH_MS = 1_000;

export interface RedisLedgerOptions {
  readonly prefix: string;
  /** This replica's id. */
  readonly origin: string;
  readonly replicaTimeoutMs: number;
  readonly now: () => number;
}

export class RedisLedger {
  readonly #link: RedisLink;
  readonly #o: RedisLedgerOptions;
  readonly #slots: string;
  readonly #replicas: string;
  readonly #batch = new LedgerBatch();
  #heartbeat: NodeJS.Timeout | undefined;
  #flushTimer: NodeJS.Timeout | undefined;
  #usageTimer: NodeJS.Timeout | undefined;

  constructor(link: RedisLink, o: RedisLedgerOptions) {
    this.#link = link;
    this.#o = o;
    this.#slots = `${o.prefix}slots:${o.origin}`;
    this.#replicas = `${o.prefix}replicas`;
  }

  /** Starts the heartbeat. */
  start(): void {
    this.#heartbeat = setInterval(() => void this.#beat(), Math.max(1, Math.floor(this.#o.replicaTimeoutMs / BEATS_PER_TIMEOUT)));
    this.#heartbeat.unref();
  }

  take(req: TakeRequest): LedgerTake {
    const { upstream, fingerprint, limits } = req;
    // Slots are tracked only where someone reads them: a key with maxConcurrent, a strategy comparing them.
    const slots = req.countInflight === true || limits.maxConcurrent !== undefined;
    let claim: Claim | undefined;
    let answer: Promise<TakeResult>;
    if (this.#link.healthy) {
      if (slots) claim = this.#batch.ask(upstream, fingerprint, limits.maxConcurrent);
      answer = this.#send(req, claim);
    } else {
      // Decided alone; still held, so Redis learns of it when it returns.
      if (slots) claim = this.#batch.hold(upstream, fingerprint, limits.maxConcurrent);
      answer = Promise.resolve({ ok: 'local' });
    }
    let released = false;
    return {
      answer,
      release: (outcome: UsageCounter | undefined) => {
        if (released) return;
        released = true;
        if (outcome !== undefined) this.#count(upstream, `${fingerprint}:${outcome}`);
        if (claim !== undefined && this.#batch.release(claim)) this.#scheduleFlush();
      },
    };
  }

  async #send(req: TakeRequest, claim: Claim | undefined): Promise<TakeResult> {
    const { upstream, fingerprint, model, now, limits } = req;
    try {
      const r = await this.#link.cmd.keypoolTake(
        ...this.#head(now, false),
        upstream,
        fingerprint,
        model,
        req.tokens,
        limits.rpm ?? '',
        limits.tpm ?? '',
        limits.maxConcurrent ?? '',
        claim !== undefined ? '1' : '',
      );
      if (claim !== undefined && this.#batch.answered(claim, r[0] !== 0)) this.#scheduleFlush();
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
      // It may have landed without its answer: served alone and held; the resync after the failure writes it.
      if (claim !== undefined) this.#batch.failed(claim);
      this.#link.failed();
      return { ok: 'local' };
    }
  }

  report(req: ReportRequest): void {
    this.#batch.report(req);
    this.#scheduleFlush();
  }

  async usage(upstream: string): Promise<Record<string, Partial<KeyStats>>> {
    const out: Record<string, Partial<KeyStats>> = {};
    await this.flush(true);
    if (!this.#link.healthy) return out;
    try {
      for (const [field, value] of Object.entries(await this.#link.cmd.hgetall(`${this.#o.prefix}usage:${upstream}`))) {
        const colon = field.lastIndexOf(':');
        (out[field.slice(0, colon)] ??= {})[field.slice(colon + 1) as keyof KeyStats] = Number(value);
      }
    } catch {
      this.#link.failed();
    }
    return out;
  }

  /** Sends what is pending now if no take carried it first (usage counts too when `withUsage`). */
  async flush(withUsage: boolean): Promise<void> {
    clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    if (withUsage) {
      clearTimeout(this.#usageTimer);
      this.#usageTimer = undefined;
    }
    if (!this.#batch.pending(withUsage)) return;
    if (!this.#link.healthy) {
      // Slots are rewritten from the batch when Redis returns; usage counts wait for it.
      this.#batch.dropPending();
      return;
    }
    await this.#link.cmd.keypoolFlush(...this.#head(this.#o.now(), withUsage)).catch(() => this.#link.failed());
  }

  /** After any gap: this replica is alive, and Redis holds exactly its slots; then what waited goes. */
  async resync(): Promise<void> {
    // The reset first: the heartbeat right behind it refreshes the rewritten hash's TTL too.
    await Promise.all([this.#resetSlots(), this.#beat()]);
    await this.flush(true);
  }

  /** Leaving cleanly: what is pending goes, and this replica's slots are freed for the others at once. */
  async leave(): Promise<void> {
    await this.flush(true);
    this.stop();
    if (this.#link.healthy) await this.#link.cmd.multi().del(this.#slots).zrem(this.#replicas, this.#o.origin).exec().catch(() => undefined);
  }

  stop(): void {
    clearInterval(this.#heartbeat);
    clearTimeout(this.#flushTimer);
    clearTimeout(this.#usageTimer);
  }

  /** Leading ARGV of the ledger scripts, draining what is pending into them (usage only when asked). */
  #head(now: number, withUsage: boolean): Arg[] {
    return [this.#o.prefix, this.#o.origin, now, this.#o.replicaTimeoutMs, ...this.#batch.drain(withUsage)];
  }

  /** Usage counts are summed here and sent once a second: nobody waits on them. */
  #count(upstream: string, field: string): void {
    this.#batch.count(upstream, field);
    if (this.#usageTimer !== undefined) return;
    this.#usageTimer = setTimeout(() => void this.flush(true), USAGE_FLUSH_MS);
    this.#usageTimer.unref();
  }

  #scheduleFlush(): void {
    if (this.#flushTimer !== undefined) return;
    this.#flushTimer = setTimeout(() => void this.flush(false), PENDING_FLUSH_MS);
    this.#flushTimer.unref();
  }

  async #resetSlots(): Promise<void> {
    if (!this.#link.healthy) return;
    await this.#link.cmd.keypoolResetSlots(this.#slots, this.#o.replicaTimeoutMs, ...this.#batch.reset()).catch(() => this.#link.failed());
  }

  async #beat(): Promise<void> {
    if (!this.#link.healthy) return;
    const now = this.#o.now();
    const { replicaTimeoutMs: timeout, origin } = this.#o;
    await this.#link.cmd.keypoolHeartbeat(this.#replicas, this.#slots, now, origin, now - timeout, timeout).catch(() => this.#link.failed());
  }
}

/** A bucket from a take's reply at `i`: limit (-1 = none), left, reset at, period. */
function bucketAt(r: readonly number[], i: number): BucketReport | undefined {
  const limit = r[i] ?? -1;
  if (limit < 0) return undefined;
  return { limit, remaining: r[i + 1] ?? 0, resetAt: r[i + 2] ?? 0, period: r[i + 3] ?? 0 };
}
