// A rolling one-minute count ("requests per minute"): sixty one-second slots, each stamped with the
// second it counts, so a slot left over from an earlier minute is recognised and ignored. Fixed memory
// (a few hundred bytes), O(1) to add, O(60) to read; `now` is passed in.

export const SLOTS = 60;
const SLOT_MS = 1_000;

export class MinuteWindow {
  readonly #counts = new Float64Array(SLOTS);
  /** Second (epoch seconds + 1, so 0 means "never") each slot counts. */
  readonly #stamps = new Float64Array(SLOTS);

  add(now: number, n = 1): void {
    const second = Math.floor(now / SLOT_MS) + 1;
    const i = second % SLOTS;
    if (this.#stamps[i] !== second) {
      this.#stamps[i] = second;
      this.#counts[i] = 0;
    }
    this.#counts[i]! += n;
  }

  /** What was added in the last minute: this second and the 59 before it. */
  total(now: number): number {
    const second = Math.floor(now / SLOT_MS) + 1;
    let sum = 0;
    for (let i = 0; i < SLOTS; i++) {
      const age = second - this.#stamps[i]!;
      if (age >= 0 && age < SLOTS) sum += this.#counts[i]!;
    }
    return sum;
  }
}
