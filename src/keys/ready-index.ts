// A tournament tree over a pool's keys (by position) for one model: per key, the time before which no
// demand of the model can take it ("not before") and a lower bound of when it is free. Finds the first
// key at or after a position that may be free now in O(log n), and walks the keys whose bound is below a
// limit, best first. Plain numbers in typed arrays: no objects per key, nothing allocated per query.

/** Levels a walk can go down: positions are below 2^31. */
const MAX_DEPTH = 32;

export class ReadyIndex {
  /** Keys covered: positions 0..n-1. */
  readonly n: number;
  /** Leaves per level; leaf i is node `size + i`, node p's children are 2p and 2p + 1. */
  readonly #size: number;
  /** Min-trees: a node holds the least value of its leaves. */
  readonly #notBefore: Float64Array;
  readonly #bound: Float64Array;
  readonly #exact: Uint8Array;
  /** The key's version when its leaf was written (see ChoiceIndex). */
  readonly #stamp: Float64Array;
  readonly #stack = new Int32Array(MAX_DEPTH * 2);

  /** Every key starts "may be free now": the first queries look at each once. */
  constructor(n: number) {
    this.n = n;
    let size = 1;
    while (size < n) size *= 2;
    this.#size = size;
    this.#notBefore = new Float64Array(2 * size).fill(Infinity);
    this.#bound = new Float64Array(2 * size).fill(Infinity);
    this.#notBefore.fill(0, size, size + n);
    for (let p = size - 1; p >= 1; p--) this.#notBefore[p] = Math.min(this.#notBefore[2 * p]!, this.#notBefore[2 * p + 1]!);
    this.#exact = new Uint8Array(n);
    this.#stamp = new Float64Array(n).fill(-1);
  }

  notBefore(i: number): number {
    return this.#notBefore[this.#size + i]!;
  }

  bound(i: number): number {
    return this.#bound[this.#size + i]!;
  }

  exact(i: number): boolean {
    return this.#exact[i] === 1;
  }

  stamp(i: number): number {
    return this.#stamp[i]!;
  }

  /** Writes a key's leaf and mends the path above it (stopping where nothing changes). */
  set(i: number, notBefore: number, bound: number, exact: boolean, stamp: number): void {
    this.#exact[i] = exact ? 1 : 0;
    this.#stamp[i] = stamp;
    const nb = this.#notBefore;
    const lb = this.#bound;
    let p = this.#size + i;
    if (nb[p] === notBefore && lb[p] === bound) return;
    nb[p] = notBefore;
    lb[p] = bound;
    for (p >>= 1; p >= 1; p >>= 1) {
      const a = Math.min(nb[2 * p]!, nb[2 * p + 1]!);
      const b = Math.min(lb[2 * p]!, lb[2 * p + 1]!);
      if (nb[p] === a && lb[p] === b) return;
      nb[p] = a;
      lb[p] = b;
    }
  }

  /** The key may be free now: the next query looks at it again. */
  clear(i: number): void {
    this.set(i, 0, Infinity, false, -1);
  }

  /** The first position ≥ from whose key may be free at `now` (not before ≤ now), -1 when none. */
  firstDue(from: number, now: number): number {
    if (from >= this.n) return -1;
    const nb = this.#notBefore;
    const size = this.#size;
    let p = size + from;
    for (;;) {
      if (nb[p]! <= now) {
        while (p < size) p = nb[2 * p]! <= now ? 2 * p : 2 * p + 1;
        return p - size;
      }
      // Up while p is a right child, then over to the next subtree on the right; past the root: none.
      while (p & 1) p >>= 1;
      if (p === 0) return -1;
      p++;
    }
  }

  /**
   * Calls `visit(i, limit)` for each key whose bound is below `limit`, smaller bounds first; `visit`
   * returns the new limit (never larger). Subtrees whose least bound is not below the limit are skipped.
   * `visit` must not write the index. Returns the last limit.
   */
  walkBelow(limit: number, visit: (i: number, limit: number) => number): number {
    const lb = this.#bound;
    const size = this.#size;
    const stack = this.#stack;
    let top = 0;
    stack[top++] = 1;
    while (top > 0) {
      const p = stack[--top]!;
      if (lb[p]! >= limit) continue;
      if (p >= size) {
        limit = visit(p - size, limit);
        continue;
      }
      // The smaller child is popped first: its bound can only tighten the limit for the other.
      const l = 2 * p;
      if (lb[l]! <= lb[l + 1]!) {
        stack[top++] = l + 1;
        stack[top++] = l;
      } else {
        stack[top++] = l;
        stack[top++] = l + 1;
      }
    }
    return limit;
  }
}
