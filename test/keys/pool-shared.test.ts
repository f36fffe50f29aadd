// KeyPool with a shared store: when it waits for the store's yes, when it does not, and what a refusal
// or a late answer does to the local view. The ledger here is a hand-driven stand-in (its answers are
// resolved by the test), not an HTTP client.
import { describe, expect, it } from 'vitest';
import { DEFAULT_KEY_OPTIONS, Key, type KeyOptions } from '../../src/keys/key.js';
import type { Demand } from '../../src/keys/key-state.js';
import type { Ledger, TakeRequest, TakeResult } from '../../src/keys/ledger.js';
import { KeyPool, SLOT_RECHECK_MS, type Lease as _Lease } from '../../src/keys/pool.js';

const GPT4: Demand = { model: 'gpt-4o', tokens: 10 };
const HEADERS = { 'x-ratelimit-limit-requests': '1000', 'x-ratelimit-remaining-requests': '900', 'x-ratelimit-reset-requests': '60s' };
const LOW = { 'x-ratelimit-limit-requests': '1000', 'x-ratelimit-remaining-requests': '40', 'x-ratelimit-reset-requests': '60s' };
const GRANT: TakeResult = { ok: true, mark: { requests: 1, tokens: 10 }, inflight: undefined, ticket: 1, requests: undefined, tokens: undefined };

/** A ledger whose takes wait until the test answers them. */
function handLedger() {
  const takes: { req: TakeRequest; answer: (r: TakeResult) => void }[] = [];
  const ledger: Ledger = {
    take: (req) => ({ answer: new Promise<TakeResult>((answer) => takes.push({ req, answer })), release: () => undefined }),
    report: () => undefined,
    usage: async () => ({}),
    onFreed: () => undefined,
  };
  return { ledger, takes };
}

function pool(ledger: Ledger, options: Partial<KeyOptions> = {}, n = 2) {
  const keys = Array.from({ length: n }, (_, i) => new Key(`k${i + 1}`, `secret-${i + 1}`, { ...DEFAULT_KEY_OPTIONS, ...options }));
  return new KeyPool('u', keys, { ledger });
}

/** Confirms and reports whether the confirm settled before the ledger answered. */
async function confirmNow(p: KeyPool, now: number) {
  const l = p.acquire({ demand: GPT4, now })!;
  let settled: boolean | 'pending' = 'pending';
  const done = Promise.resolve(p.confirm(l, now)).then((g) => (settled = g));
  await Promise.resolve();
  await Promise.resolve();
  return { l, s: l.state, settled: () => settled, done };
}

/** Lets the pool learn the upstream's buckets for both keys (far from the limit). */
function learn(p: KeyPool, headers: Record<string, string>, now: number) {
  for (const s of p.states()) p.observe({ state: s, demand: GPT4, mark: { requests: 0, tokens: 0 }, sharedMark: undefined }, headers, now);
}

