// The contract between keypool replicas: facts about keys (cooldown deadlines, disabled keys) that one
// replica learns and every other must respect at once. Each replica decides from its own in-memory pool
// (no round trip on the request path); the store spreads and keeps the facts. `memory` is the reference
// implementation (replicas in one process, e.g. tests); `redis` is the real one.
import type { SharedFact } from '../keys/pool.js';

/** A fact with the upstream it belongs to. */
export type StoredFact = SharedFact & { readonly upstream: string };

export interface SharedStore {
  /**
   * Records a fact and tells the other replicas. Cooldowns only ever extend: a deadline at or before
   * the stored one is dropped. Never throws: while the store is unreachable the fact stays local.
   */
  publish(fact: StoredFact): Promise<void>;
  /** Every fact that still holds (for start-up and resync). */
  load(): Promise<StoredFact[]>;
  /** Facts published by other replicas, as they arrive. */
  subscribe(fn: (fact: StoredFact) => void): void;
  /** Called when the store comes back after being unreachable, so the replica can resync. */
  onReconnect(fn: () => void): void;
  /** False while the store is unreachable (requests are then served from local state alone). */
  readonly healthy: boolean;
  close(): Promise<void>;
}

/** How long a disabled key stays disabled in the shared store without a restart or config change. */
export const DISABLED_TTL_MS = 24 * 3_600_000;

/** When a fact stops holding: a cooldown at its deadline, a disabled flag after DISABLED_TTL_MS. */
export function expiryOf(f: StoredFact, now: number): number {
  return f.kind === 'disabled' ? now + DISABLED_TTL_MS : f.until;
}

/** Identity of a fact in the store: one cooldown per key and model, one disabled flag per key. */
export function factId(f: StoredFact): string {
  return f.kind === 'disabled' ? `${f.upstream}:dis:${f.fingerprint}` : `${f.upstream}:cd:${f.fingerprint}:${f.model}:${f.reason}`;
}

/**
 * The reference store: replicas in one process share one hub. Same semantics as Redis: cooldowns only
 * extend, entries expire at their deadline, publishers do not hear their own facts.
 */
export class MemoryHub {
  readonly #facts = new Map<string, { fact: StoredFact; expiresAt: number }>();
  readonly #subscribers = new Set<{ client: object; fn: (f: StoredFact) => void }>();
  readonly #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  client(): SharedStore {
    const self = {};
    const hub = this;
    return {
      healthy: true,
      async publish(fact) {
        const now = hub.#now();
        const expiresAt = expiryOf(fact, now);
        const id = factId(fact);
        const held = hub.#facts.get(id);
        if (expiresAt <= now || (held !== undefined && held.expiresAt > now && held.expiresAt >= expiresAt)) return;
        hub.#facts.set(id, { fact, expiresAt });
        for (const s of hub.#subscribers) if (s.client !== self) s.fn(fact);
      },
      async load() {
        const now = hub.#now();
        return [...hub.#facts.values()].filter((e) => e.expiresAt > now).map((e) => e.fact);
      },
      subscribe(fn) {
        hub.#subscribers.add({ client: self, fn });
      },
      onReconnect() {
        // Always reachable.
      },
      async close() {
        for (const s of hub.#subscribers) if (s.client === self) hub.#subscribers.delete(s);
      },
    };
  }
}
