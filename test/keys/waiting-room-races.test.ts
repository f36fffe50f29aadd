// The waiting room against a store that answers late: waiters that leave while their key is being
// confirmed, and random interleavings of waits, aborts, timeouts, answers and pool changes. Every lease
// must end exactly once and every waiter settle exactly once.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Demand } from '../../src/keys/key-state.js';
import { flush, outcomeOf, peek, roomSetup as setup } from '../helpers/room.js';

const GPT4O: Demand = { model: 'gpt-4o', tokens: 1 };
const MINI: Demand = { model: 'gpt-4o-mini', tokens: 1 };

describe('WaitingRoom with a store that confirms keys', () => {
  it('a waiter aborted while the store answers leaves at once; its key is given back when the answer comes', async () => {
    const { room, pending, acquire, wait, leaks, leases } = setup({ maxConcurrent: 1 });
    const holder = acquire()!;
    const ac = new AbortController();
    const p = wait('a', { signal: ac.signal, async: true });
    await flush();
    holder.end();
    await flush();
    expect(pending).toHaveLength(1);
    ac.abort(new Error('gone'));
    await expect(p).rejects.toThrow('gone');
    expect(room.size).toBe(0);
    pending[0]!.grant();
    await flush();
    expect(leases.givenBack).toBe(1);
    expect(leaks()).toEqual([]);
  });

  it('a waiter that times out while the store answers gets timeout; its key is given back, not served', async () => {
    const { clock, room, pending, acquire, wait, leaks, leases } = setup({ maxConcurrent: 1 });
    const holder = acquire()!;
    const p = wait('a', { maxWaitMs: 1000, async: true });
    await flush();
    holder.end();
    await flush();
    clock.advance(1000);
    expect(await p).toEqual({ kind: 'timeout' });
    pending[0]!.grant();
    await flush();
    expect(leases.givenBack).toBe(1);
    expect(room.metrics).toMatchObject({ served: 0, timedOut: 1 });
    expect(leaks()).toEqual([]);
  });

  it('awaits the store before serving the next client, then serves it', async () => {
    const { room, pending, calls, acquire, wait, leaks } = setup({ maxConcurrent: 2 });
    const h1 = acquire()!;
    const h2 = acquire()!;
    const a = outcomeOf(wait('a', { async: true }));
    const b = outcomeOf(wait('b', { async: true }));
    await flush();
    h1.end();
    h2.end();
    await flush();
    expect(calls.tryAcquire).toBe(1);
    pending[0]!.grant();
    await flush();
    expect(a.kind).toBe('acquired');
    expect(calls.tryAcquire).toBe(2);
    pending[1]!.grant();
    await flush();
    expect(b.kind).toBe('acquired');
    expect(room.size).toBe(0);
    a.lease!.end();
    b.lease!.end();
    expect(leaks()).toEqual([]);
  });

  it('a store refusal keeps the waiter in the room; the change it makes has the room ask again', async () => {
    const { room, pending, calls, acquire, wait, leaks } = setup({ maxConcurrent: 1 });
    const holder = acquire()!;
    const a = outcomeOf(wait('a', { async: true }));
    await flush();
    holder.end();
    await flush();
    expect(calls.tryAcquire).toBe(1);
    // The refusal gives the local slot back: a pool change, so the room asks again.
    pending[0]!.refuse();
    await flush();
    expect(a.kind).toBeUndefined();
    expect(room.size).toBe(1);
    expect(calls.tryAcquire).toBe(2);
    pending[1]!.grant();
    await flush();
    expect(a.kind).toBe('acquired');
    a.lease!.end();
    expect(leaks()).toEqual([]);
  });

  it('a refusal that holds the key: the timer wakes the waiter when the hold ends', async () => {
    const { clock, pool, room, pending, calls, acquire, wait, leaks } = setup({ maxConcurrent: 1 });
    const holder = acquire()!;
    const a = outcomeOf(wait('a', { async: true }));
    await flush();
    holder.end();
    await flush();
    // As SharedAdmission does: the key is held back for a while, then the lease abandoned.
    pool.cool(pool.states()[0]!, '', 250, 'rate_limited', 0);
    pending[0]!.refuse();
    await flush();
    expect(calls.tryAcquire).toBe(1);
    clock.advance(250);
    await flush();
    expect(calls.tryAcquire).toBe(2);
    pending[1]!.grant();
    await flush();
    expect(a.kind).toBe('acquired');
    expect(room.size).toBe(0);
    a.lease!.end();
    expect(leaks()).toEqual([]);
  });

  it('a no given at once that holds the key (a pool change): the timer still wakes the waiter', async () => {
    const { clock, pool, room } = setup();
    const s = pool.states()[0]!;
    let asked = 0;
    const p = room.wait({
      client: 'a',
      demand: { model: 'm', tokens: 1 },
      maxWaitMs: 60_000,
      signal: new AbortController().signal,
      tryAcquire: () => {
        if (++asked > 1) return pool.acquire({ demand: { model: 'm', tokens: 1 }, now: clock.now() });
        // Like a refusal: the key is held for 300 ms and the slot given back, a change the room hears.
        pool.cool(s, 'm', clock.now() + 300, 'rate_limited', clock.now());
        pool.acquire({ demand: { model: 'x', tokens: 1 }, now: clock.now() })!.end();
        return undefined;
      },
      giveBack: (l) => l.abandon(),
    });
    await flush();
    expect(asked).toBe(1);
    clock.advance(300);
    const r = await p;
    expect(r.kind).toBe('acquired');
    expect(asked).toBe(2);
    expect(room.size).toBe(0);
  });

  it('a full room that asks the store for a free model: an abort before the answer gives the key back', async () => {
    const { pool, room, pending, wait, leaks, leases } = setup({ maxSize: 1 });
    pool.cool(pool.states()[0]!, 'gpt-4o', 60_000, 'rate_limited', 0);
    void wait('a', { demand: GPT4O, maxWaitMs: 5000 });
    const ac = new AbortController();
    const p = wait('b', { demand: MINI, signal: ac.signal, async: true });
    expect(await peek(p)).toBe('pending');
    expect(pending).toHaveLength(1);
    ac.abort(new Error('gone'));
    await expect(p).rejects.toThrow('gone');
    pending[0]!.grant();
    await flush();
    expect(leases.givenBack).toBe(1);
    expect(room.size).toBe(1);
    expect(room.metrics.servedWhileFull).toBe(0);
    expect(leaks()).toEqual([]);
  });
});

