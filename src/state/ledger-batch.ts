// What a Redis replica owes the store between round trips: slot releases, usage counts and rate-limit
// reports wait here to ride along with the next take (usage: the next per-second flush), so an attempt
// costs one round trip. It also keeps this replica's own slot count, the truth Redis is reset to after
// an outage or a call whose answer was lost. Pure bookkeeping: no timers, no I/O (redis-store.ts has those).
import type { BucketReport, ReportRequest, UsageCounter } from './store.js';

/** One attempt's end, as the batch counts it. */
export interface ReleaseRequest {
  readonly upstream: string;
  readonly fingerprint: string;
  readonly outcome: UsageCounter | undefined;
  /** The key's limit, so a release that frees a slot of a full key can tell the others. */
  readonly maxConcurrent: number | undefined;
}

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
  /** Takes of a slot sent and not answered yet, by field. */
  readonly #asking = new Map<string, number>();
  /**
   * Releases that came before their take's answer (an attempt not waiting for the store can end first),
   * by field; never more than `#asking`. A grant then releases at once, so no slot is left behind.
   */
  readonly #owed = new Map<string, number>();
  readonly #releases = new Map<string, PendingRelease>();
  /** Usage increments by "<upstream>\n<fp>:<counter>". */
  readonly #usage = new Map<string, number>();
  /** The newest report per key and model (by mark). */
  readonly #reports = new Map<string, ReportRequest>();

  /** A slot was taken (in Redis, or alone while Redis was away). */
  hold(upstream: string, fingerprint: string): void {
    bump(this.#held, `${upstream}|${fingerprint}`, 1);
  }

  /** A take of a slot is on its way to Redis. */
  asked(upstream: string, fingerprint: string): void {
    bump(this.#asking, `${upstream}|${fingerprint}`, 1);
  }

  /**
   * The take's answer: a granted slot is held, or released at once when its attempt already ended.
   * A refused or failed take holds nothing (an outage resets Redis to `heldPairs`). Returns whether a
   * release was queued.
   */
  answered(upstream: string, fingerprint: string, granted: boolean, maxConcurrent: number | undefined): boolean {
    const field = `${upstream}|${fingerprint}`;
    const asking = bump(this.#asking, field, -1);
    const owed = this.#owed.get(field) ?? 0;
    if (granted && owed > 0) {
      bump(this.#owed, field, -1);
      this.#queueRelease(upstream, fingerprint, maxConcurrent);
      return true;
    }
    // Which attempt a refused take belonged to is not known: keep owed within what may still be granted.
    if (owed > asking) bump(this.#owed, field, asking - owed);
    if (granted) bump(this.#held, field, 1);
    return false;
  }

  /** Counts the outcome; queues the slot's release if this replica holds one. Returns whether it did. */
  release(req: ReleaseRequest): boolean {
    if (req.outcome !== undefined) this.count(req.upstream, `${req.fingerprint}:${req.outcome}`);
    const field = `${req.upstream}|${req.fingerprint}`;
    if ((this.#held.get(field) ?? 0) === 0) {
      // No slot held: none was taken (slots untracked, a refusal), or its take is still unanswered.
      if ((this.#owed.get(field) ?? 0) < (this.#asking.get(field) ?? 0)) bump(this.#owed, field, 1);
      return false;
    }
    bump(this.#held, field, -1);
    this.#queueRelease(req.upstream, req.fingerprint, req.maxConcurrent);
    return true;
  }

  #queueRelease(upstream: string, fingerprint: string, maxConcurrent: number | undefined): void {
    const field = `${upstream}|${fingerprint}`;
    const pending = this.#releases.get(field);
    if (pending !== undefined) pending.n++;
    else this.#releases.set(field, { upstream, fingerprint, n: 1, maxConcurrent });
  }

  count(upstream: string, field: string): void {
    bump(this.#usage, `${upstream}\n${field}`, 1);
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

/** Adds `d` to a count, deleting it at zero (maps stay as small as what is outstanding); the new count. */
function bump(m: Map<string, number>, field: string, d: number): number {
  const n = Math.max(0, (m.get(field) ?? 0) + d);
  if (n === 0) m.delete(field);
  else m.set(field, n);
  return n;
}

function bucketText(b: BucketReport | undefined): string {
  return b === undefined ? ',,,' : `${b.limit},${b.remaining},${b.resetAt},${b.period}`;
}
