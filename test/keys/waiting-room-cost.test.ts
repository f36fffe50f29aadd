// How much the waiting room does: a dispatch asks the pool about each model once per pool change, passes
// over stuck clients in O(1), and never sets a timer that wakes it for nothing.
import { describe, expect, it, vi } from 'vitest';
import type { Demand } from '../../src/keys/key-state.js';
import { ClientLines } from '../../src/keys/room-queues.js';
import type { WaitResult } from '../../src/keys/waiting-room.js';
import { flush, peek, roomSetup as setup } from '../helpers/room.js';

const GPT4O: Demand = { model: 'gpt-4o', tokens: 1 };
const MINI: Demand = { model: 'gpt-4o-mini', tokens: 1 };
const model = (name: string, tokens = 1): Demand => ({ model: name, tokens });

describe('WaitingRoom work bounds', () => {
  it('a waiter that declines a free key waits for a pool change, not a timer that spins', async () => {
    const { clock, pool, room, calls } = setup();
    const ac = new AbortController();
    let asked = 0;
    const p = room.wait({
      client: 'a',
      demand: GPT4O,
      maxWaitMs: 60_000,
      signal: ac.signal,
      // Says no although the pool has a key; a room that kept asking at once would never stop: bounded here.
      tryAcquire: () => {
        if (++asked > 50) ac.abort(new Error('spun'));
        return undefined;
      },
      giveBack: (l) => l.abandon(),
    });
    await flush();
    const looked = calls.nextAvailableAt;
    clock.advance(10_000);
    await flush();
    expect(asked).toBe(1);
    expect(calls.nextAvailableAt).toBe(looked);
    expect(room.size).toBe(1);
    // A pool change: asked again.
    pool.acquire({ demand: MINI, now: clock.now() })!.end();
    await flush();
    expect(asked).toBe(2);
    ac.abort(new Error('done'));
    await expect(p).rejects.toThrow('done');
  });

  it('bounded work: a pool change with 1,000 blocked waiters over 50 models and 100 clients asks the pool once per model', async () => {
    const { pool, room, calls, acquire, wait } = setup({ keys: 2, maxConcurrent: 1, maxSize: 2000 });
    const [k1, k2] = pool.states();
    for (let m = 0; m < 50; m++) pool.cool(k1!, `m${m}`, 60_000, 'rate_limited', 0);
    pool.disable(k2!, 'unauthorized', 1e15);
    for (let c = 0; c < 100; c++) for (let i = 0; i < 10; i++) void wait(`c${c}`, { maxWaitMs: 120_000, demand: model(`m${(c * 7 + i) % 50}`, 100) });
    await flush();
    expect(room.size).toBe(1000);
    const held = acquire(model('other'))!;
    calls.nextAvailableAt = 0;
    calls.tryAcquire = 0;
    held.end();
    await flush();
    // One question per model to dispatch and one per model to set the timer: not one per head (1,000).
    expect(calls.nextAvailableAt).toBeLessThanOrEqual(100);
    expect(calls.tryAcquire).toBe(0);
    expect(room.size).toBe(1000);
  });

  it('bounded work: serving one client 200 times passes over 100 stuck clients in O(1) each', async () => {
    const { pool, room, wait } = setup({ maxSize: 1000 });
    pool.cool(pool.states()[0]!, 'blocked', 60_000, 'rate_limited', 0);
    for (let c = 0; c < 100; c++) void wait(`stuck${c}`, { maxWaitMs: 120_000, demand: model('blocked') });
    await flush();
    const looks = vi.spyOn(ClientLines.prototype, 'heads');
    try {
      const busy = Array.from({ length: 200 }, () => wait('busy', { maxWaitMs: 120_000, demand: model('free') }));
      await flush();
      for (const p of busy) expect(((await peek(p)) as WaitResult).kind).toBe('acquired');
      // 200 passes; each looks at the busy client's lines, and at a stuck client's only while it may have changed.
      expect(looks.mock.calls.length).toBeLessThan(1000);
    } finally {
      looks.mockRestore();
    }
    expect(room.size).toBe(100);
  });
});
