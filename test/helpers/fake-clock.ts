// A Clock driven by hand: time moves only on advance(), so waits and deadlines are deterministic.
import type { Clock } from '../../src/clock.js';

interface Pending {
  at: number;
  fire: () => void;
  sleeper: boolean;
}

/** More timers than this firing in one advance means a loop, not a test. */
const MAX_FIRES_PER_ADVANCE = 100_000;

export class FakeClock implements Clock {
  #now: number;
  readonly #pending = new Set<Pending>();

  constructor(start = Date.parse('2026-11-28T12:00:00Z')) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const entry: Pending = { at: this.#now + Math.max(0, ms), fire: () => finish(resolve), sleeper: true };
      const onAbort = (): void => finish(() => reject(signal?.reason));
      const finish = (then: () => void): void => {
        this.#pending.delete(entry);
        signal?.removeEventListener('abort', onAbort);
        then();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#pending.add(entry);
    });
  }

  timer(ms: number, fn: () => void): () => void {
    const entry: Pending = { at: this.#now + Math.max(0, ms), fire: fn, sleeper: false };
    this.#pending.add(entry);
    return () => this.#pending.delete(entry);
  }

  /** Sleeps in progress (requests waiting for a key or a backoff). */
  get sleepers(): number {
    return [...this.#pending].filter((p) => p.sleeper).length;
  }

  /** Moves time forward, firing what falls due in order. */
  advance(ms: number): void {
    const target = this.#now + ms;
    // Bounded: a timer that re-arms itself at the same instant would otherwise spin for ever.
    for (let fired = 0; ; fired++) {
      if (fired > MAX_FIRES_PER_ADVANCE) throw new Error(`FakeClock: more than ${MAX_FIRES_PER_ADVANCE} timers fired in one advance (a timer loop?)`);
      const due = [...this.#pending].filter((p) => p.at <= target).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      this.#now = Math.max(this.#now, due.at);
      this.#pending.delete(due);
      due.fire();
    }
    this.#now = target;
  }

  /** Resolves once `n` sleeps are pending; bounded so a broken test fails instead of hanging. */
  async waitForSleepers(n = 1, timeoutMs = 5_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (this.sleepers < n) {
      if (Date.now() > end) throw new Error(`expected ${n} pending sleep(s), have ${this.sleepers}`);
      await new Promise((r) => setTimeout(r, 2));
    }
  }
}

/** Moves a fake clock on while `p` is pending (waits in the room run on it), bounded in steps. */
export async function drive<T>(clock: FakeClock, p: Promise<T>, stepMs = 100): Promise<T> {
  let settled = false;
  void p.then(
    () => (settled = true),
    () => (settled = true),
  );
  for (let i = 0; i < 1_000 && !settled; i++) {
    await new Promise((r) => setTimeout(r, 1));
    clock.advance(stepMs);
  }
  return p;
}
