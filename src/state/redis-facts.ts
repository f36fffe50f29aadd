// The facts side of the Redis store: cooldowns and disabled keys as keys with a PX TTL at their
// deadline, written extend-only and published in one script, found again through an index (a sorted
// set by expiry) rather than a key pattern, so any prefix is safe. Also the channel's message format,
// shared with the freed-slot messages the ledger scripts publish.
import type { RedisLink } from './redis-link.js';
import { expiryOf, factId, type StoredFact } from './store.js';

/** Facts read per index page / MGET when loading. */
const LOAD_BATCH = 500;
/** Pages at most per load: 500,000 facts, far past any pool (bounded like every loop). */
const LOAD_PAGES = 1_000;

export type Message =
  | { origin: string; fact: StoredFact; freed?: undefined }
  | { origin: string; fact?: undefined; freed: { upstream: string; fingerprint: string } };

export interface RedisFactsOptions {
  readonly prefix: string;
  readonly channel: string;
  /** This replica's id: it does not hear its own facts back. */
  readonly origin: string;
  readonly disabledTtlMs: number;
  readonly now: () => number;
}

export class RedisFacts {
  readonly #link: RedisLink;
  readonly #o: RedisFactsOptions;
  readonly #index: string;

  constructor(link: RedisLink, o: RedisFactsOptions) {
    this.#link = link;
    this.#o = o;
    this.#index = `${o.prefix}facts`;
  }

  async publish(fact: StoredFact): Promise<void> {
    if (!this.#link.healthy) return;
    const now = this.#o.now();
    // SET PX takes whole ms only; a fraction would fail the script and take the store down.
    const expiry = Math.ceil(expiryOf(fact, now, this.#o.disabledTtlMs));
    if (expiry <= now) return;
    const message = JSON.stringify({ origin: this.#o.origin, fact } satisfies Message);
    const key = `${this.#o.prefix}f:${factId(fact)}`;
    try {
      await this.#link.cmd.keypoolExtend(key, this.#o.channel, this.#index, expiry, Math.max(1, Math.ceil(expiry - now)), message, Math.floor(now));
    } catch {
      this.#link.failed();
    }
  }

  async load(): Promise<StoredFact[]> {
    if (!this.#link.healthy) return [];
    const out: StoredFact[] = [];
    const cmd = this.#link.cmd;
    try {
      const after = `(${Math.floor(this.#o.now())}`;
      for (let page = 0; page < LOAD_PAGES; page++) {
        const keys = await cmd.zrangebyscore(this.#index, after, '+inf', 'LIMIT', page * LOAD_BATCH, LOAD_BATCH);
        if (keys.length > 0) {
          for (const value of await cmd.mget(keys)) {
            // Gone already (expired by Redis's clock) or not a fact: skipped.
            const fact = value === null ? undefined : parseStored(value);
            if (fact !== undefined) out.push(fact);
          }
        }
        if (keys.length < LOAD_BATCH) break;
      }
    } catch {
      this.#link.failed();
    }
    return out;
  }
}

/** A message from the channel, or undefined when it is not one of ours. */
export function parseMessage(text: string): Message | undefined {
  try {
    const m = JSON.parse(text) as unknown;
    return typeof m === 'object' && m !== null ? (m as Message) : undefined;
  } catch {
    return undefined;
  }
}

/** A stored fact's value is "expiry|message". */
function parseStored(value: string): StoredFact | undefined {
  const bar = value.indexOf('|');
  if (bar === -1) return undefined;
  const m = parseMessage(value.slice(bar + 1));
  return typeof m?.fact === 'object' && m.fact !== null ? m.fact : undefined;
}
