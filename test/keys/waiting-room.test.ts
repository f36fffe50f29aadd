import { describe, expect, it } from 'vitest';
import type { Demand } from '../../src/keys/key-state.js';
import type { Lease } from '../../src/keys/pool.js';
import type { WaitResult } from '../../src/keys/waiting-room.js';
import { flush, peek, roomSetup as setup } from '../helpers/room.js';

const GPT4O: Demand = { model: 'gpt-4o', tokens: 1 };
const MINI: Demand = { model: 'gpt-4o-mini', tokens: 1 };
const model = (name: string, tokens = 1): Demand => ({ model: name, tokens });

describe('WaitingRoom', () => {
  it('serves clients in fair rotation: one agent with many waiters does not starve another', async () => {
    const { acquire, wait } = setup({ maxConcurrent: 1 });
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
    const p = wait('x', { maxWaitMs: 2000 });
    clock.advance(2000);
    expect(await p).toEqual({ kind: 'timeout' });
    expect(room.size).toBe(0);
    expect(room.metrics.timedOut).toBe(1);
  });

  it('a request that is aborted leaves the room at once', async () => {
    const { pool, room, wait } = setup();
    pool.cool(pool.states()[0]!, '', 60_000, 'rate_limited', 0);
    const ac = new AbortController();
    const p = wait('x', { signal: ac.signal });
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
    const stuck = wait('agent', { demand: GPT4O });
    const free = await wait('agent', { demand: MINI });
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
    const large = wait('a', { maxWaitMs: 20_000, demand: model('gpt-4o', 1000) });
    const small = wait('b', { maxWaitMs: 20_000, demand: model('gpt-4o', 10) });
    await flush();
    clock.advance(3000);
    await flush();
    expect((await small).kind).toBe('acquired');
    expect(room.size).toBe(1);
    void large;
  });

  it('what a dispatch learnt about a small demand expires with its time: a larger one still wakes on time', async () => {
    const { clock, pool, room, wait } = setup();
    const s = pool.states()[0]!;
    // 300 tokens left until 10 s; the model is cooling until 3 s.
    const headers = { 'x-ratelimit-limit-tokens': '100000', 'x-ratelimit-remaining-tokens': '300', 'x-ratelimit-reset-tokens': '10s' };
    pool.observe({ state: s, demand: { model: 'gpt-4o', tokens: 0 }, mark: { requests: 0, tokens: 0 }, sharedMark: undefined }, headers, 0);
    pool.cool(s, 'gpt-4o', 3000, 'rate_limited', 0);
    const small = wait('a', { maxWaitMs: 20_000, demand: model('gpt-4o', 10) });
    const large = wait('b', { maxWaitMs: 20_000, demand: model('gpt-4o', 1000) });
    await flush();
    clock.advance(3000);
    expect((await small).kind).toBe('acquired');
    clock.advance(7000);
    expect((await peek(large)) as WaitResult).toMatchObject({ kind: 'acquired' });
    expect(room.size).toBe(0);
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

describe('WaitingRoom scheduling: one line per model per client', () => {
  it('serves 5 waiters of one client within the first 10 handovers while another client has 500 queued', async () => {
    const { acquire, wait, leaks } = setup({ maxConcurrent: 1, maxSize: 1000 });
    let holder = acquire()!;
    const order: string[] = [];
    const all: Promise<void>[] = [];
    const track = (name: string, p: Promise<WaitResult>) =>
      p.then((r) => {
        order.push(name);
        if (r.kind === 'acquired') holder = r.lease;
      });
    for (let i = 0; i < 500; i++) all.push(track('a', wait('agent-a', { maxWaitMs: 1e9 })));
    for (let i = 0; i < 5; i++) all.push(track('b', wait('agent-b', { maxWaitMs: 1e9 })));
    await flush();
    for (let i = 0; i < 505; i++) {
      holder.end();
      await flush();
    }
    await Promise.all(all);
    holder.end();
    expect(order.slice(0, 10).filter((n) => n === 'b')).toHaveLength(5);
    expect(order).toHaveLength(505);
    expect(leaks()).toEqual([]);
  });

  it('with 50 models cooling but the 50th, the 50th is served at once', async () => {
    const { pool, room, wait } = setup({ maxSize: 1000 });
    const s = pool.states()[0]!;
    for (let m = 1; m < 50; m++) {
      pool.cool(s, `m${m}`, 60_000, 'rate_limited', 0);
      void wait('agent', { maxWaitMs: 60_000, demand: model(`m${m}`) });
    }
    const last = wait('agent', { maxWaitMs: 60_000, demand: model('m50') });
    expect(((await peek(last)) as WaitResult).kind).toBe('acquired');
    expect(room.size).toBe(49);
  });

  it('a gpt-4o-mini request with an idle key is served at once behind 70 cooling gpt-4o requests of its client', async () => {
    const { clock, pool, room, wait } = setup({ maxSize: 1000 });
    pool.cool(pool.states()[0]!, 'gpt-4o', 60_000, 'rate_limited', 0);
    for (let i = 0; i < 70; i++) void wait('host', { maxWaitMs: 20_000, demand: GPT4O });
    // They have been waiting a while (the room has looked at them and found them stuck).
    await flush();
    clock.advance(1000);
    await flush();
    const mini = wait('host', { maxWaitMs: 20_000, demand: MINI });
    expect(((await peek(mini)) as WaitResult).kind).toBe('acquired');
    expect(room.size).toBe(70);
    expect(room.metrics.served).toBe(1);
    expect(room.metrics.waitMsTotal).toBe(0);
  });

  it('a full room asks the pool first: a request a free key can serve is served, not refused', async () => {
    const { pool, room, calls, wait } = setup({ maxSize: 2 });
    pool.cool(pool.states()[0]!, 'gpt-4o', 60_000, 'rate_limited', 0);
    void wait('a', { maxWaitMs: 20_000, demand: GPT4O });
    void wait('b', { maxWaitMs: 20_000, demand: GPT4O });
    await flush();
    const mini = await wait('c', { maxWaitMs: 20_000, demand: MINI });
    expect(mini.kind).toBe('acquired');
    expect(room.size).toBe(2);
    expect(room.metrics).toMatchObject({ rejectedFull: 0, servedWhileFull: 1, deferred: 2 });
    // A request for a model others wait for would overtake them: refused without asking the pool.
    const asked = calls.tryAcquire;
    expect(await wait('c', { maxWaitMs: 20_000, demand: GPT4O })).toEqual({ kind: 'full' });
    expect(calls.tryAcquire).toBe(asked);
    // A model nobody waits for and no key can serve: asked, then refused.
    pool.cool(pool.states()[0]!, 'o1', 60_000, 'rate_limited', 0);
    expect(await wait('c', { maxWaitMs: 20_000, demand: model('o1') })).toEqual({ kind: 'full' });
    expect(calls.tryAcquire).toBe(asked + 1);
    expect(room.metrics.rejectedFull).toBe(2);
    expect(room.size).toBe(2);
  });

  it('a full room asks for a model whose waiters have all left', async () => {
    const { clock, pool, room, wait } = setup({ maxSize: 1 });
    const s = pool.states()[0]!;
    pool.cool(s, 'm1', 1000, 'rate_limited', 0);
    pool.cool(s, 'm2', 60_000, 'rate_limited', 0);
    const first = wait('a', { maxWaitMs: 500, demand: model('m1') });
    clock.advance(500);
    expect(await first).toEqual({ kind: 'timeout' });
    void wait('b', { maxWaitMs: 100_000, demand: model('m2') });
    clock.advance(500);
    expect(((await wait('c', { demand: model('m1') })) as WaitResult).kind).toBe('acquired');
    expect(room.size).toBe(1);
  });

  it('the timer wakes at the earliest head of any model, however many models a client waits on', async () => {
    const { clock, pool, room, wait } = setup({ maxSize: 1000 });
    const s = pool.states()[0]!;
    for (let m = 1; m <= 6; m++) pool.cool(s, `m${m}`, m === 6 ? 2000 : 60_000, 'rate_limited', 0);
    const m6: Promise<WaitResult>[] = [];
    for (let m = 1; m <= 6; m++)
      for (let i = 0; i < 3; i++) {
        const p = wait('agent', { maxWaitMs: 120_000, demand: model(`m${m}`) });
        if (m === 6) m6.push(p);
      }
    await flush();
    clock.advance(1999);
    await flush();
    expect(room.size).toBe(18);
    clock.advance(1);
    await flush();
    expect(room.size).toBe(15);
    for (const p of m6) expect((await p).kind).toBe('acquired');
  });

  it('requests of one model stay in order: a small demand does not overtake a large one of its client', async () => {
    const { clock, pool, room, wait } = setup();
    const s = pool.states()[0]!;
    // 300 tokens left until 10 s; the model is cooling until 3 s.
    const headers = { 'x-ratelimit-limit-tokens': '100000', 'x-ratelimit-remaining-tokens': '300', 'x-ratelimit-reset-tokens': '10s' };
    pool.observe({ state: s, demand: { model: 'gpt-4o', tokens: 0 }, mark: { requests: 0, tokens: 0 }, sharedMark: undefined }, headers, 0);
    pool.cool(s, 'gpt-4o', 3000, 'rate_limited', 0);
    const order: string[] = [];
    const large = wait('a', { maxWaitMs: 20_000, demand: model('gpt-4o', 1000) }).then((r) => (order.push('large'), r));
    const small = wait('a', { maxWaitMs: 20_000, demand: model('gpt-4o', 10) }).then((r) => (order.push('small'), r));
    await flush();
    clock.advance(3000);
    await flush();
    expect(order).toEqual([]);
    expect(room.size).toBe(2);
    clock.advance(7000);
    await flush();
    expect(order).toEqual(['large', 'small']);
    expect((await large).kind).toBe('acquired');
    expect((await small).kind).toBe('acquired');
  });

  it('gauges: length, per-client length and the oldest wait', async () => {
    const { clock, pool, room, wait } = setup();
    pool.cool(pool.states()[0]!, 'gpt-4o', 60_000, 'rate_limited', 0);
    expect(room.gauges()).toEqual({ waiting: 0, oldestWaitMs: 0, clients: [] });
    const ac = new AbortController();
    void wait('a', { signal: ac.signal, maxWaitMs: 50_000, demand: GPT4O }).catch(() => {});
    clock.advance(1000);
    void wait('b', { maxWaitMs: 50_000, demand: GPT4O });
    void wait('a', { maxWaitMs: 50_000, demand: GPT4O });
    clock.advance(500);
    expect(room.gauges()).toEqual({
      waiting: 3,
      oldestWaitMs: 1500,
      clients: [
        { client: 'a', waiting: 2, oldestWaitMs: 1500 },
        { client: 'b', waiting: 1, oldestWaitMs: 500 },
      ],
    });
    ac.abort(new Error('gone'));
    expect(room.gauges()).toEqual({
      waiting: 2,
      oldestWaitMs: 500,
      clients: [
        { client: 'a', waiting: 1, oldestWaitMs: 500 },
        { client: 'b', waiting: 1, oldestWaitMs: 500 },
      ],
    });
  });
});
