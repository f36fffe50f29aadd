// One contract, two stores: the in-memory reference and Redis (a real redis-server on loopback). Facts
// and the ledger's basics here; precise slot release in store-slots.contract.test.ts, the window and
// bucket arithmetic in store-arithmetic.contract.test.ts.
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import type { StoredFact } from '../../src/state/store.js';
import { waitFor } from '../helpers/wait.js';
import { FP, REPLICA_TIMEOUT_MS, contractStores, takeReq, type Harness } from './contract-harness.js';

const stores = contractStores();

describe.each(stores)('StateStore contract: %s', (_name, make, available) => {
  const run = available ? it : it.skip;
  const cool = (h: Harness, ms: number, model = 'gpt-4o'): StoredFact => ({
    upstream: 'openai',
    kind: 'cooldown',
    fingerprint: 'abcd1234',
    model,
    reason: 'rate_limited',
    until: h.now() + ms,
  });

  run('a fact published by one replica reaches the other, not the publisher', async () => {
    const h = await make();
    const heardA: StoredFact[] = [];
    const heardB: StoredFact[] = [];
    h.a.subscribe((f) => heardA.push(f));
    h.b.subscribe((f) => heardB.push(f));
    const fact = cool(h, 60_000);
    await h.a.publish(fact);
    await waitFor(() => heardB.length === 1);
    expect(heardB[0]).toEqual(fact);
    expect(heardA).toEqual([]);
  });

  run('a deadline with a fraction of a ms is shared, and the store stays healthy', async () => {
    const h = await make();
    const heard: StoredFact[] = [];
    h.b.subscribe((f) => heard.push(f));
    const fact = cool(h, 20_000.5);
    await h.a.publish(fact);
    await waitFor(() => heard.length === 1);
    expect(h.a.healthy).toBe(true);
  });

  run('cooldowns only extend: a shorter, equal or past one is neither stored nor sent', async () => {
    const h = await make();
    const heard: StoredFact[] = [];
    h.b.subscribe((f) => heard.push(f));
    const long = cool(h, 60_000);
    await h.a.publish(long);
    await h.a.publish(long);
    await h.a.publish(cool(h, 5_000));
    // Already over: nothing to tell anyone.
    await h.a.publish(cool(h, -1, 'past'));
    await waitFor(() => heard.length >= 1);
    await sleep(30);
    expect(heard).toEqual([long]);
    expect(await h.b.load()).toEqual([long]);
  });

  run('load returns what still holds; facts expire on their own', async () => {
    const h = await make();
    await h.a.publish(cool(h, 150, 'short'));
    const long = cool(h, 60_000, 'long');
    await h.a.publish(long);
    const disabled: StoredFact = { upstream: 'openai', kind: 'disabled', fingerprint: 'ffff0000', reason: 'unauthorized' };
    await h.a.publish(disabled);
    expect(await h.b.load()).toHaveLength(3);
    await h.pass(300);
    const left = await h.b.load();
    expect(left).toHaveLength(2);
    expect(left).toEqual(expect.arrayContaining([long, disabled]));
  });


  run('a disabled key stays disabled for disabledTtlMs, then the flag is gone', async () => {
    const h = await make({ disabledTtlMs: 200 });
    const disabled: StoredFact = { upstream: 'openai', kind: 'disabled', fingerprint: 'ffff0001', reason: 'unauthorized' };
    await h.a.publish(disabled);
    expect(await h.b.load()).toEqual([disabled]);
    await h.pass(120);
    expect(await h.b.load()).toEqual([disabled]);
    await h.pass(200);
    expect(await h.b.load()).toEqual([]);
  });

  run('take counts across replicas: one shared mark per key and model, consecutive tickets, slots of both', async () => {
    const h = await make();
    const first = await h.a.take(takeReq(h)).answer;
    const second = await h.b.take(takeReq(h)).answer;
    const other = await h.b.take(takeReq(h, { model: 'other' })).answer;
    expect(first).toMatchObject({ ok: true, mark: { requests: 1, tokens: 10 }, inflight: 1 });
    expect(second).toMatchObject({ ok: true, mark: { requests: 2, tokens: 20 }, inflight: 2 });
    expect(other).toMatchObject({ ok: true, mark: { requests: 1, tokens: 10 }, inflight: 3 });
    if (first.ok !== true || second.ok !== true || other.ok !== true) throw new Error('expected grants');
    expect([second.ticket - first.ticket, other.ticket - second.ticket]).toEqual([1, 1]);
  });

  run('maxConcurrent holds across replicas; a release of a full key tells every replica', async () => {
    const h = await make();
    const limits = { maxConcurrent: 1 };
    const freed: string[] = [];
    h.b.onFreed((upstream, fp) => freed.push(`${upstream}|${fp}`));
    const held = h.a.take(takeReq(h, { limits }));
    expect(await held.answer).toMatchObject({ ok: true });
    expect(await h.b.take(takeReq(h, { limits })).answer).toEqual({ ok: false, why: 'slots', until: Infinity });
    held.release('successes');
    await waitFor(() => freed.length === 1);
    expect(freed).toEqual([`openai|${FP}`]);
    expect(await h.b.take(takeReq(h, { limits })).answer).toMatchObject({ ok: true, inflight: 1 });
  });

  run('a refusal changes nothing; a release with no slot held only counts its outcome', async () => {
    const h = await make();
    const limits = { maxConcurrent: 1 };
    await h.a.take(takeReq(h, { limits })).answer;
    const refused = [0, 1, 2].map(() => h.b.take(takeReq(h, { limits })));
    for (const r of refused) expect(await r.answer).toMatchObject({ ok: false });
    // b holds no slot: its release must not free a's.
    refused[0]!.release('serverErrors');
    await waitFor(async () => (await h.a.usage('openai'))[FP]?.serverErrors === 1);
    expect(await h.b.take(takeReq(h, { limits })).answer).toMatchObject({ ok: false, why: 'slots' });
    expect((await h.a.usage('openai'))[FP]).toEqual({ attempts: 1, serverErrors: 1 });
  });

  run('hand-set rpm and tpm windows are shared', async () => {
    const h = await make();
    const rpm = { rpm: 2 };
    const t0 = h.now();
    expect(await h.a.take(takeReq(h, { limits: rpm })).answer).toMatchObject({ ok: true });
    expect(await h.b.take(takeReq(h, { limits: rpm })).answer).toMatchObject({ ok: true });
    const refused = await h.a.take(takeReq(h, { limits: rpm })).answer;
    expect(refused).toMatchObject({ ok: false, why: 'rpm' });
    if (refused.ok !== false) throw new Error('expected a refusal');
    expect(refused.until).toBeGreaterThanOrEqual(t0 + 60_000);
    expect(refused.until).toBeLessThan(h.now() + 60_001);

    const tpm = { tpm: 150 };
    const fp = 'fp000002';
    expect(await h.a.take(takeReq(h, { fingerprint: fp, tokens: 100, limits: tpm })).answer).toMatchObject({ ok: true });
    expect(await h.b.take(takeReq(h, { fingerprint: fp, tokens: 100, limits: tpm })).answer).toMatchObject({ ok: false, why: 'tpm' });
    expect(await h.b.take(takeReq(h, { fingerprint: fp, tokens: 50, limits: tpm })).answer).toMatchObject({ ok: true });
  });

  run("the upstream's buckets are shared: a report from one replica limits the other; older reports are dropped", async () => {
    const h = await make();
    const t = await h.a.take(takeReq(h)).answer;
    if (t.ok !== true) throw new Error('expected a grant');
    const resetAt = h.now() + 60_000;
    // Sent with the first request: 2 left of 10.
    h.a.report({ upstream: 'openai', fingerprint: FP, model: 'gpt-4o', mark: t.mark, requests: { limit: 10, remaining: 2, resetAt, period: 60_000 }, tokens: undefined, now: h.now() });
    await sleep(20);
    expect(await h.b.take(takeReq(h)).answer).toMatchObject({ ok: true });
    expect(await h.b.take(takeReq(h)).answer).toMatchObject({ ok: true });
    // An older report (mark 0) saying plenty is left does not undo what the newer one said.
    h.b.report({ upstream: 'openai', fingerprint: FP, model: 'gpt-4o', mark: { requests: 0, tokens: 0 }, requests: { limit: 10, remaining: 9, resetAt, period: 60_000 }, tokens: undefined, now: h.now() });
    await sleep(20);
    const refused = await h.a.take(takeReq(h)).answer;
    expect(refused).toMatchObject({ ok: false, why: 'requests' });
    if (refused.ok !== false) throw new Error('expected a refusal');
    expect(Math.abs(refused.until - resetAt)).toBeLessThanOrEqual(1);
    // Another model of the same key is not limited by it.
    expect(await h.a.take(takeReq(h, { model: 'gpt-4o-mini' })).answer).toMatchObject({ ok: true });
  });

  run('usage counters add up over replicas', async () => {
    const h = await make();
    const ta = h.a.take(takeReq(h));
    const tb = h.b.take(takeReq(h));
    await Promise.all([ta.answer, tb.answer]);
    ta.release('successes');
    tb.release('rateLimited');
    await waitFor(async () => (await h.b.usage('openai'))[FP]?.rateLimited === 1);
    expect((await h.a.usage('openai'))[FP]).toEqual({ attempts: 2, successes: 1, rateLimited: 1 });
  });

  run('slots of a crashed replica stop counting once it is silent for the replica timeout', async () => {
    const h = await make();
    const limits = { maxConcurrent: 1 };
    expect(await h.a.take(takeReq(h, { limits })).answer).toMatchObject({ ok: true });
    const heard: StoredFact[] = [];
    h.a.subscribe((f) => heard.push(f));
    h.a.abandon();
    // A crashed replica hears nothing more.
    await h.b.publish(cool(h, 60_000));
    await sleep(30);
    expect(heard).toEqual([]);
    expect(await h.b.take(takeReq(h, { limits })).answer).toMatchObject({ ok: false, why: 'slots' });
    await h.pass(REPLICA_TIMEOUT_MS + 150);
    expect(await h.b.take(takeReq(h, { limits, now: h.now() })).answer).toMatchObject({ ok: true, inflight: 1 });
  });

  run('a replica that closes cleanly frees its slots at once', async () => {
    const h = await make();
    const limits = { maxConcurrent: 1 };
    await h.a.take(takeReq(h, { limits })).answer;
    await h.a.close();
    expect(await h.b.take(takeReq(h, { limits })).answer).toMatchObject({ ok: true, inflight: 1 });
  });
});

