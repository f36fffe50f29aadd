// The slot a take holds, in both stores: a take's release frees exactly that slot, whatever order its
// answer and its attempt's end arrive in, and whatever other takes of the same key do meanwhile.
// (A take that failed on Redis and was served alone: redis-store.test.ts, it needs a broken network.)
import { describe, expect, it } from 'vitest';
import { REPLICA_TIMEOUT_MS, contractStores, takeReq } from './contract-harness.js';

const stores = contractStores();

describe.each(stores)('StateStore slots: %s', (_name, make, available) => {
  const run = available ? it : it.skip;
  const one = { maxConcurrent: 1 };

  run("a refused take's release frees nothing, though this replica holds a slot of the same key", async () => {
    const h = await make();
    const held = h.a.take(takeReq(h, { limits: one }));
    expect(await held.answer).toMatchObject({ ok: true });
    const refused = h.a.take(takeReq(h, { limits: one }));
    expect(await refused.answer).toMatchObject({ ok: false, why: 'slots' });
    refused.release('serverErrors');
    refused.release('serverErrors');
    await h.settle();
    // The held attempt is still in flight: the fleet's only slot is taken.
    expect(await h.b.take(takeReq(h, { limits: one })).answer).toMatchObject({ ok: false, why: 'slots' });
    held.release('successes');
    await h.settle();
    expect(await h.b.take(takeReq(h, { limits: one })).answer).toMatchObject({ ok: true, inflight: 1 });
    expect((await h.b.usage('openai'))['fp000001']).toMatchObject({ serverErrors: 1, successes: 1 });
  });

  run('a release that comes before its refusal frees nothing', async () => {
    const h = await make();
    const held = h.a.take(takeReq(h, { limits: one }));
    expect(await held.answer).toMatchObject({ ok: true });
    const refused = h.a.take(takeReq(h, { limits: one }));
    refused.release(undefined);
    expect(await refused.answer).toMatchObject({ ok: false, why: 'slots' });
    await h.settle();
    expect(await h.b.take(takeReq(h, { limits: one })).answer).toMatchObject({ ok: false, why: 'slots' });
  });

  run('a release that comes before its grant frees the granted slot, once', async () => {
    const h = await make();
    const early = h.a.take(takeReq(h, { limits: one }));
    early.release('successes');
    expect(await early.answer).toMatchObject({ ok: true, inflight: 1 });
    early.release('successes');
    await h.settle();
    const next = h.b.take(takeReq(h, { limits: one }));
    expect(await next.answer).toMatchObject({ ok: true, inflight: 1 });
    expect((await h.b.usage('openai'))['fp000001']).toMatchObject({ attempts: 2, successes: 1 });
  });

  run("an early release is paid by its own take's grant, not by another take of the key that was refused", async () => {
    const h = await make();
    const limits = { tpm: 100, maxConcurrent: 2 };
    // b holds one of the two slots and 60 of the minute's 100 tokens.
    expect(await h.b.take(takeReq(h, { tokens: 60, limits })).answer).toMatchObject({ ok: true });
    // a sends two takes at once: the first is refused (tpm), the second granted; the first ends early.
    const big = h.a.take(takeReq(h, { tokens: 50, limits }));
    const small = h.a.take(takeReq(h, { tokens: 10, limits }));
    big.release(undefined);
    expect(await big.answer).toMatchObject({ ok: false, why: 'tpm' });
    expect(await small.answer).toMatchObject({ ok: true, inflight: 2 });
    await h.settle();
    // small is still in flight: both slots are held.
    expect(await h.b.take(takeReq(h, { tokens: 1, limits })).answer).toMatchObject({ ok: false, why: 'slots' });
    small.release(undefined);
    await h.settle();
    expect(await h.b.take(takeReq(h, { tokens: 1, limits })).answer).toMatchObject({ ok: true, inflight: 2 });
  });

  run('takes without slot tracking hold none; their releases free nobody', async () => {
    const h = await make();
    const held = h.a.take(takeReq(h, { limits: one }));
    expect(await held.answer).toMatchObject({ ok: true });
    // A strategy that does not compare in-flight counts, on a key without maxConcurrent: nothing tracked.
    const untracked = h.a.take(takeReq(h, { countInflight: false }));
    expect(await untracked.answer).toMatchObject({ ok: true, inflight: undefined });
    untracked.release('successes');
    await h.settle();
    expect(await h.b.take(takeReq(h, { limits: one })).answer).toMatchObject({ ok: false, why: 'slots' });
    // Nor do they count against a limit: another key, one untracked take in flight, its only slot free.
    expect(await h.a.take(takeReq(h, { fingerprint: 'fp000009', countInflight: false })).answer).toMatchObject({ ok: true });
    expect(await h.b.take(takeReq(h, { fingerprint: 'fp000009', limits: one })).answer).toMatchObject({ ok: true, inflight: 1 });
  });

  run('maxConcurrent tracks slots by itself, whatever the strategy', async () => {
    const h = await make();
    const held = h.a.take(takeReq(h, { limits: one, countInflight: false }));
    expect(await held.answer).toMatchObject({ ok: true, inflight: 1 });
    expect(await h.b.take(takeReq(h, { limits: one, countInflight: false })).answer).toMatchObject({ ok: false, why: 'slots' });
    held.release(undefined);
    await h.settle();
    expect(await h.b.take(takeReq(h, { limits: one, countInflight: false })).answer).toMatchObject({ ok: true, inflight: 1 });
  });

  run('the slots of a live replica keep counting past the replica timeout', async () => {
    const h = await make();
    expect(await h.a.take(takeReq(h, { limits: one })).answer).toMatchObject({ ok: true });
    await h.pass(REPLICA_TIMEOUT_MS * 1.5);
    expect(await h.b.take(takeReq(h, { limits: one, now: h.now() })).answer).toMatchObject({ ok: false, why: 'slots' });
  });
});
