import { describe, expect, it } from 'vitest';
import { Key } from '../../src/keys/key.js';
import { KeyPool, type PoolEvent } from '../../src/keys/pool.js';

const keys = (n: number) => Array.from({ length: n }, (_, i) => new Key(`k${i + 1}`, `secret-${i + 1}`));
const names = (xs: ({ key: Key } | undefined)[]) => xs.map((s) => s?.key.name);
/** Every state of a fresh pool, in order (walks the cursor once round). */
const all = (pool: KeyPool) => Array.from({ length: pool.size }, () => pool.pick(0)!);

describe('KeyPool', () => {
  it('round-robins over available keys', () => {
    const pool = new KeyPool('u', keys(3));
    expect(names([pool.pick(0), pool.pick(0), pool.pick(0), pool.pick(0)])).toEqual(['k1', 'k2', 'k3', 'k1']);
  });

  it('skips cooling, disabled and excluded keys', () => {
    const pool = new KeyPool('u', keys(4));
    const [a, b, c] = all(pool);
    pool.cool(a!, 1000, 'rate_limited');
    pool.disable(b!, 'unauthorized');
    expect(names([pool.pick(500, new Set([c!]))])).toEqual(['k4']);
    expect(names([pool.pick(500), pool.pick(500)])).toEqual(['k3', 'k4']);
    expect(pool.pick(1000)?.key.name).toBe('k1');
    expect(pool.usable).toBe(3);
  });

  it('answers undefined when nothing is available, and says when something will be', () => {
    const pool = new KeyPool('u', keys(2));
    const [a, b] = all(pool);
    pool.cool(a!, 3000, 'rate_limited');
    pool.cool(b!, 2000, 'rate_limited');
    expect(pool.pick(100)).toBeUndefined();
    expect(pool.nextAvailableAt(100)).toBe(2000);
    pool.disable(b!, 'forbidden');
    expect(pool.nextAvailableAt(100)).toBe(3000);
    pool.disable(a!, 'forbidden');
    expect(pool.nextAvailableAt(100)).toBeUndefined();
    expect(pool.usable).toBe(0);
  });

  it('only ever extends a cooldown', () => {
    const pool = new KeyPool('u', keys(1));
    const [s] = all(pool) as [ReturnType<typeof all>[number]];
    pool.cool(s, 5000, 'rate_limited');
    pool.cool(s, 2000, 'rate_limited');
    expect(s.cooldownUntil).toBe(5000);
    pool.cool(s, 9000, 'out_of_credit');
    expect(s.cooldownUntil).toBe(9000);
    expect(s.coolReason).toBe('out_of_credit');
  });

  it('tracks the failure streak and clears it on success', () => {
    const pool = new KeyPool('u', keys(1));
    const [s] = all(pool) as [ReturnType<typeof all>[number]];
    pool.cool(s, 1, 'rate_limited');
    pool.cool(s, 2, 'rate_limited');
    expect(s.streak).toBe(2);
    pool.succeeded(s);
    expect(s.streak).toBe(0);
  });

  it('reports a disable once, by name', () => {
    const events: PoolEvent[] = [];
    const pool = new KeyPool('u', keys(1), (e) => events.push(e));
    const [s] = all(pool) as [ReturnType<typeof all>[number]];
    pool.disable(s, 'unauthorized');
    pool.disable(s, 'unauthorized');
    expect(events).toEqual([{ type: 'disabled', upstream: 'u', key: 'k1', reason: 'unauthorized' }]);
    expect(JSON.stringify(events)).not.toContain('secret-1');
  });

  it('picks in O(1) when the next key is free, even with 10,000 keys', () => {
    const pool = new KeyPool('u', keys(10_000));
    for (let i = 0; i < 10_000; i++) pool.pick(0);
    expect(pool.pick(0)?.key.name).toBe('k1');
  });
});

describe('Key', () => {
  it('never serialises or inspects its secret', async () => {
    const { inspect } = await import('node:util');
    const k = new Key('team-a', 'sk-very-secret-value-1234');
    expect(JSON.stringify({ k })).not.toContain('sk-very-secret');
    expect(inspect(k)).not.toContain('sk-very-secret');
    expect(`${k.masked()}`).toBe('sk-…1234');
    expect(new Key('x', 'short').masked()).toBe('****');
    expect(k.reveal()).toBe('sk-very-secret-value-1234');
  });
});
