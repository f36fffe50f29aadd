// Sticky sessions: which key served a session last, so its next request goes there while the key is
// usable (provider prompt caches keep hitting). Bounded: the least recently used session is forgotten.
import type { KeyState } from './key-state.js';

export class StickySessions {
  readonly #max: number;
  readonly #byId = new Map<string, KeyState>();

  /** `max` sessions remembered; 0 turns stickiness off. */
  constructor(max: number) {
    this.#max = max;
  }

  /** How many sessions it remembers at most. */
  get capacity(): number {
    return this.#max;
  }

  get(id: string): KeyState | undefined {
    return this.#max > 0 ? this.#byId.get(id) : undefined;
  }

  remember(id: string, s: KeyState): void {
    if (this.#max === 0) return;
    // Map keeps insertion order: delete + set moves the session to the newest end.
    this.#byId.delete(id);
    this.#byId.set(id, s);
    if (this.#byId.size > this.#max) {
      const oldest = this.#byId.keys().next();
      if (!oldest.done) this.#byId.delete(oldest.value);
    }
  }
}
