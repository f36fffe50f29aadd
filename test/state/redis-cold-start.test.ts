// A replica that starts while Redis is down (compose starting keypool first, a rolling restart during a
// Redis restart) must join the fleet the moment Redis answers, as a reconnect does: subscribe, load the
// fleet's facts, push its own, rewrite its slots. And a subscriber connection that drops on its own
// (the command connection staying up) must resync too: facts published meanwhile were never heard.
// A TCP relay plays the network between the replica and a real redis-server.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/app.js';
import { loadConfigObject } from '../../src/config/load.js';
import type { KeyPool } from '../../src/keys/pool.js';
import { createLogger } from '../../src/logger.js';
import { RedisStore } from '../../src/state/redis-store.js';
import type { StoredFact, TakeRequest } from '../../src/state/store.js';
import { redisAvailable, startRedis, startRelay, type RedisRelay, type TestRedis } from '../helpers/redis.js';
import { waitFor } from '../helpers/wait.js';

const available = redisAvailable();
let redis: TestRedis;
const closers: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  if (available) redis = await startRedis();
});
afterEach(async () => {
  while (closers.length > 0) await closers.pop()!();
});
afterAll(async () => {
  await redis?.kill();
});

async function store(url: string, prefix: string): Promise<RedisStore> {
  const s = new RedisStore({ url, prefix, logger: createLogger('silent'), replicaTimeoutMs: 2_000 });
  closers.push(() => s.close());
  await s.connect();
  return s;
}

/** A keypool replica in this process whose Redis is reached through `relay`. */
async function replica(relay: RedisRelay, prefix: string): Promise<{ store: RedisStore; pool: KeyPool }> {
  const { config } = loadConfigObject(
    {
      upstreams: [
        {
          name: 'openai',
          baseUrl: 'http://127.0.0.1:9/v1',
          keys: ['sk-cold-aaaaaaaaaaaaaaa1', 'sk-cold-bbbbbbbbbbbbbbb2', { key: 'sk-cold-ccccccccccccccc3', maxConcurrent: 1 }],
        },
      ],
    },
    {},
  );
  const s = await store(relay.url, prefix);
  const app = await buildApp({ config, logger: createLogger('silent'), store: s });
  closers.push(() => app.close());
  await app.ready();
  return { store: s, pool: app.pools.get('openai')! };
}

const cooldown = (fingerprint: string, model: string): Extract<StoredFact, { kind: 'cooldown' }> => ({
  upstream: 'openai',
  kind: 'cooldown',
  fingerprint,
  model,
  reason: 'rate_limited',
  until: Date.now() + 60_000,
});
const cooledUntil = (pool: KeyPool, i: number, model: string): number | undefined => pool.states()[i]!.scopes.get(model)?.cooldownUntil;
const slot = (fingerprint: string): TakeRequest => ({ upstream: 'openai', fingerprint, model: 'gpt-4o', tokens: 1, limits: { maxConcurrent: 1 }, now: Date.now() });

describe.skipIf(!available)('a replica and Redis that come and go', () => {
  it('a replica started while Redis is down joins the fleet on its first connect', async () => {
    const prefix = `c${Math.random().toString(36).slice(2)}:`;
    const relay = await startRelay(redis, { accepting: false });
    closers.push(() => relay.close());
    const { store: a, pool } = await replica(relay, prefix);
    expect(a.healthy).toBe(false);
    const [k1, k2, k3] = pool.states().map((s) => s.key.fingerprint);

    // The fleet (b) knew something before a could connect.
    const b = await store(redis.url, prefix);
    const before = cooldown(k1!, 'gpt-4o');
    await b.publish(before);
    // a learnt something alone, and serves an attempt on the key with one slot.
    const now = Date.now();
    pool.cool(pool.states()[1]!, 'gpt-4o', now + 60_000, 'rate_limited', now);
    const alone = a.take(slot(k3!));
    expect(await alone.answer).toEqual({ ok: 'local' });

    relay.accept();
    await waitFor(() => a.healthy && cooledUntil(pool, 0, 'gpt-4o') === before.until, 10_000);
    // Its facts reach the fleet, its slot counts there, and it hears what the fleet learns from now on.
    await waitFor(async () => (await b.load()).some((f) => f.kind !== 'circuit' && f.fingerprint === k2));
    expect(await b.take(slot(k3!)).answer).toMatchObject({ ok: false, why: 'slots' });
    const after = cooldown(k1!, 'gpt-4o-mini');
    await b.publish(after);
    await waitFor(() => cooledUntil(pool, 0, 'gpt-4o-mini') === after.until);
    alone.release(undefined);
    await a.flush();
    expect(await b.take(slot(k3!)).answer).toMatchObject({ ok: true, inflight: 1 });
  });

  it('a subscriber that reconnects on its own resyncs: facts published while it was away arrive', async () => {
    const prefix = `s${Math.random().toString(36).slice(2)}:`;
    const relay = await startRelay(redis);
    closers.push(() => relay.close());
    const { store: a, pool } = await replica(relay, prefix);
    await waitFor(() => a.healthy);
    const b = await store(redis.url, prefix);
    const k1 = pool.states()[0]!.key.fingerprint;

    relay.refuse();
    relay.cut((l) => l.subscriber);
    const missed = cooldown(k1, 'gpt-4o');
    await b.publish(missed);
    await new Promise((r) => setTimeout(r, 100));
    expect(a.healthy).toBe(true);
    expect(cooledUntil(pool, 0, 'gpt-4o')).not.toBe(missed.until);

    relay.accept();
    await waitFor(() => cooledUntil(pool, 0, 'gpt-4o') === missed.until, 10_000);
    const next = cooldown(k1, 'gpt-4o-mini');
    await b.publish(next);
    await waitFor(() => cooledUntil(pool, 0, 'gpt-4o-mini') === next.until);
  });

  it('the channel is subscribed before the facts are loaded: a fact published in between is not lost', async () => {
    const prefix = `o${Math.random().toString(36).slice(2)}:`;
    const relay = await startRelay(redis);
    closers.push(() => relay.close());
    relay.holdSubscribes();
    const a = new RedisStore({ url: relay.url, prefix, logger: createLogger('silent'), replicaTimeoutMs: 2_000 });
    closers.push(() => a.close());
    const connecting = a.connect();
    // Commands go through, the subscription does not (yet).
    await waitFor(() => a.healthy && relay.links().some((l) => l.subscriber));
    const { config } = loadConfigObject({ upstreams: [{ name: 'openai', baseUrl: 'http://127.0.0.1:9/v1', keys: ['sk-cold-ddddddddddddddd4'] }] }, {});
    const app = await buildApp({ config, logger: createLogger('silent'), store: a });
    closers.push(() => app.close());
    await app.ready();
    const pool = app.pools.get('openai')!;
    const b = await store(redis.url, prefix);
    const between = cooldown(pool.states()[0]!.key.fingerprint, 'gpt-4o');
    await b.publish(between);
    relay.releaseSubscribes();
    await connecting;
    await waitFor(() => cooledUntil(pool, 0, 'gpt-4o') === between.until);
  });
});
