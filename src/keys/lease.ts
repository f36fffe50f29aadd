// An acquisition as a value. Taking a key for one attempt yields a Lease that carries everything the
// attempt needs later (the key, where it stood in its scope's counts, the probe it is, the shared
// store's take) and knows how to end itself, exactly once. Nothing about an attempt is read back from
// the pool afterwards: a later acquisition cannot overwrite it.
import type { Demand, KeyState, Scope } from './key-state.js';
import type { LedgerTake, UsageCounter } from './ledger.js';
import type { Mark } from './windows.js';

/** What a lease needs from its pool to end. */
export interface LeaseOwner {
  /** The slot is free again: count it down and tell the room. */
  freeSlot(s: KeyState): void;
  /** Undo what acquiring counted, for an attempt that never went out. */
  uncount(s: KeyState, demand: Demand): void;
  /** A probe of the key's scope has its answer (see KeyPool.probeOver). */
  probeOver(s: KeyState, probe: Scope, ok: boolean): void;
}

export class Lease {
  readonly state: KeyState;
  readonly demand: Demand;
  /** Where the request stood in its scope's counts when it was taken: its response's report is matched to it. */
  readonly mark: Mark;
  /** The shared store's take, once `KeyPool.confirm` asked for one. */
  take: LedgerTake | undefined;
  /** The request's place in the shared counts; set when the store grants the take (possibly after the attempt left). */
  sharedMark: Mark | undefined;
  readonly #owner: LeaseOwner;
  #probe: Scope | undefined;
  #ended = false;

  constructor(owner: LeaseOwner, state: KeyState, demand: Demand, mark: Mark, probe: Scope | undefined) {
    this.#owner = owner;
    this.state = state;
    this.demand = demand;
    this.mark = mark;
    this.#probe = probe;
  }

  /** True when this attempt is the probe of a scope that was cooled for long. */
  get probing(): boolean {
    return this.#probe !== undefined;
  }

  get ended(): boolean {
    return this.#ended;
  }

  /**
   * The answer's head is in: if this attempt is a probe, its scope is open to everyone again (and owes
   * no more probes when `ok`). Called at the head, not the end: a good probe's stream must not keep the
   * key from others. A failed probe is settled only after the failure cooled the key (the same tick).
   */
  answered(ok: boolean): void {
    const probe = this.#probe;
    if (probe === undefined) return;
    this.#probe = undefined;
    this.#owner.probeOver(this.state, probe, ok);
  }

  /** The attempt is over (answered to its end, failed or cancelled): frees its slot, counts its outcome. Idempotent. */
  end(outcome?: UsageCounter): void {
    if (this.#ended) return;
    this.#ended = true;
    this.answered(false);
    this.take?.release(outcome);
    this.#owner.freeSlot(this.state);
  }

  /** The attempt never went out (the store refused the key, or its waiter left): undoes what acquiring counted. Idempotent. */
  abandon(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.answered(false);
    this.take?.release(undefined);
    this.#owner.uncount(this.state, this.demand);
    this.#owner.freeSlot(this.state);
  }
}
