// What keypool leaves in Redis: only keys under its prefix, whatever characters the prefix has (it is
// not a glob), and every one of them with a TTL, so nothing outlives the replicas that wrote it.
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/logger.js';
import { RedisStore, type RedisStoreOptions } from '../../src/state/redis-store.js';
import type { StoredFact, TakeRequest } from '../../src/state/store.js';
import { redisAvailable, startRedis, type TestRedis } from '../helpers/redis.js';
import { waitFor } from '../helpers/wait.js';

const available = redisAvailable();
let redis: TestRedis;
let admin: Redis;
const stores: RedisStore[] = [];

beforeAll(async () => {
  if (!available) return;
  redis = await startRedis();
  admin = new Redis(redis.url);
});
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
});
afterAll(async () => {
  admin?.disconnect();
  await redis?.kill();
});

async function open(prefix: string, o: Partial<RedisStoreOptions> = {}): Promise<RedisStore> {
  const s = new RedisStore({ url: redis.url, prefix, logger: createLogger('silent'), replicaTimeoutMs: 500, ...o });
  stores.push(s);
  await s.connect();
  await waitFor(() => s.healthy);
  return s;
}

/** A glob matching exactly the keys that start with `prefix`. */
const under = (prefix: string): string => `${prefix.replace(/[*?[\]\\]/g, (c) => `\\${c}`)}*`;

async function keysUnder(prefix: string): Promise<string[]> {
  const out: string[] = [];
  let cursor = '0';
  for (let i = 0; i < 1_000; i++) {
    const [next, keys] = await admin.scan(cursor, 'MATCH', under(prefix), 'COUNT', 500);
    out.push(...keys);
    cursor = next;
    if (cursor === '0') break;
  }
  return out;
}

const cooldown = (fingerprint: string, ms = 60_000): StoredFact => ({
  upstream: 'openai',
  kind: 'cooldown',
  fingerprint,
  model: 'gpt-4o',
  reason: 'rate_limited',
  until: Date.now() + ms,
});

