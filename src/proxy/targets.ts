// What serving a request on one upstream takes, built once per upstream (and again on reload): its
// pool and waiting room, its attempt-loop settings, its scrubber and its circuit breaker. A request's
// chain walks these by name. Circuits outlive reloads (a reload must not close an open one).
import type { Config, Upstream } from '../config/load.js';
import type { Clock } from '../clock.js';
import type { KeyPool } from '../keys/pool.js';
import type { WaitingRoom } from '../keys/waiting-room.js';
import { createScrubber } from '../keys/scrub.js';
import { Circuit } from './circuit.js';
import type { RotateDeps } from './rotate.js';

export interface UpstreamRuntime {
  readonly pool: KeyPool;
  readonly room: WaitingRoom;
}

export interface Target {
  readonly upstream: Upstream;
  readonly pool: KeyPool;
  readonly rotate: RotateDeps;
  readonly circuit: Circuit | undefined;
}

export interface TargetDeps {
  readonly config: Config;
  readonly runtimes: ReadonlyMap<string, UpstreamRuntime>;
  readonly clock: Clock;
  readonly random: () => number;
  /** Told when a circuit opens (shared with other replicas). */
  readonly onCircuitOpen?: ((upstream: string, until: number) => void) | undefined;
}

/** The circuits of every upstream, kept across reloads; one whose settings changed starts closed. */
export class Circuits {
  readonly #byUpstream = new Map<string, { settings: string; circuit: Circuit }>();

  for(u: Upstream, onOpen: ((until: number) => void) | undefined): Circuit | undefined {
    if (u.circuit === undefined) {
      this.#byUpstream.delete(u.name);
      return undefined;
    }
    const settings = JSON.stringify(u.circuit);
    const held = this.#byUpstream.get(u.name);
    if (held !== undefined && held.settings === settings) return held.circuit;
    const circuit = new Circuit(u.circuit, onOpen);
    this.#byUpstream.set(u.name, { settings, circuit });
    return circuit;
  }

  /** Forgets the circuits of upstreams a reload removed. */
  keepOnly(names: ReadonlySet<string>): void {
    for (const name of [...this.#byUpstream.keys()]) if (!names.has(name)) this.#byUpstream.delete(name);
  }

  get(upstream: string): Circuit | undefined {
    return this.#byUpstream.get(upstream)?.circuit;
  }

  /** Every upstream's circuit, by upstream name (metrics, the admin view). */
  *entries(): IterableIterator<[string, Circuit]> {
    for (const [name, held] of this.#byUpstream) yield [name, held.circuit];
  }
}

export function buildTargets(d: TargetDeps, circuits: Circuits): Map<string, Target> {
  const { config, clock } = d;
  const { retry, cooldown } = config;
  const out = new Map<string, Target>();
  circuits.keepOnly(new Set(config.upstreams.map((u) => u.name)));
  for (const u of config.upstreams) {
    const runtime = d.runtimes.get(u.name);
    if (!runtime) throw new Error(`no pool for upstream ${u.name}`);
    const circuit = circuits.for(u, d.onCircuitOpen === undefined ? undefined : (until) => d.onCircuitOpen?.(u.name, until));
    out.set(u.name, {
      upstream: u,
      pool: runtime.pool,
      circuit,
      rotate: {
        pool: runtime.pool,
        room: runtime.room,
        clock,
        random: d.random,
        retry,
        policy: { ...cooldown, replayAfterSend: retry.replayAfterSend, dialect: u.format },
        scrub: createScrubber(u.keys),
        circuit,
      },
    });
  }
  return out;
}
