import { describe, expect, it } from 'vitest';
import { DEFAULT_KEY_OPTIONS, Key, type KeyOptions } from '../../src/keys/key.js';
import { ANY_MODEL, type Demand } from '../../src/keys/key-state.js';
import { KeyPool, type KeyState, type PoolEvent, type PoolOptions } from '../../src/keys/pool.js';

const keys = (n: number, options: Partial<KeyOptions>[] = []) =>
  Array.from({ length: n }, (_, i) => new Key(`k${i + 1}`, `secret-${i + 1}`, { ...DEFAULT_KEY_OPTIONS, ...options[i] }));
const GPT4: Demand = { model: 'gpt-4o', tokens: 100 };
const MINI: Demand = { model: 'gpt-4o-mini', tokens: 100 };

/** Acquires and releases at once: which key would serve the next request. */
function next(pool: KeyPool, now = 0, demand: Demand = ANY_MODEL, extra: Partial<Parameters<KeyPool['acquire']>[0]> = {}): string | undefined {
  const l = pool.acquire({ demand, now, ...extra });
  l?.end();
  return l?.state.key.name;
}
/** Feeds a response's headers for this key and model, as if for a request sent at `mark` (default: now). */
const observe = (pool: KeyPool, s: KeyState, model: string, headers: Record<string, string>, now: number, mark = upToDate(s, model)) =>
  pool.observe({ state: s, demand: { model, tokens: 0 }, mark, sharedMark: undefined }, headers, now);
const byName = (pool: KeyPool, name: string): KeyState => pool.states().find((s) => s.key.name === name)!;
/** A report as of now: every request sent so far on the scope had been counted by the upstream. */
const upToDate = (s: KeyState, model: string) => ({ requests: s.scopes.get(model)?.sent ?? 0, tokens: s.scopes.get(model)?.sentTokens ?? 0 });
const make = (n: number, o: PoolOptions = {}, options: Partial<KeyOptions>[] = []) => new KeyPool('u', keys(n, options), o);

