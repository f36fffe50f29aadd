import { describe, expect, it } from 'vitest';
import { DEFAULT_KEY_OPTIONS, Key } from '../../src/keys/key.js';
import { ANY_MODEL, type Demand } from '../../src/keys/key-state.js';
import { KeyPool, type Lease } from '../../src/keys/pool.js';
import { WaitingRoom, type WaitResult } from '../../src/keys/waiting-room.js';
import { FakeClock } from '../helpers/fake-clock.js';

const flush = () => new Promise((r) => setImmediate(r));

function setup(opts: { maxConcurrent?: number; maxSize?: number; keys?: number } = {}) {
  const clock = new FakeClock(0);
  const keys = Array.from(
    { length: opts.keys ?? 1 },
    (_, i) => new Key(`k${i + 1}`, `s${i + 1}`, { ...DEFAULT_KEY_OPTIONS, maxConcurrent: opts.maxConcurrent }),
  );
  const pool = new KeyPool('u', keys);
  const room = new WaitingRoom(pool, clock, opts.maxSize ?? 100);
  const acquire = (demand: Demand = ANY_MODEL) => pool.acquire({ demand, now: clock.now() });
  const wait = (client: string, signal = new AbortController().signal, maxWaitMs = 10_000, demand: Demand = ANY_MODEL) =>
    room.wait({ client, demand, maxWaitMs, signal, tryAcquire: () => acquire(demand), giveBack: (l) => l.abandon() });
  return { clock, pool, room, acquire, wait };
}

describe('WaitingRoom', () => {
  it('serves clients in fair rotation: one agent with many waiters does not starve another', async () => {
    const { pool, acquire, wait } = setup({ maxConcurrent: 1 });
    let holder = acquire()!;
    const order: string[] = [];
    const track = (name: string, p: Promise<WaitResult>) =>
      p.then((r) => {
        order.push(name);
        if (r.kind === 'acquired') holder = r.lease;
      });
    const all = [
      ...['a1', 'a2', 'a3', 'a4'].map((n) => track(n, wait('agent-a'))),
      track('b1', wait('agent-b')),
      track('c1', wait('agent-c')),
    ];
    for (let i = 0; i < 6; i++) {
      holder.end();
      await flush();
    }
    await Promise.all(all);
    expect(order).toEqual(['a1', 'b1', 'c1', 'a2', 'a3', 'a4']);
  });

  it('hands a key over the moment a cooldown ends', async () => {
    const { clock, pool, room, wait } = setup();
    pool.cool(pool.states()[0]!, '', 1500, 'rate_limited', 0);
    const p = wait('x');
    await flush();
    clock.advance(1499);
    await flush();
    expect(room.size).toBe(1);
    clock.advance(1);
    const r = await p;
    expect(r.kind).toBe('acquired');
    expect((r as { lease: Lease }).lease.state.inflight).toBe(1);
  });

  it('times out after maxWaitMs', async () => {
    const { clock, pool, room, wait } = setup();
    pool.cool(pool.states()[0]!, '', 60_000, 'rate_limited', 0);
    const p = wait('x', undefined, 2000);
    clock.advance(2000);
    expect(await p).toEqual({ kind: 'timeout' });
    expect(room.size).toBe(0);
    expect(room.metrics.timedOut).toBe(1);
  });

  it('a request that is aborted leaves the room at once', async () => {
    const { pool, room, wait } = setup();
    pool.cool(pool.states()[0]!, '', 60_000, 'rate_limited', 0);
    const ac = new AbortController();
    const p = wait('x', ac.signal);
    expect(room.size).toBe(1);
    ac.abort(new Error('gone'));
    await expect(p).rejects.toThrow('gone');
    expect(room.size).toBe(0);
  });

  it('a full room says so', async () => {
    const { pool, wait } = setup({ maxSize: 1 });
    pool.cool(pool.states()[0]!, '', 60_000, 'rate_limited', 0);
    void wait('x');
    expect(await wait('y')).toEqual({ kind: 'full' });
  });

  it("a client's request for a model with a free key does not wait behind its own request for a cooling model", async () => {
    const { pool, wait } = setup();
    pool.cool(pool.states()[0]!, 'gpt-4o', 60_000, 'rate_limited', 0);
    const stuck = wait('agent', undefined, 10_000, { model: 'gpt-4o', tokens: 1 });
    const free = await wait('agent', undefined, 10_000, { model: 'gpt-4o-mini', tokens: 1 });
    expect(free.kind).toBe('acquired');
    void stuck;
  });

  it('wakes at the earliest time any waiting demand can go, not the first demand of each model', async () => {
    const { clock, pool, room, wait } = setup();
    const s = pool.states()[0]!;
    // 300 tokens left until 10 s; the model is cooling until 3 s.
    const headers = { 'x-ratelimit-limit-tokens': '100000', 'x-ratelimit-remaining-tokens': '300', 'x-ratelimit-reset-tokens': '10s' };
    pool.observe({ state: s, demand: { model: 'gpt-4o', tokens: 0 }, mark: { requests: 0, tokens: 0 }, sharedMark: undefined }, headers, 0);
    pool.cool(s, 'gpt-4o', 3000, 'rate_limited', 0);
    const large = wait('a', undefined, 20_000, { model: 'gpt-4o', tokens: 1000 });
    const small = wait('b', undefined, 20_000, { model: 'gpt-4o', tokens: 10 });
    await flush();
    clock.advance(3000);
    await flush();
    expect((await small).kind).toBe('acquired');
    expect(room.size).toBe(1);
    void large;
  });

  it('sends every waiter away at once when the last key is disabled', async () => {
    const { pool, room, acquire, wait } = setup({ maxConcurrent: 1 });
    const holder = acquire()!;
    const p = wait('x');
    await flush();
    pool.disable(holder.state, 'unauthorized', 1e15);
    expect(await p).toEqual({ kind: 'no_keys' });
    expect(room.size).toBe(0);
    expect(room.metrics.noKeys).toBe(1);
  });
});
