// The shared store's side of choosing a key: with several replicas, each local choice is confirmed by
// the ledger (state/), which checks it against what every replica has taken. Near a limit the attempt
// waits for that answer; far from every limit it leaves at once and the counts catch up within a round
// trip. A refusal holds the key back locally (not a cooldown) until the limit frees.
import type { Lease } from './lease.js';
import type { Ledger, Refusal, TakeResult } from './ledger.js';
import { isTight, scopeOf, type Demand, type KeyState } from './key-state.js';
import { adoptShared, type Report } from './rate-limit-report.js';

/**
 * After a refusal for a full key, look again this soon even if no "freed" message arrives (one can pass
 * the refusal on the wire and find no hold to lift).
 */
export const SLOT_RECHECK_MS = 250;
/** This many responses without a rate-limit header: the upstream sends none, do not wait to learn them. */
const HEADERLESS_AFTER = 20;

/** What admission needs from its pool. */
export interface AdmissionHost {
  /** A granted take drew this round-robin ticket for the key (tickets are consecutive over all replicas). */
  ticketDrawn(s: KeyState, ticket: number): void;
  /** Something changed that may let a waiting request through. */
  changed(): void;
  /** The key's state in `model`'s scope ('' for every model) changed in a way that may let it through sooner. */
  loosened(s: KeyState, model: string): void;
  /** The key's state changed in a way that can only keep it out longer. */
  tightened(s: KeyState): void;
}

export class SharedAdmission {
  readonly #upstream: string;
  readonly #ledger: Ledger;
  /** The strategy compares in-flight counts, so the store counts them across replicas. */
  #countInflight: boolean;
  readonly #host: AdmissionHost;
  /** Responses seen, and how many carried rate-limit headers (an upstream may send none). */
  #responses = 0;
  #reporting = 0;

  constructor(upstream: string, ledger: Ledger, countInflight: boolean, host: AdmissionHost) {
    this.#upstream = upstream;
    this.#ledger = ledger;
    this.#countInflight = countInflight;
    this.#host = host;
  }

  /**
   * Confirms a lease `acquire` just took. Near a limit (a hand-set rpm, tpm or maxConcurrent; a low
   * bucket; a refusal within the last window) it waits for the store: a refusal (another replica used up
   * the limit or the slots) abandons the lease, holds the key until the limit frees, and resolves false:
   * acquire again. Far from every limit it resolves true at once; a refusal arriving later holds the key
   * for later attempts, and the lease's release then frees nothing (its take held no slot).
   */
  confirm(lease: Lease, now: number): boolean | Promise<boolean> {
    const s = lease.state;
    const { demand } = lease;
    const o = s.key.options;
    const take = this.#ledger.take({
      upstream: this.#upstream,
      fingerprint: s.key.fingerprint,
      model: demand.model,
      tokens: demand.tokens,
      limits: { rpm: o.rpm, tpm: o.tpm, maxConcurrent: o.maxConcurrent },
      now,
      countInflight: this.#countInflight,
    });
    lease.take = take;
    if (o.rpm === undefined && o.tpm === undefined && o.maxConcurrent === undefined && !this.#mustAsk(s, demand, now)) {
      void take.answer.then((r) => {
        if (r.ok === false) this.#refused(s, demand, r.why, r.until, now);
        else if (r.ok === true) this.#granted(lease, r, now);
      });
      return true;
    }
    return take.answer.then((r) => {
      if (r.ok === 'local') return true;
      if (r.ok) {
        this.#granted(lease, r, now);
        return true;
      }
      lease.abandon();
      this.#refused(s, demand, r.why, r.until, now);
      return false;
    });
  }

  /** A reload changed the strategy: the store counts slots across replicas only where the strategy reads them. */
  countInflightFor(strategy: string): void {
    this.#countInflight = strategy === 'least_inflight' || strategy === 'headroom';
  }

  /** A response came back; `report` is what its rate-limit headers said, if anything. */
  observed(lease: Pick<Lease, 'state' | 'demand' | 'sharedMark'>, report: Report | undefined, first: boolean, now: number): void {
    this.#responses++;
    if (report === undefined) return;
    this.#reporting++;
    const s = lease.state;
    const model = lease.demand.model;
    // The store needs a bucket only near its end (admission) and once to start from: far from the limit
    // every replica learns enough from its own responses, and reports would cost Redis work per request.
    if (lease.sharedMark !== undefined && (first || isTight(s, { model, tokens: 0 }, now))) {
      this.#ledger.report({ upstream: this.#upstream, fingerprint: s.key.fingerprint, model, mark: lease.sharedMark, ...report, now });
    }
  }

  /**
   * Whether an attempt must wait for the store's yes although the key has no hand-set limit: near the end
   * of a bucket, or when this replica has not seen the key's buckets for the model yet (another replica
   * may have used them up) and the upstream sends rate-limit headers at all.
   */
  #mustAsk(s: KeyState, demand: Demand, now: number): boolean {
    if (isTight(s, demand, now)) return true;
    const scope = s.scopes.get(demand.model);
    const known = scope !== undefined && (scope.requests !== undefined || scope.tokens !== undefined);
    return !known && (this.#reporting > 0 || this.#responses < HEADERLESS_AFTER);
  }

  #granted(lease: Lease, r: Extract<TakeResult, { ok: true }>, now: number): void {
    const s = lease.state;
    lease.sharedMark = r.mark;
    // Less headroom can let no waiter through: nothing to announce.
    if (r.requests !== undefined || r.tokens !== undefined) {
      const scope = scopeOf(s.scopes, lease.demand.model);
      // Less left can still move a bucket's reset earlier: the choice index must look at the key again.
      if (adoptShared(scope, r, now)) this.#host.loosened(s, scope === s.scopes.get('') ? '' : lease.demand.model);
    }
    if (r.inflight !== undefined) s.remoteInflight = Math.max(0, r.inflight - s.inflight);
    this.#host.ticketDrawn(s, r.ticket);
  }

  /** Key-wide limits hold the key for every model; the upstream's buckets only for this one. */
  #refused(s: KeyState, demand: Demand, why: Refusal, until: number, now: number): void {
    const scope = scopeOf(s.scopes, why === 'requests' || why === 'tokens' ? demand.model : '');
    const end = Number.isFinite(until) ? until : now + SLOT_RECHECK_MS;
    if (end >= scope.heldUntil) {
      scope.heldUntil = end;
      scope.heldFor = why === 'slots' ? 'slots' : 'limit';
    }
    this.#host.tightened(s);
    this.#host.changed();
  }
}