describe('KeyPool basics', () => {
  it('round-robins over available keys', () => {
    const pool = make(3);
    expect([next(pool), next(pool), next(pool), next(pool)]).toEqual(['k1', 'k2', 'k3', 'k1']);
  });

  it('skips cooling, disabled and excluded keys', () => {
    const pool = make(4);
    pool.cool(byName(pool, 'k1'), '', 1000, 'rate_limited', 0);
    pool.disable(byName(pool, 'k2'), 'unauthorized', 1e15);
    expect(next(pool, 500, ANY_MODEL, { exclude: new Set([byName(pool, 'k3')]) })).toBe('k4');
    expect([next(pool, 500), next(pool, 500)]).toEqual(['k3', 'k4']);
    expect(next(pool, 1000)).toBe('k1');
    expect(pool.usable).toBe(3);
  });

  it('answers undefined when nothing is available, and says when something will be', () => {
    const pool = make(2);
    pool.cool(byName(pool, 'k1'), '', 3000, 'rate_limited', 0);
    pool.cool(byName(pool, 'k2'), '', 2000, 'rate_limited', 0);
    expect(next(pool, 100)).toBeUndefined();
    expect(pool.nextAvailableAt(ANY_MODEL, 100)).toBe(2000);
    pool.disable(byName(pool, 'k2'), 'forbidden', 1e15);
    expect(pool.nextAvailableAt(ANY_MODEL, 100)).toBe(3000);
    pool.disable(byName(pool, 'k1'), 'forbidden', 1e15);
    expect(pool.nextAvailableAt(ANY_MODEL, 100)).toBeUndefined();
    expect(pool.usable).toBe(0);
  });

  it('only ever extends a cooldown', () => {
    const pool = make(1);
    const s = byName(pool, 'k1');
    pool.cool(s, '', 5000, 'rate_limited', 0);
    pool.cool(s, '', 2000, 'rate_limited', 0);
    expect(s.scopes.get('')!.cooldownUntil).toBe(5000);
    pool.cool(s, '', 9000, 'out_of_credit', 0);
    pool.cool(s, '', 7000, 'out_of_credit', 0);
    expect(s.creditUntil).toBe(9000);
  });

  it('tracks the failure streak per model and clears it on success', () => {
    const pool = make(1);
    const s = byName(pool, 'k1');
    pool.cool(s, 'gpt-4o', 1000, 'rate_limited', 0);
    pool.cool(s, 'gpt-4o', 3000, 'rate_limited', 1000);
    expect(pool.streakOf(s, 'gpt-4o')).toBe(2);
    expect(pool.streakOf(s, 'gpt-4o-mini')).toBe(0);
    pool.succeeded(s, 'gpt-4o');
    expect(pool.streakOf(s, 'gpt-4o')).toBe(0);
  });

  it('429s of requests already in flight when the key cooled do not lengthen the streak', () => {
    const pool = make(1);
    const s = byName(pool, 'k1');
    for (let i = 0; i < 8; i++) pool.cool(s, '', 1000, 'rate_limited', 10 + i);
    expect(pool.streakOf(s, '')).toBe(1);
    expect(s.stats.rateLimited).toBe(8);
  });

  it('reports a disable once, by name', () => {
    const events: PoolEvent[] = [];
    const pool = make(1, { listener: (e) => events.push(e) });
    pool.disable(byName(pool, 'k1'), 'unauthorized', 1e15);
    pool.disable(byName(pool, 'k1'), 'unauthorized', 1e15);
    expect(events).toEqual([
      { type: 'disabled', upstream: 'u', key: 'k1', fingerprint: byName(pool, 'k1').key.fingerprint, reason: 'unauthorized', until: 1e15 },
    ]);
    expect(JSON.stringify(events)).not.toContain('secret-1');
  });

  it('picks in O(1) when the next key is free, even with 10,000 keys', () => {
    const pool = make(10_000);
    for (let i = 0; i < 10_000; i++) next(pool);
    expect(next(pool)).toBe('k1');
  });
});

