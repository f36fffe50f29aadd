// Starts keypool on a loopback port for a test, with captured logs, and closes it afterwards.
import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../src/app.js';
import type { Clock } from '../../src/clock.js';
import { loadConfigObject, type Config } from '../../src/config/load.js';
import type { ConfigInput } from '../../src/config/schema.js';
import type { KeyPool } from '../../src/keys/pool.js';
import type { WaitingRoom } from '../../src/keys/waiting-room.js';
import { createLogger } from '../../src/logger.js';
import type { StateStore } from '../../src/state/store.js';

export interface TestProxy {
  readonly url: string;
  readonly app: FastifyInstance;
  readonly config: Config;
  readonly pool: KeyPool;
  readonly room: WaitingRoom;
  /** Every log line written so far. */
  readonly logs: string[];
  close(): Promise<void>;
}

export interface TestProxyOptions {
  upstreamUrl: string;
  keys: NonNullable<ConfigInput['upstreams'][number]['keys']>;
  retry?: ConfigInput['retry'];
  cooldown?: ConfigInput['cooldown'];
  server?: ConfigInput['server'];
  upstream?: Partial<ConfigInput['upstreams'][number]>;
  queue?: ConfigInput['queue'];
  clock?: Clock;
  /** @default () => 0.5, so jitter is deterministic */
  random?: () => number;
  /** Shared state, for replicas in one process. */
  store?: StateStore;
  /** Client tokens (config `clients`). */
  clients?: unknown[];
}

export async function startProxy(o: TestProxyOptions): Promise<TestProxy> {
  const { config } = loadConfigObject(
    {
      server: { port: 0, ...o.server },
      log: { level: 'debug' },
      upstreams: [{ name: 'openai', baseUrl: `${o.upstreamUrl}/v1`, keys: o.keys, ...o.upstream }],
      retry: o.retry ?? {},
      cooldown: o.cooldown ?? {},
      queue: o.queue ?? {},
      ...(o.clients === undefined ? {} : { clients: o.clients }),
    },
    {},
  );
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logs.push(...chunk.toString('utf8').split('\n').filter((l) => l !== ''));
      cb();
    },
  });
  const logger = createLogger('debug', sink);
  const app = await buildApp({ config, logger, clock: o.clock, random: o.random ?? (() => 0.5), store: o.store });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const addr = app.server.address();
  if (addr === null || typeof addr === 'string') throw new Error('no address');
  const pool = app.pools.get('openai');
  const room = app.rooms.get('openai');
  if (!pool || !room) throw new Error('no pool');
  return { url: `http://127.0.0.1:${addr.port}`, app, config, pool, room, logs, close: () => app.close() };
}