type Cmd =
  | { t: 'wait'; client: number; model: number; tokens: number; maxWaitMs: number; async: boolean }
  | { t: 'abort'; i: number }
  | { t: 'advance'; ms: number }
  | { t: 'answer'; i: number; grant: boolean }
  | { t: 'end'; i: number }
  | { t: 'cool'; key: number; model: number; ms: number }
  | { t: 'disable'; key: number }
  | { t: 'flush' };

const cmd: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ t: fc.constant('wait' as const), client: fc.nat(2), model: fc.nat(2), tokens: fc.nat(3), maxWaitMs: fc.nat(5000), async: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('abort' as const), i: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('advance' as const), ms: fc.nat(3000) }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('answer' as const), i: fc.nat(), grant: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('end' as const), i: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('cool' as const), key: fc.nat(1), model: fc.nat(2), ms: fc.nat(4000) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('disable' as const), key: fc.nat(1) }) },
  { weight: 2, arbitrary: fc.constant({ t: 'flush' as const }) },
);

describe('WaitingRoom property', () => {
  it('every waiter settles exactly once, the room empties, and no lease leaks', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(cmd, { maxLength: 60 }), fc.nat(3), async (cmds, maxSize) => {
        const { clock, pool, room, pending, wait, leaks, leases } = setup({ keys: 2, maxConcurrent: 1, maxSize });
        const waiters: { ac: AbortController; o: ReturnType<typeof outcomeOf> }[] = [];
        const held = new Set<NonNullable<ReturnType<typeof outcomeOf>['lease']>>();
        const collect = (): void => {
          for (const w of waiters) if (w.o.lease !== undefined && !w.o.lease.ended) held.add(w.o.lease);
        };
        const answer = (i: number, grant: boolean): void => {
          const a = pending.splice(i % pending.length, 1)[0]!;
          if (grant) a.grant();
          else a.refuse();
        };
        for (const c of cmds) {
          if (c.t === 'wait') {
            const ac = new AbortController();
            const demand = { model: `m${c.model}`, tokens: c.tokens * 100 };
            waiters.push({ ac, o: outcomeOf(wait(`c${c.client}`, { signal: ac.signal, maxWaitMs: c.maxWaitMs, demand, async: c.async })) });
          } else if (c.t === 'abort' && waiters.length > 0) waiters[c.i % waiters.length]!.ac.abort(new Error('gone'));
          else if (c.t === 'advance') clock.advance(c.ms);
          else if (c.t === 'answer' && pending.length > 0) answer(c.i, c.grant);
          else if (c.t === 'end') {
            collect();
            const l = [...held][c.i % Math.max(1, held.size)];
            if (l !== undefined) {
              held.delete(l);
              l.end();
            }
          } else if (c.t === 'cool') pool.cool(pool.states()[c.key]!, `m${c.model}`, clock.now() + c.ms, 'rate_limited', clock.now());
          else if (c.t === 'disable') pool.disable(pool.states()[c.key]!, 'unauthorized', 1e15);
          else if (c.t === 'flush') await flush();
        }
        // Wind down: answers given last are handled, every timeout falls due, every store answers, every
        // served lease ends.
        await flush();
        for (let round = 0; round < 50 && (room.size > 0 || pending.length > 0 || waiters.some((w) => w.o.settlements === 0)); round++) {
          await flush();
          clock.advance(10_000);
          while (pending.length > 0) answer(0, round % 2 === 0);
          await flush();
          collect();
          for (const l of held) l.end();
          held.clear();
        }
        collect();
        for (const l of held) l.end();
        expect(room.size).toBe(0);
        expect(waiters.map((w) => w.o.settlements)).toEqual(waiters.map(() => 1));
        const served = waiters.filter((w) => w.o.kind === 'acquired').length;
        expect(leases.acquired).toBe(served + leases.givenBack + leases.refused);
        expect(leaks()).toEqual([]);
        const m = room.metrics;
        const aborted = waiters.filter((w) => w.o.kind === 'aborted').length;
        expect(m.served + m.servedWhileFull).toBe(served);
        expect(m.served + m.servedWhileFull + m.timedOut + m.rejectedFull + m.noKeys + aborted).toBe(waiters.length);
      }),
      { numRuns: 300 },
    );
  });
});
