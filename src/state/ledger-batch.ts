// What a Redis replica owes the store between round trips: slot releases, usage counts and rate-limit
// reports wait here to ride along with the next take (usage: the next per-second flush), so an attempt
// costs one round trip. It also keeps the slot of every take (a Claim), and so this replica's own slot
// count: the truth Redis is reset to after an outage, a call whose answer was lost, or a resync. Pure
// bookkeeping: no timers, no I/O (redis-ledger.ts has those).
import type { Arg } from './redis-scripts.js';
import type { BucketReport, ReportRequest } from './store.js';

/**
 * The slot of one take whose key's slots are tracked. `asking`: sent, not answered yet; `held`: this
 * replica holds it (granted, or served alone while Redis was away); `none`: it holds nothing (refused,
 * or released).
 */
export interface Claim {
  readonly upstream: string;
  readonly fingerprint: string;
  /** The key's limit, so a release that frees a slot of a full key can tell the others. */
  readonly maxConcurrent: number | undefined;
  phase: 'asking' | 'held' | 'none';
  /** Its attempt is over (the release may come before the answer). */
  ended: boolean;
  /** The reset count when it was sent: a reset since then wrote it to Redis as held. */
  readonly resets: number;
}

interface PendingRelease {
  readonly upstream: string;
  readonly fingerprint: string;
  n: number;
  readonly maxConcurrent: number | undefined;
}

export class LedgerBatch {
  /** This replica's held slots by "<upstream>|<fp>". */
  readonly #held = new Map<string, number>();
  /** Claims sent and not answered, by field. */
  readonly #asking = new Map<string, number>();
  /** Resets of this replica's slots in Redis so far. */
  #resets = 0;
  readonly #releases = new Map<string, PendingRelease>();
  /** Usage increments by "<upstream>\n<fp>:<counter>". */
  readonly #usage = new Map<string, number>();
  /** The newest report per key and model (by mark). */
  readonly #reports = new Map<string, ReportRequest>();

  /** A take of a slot goes to Redis. */
  ask(upstream: string, fingerprint: string, maxConcurrent: number | undefined): Claim {
    bump(this.#asking, `${upstream}|${fingerprint}`, 1);
    return { upstream, fingerprint, maxConcurrent, phase: 'asking', ended: false, resets: this.#resets };
  }

  /** A slot taken without Redis (it was away): held, and written to Redis when it returns. */
  hold(upstream: string, fingerprint: string, maxConcurrent: number | undefined): Claim {
    bump(this.#held, `${upstream}|${fingerprint}`, 1);
    return { upstream, fingerprint, maxConcurrent, phase: 'held', ended: false, resets: this.#resets };
  }

  /**
   * Redis answered the claim's take. A grant is held, or released at once when its attempt already
   * ended. A refusal holds nothing; but if a reset since it was sent wrote it as held, that slot is given
   * back. Returns whether a release was queued.
   */
  answered(c: Claim, granted: boolean): boolean {
    if (c.phase !== 'asking') return false;
    bump(this.#asking, field(c), -1);
    c.phase = 'none';
    if (granted && !c.ended) {
      c.phase = 'held';
      bump(this.#held, field(c), 1);
      return false;
    }
    if (granted || c.resets !== this.#resets) {
      this.#queueRelease(c);
      return true;
    }
    return false;
  }

  /**
   * The claim's take failed (timeout, lost connection): it may or may not have landed. Its attempt is
   * served alone, so the slot is held, and the reset that follows every failure writes it to Redis.
   */
  failed(c: Claim): void {
    if (c.phase !== 'asking') return;
    bump(this.#asking, field(c), -1);
    c.phase = c.ended ? 'none' : 'held';
    if (!c.ended) bump(this.#held, field(c), 1);
  }

  /** The claim's attempt is over: its slot is released if held, or once its answer grants one. Returns whether a release was queued. */
  release(c: Claim): boolean {
    if (c.ended) return false;
    c.ended = true;
    if (c.phase !== 'held') return false;
    c.phase = 'none';
    bump(this.#held, field(c), -1);
    this.#queueRelease(c);
    return true;
  }

  #queueRelease(c: Claim): void {
    const f = field(c);
    const pending = this.#releases.get(f);
    if (pending !== undefined) pending.n++;
    else this.#releases.set(f, { upstream: c.upstream, fingerprint: c.fingerprint, n: 1, maxConcurrent: c.maxConcurrent });
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
      this.#usage.clear();
    } else {
      args.push(0);
    }
    args.push(this.#reports.size);
    for (const r of this.#reports.values()) {
      args.push(r.upstream, r.fingerprint, r.model, `${r.mark.requests},${r.mark.tokens},${bucketText(r.requests)},${bucketText(r.tokens)}`);
    }
    this.#releases.clear();
    this.#reports.clear();
    return args;
  }

  /**
   * Redis is away: pending releases and reports go (slots are rewritten from `reset` when it returns;
   * reports are only worth their moment). Usage counts stay, summed, until Redis takes them.
   */
  dropPending(): void {
    this.#releases.clear();
    this.#reports.clear();
  }

  /**
   * This replica's slots as field, count pairs, for a reset of what Redis holds for it: the held ones
   * and the unanswered takes (sent before the reset, they land before it). Pending releases are already
   * out of the count and go.
   */
  reset(): Arg[] {
    this.#resets++;
    this.#releases.clear();
    const n = new Map(this.#held);
    for (const [f, k] of this.#asking) bump(n, f, k);
    const pairs: Arg[] = [];
    for (const [f, k] of n) pairs.push(f, k);
    return pairs;
  }
}

const field = (c: Claim): string => `${c.upstream}|${c.fingerprint}`;

/** Adds `d` to a count, deleting it at zero (maps stay as small as what is outstanding). */
function bump(m: Map<string, number>, field: string, d: number): void {
  const n = Math.max(0, (m.get(field) ?? 0) + d);
  if (n === 0) m.delete(field);
  else m.set(field, n);
}

function bucketText(b: BucketReport | undefined): string {
  return b === undefined ? ',,,' : `${b.limit},${b.remaining},${b.resetAt},${b.period}`;
}
