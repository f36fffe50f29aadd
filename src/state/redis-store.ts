// The shared store on Redis, for several keypool replicas against one set of keys. Each fact is one key
// with a PX TTL at its deadline (a dead replica leaves nothing stale behind); recording it and telling the
// other replicas is one Lua script, one round trip. Replicas hear each other over pub/sub at once. While
// Redis is unreachable every replica keeps serving from its own state; when it returns, the replica resyncs.
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { expiryOf, factId, type SharedStore, type StoredFact } from './shared-store.js';

/**
 * KEYS[1] the fact, KEYS[2] the channel; ARGV[1] expiry (epoch ms), ARGV[2] TTL ms, ARGV[3] the message.
 * Stores `expiry|message` unless a fact that lasts at least as long is already there, then publishes.
 */
const EXTEND_AND_PUBLISH = `
local held = redis.call('GET', KEYS[1])
if held then
  local expiry = tonumber(string.match(held, '^(%d+)|'))
  if expiry and expiry >= tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[3], 'PX', ARGV[2])
redis.call('PUBLISH', KEYS[2], ARGV[3])
return 1
`;

/** Keys read per SCAN / MGET round when loading. */
const SCAN_BATCH = 500;
/** Longest a single Redis command may take before the store counts as unreachable. */
const COMMAND_TIMEOUT_MS = 1_000;

interface Message {
  origin: string;
  fact: StoredFact;
}

type ScriptedRedis = Redis & {
  keypoolExtend(fact: string, channel: string, expiry: number, ttl: number, message: string): Promise<number>;
};

export interface RedisStoreOptions {
  url: string;
  /** Prefix of every key and channel. @default "keypool:" */
  prefix: string;
  logger: Logger;
  now?: () => number;
}

export class RedisStore implements SharedStore {
  readonly #cmd: ScriptedRedis;
  readonly #sub: Redis;
  readonly #prefix: string;
  readonly #channel: string;
  readonly #origin = randomUUID();
  readonly #logger: Logger;
  readonly #now: () => number;
  readonly #subscribers: ((f: StoredFact) => void)[] = [];
  readonly #reconnectFns: (() => void)[] = [];
  #healthy = false;
  #everReady = false;
  #downLogged = false;
  #closing = false;

  constructor(o: RedisStoreOptions) {
    this.#prefix = o.prefix;
    this.#channel = `${o.prefix}events`;
    this.#logger = o.logger;
    this.#now = o.now ?? Date.now;
    const options = {
      lazyConnect: true,
      // Fail fast while Redis is away: a request must never wait on it.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: COMMAND_TIMEOUT_MS,
      retryStrategy: (times: number) => Math.min(100 * times, 2_000),
    };
    this.#cmd = new Redis(o.url, options) as ScriptedRedis;
    this.#cmd.defineCommand('keypoolExtend', { numberOfKeys: 2, lua: EXTEND_AND_PUBLISH });
    // A subscriber connection must queue its SUBSCRIBE until connected.
    this.#sub = new Redis(o.url, { ...options, enableOfflineQueue: true });
    this.#cmd.on('ready', () => this.#up());
    this.#cmd.on('close', () => this.#down());
    this.#cmd.on('error', () => this.#down());
    this.#sub.on('error', () => {
      // Reported through the command connection; the subscriber reconnects and resubscribes by itself.
    });
    this.#sub.on('message', (_channel: string, text: string) => this.#deliver(text));
  }

  get healthy(): boolean {
    return this.#healthy;
  }

  /** Connects both connections; resolves even when Redis is down (the store then starts degraded). */
  async connect(): Promise<void> {
    await Promise.all([
      this.#cmd.connect().catch(() => undefined),
      this.#sub
        .connect()
        .then(() => this.#sub.subscribe(this.#channel))
        .catch(() => undefined),
    ]);
  }

  async publish(fact: StoredFact): Promise<void> {
    if (!this.#healthy) return;
    const now = this.#now();
    const expiry = expiryOf(fact, now);
    if (expiry <= now) return;
    const message = JSON.stringify({ origin: this.#origin, fact } satisfies Message);
    try {
      await this.#cmd.keypoolExtend(this.#key(fact), this.#channel, expiry, Math.max(1, expiry - now), message);
    } catch {
      this.#down();
    }
  }

  async load(): Promise<StoredFact[]> {
    if (!this.#healthy) return [];
    const out: StoredFact[] = [];
    try {
      let cursor = '0';
      do {
        const [next, keys] = await this.#cmd.scan(cursor, 'MATCH', `${this.#prefix}f:*`, 'COUNT', SCAN_BATCH);
        cursor = next;
        if (keys.length === 0) continue;
        for (const value of await this.#cmd.mget(keys)) {
          const fact = value === null ? undefined : parseStored(value);
          if (fact !== undefined) out.push(fact);
        }
      } while (cursor !== '0');
    } catch {
      this.#down();
    }
    return out;
  }

  subscribe(fn: (fact: StoredFact) => void): void {
    this.#subscribers.push(fn);
  }

  onReconnect(fn: () => void): void {
    this.#reconnectFns.push(fn);
  }

  async close(): Promise<void> {
    this.#closing = true;
    this.#cmd.disconnect();
    this.#sub.disconnect();
  }

  #key(f: StoredFact): string {
    return `${this.#prefix}f:${factId(f)}`;
  }

  #deliver(text: string): void {
    let m: Message;
    try {
      m = JSON.parse(text) as Message;
    } catch {
      return;
    }
    if (m.origin === this.#origin || typeof m.fact !== 'object' || m.fact === null) return;
    for (const fn of this.#subscribers) fn(m.fact);
  }

  #up(): void {
    if (this.#healthy) return;
    this.#healthy = true;
    this.#downLogged = false;
    if (this.#everReady) {
      this.#logger.warn('redis is back; resyncing pool state');
      for (const fn of this.#reconnectFns) fn();
    } else {
      this.#logger.info('redis connected');
    }
    this.#everReady = true;
  }

  #down(): void {
    this.#healthy = false;
    // 'error' repeats on every reconnect attempt: say it once per outage.
    if (this.#closing || this.#downLogged) return;
    this.#downLogged = true;
    this.#logger.warn('redis unreachable; serving from local state until it returns');
  }
}

function parseStored(value: string): StoredFact | undefined {
  const bar = value.indexOf('|');
  if (bar === -1) return undefined;
  try {
    const m = JSON.parse(value.slice(bar + 1)) as Message;
    return m.fact;
  } catch {
    return undefined;
  }
}
