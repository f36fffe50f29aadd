// A waiting room over a real KeyPool and the fake clock, with leases counted (every lease must end exactly
// once) and an optional stand-in for a shared store whose answers the test releases by hand.
import { DEFAULT_KEY_OPTIONS, Key } from '../../src/keys/key.js';
import { ANY_MODEL, type Demand } from '../../src/keys/key-state.js';
import { KeyPool, type Lease } from '../../src/keys/pool.js';
import { WaitingRoom, type RoomPool, type WaitResult } from '../../src/keys/waiting-room.js';
import { FakeClock } from './fake-clock.js';

export const flush = (): Promise<void> => new Promise((r) => setImmediate(r));

/** Settled yet? The promise's result, or 'pending' after the current turn's callbacks ran. */
export const peek = <T>(p: Promise<T>): Promise<T | 'pending'> => Promise.race([p, flush().then(() => 'pending' as const)]);

export interface RoomOptions {
  maxConcurrent?: number;
  maxSize?: number;
  keys?: number;
}

export interface WaitOptions {
  signal?: AbortSignal;
  maxWaitMs?: number;
  demand?: Demand;
  /** The key is confirmed by a "store": tryAcquire returns a promise the test answers with `answer`. */
  async?: boolean;
}

/** A store answer not yet given: grant hands the lease over, refuse abandons it and answers "no key". */
export interface PendingAnswer {
  grant(): void;
  refuse(): void;
}

export function roomSetup(opts: RoomOptions = {}) {
  const clock = new FakeClock(0);
  const keys = Array.from(
    { length: opts.keys ?? 1 },
    (_, i) => new Key(`k${i + 1}`, `s${i + 1}`, { ...DEFAULT_KEY_OPTIONS, maxConcurrent: opts.maxConcurrent }),
  );
  const pool = new KeyPool('u', keys);
  const calls = { nextAvailableAt: 0, tryAcquire: 0 };
  // The room sees the pool only through RoomPool: counting its questions shows how much work a dispatch does.
  const view: RoomPool = {
    watch: (fn) => pool.watch(fn),
    nextAvailableAt: (d, now) => {
      calls.nextAvailableAt++;
      return pool.nextAvailableAt(d, now);
    },
    get usable() {
      return pool.usable;
    },
  };
  const room = new WaitingRoom(view, clock, opts.maxSize ?? 100);
  const leases = { acquired: 0, givenBack: 0, refused: 0, endCalls: new Map<Lease, number>() };
  const count = (l: Lease | undefined): Lease | undefined => {
    if (l === undefined) return undefined;
    leases.acquired++;
    leases.endCalls.set(l, 0);
    const end = l.end.bind(l);
    const abandon = l.abandon.bind(l);
    const bump = (): void => void leases.endCalls.set(l, (leases.endCalls.get(l) ?? 0) + 1);
    l.end = (outcome) => (bump(), end(outcome));
    l.abandon = () => (bump(), abandon());
    return l;
  };
  const acquire = (demand: Demand = ANY_MODEL): Lease | undefined => count(pool.acquire({ demand, now: clock.now() }));
  const pending: PendingAnswer[] = [];
  const wait = (client: string, o: WaitOptions = {}): Promise<WaitResult> => {
    const demand = o.demand ?? ANY_MODEL;
    return room.wait({
      client,
      demand,
      maxWaitMs: o.maxWaitMs ?? 10_000,
      signal: o.signal ?? new AbortController().signal,
      tryAcquire: () => {
        calls.tryAcquire++;
        const l = acquire(demand);
        if (o.async !== true || l === undefined) return l;
        // Like a shared store: the key is taken locally at once, the store's yes or no comes later.
        return new Promise<Lease | undefined>((resolve) => {
          pending.push({
            grant: () => resolve(l),
            refuse: () => {
              leases.refused++;
              l.abandon();
              resolve(undefined);
            },
          });
        });
      },
      giveBack: (l) => {
        leases.givenBack++;
        l.abandon();
      },
    });
  };
  /** Every lease ended exactly once and no slot is held. */
  const leaks = (): string[] => {
    const out: string[] = [];
    for (const [l, n] of leases.endCalls) if (n !== 1 || !l.ended) out.push(`${l.state.key.name}: ${n} end/abandon calls`);
    for (const s of pool.states()) if (s.inflight !== 0) out.push(`${s.key.name}: ${s.inflight} in flight`);
    return out;
  };
  return { clock, pool, room, calls, leases, pending, acquire, wait, leaks };
}

/** Settles each promise into a record of how it ended, counting settlements. */
export function outcomeOf(p: Promise<WaitResult>): { kind: string | undefined; settlements: number; lease: Lease | undefined } {
  const o = { kind: undefined as string | undefined, settlements: 0, lease: undefined as Lease | undefined };
  p.then(
    (r) => {
      o.settlements++;
      o.kind = r.kind;
      if (r.kind === 'acquired') o.lease = r.lease;
    },
    () => {
      o.settlements++;
      o.kind = 'aborted';
    },
  );
  return o;
}