describe('KeyPool with a shared store', () => {
  it('waits for the store while it does not know the key+model buckets of an upstream that sends them', async () => {
    const { ledger, takes } = handLedger();
    const p = pool(ledger);
    const first = await confirmNow(p, 0);
    expect(first.settled()).toBe('pending');
    takes[0]!.answer(GRANT);
    await first.done;
    expect(first.settled()).toBe(true);
    expect(first.l.sharedMark).toEqual({ requests: 1, tokens: 10 });
  });

  it('far from every limit, an attempt goes out without waiting; the mark arrives with the answer', async () => {
    const { ledger, takes } = handLedger();
    const p = pool(ledger);
    learn(p, HEADERS, 0);
    const c = await confirmNow(p, 0);
    expect(c.settled()).toBe(true);
    expect(c.l.sharedMark).toBeUndefined();
    takes[0]!.answer(GRANT);
    await Promise.resolve();
    expect(c.l.sharedMark).toEqual({ requests: 1, tokens: 10 });
  });

  it('near the end of a bucket, or with a hand-set limit, every attempt waits', async () => {
    const tight = handLedger();
    const p = pool(tight.ledger);
    learn(p, LOW, 0);
    expect((await confirmNow(p, 0)).settled()).toBe('pending');

    const limited = handLedger();
    const q = pool(limited.ledger, { rpm: 100 });
    learn(q, HEADERS, 0);
    expect((await confirmNow(q, 0)).settled()).toBe('pending');
  });

  it('an upstream that never sends rate-limit headers stops being waited on', async () => {
    const { ledger } = handLedger();
    const p = pool(ledger);
    for (let i = 0; i < 20; i++) p.observe({ state: p.states()[0]!, demand: GPT4, mark: { requests: 0, tokens: 0 }, sharedMark: undefined }, {}, 0);
    expect((await confirmNow(p, 0)).settled()).toBe(true);
  });

  it("a refusal gives the key back and holds it until the limit frees; the next choice is another key", async () => {
    const { ledger, takes } = handLedger();
    const p = pool(ledger, { maxConcurrent: 5 });
    const c = await confirmNow(p, 0);
    expect(c.s.key.name).toBe('k1');
    takes[0]!.answer({ ok: false, why: 'slots', until: Infinity });
    expect(await c.done).toBe(false);
    expect(c.s.inflight).toBe(0);
    expect(c.s.stats.attempts).toBe(0);
    // Held for every model until a slot frees (or the recheck time), not a cooldown.
    expect(c.s.scopes.get('')!.heldUntil).toBe(SLOT_RECHECK_MS);
    expect(c.s.scopes.get('')!.cooldownUntil).toBe(0);
    // The request was never sent: the model's counts (what buckets are measured against) are given back too.
    expect(c.s.scopes.get(GPT4.model)).toMatchObject({ sent: 0, sentTokens: 0 });
    expect(p.acquire({ demand: GPT4, now: 10 })?.state.key.name).toBe('k2');
    p.freed(c.s.key.fingerprint);
    expect(c.s.scopes.get('')!.heldUntil).toBe(0);
  });

  it('a freed slot does not lift a hold for a used-up rpm: that waits for its window', async () => {
    const { ledger, takes } = handLedger();
    const p = pool(ledger, { rpm: 5 }, 1);
    const c = await confirmNow(p, 0);
    takes[0]!.answer({ ok: false, why: 'rpm', until: 60_000 });
    expect(await c.done).toBe(false);
    p.freed(c.s.key.fingerprint);
    expect(c.s.scopes.get('')!.heldUntil).toBe(60_000);
    expect(p.acquire({ demand: GPT4, now: 10 })).toBeUndefined();
  });

  it("takes the shared bucket when it leaves less than the local view: other replicas spent the rest", async () => {
    const { ledger, takes } = handLedger();
    const p = pool(ledger, {}, 1);
    learn(p, HEADERS, 0);
    const c = await confirmNow(p, 0);
    takes[0]!.answer({ ...GRANT, requests: { limit: 1000, remaining: 30, resetAt: 60_000, period: 60_000 } });
    await Promise.resolve();
    // 30 left of 1000 is near the end: the next attempt waits for the store.
    c.l.end();
    expect((await confirmNow(p, 1)).settled()).toBe('pending');
  });

  it('round robin starts at the shared ticket, unless a late answer would send the cursor back', async () => {
    const { ledger, takes } = handLedger();
    const p = pool(ledger, {}, 4);
    learn(p, HEADERS, 0);
    const a = await confirmNow(p, 0);
    expect(a.s.key.name).toBe('k1');
    // Answered at once: the fleet's ticket 7 says start at key 7 % 4 = k4.
    takes[0]!.answer({ ...GRANT, ticket: 7 });
    await Promise.resolve();
    const b = await confirmNow(p, 0);
    expect(b.s.key.name).toBe('k4');
    const c = await confirmNow(p, 0);
    expect(c.s.key.name).toBe('k1');
    // b's answer comes after c was chosen: ignored, the cursor stays after c.
    takes[1]!.answer({ ...GRANT, ticket: 8 });
    await Promise.resolve();
    expect((await confirmNow(p, 0)).s.key.name).toBe('k2');
  });
});
