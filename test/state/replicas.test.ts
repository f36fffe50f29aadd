// Several keypool processes sharing one Redis and one fake upstream, as a team would run them.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startFakeUpstream, type FakeUpstream } from '../../src/fake-upstream/server.js';
import { redisAvailable, startRedis, type TestRedis } from '../helpers/redis.js';
import { serve } from '../helpers/serve.js';
import { waitFor } from '../helpers/wait.js';

const KEYS = ['sk-replica-key-one-00001', 'sk-replica-key-two-00002', 'sk-replica-key-three-003'];
const available = redisAvailable();

let redis: TestRedis;
let upstream: FakeUpstream;
const running: Awaited<ReturnType<typeof serve>>[] = [];
const extraRedis: TestRedis[] = [];

beforeAll(async () => {
  if (!available) return;
  redis = await startRedis();
  upstream = await startFakeUpstream();
});
afterEach(async () => {
  for (const r of running.splice(0)) {
    // A replica a test killed has nothing left to stop.
    if (r.child.exitCode === null && r.child.signalCode === null) await r.stop();
    r.child.kill('SIGKILL');
  }
  for (const r of extraRedis.splice(0)) await r.kill();
  upstream?.reset();
  for (const k of KEYS) upstream?.setDefault(k, { kind: 'ok' });
});
afterAll(async () => {
  await upstream?.close();
  await redis?.kill();
});

interface ReplicaConfig {
  prefix?: string;
  /** Options added to every key, as YAML flow-map entries. */
  keyOptions?: string;
  retry?: string;
  replicaTimeoutMs?: number;
}

function configFor(redisUrl: string, o: ReplicaConfig = {}): string {
  const prefix = o.prefix ?? `r${Math.random().toString(36).slice(2)}:`;
  const dir = mkdtempSync(join(tmpdir(), 'kp-replicas-'));
  const file = join(dir, 'keypool.yaml');
  const keys = o.keyOptions === undefined ? `[${KEYS.join(', ')}]` : `[${KEYS.map((k) => `{ key: ${k}, ${o.keyOptions} }`).join(', ')}]`;
  writeFileSync(
    file,
    [
      'log: { level: info }',
      `state: { redis: { url: "${redisUrl}", prefix: "${prefix}", replicaTimeoutMs: ${o.replicaTimeoutMs ?? 5000} } }`,
      'upstreams:',
      '  - name: openai',
      `    baseUrl: ${upstream.url}/v1`,
      `    keys: ${keys}`,
      `retry: ${o.retry ?? '{ maxWaitMs: 0, backoffBaseMs: 0 }'}`,
      '',
    ].join('\n'),
  );
  return file;
}

async function replica(file: string) {
  const r = await serve(file);
  running.push(r);
  await waitFor(() => r.output().includes('redis connected'));
  return r;
}

async function get(base: string) {
  const res = await request(`${base}/v1/models`, { headersTimeout: 30_000 });
  await res.body.dump();
  return {
    status: res.statusCode,
    key: String(res.headers['x-keypool-key']),
    attempts: Number(res.headers['x-keypool-attempts']),
    waitMs: Number(res.headers['x-keypool-wait-ms'] ?? 0),
  };
}

const sentWith = (key: string) => upstream.requests.filter((r) => r.key === key).length;

