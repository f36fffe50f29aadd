// A lease ends exactly once, whichever way and however often its holder says so: a second end or
// abandon (a cancel racing an answer, a waiter handed a key as it leaves) must not free a slot twice,
// undo a count twice, or end a probe twice.
import { describe, expect, it } from 'vitest';
import { DEFAULT_KEY_OPTIONS, Key } from '../../src/keys/key.js';
import { KeyPool } from '../../src/keys/pool.js';

const MINI = { model: 'gpt-4o-mini', tokens: 100 };
const pool = () => new KeyPool('u', [new Key('k1', 'secret-lease-1', { ...DEFAULT_KEY_OPTIONS, maxConcurrent: 2 })], {});

describe('Lease', () => {
  it('end twice frees one slot: another request in flight keeps its own', () => {
    const p = pool();
    const a = p.acquire({ demand: MINI, now: 0 })!;
    const b = p.acquire({ demand: MINI, now: 0 })!;
    expect(p.states()[0]!.inflight).toBe(2);
    a.end('successes');
    a.end('successes');
    expect(p.states()[0]!.inflight).toBe(1);
    // Still at one in flight of two: a third may go, a fourth may not.
    expect(p.acquire({ demand: MINI, now: 0 })).toBeDefined();
    expect(p.acquire({ demand: MINI, now: 0 })).toBeUndefined();
    b.end();
  });

  it('abandon after end, or abandon twice, undoes nothing more', () => {
    const p = pool();
    const a = p.acquire({ demand: MINI, now: 0 })!;
    a.end();
    const attempts = p.states()[0]!.stats.attempts;
    a.abandon();
    expect(p.states()[0]!.stats.attempts).toBe(attempts);
    expect(p.states()[0]!.inflight).toBe(0);
    const b = p.acquire({ demand: MINI, now: 0 })!;
    b.abandon();
    b.abandon();
    expect(p.states()[0]!.stats.attempts).toBe(attempts);
    expect(p.states()[0]!.inflight).toBe(0);
    expect(b.ended).toBe(true);
  });
});
