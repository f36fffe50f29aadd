// One upstream's keys and what keypool knows about each: cooldowns, disabled keys, failure streaks,
// in-flight counts. Every request shares one pool, so a cooldown one request sees applies to all at once.
// No I/O and no clock of its own: callers pass `now`.
import type { Key } from './key.js';

export type CoolReason = 'rate_limited' | 'out_of_credit';
export type DisableReason = 'unauthorized' | 'forbidden';

export interface KeyStats {
  /** Attempts sent with this key. */
  attempts: number;
  /** Attempts that got a 2xx. */
  successes: number;
  rateLimited: number;
  outOfCredit: number;
  serverErrors: number;
}

export interface KeyState {
  readonly key: Key;
  readonly index: number;
  /** Epoch ms before which the key is not used; only ever moves later. */
  cooldownUntil: number;
  coolReason: CoolReason | undefined;
  disabled: DisableReason | undefined;
  /** Consecutive rate-limit failures; a success clears it. */
  streak: number;
  inflight: number;
  readonly stats: KeyStats;
}

export type PoolEvent =
  | { type: 'cooldown'; upstream: string; key: string; reason: CoolReason; until: number; extended: boolean }
  | { type: 'disabled'; upstream: string; key: string; reason: DisableReason }
  | { type: 'success'; upstream: string; key: string };

export type PoolListener = (event: PoolEvent) => void;

const NO_KEYS: ReadonlySet<KeyState> = new Set();

export class KeyPool {
  readonly upstream: string;
  readonly #states: KeyState[];
  readonly #listener: PoolListener | undefined;
  #cursor = 0;
  #usable: number;

  constructor(upstream: string, keys: readonly Key[], listener?: PoolListener) {
    this.upstream = upstream;
    this.#listener = listener;
    this.#states = keys.map((key, index) => ({
      key,
      index,
      cooldownUntil: 0,
      coolReason: undefined,
      disabled: undefined,
      streak: 0,
      inflight: 0,
      stats: { attempts: 0, successes: 0, rateLimited: 0, outOfCredit: 0, serverErrors: 0 },
    }));
    this.#usable = this.#states.length;
  }

  get size(): number {
    return this.#states.length;
  }

  /** Keys not disabled. */
  get usable(): number {
    return this.#usable;
  }

  states(): readonly Readonly<KeyState>[] {
    return this.#states;
  }

  /**
   * Round robin over keys available at `now` and not in `exclude`. Scans from the cursor, so the
   * usual case (the next key is fine) costs O(1) however large the pool is.
   */
  pick(now: number, exclude: ReadonlySet<KeyState> = NO_KEYS): KeyState | undefined {
    const n = this.#states.length;
    for (let i = 0; i < n; i++) {
      const idx = (this.#cursor + i) % n;
      const s = this.#states[idx]!;
      if (s.disabled === undefined && s.cooldownUntil <= now && !exclude.has(s)) {
        this.#cursor = (idx + 1) % n;
        return s;
      }
    }
    return undefined;
  }

  /** When the first usable key is available again (`now` if one is), or undefined if none is usable. */
  nextAvailableAt(now: number): number | undefined {
    let best: number | undefined;
    for (const s of this.#states) {
      if (s.disabled !== undefined) continue;
      const at = Math.max(now, s.cooldownUntil);
      if (best === undefined || at < best) best = at;
      if (at === now) break;
    }
    return best;
  }

  begin(s: KeyState): void {
    s.inflight++;
    s.stats.attempts++;
  }

  end(s: KeyState): void {
    s.inflight = Math.max(0, s.inflight - 1);
  }

  succeeded(s: KeyState): void {
    s.streak = 0;
    s.stats.successes++;
    this.#listener?.({ type: 'success', upstream: this.upstream, key: s.key.name });
  }

  /** Cool a key until `until`. A cooldown is only ever extended, never shortened. */
  cool(s: KeyState, until: number, reason: CoolReason): void {
    if (reason === 'rate_limited') {
      s.streak++;
      s.stats.rateLimited++;
    } else {
      s.stats.outOfCredit++;
    }
    const extended = until > s.cooldownUntil;
    if (extended) {
      s.cooldownUntil = until;
      s.coolReason = reason;
    }
    this.#listener?.({ type: 'cooldown', upstream: this.upstream, key: s.key.name, reason, until: s.cooldownUntil, extended });
  }

  disable(s: KeyState, reason: DisableReason): void {
    if (s.disabled !== undefined) return;
    s.disabled = reason;
    this.#usable--;
    this.#listener?.({ type: 'disabled', upstream: this.upstream, key: s.key.name, reason });
  }

  serverError(s: KeyState): void {
    s.stats.serverErrors++;
  }
}
