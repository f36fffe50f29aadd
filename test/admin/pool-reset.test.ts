// KeyPool.reset (the admin "reset" action): the key forgets its disable, credit stop, cooldowns,
// streaks, store holds and probes, and takes requests at once; its group's scopes and other keys stay.
import { describe, expect, it } from 'vitest';
import { DEFAULT_KEY_OPTIONS, Key } from '../../src/keys/key.js';
import { ANY_MODEL, type Demand } from '../../src/keys/key-state.js';
import { KeyPool } from '../../src/keys/pool.js';

const GPT4: Demand = { model: 'gpt-4o', tokens: 10 };
const make = (group?: string) =>
  new KeyPool('u', [new Key('k1', 'secret-1', { ...DEFAULT_KEY_OPTIONS, group }), new Key('k2', 'secret-2', { ...DEFAULT_KEY_OPTIONS, group })], { probeAfterMs: 1_000 });

describe('KeyPool.reset', () => {
  it('forgets everything that keeps the key out and tells watchers', () => {
    const pool = make();
    const k1 = pool.states()[0]!;
    const k2 = pool.states()[1]!;
    pool.cool(k1, 'gpt-4o', 50_000, 'rate_limited', 0);
    pool.cool(k1, 'gpt-4o', 60_000, 'rate_limited', 55_000);
    pool.cool(k1, '', 90_000, 'out_of_credit', 0);
    pool.disable(k1, 'unauthorized', 1e12);
    const s = k1;
    const scope = s.scopes.get('gpt-4o')!;
    scope.heldUntil = 80_000;
    scope.probeUntil = 70_000;
    expect(scope.streak).toBe(2);
    expect(pool.usable).toBe(1);
    let told = 0;
    pool.watch(() => told++);

    pool.reset(k1);
    expect(told).toBeGreaterThan(0);
    expect(s.disabled).toBeUndefined();
    expect(s.creditUntil).toBe(0);
    expect(pool.usable).toBe(2);
    for (const sc of s.scopes.values()) {
      expect(sc).toMatchObject({ cooldownUntil: 0, reason: undefined, streak: 0, heldUntil: 0, probePending: false, probeUntil: 0 });
    }
    pool.disable(k2, 'forbidden', 1e12);
    const lease = pool.acquire({ demand: GPT4, now: 56_000 });
    expect(lease?.state.key.name).toBe('k1');
    lease?.end();
    // No probe is owed any more: a second request is not held back behind a first.
    const a = pool.acquire({ demand: GPT4, now: 56_000 });
    const b = pool.acquire({ demand: GPT4, now: 56_000 });
    expect([a?.state.key.name, b?.state.key.name]).toEqual(['k1', 'k1']);
  });

  it('leaves the group’s cooldown (it speaks for the other keys too) and other keys alone', () => {
    const pool = make('org');
    const k1 = pool.states()[0]!;
    const k2 = pool.states()[1]!;
    pool.cool(k2, 'gpt-4o', 50_000, 'rate_limited', 0);
    pool.reset(k1);
    expect(pool.acquire({ demand: GPT4, now: 1_000 })).toBeUndefined();
    expect(k2.scopes.get('gpt-4o')!.cooldownUntil).toBe(50_000);
    expect(pool.acquire({ demand: ANY_MODEL, now: 1_000 })?.state.key.name).toBe('k1');
  });

  it('is harmless on a key with nothing to forget', () => {
    const pool = make();
    pool.reset(pool.states()[0]!);
    expect(pool.usable).toBe(2);
  });
});
