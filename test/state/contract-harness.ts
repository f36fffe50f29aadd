// The two stores every contract file runs against: the in-memory reference and Redis (a real
// redis-server on loopback). Each harness is two replicas' views of one store.
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach } from 'vitest';
import { createLogger } from '../../src/logger.js';
import { MemoryHub } from '../../src/state/memory-store.js';
import { RedisStore } from '../../src/state/redis-store.js';
import type { StateStore, TakeRequest } from '../../src/state/store.js';
import { redisAvailable, startRedis, type TestRedis } from '../helpers/redis.js';
import { waitFor } from '../helpers/wait.js';

export type Replica = StateStore & {
  abandon(): void;
  /** Sends what waits to ride with the next take (releases, reports, usage) now. */
  flush(): Promise<void>;
};

/**
 * Short, so a crashed replica's slots come back within a test; not shorter, or a heartbeat delayed on a
 * loaded machine makes a live replica look dead.
 */
export const REPLICA_TIMEOUT_MS = 1_000;

export interface Harness {
  a: Replica;
  b: Replica;
  now(): number;
  /** Lets `ms` pass for expiry. */
  pass(ms: number): Promise<void>;
  /** Both replicas have sent everything pending. */
  settle(): Promise<void>;
  close(): Promise<void>;
}

export interface HarnessOptions {
  disabledTtlMs?: number;
}

export type MakeHarness = (o?: HarnessOptions) => Promise<Harness>;

export const FP = 'fp000001';

/** A take on openai/FP for gpt-4o, 10 tokens, slots counted; `over` changes any of it. */
export const takeReq = (h: Harness, over: Partial<TakeRequest> = {}): TakeRequest => ({
  upstream: 'openai',
  fingerprint: FP,
  model: 'gpt-4o',
  tokens: 10,
  limits: {},
  now: h.now(),
  countInflight: true,
  ...over,
});

const settle = (a: Replica, b: Replica) => async (): Promise<void> => void (await Promise.all([a.flush(), b.flush()]));

/** Registers the file's cleanup hooks and returns [name, make, available] per store. */
export function contractStores(): [string, MakeHarness, boolean][] {
  const cleanups: (() => Promise<void>)[] = [];
  let redis: TestRedis | undefined;
  afterEach(async () => {
    while (cleanups.length > 0) await cleanups.pop()!();
  });
  afterAll(async () => {
    await redis?.kill();
  });

  const memory: MakeHarness = async (o = {}) => {
    let now = 1_000_000;
    const hub = new MemoryHub(() => now, REPLICA_TIMEOUT_MS, o);
    const a = hub.client();
    const b = hub.client();
    const h: Harness = {
      a,
      b,
      now: () => now,
      pass: async (ms) => {
        now += ms;
      },
      settle: settle(a, b),
      close: async () => undefined,
    };
    cleanups.push(() => h.close());
    return h;
  };

  const onRedis: MakeHarness = async (o = {}) => {
    redis ??= await startRedis();
    const prefix = `t${Math.random().toString(36).slice(2)}:`;
    const logger = createLogger('silent');
    const a = new RedisStore({ url: redis.url, prefix, logger, replicaTimeoutMs: REPLICA_TIMEOUT_MS, ...o });
    const b = new RedisStore({ url: redis.url, prefix, logger, replicaTimeoutMs: REPLICA_TIMEOUT_MS, ...o });
    await Promise.all([a.connect(), b.connect()]);
    await waitFor(() => a.healthy && b.healthy);
    const h: Harness = {
      a,
      b,
      now: () => Date.now(),
      pass: (ms) => sleep(ms),
      settle: settle(a, b),
      close: async () => void (await Promise.all([a.close(), b.close()])),
    };
    cleanups.push(() => h.close());
    return h;
  };

  return [
    ['memory', memory, true],
    ['redis', onRedis, redisAvailable()],
  ];
}
