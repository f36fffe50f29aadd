import { describe, expect, it } from 'vitest';
import { DEFAULT_KEY_OPTIONS, Key } from '../../src/keys/key.js';
import { ANY_MODEL } from '../../src/keys/key-state.js';
import { KeyPool, type KeyState } from '../../src/keys/pool.js';
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
  const acquire = () => pool.acquire({ demand: ANY_MODEL, now: clock.now() });
  const wait = (client: string, signal = new AbortController().signal, maxWaitMs = 10_000) =>
    room.wait({ client, demand: ANY_MODEL, maxWaitMs, signal, tryAcquire: acquire });
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
        if (r.kind === 'acquired') holder = r.state;
      });
    const all = [
      ...['a1', 'a2', 'a3', 'a4'].map((n) => track(n, wait('agent-a'))),
      track('b1', wait('agent-b')),
      track('c1', wait('agent-c')),
    ];
    for (let i = 0; i < 6; i++) {
      pool.end(holder);
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
    expect((r as { state: KeyState }).state.inflight).toBe(1);
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
});
