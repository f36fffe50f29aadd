// The pool's memory of which keys are blocked, per model, so choosing a key passes over the cooling ones
// in O(log n) instead of asking blockedUntil of each (issue 15). A conservative cache: a key it calls
// blocked is blocked for every demand of the model until its "not before" time; a key it calls maybe free
// is asked again on use. It stays true as long as the pool tells it, at once, of every change that can
// let a key through sooner or change blockedUntil's answer otherwise (`loosened`: a slot freed, a probe
// over, headers read, an enable, a disable, a reset, a hold lifted, a count undone); a change that only
// blocks further (`tightened`: a request counted, a cooldown, a hold) just makes its exact answers for
// nextAvailableAt stale, which a version per key (and per group) detects, except for a key waiting for
// an event, whose leaves it clears (see BlockEntry).
import { blockEntry, blockedUntil, type BlockEntry } from './blocked.js';
import type { Demand, KeyState, Scope } from './key-state.js';
import { ReadyIndex } from './ready-index.js';

/**
 * Models with an index of their own, the most recently asked kept. Model names come from clients, and
 * each index holds ~56 bytes per key; a model past this many is indexed again from scratch (one plain
 * pass) when it comes back.
 */
export const MAX_MODEL_INDEXES = 16;

export type GroupOf = (s: KeyState) => Map<string, Scope> | undefined;

export class ChoiceIndex {
  #states: readonly KeyState[];
  readonly #groupOf: GroupOf;
  readonly #byModel = new Map<string, ReadyIndex>();
  /** Bumped by every change that blocks a key further, by position. */
  #versions: Float64Array;
  readonly #groupVersions = new Map<string, number>();
  readonly #entry: BlockEntry = { notBefore: 0, bound: 0, exact: false, event: false };
  /** Positions with a leaf (in some index) written while the key waited for an event. */
  readonly #waiting = new Set<number>();
  readonly #stale: number[] = [];

  constructor(states: readonly KeyState[], groupOf: GroupOf) {
    this.#states = states;
    this.#groupOf = groupOf;
    this.#versions = new Float64Array(states.length);
  }

  /** The pool's keys were replaced or their state merged in wholesale (a reload, a restore): start over. */
  rebuild(states: readonly KeyState[]): void {
    this.#states = states;
    this.#byModel.clear();
    this.#versions = new Float64Array(states.length);
    this.#waiting.clear();
  }

  /** The index for a model, made (all keys "maybe free") when it has none. */
  forModel(model: string): ReadyIndex {
    const map = this.#byModel;
    let idx = map.get(model);
    if (idx !== undefined) {
      // Least recently used goes first; order matters only once the map is full.
      if (map.size >= MAX_MODEL_INDEXES) {
        map.delete(model);
        map.set(model, idx);
      }
      return idx;
    }
    if (map.size >= MAX_MODEL_INDEXES) map.delete(map.keys().next().value as string);
    idx = new ReadyIndex(this.#states.length);
    map.set(model, idx);
    return idx;
  }

  /** The model's index if it has one, without making one (for checks of what the index claims). */
  peek(model: string): ReadyIndex | undefined {
    return this.#byModel.get(model);
  }

  /** A change that can only keep the key out longer (or not at all). */
  tightened(s: KeyState): void {
    if (this.#states[s.index] !== s) return;
    this.#versions[s.index]!++;
    if (this.#waiting.has(s.index)) this.loosened(s);
  }

  /** A change to a group's scopes that can only keep its keys out longer. */
  groupTightened(group: string | undefined): void {
    if (group === undefined) return;
    this.#groupVersions.set(group, (this.#groupVersions.get(group) ?? 0) + 1);
    for (const i of this.#waiting) if (this.#states[i]!.key.options.group === group) this.loosened(this.#states[i]!);
  }

  /**
   * A change that may let the key through sooner: in `model`'s scope only, or ('' / undefined) in what
   * applies to every model. Its leaves are looked at again on the next query.
   */
  loosened(s: KeyState, model?: string): void {
    // A key a reload removed still ends its leases: it has no leaf.
    if (this.#states[s.index] !== s) return;
    if (model === undefined || model === '') {
      for (const idx of this.#byModel.values()) idx.clear(s.index);
      this.#waiting.delete(s.index);
    } else this.#byModel.get(model)?.clear(s.index);
  }

  /** The key at position i was found blocked for a demand of the model: re-reads its leaf. */
  refresh(idx: ReadyIndex, i: number, model: string, now: number): void {
    const s = this.#states[i]!;
    const e = blockEntry(s, model, now, this.#groupOf(s), this.#entry);
    if (e.event) this.#waiting.add(i);
    idx.set(i, e.notBefore, e.notBefore <= now ? Infinity : e.bound, e.exact, this.stampOf(i));
  }

  /** The key's versions now: a leaf written under another stamp may have been blocked further since. */
  stampOf(i: number): number {
    const g = this.#states[i]!.key.options.group;
    return this.#versions[i]! + (g === undefined ? 0 : (this.#groupVersions.get(g) ?? 0));
  }

  /**
   * KeyPool.nextAvailableAt for a pool with a usable key: `now` if a key can take the demand, else the
   * earliest blockedUntil over all keys. Asks blockedUntil only of keys that may be free and of keys
   * whose bound is below the best answer so far that are not known exactly.
   */
  nextAvailableAt(d: Demand, now: number): number {
    const idx = this.forModel(d.model);
    const states = this.#states;
    let soonest = Infinity;
    for (let i = idx.firstDue(0, now); i !== -1; i = idx.firstDue(i + 1, now)) {
      const s = states[i]!;
      const at = blockedUntil(s, d, now, this.#groupOf(s));
      if (at === 0) return now;
      if (at < soonest) soonest = at;
      this.refresh(idx, i, d.model, now);
    }
    // Every key left is blocked for the whole model: its bound says whether it could beat `soonest`.
    const stale = this.#stale;
    stale.length = 0;
    let free = false;
    soonest = idx.walkBelow(soonest, (i, limit) => {
      if (idx.notBefore(i) <= now) return limit;
      const fresh = idx.stamp(i) === this.stampOf(i);
      if (fresh && idx.exact(i)) return Math.min(limit, idx.bound(i));
      const s = states[i]!;
      const at = blockedUntil(s, d, now, this.#groupOf(s));
      if (!fresh) stale.push(i);
      // Cannot happen while every loosening change is told; answering as the plain scan would is the safe side.
      if (at === 0) {
        free = true;
        return -Infinity;
      }
      return Math.min(limit, at);
    });
    for (const i of stale) this.refresh(idx, i, d.model, now);
    return free ? now : soonest;
  }
}
