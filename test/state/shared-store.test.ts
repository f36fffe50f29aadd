// One contract, two stores: the in-memory reference and Redis (a real redis-server on loopback).
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/logger.js';
import { RedisStore } from '../../src/state/redis-store.js';
import { MemoryHub, type SharedStore, type StoredFact } from '../../src/state/shared-store.js';
import { redisAvailable, startRedis, type TestRedis } from '../helpers/redis.js';
import { waitFor } from '../helpers/wait.js';

interface Harness {
  /** Two replicas' views of one store. */
  a: SharedStore;
  b: SharedStore;
  now(): number;
  /** Lets `ms` pass for expiry. */
  pass(ms: number): Promise<void>;
  close(): Promise<void>;
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

async function memoryHarness(): Promise<Harness> {
  let now = 1_000_000;
  const hub = new MemoryHub(() => now);
  return {
    a: hub.client(),
    b: hub.client(),
    now: () => now,
    pass: async (ms) => {
      now += ms;
    },
    close: async () => undefined,
  };
}

let redis: TestRedis | undefined;
async function redisHarness(): Promise<Harness> {
  redis ??= await startRedis();
  const prefix = `t${Math.random().toString(36).slice(2)}:`;
  const logger = createLogger('silent');
  const a = new RedisStore({ url: redis.url, prefix, logger });
  const b = new RedisStore({ url: redis.url, prefix, logger });
  await Promise.all([a.connect(), b.connect()]);
  await waitFor(() => a.healthy && b.healthy);
  // Let the SUBSCRIBE land before anything is published.
  await sleep(50);
  return { a, b, now: () => Date.now(), pass: (ms) => sleep(ms), close: async () => void (await Promise.all([a.close(), b.close()])) };
}

const stores: [string, () => Promise<Harness>, boolean][] = [
  ['memory', memoryHarness, true],
  ['redis', redisHarness, redisAvailable()],
];

describe.each(stores)('SharedStore contract: %s', (_name, make, available) => {
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
    cleanups.push(() => h.close());
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

  run('cooldowns only extend: a shorter one is neither stored nor sent', async () => {
    const h = await make();
    cleanups.push(() => h.close());
    const heard: StoredFact[] = [];
    h.b.subscribe((f) => heard.push(f));
    const long = cool(h, 60_000);
    await h.a.publish(long);
    await h.a.publish(cool(h, 5_000));
    await waitFor(() => heard.length >= 1);
    await sleep(30);
    expect(heard).toEqual([long]);
    expect(await h.b.load()).toEqual([long]);
  });

  run('load returns what still holds; facts expire on their own', async () => {
    const h = await make();
    cleanups.push(() => h.close());
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
});

afterAll(async () => {
  await redis?.kill();
});