describe('cooldown scope', () => {
  it('a rate limit cools the key for that model only; credit is key-wide', () => {
    const pool = make(1);
    const s = byName(pool, 'k1');
    pool.cool(s, 'gpt-4o', 10_000, 'rate_limited', 0);
    expect(next(pool, 1, GPT4)).toBeUndefined();
    expect(next(pool, 1, MINI)).toBe('k1');
    pool.cool(s, 'gpt-4o-mini', 10_000, 'out_of_credit', 0);
    expect(next(pool, 1, MINI)).toBeUndefined();
    expect(next(pool, 1, ANY_MODEL)).toBeUndefined();
  });

  it('a long cooldown ends with one probe: one request at a time until a success', () => {
    const pool = make(1, { probeAfterMs: 60_000 });
    const s = byName(pool, 'k1');
    pool.cool(s, '', 60_000, 'rate_limited', 0);
    const probe = pool.acquire({ demand: ANY_MODEL, now: 60_000 });
    expect(probe?.state.key.name).toBe('k1');
    expect(probe?.probing).toBe(true);
    expect(pool.acquire({ demand: ANY_MODEL, now: 60_000 })).toBeUndefined();
    expect(pool.nextAvailableAt(ANY_MODEL, 60_000)).toBe(Infinity);
    // Open to all once the probe's answer is in, while its response may still be streaming.
    probe!.answered(true);
    const a = pool.acquire({ demand: ANY_MODEL, now: 60_001 });
    expect(a?.probing).toBe(false);
    const b = pool.acquire({ demand: ANY_MODEL, now: 60_001 });
    expect([a?.state.key.name, b?.state.key.name]).toEqual(['k1', 'k1']);
  });

  it("a probe is owed by the model that was cooled: other models use the key freely meanwhile", () => {
    const pool = make(1, { probeAfterMs: 60_000 });
    pool.cool(byName(pool, 'k1'), GPT4.model, 60_000, 'rate_limited', 0);
    // During the cooldown and after it, other models are not single-file.
    const m1 = pool.acquire({ demand: MINI, now: 1000 });
    expect(m1?.probing).toBe(false);
    expect(pool.acquire({ demand: MINI, now: 1000 })).toBeDefined();
    const probe = pool.acquire({ demand: GPT4, now: 60_000 });
    expect(probe?.probing).toBe(true);
    expect(pool.acquire({ demand: MINI, now: 60_000 })).toBeDefined();
    expect(pool.acquire({ demand: GPT4, now: 60_000 })).toBeUndefined();
    // Another attempt ending is not the probe ending.
    m1!.end();
    expect(pool.acquire({ demand: GPT4, now: 60_000 })).toBeUndefined();
    // A failed probe (a network error, say) frees the scope, and the next request is the probe again.
    probe!.answered(false);
    expect(pool.acquire({ demand: GPT4, now: 60_001 })?.probing).toBe(true);
    expect(pool.acquire({ demand: GPT4, now: 60_001 })).toBeUndefined();
  });

  it('a probe whose end is never reported holds its scope only until its lease ends', () => {
    const pool = make(1, { probeAfterMs: 60_000, probeLeaseMs: 30_000 });
    pool.cool(byName(pool, 'k1'), GPT4.model, 60_000, 'rate_limited', 0);
    expect(pool.acquire({ demand: GPT4, now: 60_000 })).toBeDefined();
    expect(pool.acquire({ demand: GPT4, now: 89_999 })).toBeUndefined();
    // That request is the probe now.
    expect(pool.acquire({ demand: GPT4, now: 90_000 })?.probing).toBe(true);
  });

  it('out of credit for long: the probe is key-wide', () => {
    const pool = make(1, { probeAfterMs: 60_000 });
    pool.cool(byName(pool, 'k1'), GPT4.model, 120_000, 'out_of_credit', 0);
    expect(pool.acquire({ demand: MINI, now: 120_000 })).toBeDefined();
    expect(pool.acquire({ demand: GPT4, now: 120_000 })).toBeUndefined();
    expect(pool.acquire({ demand: MINI, now: 120_000 })).toBeUndefined();
  });

  it('a long cooldown restored after a restart still ends with a probe', () => {
    const before = make(1, { probeAfterMs: 60_000 });
    before.cool(byName(before, 'k1'), GPT4.model, 90_000, 'rate_limited', 0);
    const after = make(1, { probeAfterMs: 60_000 });
    after.restore(JSON.parse(JSON.stringify(before.snapshot(1000))), 1000);
    expect(after.acquire({ demand: GPT4, now: 89_999 })).toBeUndefined();
    expect(after.acquire({ demand: GPT4, now: 90_000 })?.probing).toBe(true);
    expect(after.acquire({ demand: GPT4, now: 90_000 })).toBeUndefined();
  });

  it('a short cooldown needs no probe', () => {
    const pool = make(1, { probeAfterMs: 60_000 });
    pool.cool(byName(pool, 'k1'), '', 1000, 'rate_limited', 0);
    expect(pool.acquire({ demand: ANY_MODEL, now: 1000 })).toBeDefined();
    expect(pool.acquire({ demand: ANY_MODEL, now: 1000 })).toBeDefined();
  });
});

