// Ties a replica's pools to the shared store: local cooldowns and disables go out as they happen, facts
// and freed slots from other replicas come in and are applied at once, and everything is reloaded at start and after the
// store comes back from an outage.
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import type { KeyPool, PoolEvent } from '../keys/pool.js';
import type { StateStore, StoredFact } from './store.js';

export class Replication {
  readonly #pools: ReadonlyMap<string, KeyPool>;
  readonly #store: StateStore;
  readonly #clock: Clock;
  readonly #logger: Logger;

  /** Where another replica's open circuit is applied (the proxy's circuits). */
  readonly #onCircuit: (upstream: string, until: number, now: number) => void;

  constructor(pools: ReadonlyMap<string, KeyPool>, store: StateStore, clock: Clock, logger: Logger, onCircuit: (upstream: string, until: number, now: number) => void = () => {}) {
    this.#onCircuit = onCircuit;
    this.#pools = pools;
    this.#store = store;
    this.#clock = clock;
    this.#logger = logger;
    store.subscribe((f) => this.#apply(f, true));
    store.onFreed((upstream, fingerprint) => this.#pools.get(upstream)?.freed(fingerprint));
    store.onReconnect(() => void this.sync());
  }

  /** A local pool event: share what other replicas must respect. */
  local(e: PoolEvent): void {
    if (e.type === 'cooldown') {
      if (!e.extended) return;
      const { upstream, fingerprint, model, reason, until, streak } = e;
      void this.#store.publish({ upstream, kind: 'cooldown', fingerprint, model, reason, until, streak });
    } else {
      void this.#store.publish({ upstream: e.upstream, kind: 'disabled', fingerprint: e.fingerprint, reason: e.reason });
    }
  }

  /** This replica opened an upstream's circuit: the others skip the upstream too. */
  circuitOpened(upstream: string, until: number): void {
    void this.#store.publish({ kind: 'circuit', upstream, until });
  }

  /** Pushes what this replica knows and pulls what the others know (start-up, and after an outage). */
  async sync(): Promise<void> {
    const now = this.#clock.now();
    const mine: Promise<void>[] = [];
    for (const [upstream, pool] of this.#pools) {
      for (const f of pool.sharedFacts(now)) mine.push(this.#store.publish({ ...f, upstream }));
    }
    await Promise.all(mine);
    for (const f of await this.#store.load()) this.#apply(f, false);
  }

  #apply(f: StoredFact, live: boolean): void {
    if (f.kind === 'circuit') {
      // The circuit checks `until` itself (finite, capped at its own openMs); a garbled upstream name is unknown.
      if (typeof f.upstream === 'string') this.#onCircuit(f.upstream, f.until, this.#clock.now());
      return;
    }
    const name = this.#pools.get(f.upstream)?.applyShared(f, this.#clock.now());
    if (name !== undefined && live) {
      this.#logger.debug({ upstream: f.upstream, key: name, fact: f.kind, model: f.kind === 'cooldown' ? f.model : undefined }, 'applied a fact from another replica');
    }
  }
}
