// The window and bucket arithmetic of a take, at its edges, in both stores: src/keys/windows.ts (which
// the memory store uses) and the Lua TAKE script must give the same answers. Each case sits on a
// boundary a one-line change to either would move. Times are passed in each take (`now`), so no test
// waits for a window to end.
import { describe, expect, it } from 'vitest';
import type { BucketReport, TakeRequest, TakeResult } from '../../src/state/store.js';
import { contractStores, takeReq, type Harness } from './contract-harness.js';

const stores = contractStores();
const W = 60_000;

describe.each(stores)('StateStore arithmetic: %s', (_name, make, available) => {
  const run = available ? it : it.skip;
  let t0 = 0;
  /** A take at t0 + dt on key `fp`, slots not tracked (a time far from now must not age any replica out). */
  const at = (h: Harness, fp: string, dt: number, over: Partial<TakeRequest> = {}): Promise<TakeResult> =>
    h.a.take(takeReq(h, { fingerprint: fp, now: t0 + dt, countInflight: false, ...over })).answer;
  const start = async (o?: Parameters<typeof make>[0]): Promise<Harness> => {
    const h = await make(o);
    t0 = h.now();
    return h;
  };
  const report = async (h: Harness, fp: string, mark: TakeResult, b: { requests?: BucketReport; tokens?: BucketReport }): Promise<void> => {
    if (mark.ok !== true) throw new Error('expected a grant to report against');
    h.b.report({ upstream: 'openai', fingerprint: fp, model: 'gpt-4o', mark: mark.mark, requests: b.requests, tokens: b.tokens, now: h.now() });
    await h.settle();
  };

  run('rpm: full until the window ends, a fresh window at exactly its start + 60 s', async () => {
    const h = await start();
    const rpm = { rpm: 2 };
    expect(await at(h, 'w1', 0, { limits: rpm })).toMatchObject({ ok: true });
    expect(await at(h, 'w1', 10, { limits: rpm })).toMatchObject({ ok: true });
    expect(await at(h, 'w1', W - 1, { limits: rpm })).toEqual({ ok: false, why: 'rpm', until: t0 + W });
    expect(await at(h, 'w1', W, { limits: rpm })).toMatchObject({ ok: true });
    expect(await at(h, 'w1', W + 1, { limits: rpm })).toMatchObject({ ok: true });
    expect(await at(h, 'w1', W + 2, { limits: rpm })).toEqual({ ok: false, why: 'rpm', until: t0 + 2 * W });
  });

  run('tpm: a demand that fits exactly passes, one token more does not', async () => {
    const h = await start();
    const tpm = { tpm: 100 };
    expect(await at(h, 'w2', 0, { tokens: 60, limits: tpm })).toMatchObject({ ok: true });
    expect(await at(h, 'w2', 1, { tokens: 40, limits: tpm })).toMatchObject({ ok: true });
    expect(await at(h, 'w2', 2, { tokens: 1, limits: tpm })).toEqual({ ok: false, why: 'tpm', until: t0 + W });
    expect(await at(h, 'w2', W, { tokens: 100, limits: tpm })).toMatchObject({ ok: true });
  });

  run('tpm: a window with nothing in it lets a demand larger than the whole limit through, once', async () => {
    const h = await start();
    const tpm = { tpm: 100 };
    // A window opened by a zero-token request still has nothing in it.
    expect(await at(h, 'w3', 0, { tokens: 0, limits: tpm })).toMatchObject({ ok: true });
    expect(await at(h, 'w3', 1, { tokens: 500, limits: tpm })).toMatchObject({ ok: true });
    expect(await at(h, 'w3', 2, { tokens: 1, limits: tpm })).toEqual({ ok: false, why: 'tpm', until: t0 + W });
    expect(await at(h, 'w3', W + 1, { tokens: 500, limits: tpm })).toMatchObject({ ok: true });
  });

  run('windows count only takes made under a hand-set limit', async () => {
    const h = await start();
    for (let i = 0; i < 3; i++) expect(await at(h, 'w4', i)).toMatchObject({ ok: true });
    expect(await at(h, 'w4', 3, { limits: { rpm: 2 } })).toMatchObject({ ok: true });
    expect(await at(h, 'w4', 4, { limits: { rpm: 2 } })).toMatchObject({ ok: true });
    expect(await at(h, 'w4', 5, { limits: { rpm: 2 } })).toMatchObject({ ok: false, why: 'rpm', until: t0 + 3 + W });
  });

  run('a tie between limits names the first (rpm, tpm, requests, tokens); the latest deadline wins; a limit before full slots', async () => {
    const h = await start();
    const limits = { rpm: 1, tpm: 10, maxConcurrent: 1 };
    // Slots counted here: the takes stay near now.
    expect(await at(h, 'q1', 0, { tokens: 10, limits, countInflight: true })).toMatchObject({ ok: true });
    expect(await at(h, 'q1', 1, { tokens: 10, limits, countInflight: true })).toEqual({ ok: false, why: 'rpm', until: t0 + W });
    const first = await at(h, 'q2', 0, { limits: { rpm: 1 } });
    await report(h, 'q2', first, { requests: { limit: 5, remaining: 0, resetAt: t0 + 2 * W, period: W } });
    expect(await at(h, 'q2', 1, { limits: { rpm: 1 } })).toEqual({ ok: false, why: 'requests', until: t0 + 2 * W });
    // rpm and the requests bucket end together: rpm; the requests and the tokens bucket together: requests.
    const q3 = await at(h, 'q3', 0, { limits: { rpm: 1 } });
    await report(h, 'q3', q3, { requests: { limit: 5, remaining: 0, resetAt: t0 + W, period: W }, tokens: { limit: 5, remaining: 0, resetAt: t0 + W, period: W } });
    expect(await at(h, 'q3', 1, { limits: { rpm: 1 } })).toEqual({ ok: false, why: 'rpm', until: t0 + W });
    expect(await at(h, 'q3', 2)).toEqual({ ok: false, why: 'requests', until: t0 + W });
  });

  run('a bucket with a limit of 0 lets one request through at its reset, then refuses for a period', async () => {
    const h = await start();
    const first = await at(h, 'z1', 0);
    await report(h, 'z1', first, { requests: { limit: 0, remaining: 0, resetAt: t0 + 100, period: 1_000 } });
    expect(await at(h, 'z1', 1)).toEqual({ ok: false, why: 'requests', until: t0 + 100 });
    expect(await at(h, 'z1', 100)).toMatchObject({ ok: true, requests: { limit: 0, remaining: -1, resetAt: t0 + 1_100 } });
    expect(await at(h, 'z1', 101)).toEqual({ ok: false, why: 'requests', until: t0 + 1_100 });
  });

  run('a requests bucket: what is left counts every replica since the report; remaining 0 refuses until exactly resetAt, then one period starts', async () => {
    const h = await start();
    const resetAt = t0 + 5_000;
    const first = await at(h, 'b1', 0);
    await report(h, 'b1', first, { requests: { limit: 10, remaining: 3, resetAt, period: 6_000 } });
    const left = async (dt: number): Promise<number | undefined> => {
      const r = await h.b.take(takeReq(h, { fingerprint: 'b1', now: t0 + dt, countInflight: false })).answer;
      return r.ok === true ? r.requests?.remaining : undefined;
    };
    expect([await left(1), await left(2), await left(3)]).toEqual([2, 1, 0]);
    expect(await at(h, 'b1', 4)).toEqual({ ok: false, why: 'requests', until: resetAt });
    expect(await at(h, 'b1', resetAt - t0 - 1)).toEqual({ ok: false, why: 'requests', until: resetAt });
    const fresh = await at(h, 'b1', resetAt - t0);
    expect(fresh).toMatchObject({ ok: true, requests: { limit: 10, remaining: 9, resetAt: resetAt + 6_000, period: 6_000 } });
    expect(await at(h, 'b1', resetAt - t0 + 1)).toMatchObject({ ok: true, requests: { remaining: 8, resetAt: resetAt + 6_000 } });
  });

  run('a bucket reported with no period rolls over to a window of 1 ms', async () => {
    const h = await start();
    const resetAt = t0 + 100;
    const first = await at(h, 'b2', 0);
    await report(h, 'b2', first, { requests: { limit: 5, remaining: 0, resetAt, period: 0 } });
    expect(await at(h, 'b2', 1)).toEqual({ ok: false, why: 'requests', until: resetAt });
    expect(await at(h, 'b2', 100)).toMatchObject({ ok: true, requests: { limit: 5, remaining: 4, resetAt: resetAt + 1, period: 0 } });
  });

  run('a tokens bucket: what fits exactly passes; more than the whole limit passes only when the bucket is full', async () => {
    const h = await start();
    const resetAt = t0 + 5_000;
    const first = await at(h, 't1', 0, { tokens: 10 });
    await report(h, 't1', first, { tokens: { limit: 1_000, remaining: 100, resetAt, period: W } });
    expect(await at(h, 't1', 1, { tokens: 100 })).toMatchObject({ ok: true, tokens: { limit: 1_000, remaining: 0, resetAt, period: W } });
    expect(await at(h, 't1', 2, { tokens: 1 })).toEqual({ ok: false, why: 'tokens', until: resetAt });
    // At the reset the bucket is full: a demand of 5,000 against a limit of 1,000 may go (or it never would).
    expect(await at(h, 't1', resetAt - t0, { tokens: 5_000 })).toMatchObject({ ok: true, tokens: { remaining: -4_000, resetAt: resetAt + W } });
    expect(await at(h, 't1', resetAt - t0 + 1, { tokens: 1 })).toEqual({ ok: false, why: 'tokens', until: resetAt + W });

    const full = await at(h, 't2', 0, { tokens: 10 });
    await report(h, 't2', full, { tokens: { limit: 1_000, remaining: 1_000, resetAt, period: W } });
    expect(await at(h, 't2', 1, { tokens: 5_000 })).toMatchObject({ ok: true });
    const almost = await at(h, 't3', 0, { tokens: 10 });
    await report(h, 't3', almost, { tokens: { limit: 1_000, remaining: 999, resetAt, period: W } });
    expect(await at(h, 't3', 1, { tokens: 5_000 })).toEqual({ ok: false, why: 'tokens', until: resetAt });
  });

  run('reports: at an equal mark the later one wins; the longest period seen is kept', async () => {
    const h = await start();
    const resetAt = t0 + 5_000;
    const first = await at(h, 'r1', 0);
    await report(h, 'r1', first, { requests: { limit: 10, remaining: 9, resetAt, period: W } });
    await report(h, 'r1', first, { requests: { limit: 10, remaining: 1, resetAt, period: 1_000 } });
    expect(await at(h, 'r1', 1)).toMatchObject({ ok: true, requests: { remaining: 0, period: W } });
    expect(await at(h, 'r1', 2)).toEqual({ ok: false, why: 'requests', until: resetAt });
    expect(await at(h, 'r1', resetAt - t0)).toMatchObject({ ok: true, requests: { remaining: 9, resetAt: resetAt + W } });
  });
});