describe('quota groups', () => {
  const groups: Partial<KeyOptions>[] = [{ group: 'org-a' }, { group: 'org-a' }, { group: 'org-b' }];
  it('a rate limit on one key cools its whole group for that model', () => {
    const pool = make(3, {}, groups);
    pool.cool(byName(pool, 'k1'), 'gpt-4o', 5000, 'rate_limited', 0);
    expect([next(pool, 1, GPT4), next(pool, 1, GPT4)]).toEqual(['k3', 'k3']);
    expect(next(pool, 1, MINI)).toBe('k1');
    expect(next(pool, 5000, GPT4)).toBeDefined();
  });
  it('rotation prefers keys in groups that have not failed this request', () => {
    const pool = make(3, {}, groups);
    expect(next(pool, 0, GPT4, { avoidGroups: new Set(['org-a']) })).toBe('k3');
    expect(next(pool, 0, GPT4, { avoidGroups: new Set(['org-a', 'org-b']) })).toBeDefined();
  });
});

describe('local limits', () => {
  it('maxConcurrent caps in-flight requests; a freed slot lets the next through', () => {
    const pool = make(1, {}, [{ maxConcurrent: 2 }]);
    const a = pool.acquire({ demand: ANY_MODEL, now: 0 });
    const b = pool.acquire({ demand: ANY_MODEL, now: 0 });
    expect(pool.acquire({ demand: ANY_MODEL, now: 0 })).toBeUndefined();
    expect(pool.nextAvailableAt(ANY_MODEL, 0)).toBe(Infinity);
    a!.end();
    expect(pool.acquire({ demand: ANY_MODEL, now: 0 })).toBeDefined();
    expect(b).toBeDefined();
  });
  it('rpm is a fixed minute window', () => {
    const pool = make(1, {}, [{ rpm: 2 }]);
    expect([next(pool, 0), next(pool, 10), next(pool, 20)]).toEqual(['k1', 'k1', undefined]);
    expect(pool.nextAvailableAt(ANY_MODEL, 20)).toBe(60_000);
    expect(next(pool, 60_000)).toBe('k1');
  });
  it('tpm counts estimated tokens, and lets one oversized request through a fresh window', () => {
    const pool = make(1, {}, [{ tpm: 250 }]);
    expect(next(pool, 0, { model: 'm', tokens: 200 })).toBe('k1');
    expect(next(pool, 1, { model: 'm', tokens: 100 })).toBeUndefined();
    expect(next(pool, 1, { model: 'm', tokens: 50 })).toBe('k1');
    expect(next(pool, 60_000, { model: 'm', tokens: 1000 })).toBe('k1');
  });
});

describe('header-driven admission', () => {
  const h = (remaining: number, reset = '1s') => ({
    'x-ratelimit-limit-requests': '10',
    'x-ratelimit-remaining-requests': String(remaining),
    'x-ratelimit-reset-requests': reset,
  });
  it('a key reported at 0 remaining requests is cooling until its reset, before any 429', () => {
    const pool = make(2);
    observe(pool, byName(pool, 'k1'), 'gpt-4o', h(0), 0);
    expect([next(pool, 1, GPT4), next(pool, 1, GPT4)]).toEqual(['k2', 'k2']);
    expect(next(pool, 1, MINI)).toBe('k1');
    expect(next(pool, 999, GPT4, { exclude: new Set([byName(pool, 'k2')]) })).toBeUndefined();
    expect(next(pool, 1000, GPT4, { exclude: new Set([byName(pool, 'k2')]) })).toBe('k1');
  });
  it('requests sent since the report count against it', () => {
    const pool = make(1);
    observe(pool, byName(pool, 'k1'), 'gpt-4o', h(2), 0);
    expect([next(pool, 1, GPT4), next(pool, 1, GPT4), next(pool, 1, GPT4)]).toEqual(['k1', 'k1', undefined]);
  });
  it('a report older than the one held is ignored; after the reset the limit refills for one window', () => {
    const pool = make(1);
    const s = byName(pool, 'k1');
    const a = pool.acquire({ demand: GPT4, now: 0 })!;
    const markA = a.mark;
    const b = pool.acquire({ demand: GPT4, now: 0 })!;
    const markB = b.mark;
    a.end();
    b.end();
    // b's report (newer) arrives first: 3 left after b, nothing sent since.
    observe(pool, s, 'gpt-4o', h(3, '1s'), 10, markB);
    // a's report is older and says 4 left: ignored.
    observe(pool, s, 'gpt-4o', h(4, '1s'), 11, markA);
    expect([next(pool, 20, GPT4), next(pool, 20, GPT4), next(pool, 20, GPT4), next(pool, 20, GPT4)]).toEqual(['k1', 'k1', 'k1', undefined]);
    // At the reset the window is taken as refilled to the limit (10), not as unlimited.
    const after = Array.from({ length: 11 }, () => next(pool, 1010, GPT4));
    expect(after.filter((n) => n === 'k1')).toHaveLength(10);
    expect(after[10]).toBeUndefined();
  });

  it('token headroom is checked against the request estimate', () => {
    const pool = make(1);
    observe(pool, byName(pool, 'k1'), 'gpt-4o', { 'x-ratelimit-limit-tokens': '1000', 'x-ratelimit-remaining-tokens': '150', 'x-ratelimit-reset-tokens': '6s' }, 0);
    expect(next(pool, 1, { model: 'gpt-4o', tokens: 200 })).toBeUndefined();
    expect(pool.nextAvailableAt({ model: 'gpt-4o', tokens: 200 }, 1)).toBe(6000);
    expect(next(pool, 1, { model: 'gpt-4o', tokens: 100 })).toBe('k1');
  });
});

