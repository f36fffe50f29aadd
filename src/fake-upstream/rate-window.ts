// Per-key fixed-window request counter: pure bookkeeping, the caller passes `now`.

export type WindowDecision =
  | { allowed: true; limit: number; remaining: number; resetMs: number }
  | { allowed: false; limit: number; resetMs: number };

interface Window {
  start: number;
  count: number;
}

export class RateWindows {
  readonly #limit: number;
  readonly #windowMs: number;
  readonly #windows = new Map<string, Window>();

  constructor(limit: number, windowMs: number) {
    this.#limit = limit;
    this.#windowMs = windowMs;
  }

  /** Counts one request for `key` unless its window is full; a rejected request does not count. */
  take(key: string, now: number): WindowDecision {
    let window = this.#windows.get(key);
    if (window === undefined || now >= window.start + this.#windowMs) {
      window = { start: now, count: 0 };
      this.#windows.set(key, window);
    }
    const resetMs = window.start + this.#windowMs - now;
    if (window.count >= this.#limit) return { allowed: false, limit: this.#limit, resetMs };
    window.count += 1;
    return { allowed: true, limit: this.#limit, remaining: this.#limit - window.count, resetMs };
  }

  clear(): void {
    this.#windows.clear();
  }
}