describe.skipIf(!available)('Redis keys', () => {
  it('a prefix with glob characters loads its own facts and nobody else’s', async () => {
    // Pairs where one prefix, read as a glob, matches the other's keys (and, as a glob, not its own).
    const prefixes = ['team[a]:', 'teama:', 'k*:', 'kx:', 'q?:', 'qz:', 'b\\:', 'b:', 'c\\\\:', 'c\\:', 'd[^x]]:', 'dy]:'];
    const published = new Map<string, StoredFact>();
    for (const [i, prefix] of prefixes.entries()) {
      const fact = cooldown(`fp${String(i).padStart(6, '0')}`);
      await (await open(prefix)).publish(fact);
      published.set(prefix, fact);
    }
    for (const prefix of prefixes) expect(await (await open(prefix)).load(), prefix).toEqual([published.get(prefix)]);
  });

  it('every key under the prefix has a TTL after a workload; disabled keys keep theirs for disabledTtlMs', async () => {
    const prefix = 'ttl[1]*?:';
    const a = await open(prefix);
    const b = await open(prefix, { disabledTtlMs: 5_000 });
    await a.publish(cooldown('fpcool01'));
    await a.publish({ upstream: 'openai', kind: 'disabled', fingerprint: 'fpdis001', reason: 'unauthorized' });
    await b.publish({ upstream: 'openai', kind: 'disabled', fingerprint: 'fpdis002', reason: 'unauthorized' });
    const req = (over: Partial<TakeRequest>): TakeRequest => ({
      upstream: 'openai',
      fingerprint: 'fpledger',
      model: 'gpt-4o',
      tokens: 10,
      limits: { rpm: 100, tpm: 10_000, maxConcurrent: 5 },
      now: Date.now(),
      ...over,
    });
    const held = a.take(req({}));
    const r = await held.answer;
    if (r.ok !== true) throw new Error('expected a grant');
    const resetAt = Date.now() + 30_000;
    a.report({
      upstream: 'openai',
      fingerprint: 'fpledger',
      model: 'gpt-4o',
      mark: r.mark,
      requests: { limit: 100, remaining: 50, resetAt, period: 60_000 },
      tokens: { limit: 1_000, remaining: 500, resetAt, period: 60_000 },
      now: Date.now(),
    });
    // A report of a bucket whose reset is long past still expires.
    a.report({ upstream: 'openai', fingerprint: 'fpold', model: 'm', mark: r.mark, requests: { limit: 1, remaining: 1, resetAt: 1, period: 0 }, tokens: undefined, now: Date.now() });
    const other = b.take(req({ countInflight: true, limits: {} }));
    await other.answer;
    other.release('rateLimited');
    await Promise.all([a.flush(), b.flush()]);
    expect(await a.usage('openai')).toMatchObject({ fpledger: { attempts: 2, rateLimited: 1 } });

    const keys = await keysUnder(prefix);
    const kinds = new Set(keys.map((k) => k.slice(prefix.length).replace(/:.*$/, '')));
    expect([...kinds].sort()).toEqual(['L', 'S', 'f', 'facts', 'replicas', 'rr', 'slots', 'usage']);
    const ttls = Object.fromEntries(await Promise.all(keys.map(async (k) => [k.slice(prefix.length), await admin.pttl(k)] as const)));
    for (const [k, ttl] of Object.entries(ttls)) expect(ttl, k).toBeGreaterThan(0);
    const DAY = 24 * 3_600_000;
    expect(ttls['usage:openai']).toBeLessThanOrEqual(30 * DAY);
    expect(ttls['usage:openai']).toBeGreaterThan(29 * DAY);
    expect(ttls['rr:openai']).toBeLessThanOrEqual(DAY);
    expect(ttls['rr:openai']).toBeGreaterThan(DAY - 60_000);
    expect(ttls['f:openai:dis:fpdis001']).toBeGreaterThan(DAY - 60_000);
    expect(ttls['f:openai:dis:fpdis001']).toBeLessThanOrEqual(DAY);
    expect(ttls['f:openai:dis:fpdis002']).toBeLessThanOrEqual(5_000);
    // The fact index lasts as long as its longest fact.
    expect(ttls['facts']).toBeGreaterThanOrEqual(ttls['f:openai:dis:fpdis001']! - 1_000);
    held.release(undefined);
  });

  it('the fact index forgets expired facts', async () => {
    const prefix = 'idx:';
    const a = await open(prefix);
    // A long fact keeps the index itself alive meanwhile.
    await a.publish(cooldown('fplong01'));
    for (let i = 0; i < 20; i++) await a.publish(cooldown(`fpshort${String(i).padStart(2, '0')}`, 50));
    await new Promise((r) => setTimeout(r, 100));
    await a.publish(cooldown('fplong02'));
    expect(await admin.zcard(`${prefix}facts`)).toBe(2);
    expect((await a.load()).map((f) => (f.kind === 'circuit' ? f.upstream : f.fingerprint)).sort()).toEqual(['fplong01', 'fplong02']);
  });

  it('load pages through the index: every fact of a large pool, once', async () => {
    const prefix = 'many:';
    const a = await open(prefix);
    const n = 1_234;
    await Promise.all(Array.from({ length: n }, (_, i) => a.publish(cooldown(`fp${String(i).padStart(6, '0')}`))));
    const loaded = await (await open(prefix)).load();
    expect(loaded).toHaveLength(n);
    expect(new Set(loaded.map((f) => (f.kind === 'circuit' ? f.upstream : f.fingerprint))).size).toBe(n);
  });

  it('a replica that leaves takes its slots and its heartbeat with it', async () => {
    const prefix = 'leave:';
    const a = await open(prefix);
    await a.take({ upstream: 'openai', fingerprint: 'fpleave1', model: 'm', tokens: 1, limits: { maxConcurrent: 1 }, now: Date.now() }).answer;
    expect((await keysUnder(prefix)).filter((k) => k.startsWith(`${prefix}slots:`))).toHaveLength(1);
    await a.close();
    expect((await keysUnder(prefix)).filter((k) => k.startsWith(`${prefix}slots:`))).toEqual([]);
    expect(await admin.zcard(`${prefix}replicas`)).toBe(0);
  });
});