describe('strategies', () => {
  it('fill_first uses the first healthy key until it cools', () => {
    const pool = make(3, { strategy: 'fill_first' });
    expect([next(pool), next(pool), next(pool)]).toEqual(['k1', 'k1', 'k1']);
    pool.cool(byName(pool, 'k1'), '', 100, 'rate_limited', 0);
    expect([next(pool, 1), next(pool, 1)]).toEqual(['k2', 'k2']);
  });

  it('least_inflight takes the key with the fewest requests in flight', () => {
    const pool = make(3, { strategy: 'least_inflight' });
    const a = pool.acquire({ demand: ANY_MODEL, now: 0 })!;
    const b = pool.acquire({ demand: ANY_MODEL, now: 0 })!;
    pool.acquire({ demand: ANY_MODEL, now: 0 });
    b!.end();
    expect(a.state.key.name).toBe('k1');
    expect(pool.acquire({ demand: ANY_MODEL, now: 0 })?.state.key.name).toBe('k2');
  });

  it('headroom prefers the key with the most limit left', () => {
    const pool = make(3, { strategy: 'headroom' });
    const rem = (n: number) => ({ 'x-ratelimit-limit-requests': '100', 'x-ratelimit-remaining-requests': String(n), 'x-ratelimit-reset-requests': '60s' });
    observe(pool, byName(pool, 'k1'), 'gpt-4o', rem(10), 0);
    observe(pool, byName(pool, 'k2'), 'gpt-4o', rem(80), 0);
    observe(pool, byName(pool, 'k3'), 'gpt-4o', rem(40), 0);
    expect(next(pool, 1, GPT4)).toBe('k2');
  });

  it('random spreads uniformly over eligible keys (seeded)', () => {
    let seed = 42;
    const rng = () => ((seed = (seed * 16807) % 2147483647) - 1) / 2147483646;
    const pool = make(4, { strategy: 'random', random: rng });
    pool.disable(byName(pool, 'k4'), 'forbidden', 1e15);
    const counts = new Map<string, number>();
    for (let i = 0; i < 3000; i++) {
      const n = next(pool)!;
      counts.set(n, (counts.get(n) ?? 0) + 1);
    }
    expect([...counts.keys()].sort()).toEqual(['k1', 'k2', 'k3']);
    for (const c of counts.values()) expect(c).toBeGreaterThan(850);
  });

  it('weighted follows the weights (seeded)', () => {
    let seed = 7;
    const rng = () => ((seed = (seed * 16807) % 2147483647) - 1) / 2147483646;
    const pool = make(2, { strategy: 'weighted', random: rng }, [{ weight: 3 }, { weight: 1 }]);
    let k1 = 0;
    for (let i = 0; i < 4000; i++) if (next(pool) === 'k1') k1++;
    expect(k1 / 4000).toBeGreaterThan(0.7);
    expect(k1 / 4000).toBeLessThan(0.8);
  });
});

