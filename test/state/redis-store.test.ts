// What only the Redis store has to get right: outages. While Redis is away the replica decides alone and
// loses nothing; when Redis returns, Redis holds exactly the slots this replica still has in flight.
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/logger.js';
import { RedisStore } from '../../src/state/redis-store.js';
import type { TakeRequest } from '../../src/state/store.js';
import { redisAvailable, startRedis, type TestRedis } from '../helpers/redis.js';
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

  it('a release that comes before its take is answered still frees the slot', async () => {
    const redis = await startRedis();
    cleanups.push(() => redis.kill());
    const a = await store(redis.url, `e${Math.random().toString(36).slice(2)}:`);
    const req = { ...take('fpA'), limits: {}, countInflight: true };
    // An attempt that did not wait for the store ends before the answer arrives.
    const pending = a.take(req);
    pending.release('successes');
    expect(await pending.answer).toMatchObject({ ok: true, inflight: 1 });
    await sleep(50);
    // Only the new attempt is in flight.
    expect(await a.take(req).answer).toMatchObject({ ok: true, inflight: 1 });
  });
});