describe.skipIf(!available)('replicas sharing Redis', () => {
  it('a cooldown one replica sees is respected by the others within 50 ms, and by a restarted replica', async () => {
    const file = configFor(redis.url);
    const a = await replica(file);
    const b = await replica(file);
    upstream.setDefault(KEYS[0]!, { kind: 'rate_limit', style: 'retry-after', ms: 60_000 });
    const first = await get(a.url);
    expect(first).toMatchObject({ status: 200, attempts: 2 });
    expect(sentWith(KEYS[0]!)).toBe(1);
    await sleep(50);
    for (let i = 0; i < 6; i++) expect((await get(b.url)).status).toBe(200);
    expect(sentWith(KEYS[0]!)).toBe(1);

    // A replica that starts later loads the shared state before it serves.
    const c = await replica(file);
    for (let i = 0; i < 3; i++) expect((await get(c.url)).key).not.toBe('openai-1');
    expect(sentWith(KEYS[0]!)).toBe(1);
  });

  it('round robin takes turns over the whole fleet: consecutive requests go to different keys, whichever replica serves them', async () => {
    const file = configFor(redis.url);
    const a = await replica(file);
    const b = await replica(file);
    const keys: string[] = [];
    for (let i = 0; i < 30; i++) {
      const r = await get(i % 2 === 0 ? a.url : b.url);
      expect(r.status).toBe(200);
      keys.push(r.key);
    }
    for (const k of KEYS) {
      expect(sentWith(k)).toBeGreaterThanOrEqual(8);
      expect(sentWith(k)).toBeLessThanOrEqual(12);
    }
    // Each replica turning its own cursor would send a and b to the same key in pairs (15 repeats):
    // the shared ticket makes the fleet one cursor (the first two requests may still meet).
    const repeats = keys.filter((k, i) => i > 0 && k === keys[i - 1]).length;
    expect(repeats).toBeLessThanOrEqual(2);
  });

  it('losing Redis loses no request; it shows in /healthz; when Redis returns the replicas resync', async () => {
    const own = await startRedis();
    extraRedis.push(own);
    const file = configFor(own.url);
    const a = await replica(file);
    const b = await replica(file);
    const statuses: number[] = [];
    for (let i = 0; i < 10; i++) statuses.push((await get(i % 2 ? a.url : b.url)).status);
    await own.kill();
    for (let i = 0; i < 10; i++) statuses.push((await get(i % 2 ? a.url : b.url)).status);
    expect(statuses.every((s) => s === 200)).toBe(true);
    expect(statuses).toHaveLength(20);
    const health = async (url: string) => (await (await request(`${url}/healthz`)).body.json()) as { sharedState: string };
    expect((await health(a.url)).sharedState).toBe('degraded');
    expect(a.output()).toContain('redis unreachable; serving from local state');

    // Learnt during the outage, by replica a only.
    upstream.setDefault(KEYS[1]!, { kind: 'rate_limit', style: 'retry-after', ms: 60_000 });
    for (let i = 0; i < 3; i++) await get(a.url);
    const learnt = sentWith(KEYS[1]!);
    expect(learnt).toBeGreaterThanOrEqual(1);

    const back = await startRedis(own.port);
    extraRedis.push(back);
    await waitFor(() => a.output().includes('redis is back; resyncing'), 10_000);
    await waitFor(() => b.output().includes('redis is back; resyncing'), 10_000);
    // A new replica learns from Redis what replica a learnt while Redis was away.
    const c = await replica(file);
    for (let i = 0; i < 4; i++) expect((await get(c.url)).key).not.toBe('openai-2');
    expect(sentWith(KEYS[1]!)).toBe(learnt);
    expect((await health(c.url)).sharedState).toBe('ok');
  });

  it('maxConcurrent holds across replicas: one request per key at a time over the whole fleet', async () => {
    const file = configFor(redis.url, { keyOptions: 'maxConcurrent: 1', retry: '{ maxWaitMs: 10000 }' });
    const a = await replica(file);
    const b = await replica(file);
    for (const k of KEYS) upstream.setDefault(k, { kind: 'ok', delayMs: 150 });
    const results = await Promise.all(Array.from({ length: 9 }, (_, i) => get(i % 2 === 0 ? a.url : b.url)));
    expect(results.map((r) => r.status)).toEqual(Array(9).fill(200));
    for (const k of KEYS) {
      const at = upstream.requests.filter((r) => r.key === k).map((r) => r.at).sort((x, y) => x - y);
      expect(at).toHaveLength(3);
      for (let i = 1; i < at.length; i++) expect(at[i]! - at[i - 1]!).toBeGreaterThanOrEqual(140);
    }
  });

  it('the slots of a replica that crashed are reclaimed after replicaTimeoutMs', async () => {
    const file = configFor(redis.url, { keyOptions: 'maxConcurrent: 1', retry: '{ maxWaitMs: 15000 }', replicaTimeoutMs: 1000 });
    const a = await replica(file);
    const b = await replica(file);
    // Replica a takes every key's only slot with requests that never end, then dies without a word.
    for (const k of KEYS) upstream.setDefault(k, { kind: 'hang' });
    const hung = KEYS.map(() => get(a.url).catch(() => undefined));
    await waitFor(() => upstream.requests.length === KEYS.length);
    a.child.kill('SIGKILL');
    await Promise.all(hung);
    for (const k of KEYS) upstream.setDefault(k, { kind: 'ok' });
    const started = Date.now();
    const served = await get(b.url);
    expect(served.status).toBe(200);
    // It had to wait: the dead replica's slots counted until its heartbeat went stale.
    expect(served.waitMs).toBeGreaterThan(0);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(b.output()).not.toContain('"level":50');
  });
});