describe('sticky sessions', () => {
  it('the same session gets the same key while it is healthy, and moves on rotation', () => {
    const pool = make(3, { maxSessions: 10 });
    const first = next(pool, 0, GPT4, { session: 's1' });
    next(pool, 0, GPT4);
    expect(next(pool, 0, GPT4, { session: 's1' })).toBe(first);
    pool.cool(byName(pool, first!), 'gpt-4o', 1000, 'rate_limited', 0);
    const moved = next(pool, 1, GPT4, { session: 's1' });
    expect(moved).not.toBe(first);
    expect(next(pool, 2, GPT4, { session: 's1' })).toBe(moved);
  });
  it('forgets the least recently used session beyond maxSessions', () => {
    const pool = make(3, { maxSessions: 1 });
    expect(next(pool, 0, ANY_MODEL, { session: 'a' })).toBe('k1');
    expect(next(pool, 0, ANY_MODEL, { session: 'b' })).toBe('k2');
    expect(next(pool, 0, ANY_MODEL, { session: 'a' })).toBe('k3');
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

describe('disables and model refusals', () => {
  it('a disable lasts its period, then the key is usable again by itself', () => {
    const pool = make(2);
    pool.disable(byName(pool, 'k1'), 'unauthorized', 5000);
    expect(pool.usable).toBe(1);
    expect([next(pool, 4999), next(pool, 4999)]).toEqual(['k2', 'k2']);
    expect(pool.nextAvailableAt(ANY_MODEL, 5000)).toBe(5000);
    expect(pool.usable).toBe(2);
    expect([next(pool, 5000), next(pool, 5000)].sort()).toEqual(['k1', 'k2']);
  });
  it('a key not allowed a model is skipped for that model only, and its answer is remembered while no key may serve it', () => {
    const pool = make(2);
    const answer = { status: 403, headers: { 'content-type': 'application/json' }, body: '{"error":{"code":"model_not_found"}}' };
    pool.cool(byName(pool, 'k1'), 'gpt-4o', 10_000, 'model_unavailable', 0);
    pool.rememberAnswer('gpt-4o', answer);
    expect(pool.answerFor('gpt-4o', 1)).toBeUndefined();
    expect(next(pool, 1, GPT4)).toBe('k2');
    expect(next(pool, 1, MINI)).toBe('k1');
    pool.cool(byName(pool, 'k2'), 'gpt-4o', 10_000, 'model_unavailable', 0);
    expect(next(pool, 1, GPT4)).toBeUndefined();
    expect(pool.answerFor('gpt-4o', 1)).toEqual(answer);
    expect(pool.answerFor('gpt-4o', 10_000)).toBeUndefined();
    // Not a rate limit: no streak, no 429 count.
    expect(byName(pool, 'k1').stats.rateLimited).toBe(0);
    expect(pool.streakOf(byName(pool, 'k1'), 'gpt-4o')).toBe(0);
  });
  it('remembers a bounded number of answers', () => {
    const pool = make(1);
    for (let i = 0; i < 100; i++) {
      pool.cool(byName(pool, 'k1'), `m${i}`, 10_000, 'model_unavailable', 0);
      pool.rememberAnswer(`m${i}`, { status: 404, headers: {}, body: String(i) });
    }
    expect(pool.answerFor('m0', 1)).toBeUndefined();
    expect(pool.answerFor('m99', 1)?.body).toBe('99');
  });
});
