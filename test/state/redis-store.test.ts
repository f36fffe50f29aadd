// What only the Redis store has to get right: outages. While Redis is away the replica decides alone and
// loses nothing; when Redis returns, Redis holds exactly the slots this replica still has in flight:
// taken alone, taken by a call whose answer was lost, or asked for while the slots were rewritten.
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/logger.js';
import { RedisStore } from '../../src/state/redis-store.js';
import type { TakeRequest } from '../../src/state/store.js';
import { redisAvailable, startRedis, startRelay, type TestRedis } from '../helpers/redis.js';
import { waitFor } from '../helpers/wait.js';

const available = redisAvailable();
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

async function store(url: string, prefix: string) {
  const s = new RedisStore({ url, prefix, logger: createLogger('silent'), replicaTimeoutMs: 2_000 });
  await s.connect();
  cleanups.push(() => s.close());
  await waitFor(() => s.healthy);
  return s;
}

const take = (fingerprint: string): TakeRequest => ({
  upstream: 'openai',
  fingerprint,
  model: 'gpt-4o',
  tokens: 1,
  limits: { maxConcurrent: 2 },
  now: Date.now(),
});

describe.skipIf(!available)('RedisStore through an outage', () => {
  it('serves alone while Redis is away, then rewrites its slots so none leaks and none is lost', async () => {
    let redis: TestRedis = await startRedis();
    cleanups.push(() => redis.kill());
    const prefix = `o${Math.random().toString(36).slice(2)}:`;
    const a = await store(redis.url, prefix);

    // Two slots on key A; then Redis dies.
    const first = a.take(take('fpA'));
    expect(await first.answer).toMatchObject({ ok: true });
    expect(await a.take(take('fpA')).answer).toMatchObject({ ok: true });
    await redis.kill();
    await waitFor(() => !a.healthy);

    // Meanwhile: one slot of A is released (Redis never hears of it), one slot of B taken alone.
    first.release('successes');
    expect(await a.take(take('fpB')).answer).toEqual({ ok: 'local' });

    redis = await startRedis(redis.port);
    await waitFor(() => a.healthy, 10_000);
    // A second replica sees what a really holds: one slot of A (a second fits), two of B would not.
    const b = await store(redis.url, prefix);
    await sleep(50);
    expect(await b.take({ ...take('fpA'), countInflight: true }).answer).toMatchObject({ ok: true, inflight: 2 });
    expect(await b.take({ ...take('fpA') }).answer).toMatchObject({ ok: false, why: 'slots' });
    expect(await b.take({ ...take('fpB'), limits: { maxConcurrent: 1 } }).answer).toMatchObject({ ok: false, why: 'slots' });
  });

  it('a take that failed on Redis is served alone and held: Redis is reset to it on recovery', async () => {
    const redis = await startRedis();
    cleanups.push(() => redis.kill());
    const relay = await startRelay(redis);
    cleanups.push(() => relay.close());
    const prefix = `f${Math.random().toString(36).slice(2)}:`;
    const a = await store(relay.url, prefix);
    const b = await store(redis.url, prefix);
    const resynced = counter(a);
    relay.holdAnswers();
    const lost = a.take(one('fpA'));
    // The take reaches Redis and takes the slot there; its answer never comes back.
    await waitFor(async () => (await slotsHeld(redis, prefix)) === 1);
    relay.cut();
    relay.releaseAnswers();
    expect(await lost.answer).toEqual({ ok: 'local' });
    await waitFor(() => resynced() === 1 && a.healthy, 10_000);
    // The attempt it was served to is still in flight: the fleet's only slot is taken.
    expect(await b.take(one('fpA')).answer).toMatchObject({ ok: false, why: 'slots' });
    lost.release('successes');
    await a.flush();
    expect(await b.take(one('fpA')).answer).toMatchObject({ ok: true, inflight: 1 });
  });

  it('a resync while takes are unanswered counts them: a grant stays held, a refusal gives its slot back', async () => {
    const redis = await startRedis();
    cleanups.push(() => redis.kill());
    const relay = await startRelay(redis);
    cleanups.push(() => relay.close());
    const prefix = `g${Math.random().toString(36).slice(2)}:`;
    const a = await store(relay.url, prefix);
    const b = await store(redis.url, prefix);
    const resynced = counter(a);
    // fpB's only slot is b's: a's take of it will be refused.
    const bs = b.take(one('fpB'));
    expect(await bs.answer).toMatchObject({ ok: true });
    relay.holdAnswers((l) => !l.subscriber);
    const granted = a.take(one('fpA'));
    const refused = a.take(one('fpB'));
    await waitFor(async () => (await slotsHeld(redis, prefix)) === 2);
    // Only the subscriber drops: the store resyncs (and rewrites its slots) while both takes are unanswered.
    relay.cut((l) => l.subscriber);
    await waitFor(() => relay.links().filter((l) => l.subscriber).length === 1);
    await sleep(50);
    relay.releaseAnswers();
    expect(await granted.answer).toMatchObject({ ok: true });
    expect(await refused.answer).toMatchObject({ ok: false, why: 'slots' });
    await waitFor(() => resynced() === 1);
    await a.flush();
    expect(await b.take(one('fpA')).answer).toMatchObject({ ok: false, why: 'slots' });
    bs.release(undefined);
    await b.flush();
    expect(await b.take(one('fpB')).answer).toMatchObject({ ok: true, inflight: 1 });
    granted.release(undefined);
    await a.flush();
    expect(await b.take(one('fpA')).answer).toMatchObject({ ok: true, inflight: 1 });
  });

  it('a release of a slot Redis already reclaimed frees nothing', async () => {
    const redis = await startRedis();
    cleanups.push(() => redis.kill());
    const prefix = `r${Math.random().toString(36).slice(2)}:`;
    const a = await store(redis.url, prefix);
    const held = a.take(take('fpA'));
    expect(await held.answer).toMatchObject({ ok: true });
    // a was silent past the replica timeout (a long pause): its slot hash expired.
    const admin = new Redis(redis.url);
    try {
      for (const k of await admin.keys(`${prefix}slots:*`)) await admin.del(k);
    } finally {
      admin.disconnect();
    }
    held.release(undefined);
    await a.flush();
    const b = await store(redis.url, prefix);
    expect(await b.take(take('fpA')).answer).toMatchObject({ ok: true, inflight: 1 });
    expect(await b.take(take('fpA')).answer).toMatchObject({ ok: true, inflight: 2 });
    expect(await b.take(take('fpA')).answer).toMatchObject({ ok: false, why: 'slots' });
  });

  it('a command that times out on a live connection: local until Redis answers a PING, then a resync', async () => {
    const redis = await startRedis();
    cleanups.push(() => redis.kill());
    const relay = await startRelay(redis);
    cleanups.push(() => relay.close());
    const a = await store(relay.url, `p${Math.random().toString(36).slice(2)}:`);
    const resynced = counter(a);
    relay.holdAnswers((l) => !l.subscriber);
    const slow = a.take(one('fpA'));
    expect(await slow.answer).toEqual({ ok: 'local' });
    expect(a.healthy).toBe(false);
    relay.releaseAnswers();
    // The connection never closed: no 'ready' comes; the PING brings the store back.
    await waitFor(() => a.healthy && resynced() === 1, 10_000);
    expect(relay.links()).toHaveLength(2);
  });
});

const one = (fingerprint: string): TakeRequest => ({ ...take(fingerprint), limits: { maxConcurrent: 1 } });

/** Counts the store's resyncs. */
function counter(s: RedisStore): () => number {
  let n = 0;
  s.onReconnect(() => n++);
  return () => n;
}

/** Slots Redis holds for every replica under `prefix`. */
async function slotsHeld(redis: TestRedis, prefix: string): Promise<number> {
  const admin = new Redis(redis.url, { lazyConnect: true });
  try {
    await admin.connect();
    let n = 0;
    for (const k of await admin.keys(`${prefix}slots:*`)) for (const v of Object.values(await admin.hgetall(k))) n += Number(v);
    return n;
  } finally {
    admin.disconnect();
  }
}
