// The window and bucket arithmetic every admission check shares: the pool's own view (key-state.ts),
// the memory store (state/memory-store.ts), and the Lua scripts, which the store contract suite holds
// to the same answers. A leaf module: pure numbers, no imports.

/** Local (hand-set) rpm/tpm windows are fixed minutes. */
export const WINDOW_MS = 60_000;

/** A fixed window for hand-set rpm/tpm. */
export interface Window {
  start: number;
  count: number;
}

/**
 * A limit as the upstream last reported it. `base` is how many requests (or tokens) had been sent on
 * the scope when the reporting request went out, so `remaining - (sent - base)` is what is left now,
 * counting what the upstream has not seen yet. Once `resetAt` passes, the limit is taken as refilled
 * for another `period` until a response reports real numbers: without that, a key whose reset just
 * passed would look unlimited and every waiting request would stampede onto it.
 */
export interface Bucket {
  limit: number;
  remaining: number;
  resetAt: number;
  /** Longest reset the upstream has reported: the best guess at the window's length. */
  period: number;
  base: number;
}

/** Where a request stood in its scope's counts when it was sent; reports are matched against it. */
export interface Mark {
  readonly requests: number;
  readonly tokens: number;
}

/** What is left in a bucket at `now`, given `sent` so far on its scope. */
export function left(b: Bucket, sent: number, now: number): number {
  return now < b.resetAt ? b.remaining - (sent - b.base) : b.limit;
}

/** Starts the bucket's next window when its reset has passed. */
export function roll(b: Bucket, sent: number, now: number): void {
  if (now < b.resetAt) return;
  b.remaining = b.limit;
  b.base = sent;
  b.resetAt = now + Math.max(1, b.period);
}

/** Counts `n` in a fixed window, starting a new one when the last has ended. */
export function countWindow(w: Window, n: number, now: number): void {
  if (now >= w.start + WINDOW_MS) {
    w.start = now;
    w.count = 0;
  }
  w.count += n;
}

/**
 * When a fixed window lets `n` more through under `limit`: 0 = now, else the window's end. A window
 * with nothing in it always lets one request through (a request larger than the whole limit would
 * otherwise never run).
 */
export function windowFullUntil(w: Window, limit: number | undefined, n: number, now: number): number {
  if (limit === undefined || now >= w.start + WINDOW_MS || w.count === 0 || w.count + n <= limit) return 0;
  return w.start + WINDOW_MS;
}

/** When a request bucket lets one more request through: 0 = now, else its reset. */
export function requestsShortUntil(b: Bucket | undefined, sent: number, now: number): number {
  return b !== undefined && left(b, sent, now) <= 0 ? b.resetAt : 0;
}

/**
 * When a token bucket lets `tokens` through: 0 = now, else its reset. A demand larger than the whole
 * limit passes once the window is fresh, or it would never run.
 */
export function tokensShortUntil(b: Bucket | undefined, sentTokens: number, tokens: number, now: number): number {
  return b !== undefined && left(b, sentTokens, now) < Math.min(tokens, b.limit) ? b.resetAt : 0;
}
