// What a Redis replica owes the store between round trips: slot releases, usage counts and rate-limit
// reports wait here to ride along with the next take (usage: the next per-second flush), so an attempt
// costs one round trip. It also keeps this replica's own slot count, the truth Redis is reset to after
// an outage or a call whose answer was lost. Pure bookkeeping: no timers, no I/O (redis-store.ts has those).
import type { BucketReport, ReleaseRequest, ReportRequest } from './store.js';

export type Arg = string | number;

interface PendingRelease {
  readonly upstream: string;
  readonly fingerprint: string;
  n: number;
  readonly maxConcurrent: number | undefined;
}

export class LedgerBatch {
  /** This replica's slots by "<upstream>|<fp>". */
  readonly #held = new Map<string, number>();
  readonly #releases = new Map<string, PendingRelease>();
  /** Usage increments by "<upstream>\n<fp>:<counter>". */
  readonly #usage = new Map<string, number>();
  /** The newest report per key and model (by mark). */
  readonly #reports = new Map<string, ReportRequest>();

  /** A slot was taken (in Redis, or alone while Redis was away). */
  hold(upstream: string, fingerprint: string): void {
    const field = `${upstream}|${fingerprint}`;
    this.#held.set(field, (this.#held.get(field) ?? 0) + 1);
  }

  /** Counts the outcome; queues the slot's release if this replica holds one. Returns whether it did. */
  release(req: ReleaseRequest): boolean {
    if (req.outcome !== undefined) this.count(req.upstream, `${req.fingerprint}:${req.outcome}`);
    const field = `${req.upstream}|${req.fingerprint}`;
    const mine = this.#held.get(field) ?? 0;
    if (mine === 0) return false;
    if (mine === 1) this.#held.delete(field);
    else this.#held.set(field, mine - 1);
    const pending = this.#releases.get(field);
    if (pending !== undefined) pending.n++;
    else this.#releases.set(field, { upstream: req.upstream, fingerprint: req.fingerprint, n: 1, maxConcurrent: req.maxConcurrent });
    return true;
  }

  count(upstream: string, field: string): void {
    const k = `${upstream}\n${field}`;
    this.#usage.set(k, (this.#usage.get(k) ?? 0) + 1);
  }

  /** Keeps the newest report per key and model: an older one adds nothing the store would keep. */
  report(req: ReportRequest): void {
    const key = `${req.upstream}|${req.fingerprint}|${req.model}`;
    const held = this.#reports.get(key);
    if (held === undefined || held.mark.requests <= req.mark.requests) this.#reports.set(key, req);
  }

  /** Whether anything is waiting to go (usage counts only when asked). */
  pending(withUsage: boolean): boolean {
    return this.#releases.size + this.#reports.size + (withUsage ? this.#usage.size : 0) > 0;
  }

  /** The pending part of a ledger script's arguments (layout in redis-scripts.ts); empties the batch. */
  drain(withUsage: boolean): Arg[] {
    const args: Arg[] = [this.#releases.size];
    for (const r of this.#releases.values()) args.push(`${r.upstream}|${r.fingerprint}|${r.n}|${r.maxConcurrent ?? ''}`);
    if (withUsage) {
      args.push(this.#usage.size);
      for (const [k, n] of this.#usage) {
        const nl = k.indexOf('\n');
        args.push(k.slice(0, nl), k.slice(nl + 1), n);
      }
    } else {
      args.push(0);
    }
    args.push(this.#reports.size);
    for (const r of this.#reports.values()) {
      args.push(r.upstream, r.fingerprint, r.model, `${r.mark.requests},${r.mark.tokens},${bucketText(r.requests)},${bucketText(r.tokens)}`);
    }
    this.drop(withUsage);
    return args;
  }

  /** Lets go of what is pending (Redis is away: slots are rewritten from `heldPairs` when it returns). */
  drop(withUsage: boolean): void {
    this.#releases.clear();
    this.#reports.clear();
    if (withUsage) this.#usage.clear();
  }

  /** This replica's slots as field, count pairs. */
  heldPairs(): Arg[] {
    const pairs: Arg[] = [];
    for (const [field, n] of this.#held) pairs.push(field, n);
    return pairs;
  }
}

function bucketText(b: BucketReport | undefined): string {
  return b === undefined ? ',,,' : `${b.limit},${b.remaining},${b.resetAt},${b.period}`;
}
