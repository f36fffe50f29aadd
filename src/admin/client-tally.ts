// What each client has been served, for the admin view: counts by status class, 429s, tokens, a
// rolling per-minute rate, when it was last seen. Client names come from requests (a header, an
// address), so the table is bounded: past MAX_CLIENTS the client seen longest ago is forgotten.
import type { RequestRecord } from '../proxy/request-record.js';
import { MinuteWindow } from './minute-window.js';

/** Clients remembered at once. */
export const MAX_CLIENTS = 1_000;

export interface ClientCounts {
  requests: number;
  s2xx: number;
  s3xx: number;
  s4xx: number;
  s5xx: number;
  /** 429s the client got from keypool (its own answers and the upstream's it passed on). */
  rateLimited: number;
  tokensIn: number;
  tokensOut: number;
  lastSeen: number;
  readonly perMinute: MinuteWindow;
}

export class ClientTally {
  readonly #max: number;
  /** Insertion order is recency: a client seen again moves to the end, the first is the stalest. */
  readonly #rows = new Map<string, ClientCounts>();

  constructor(max = MAX_CLIENTS) {
    this.#max = max;
  }

  record(r: RequestRecord, now: number): void {
    let row = this.#rows.get(r.client);
    if (row === undefined) {
      if (this.#rows.size >= this.#max) this.#rows.delete(this.#rows.keys().next().value as string);
      row = { requests: 0, s2xx: 0, s3xx: 0, s4xx: 0, s5xx: 0, rateLimited: 0, tokensIn: 0, tokensOut: 0, lastSeen: 0, perMinute: new MinuteWindow() };
    } else {
      this.#rows.delete(r.client);
    }
    this.#rows.set(r.client, row);
    row.requests++;
    const s = r.status;
    if (s >= 500) row.s5xx++;
    else if (s >= 400) row.s4xx++;
    else if (s >= 300) row.s3xx++;
    else if (s >= 200) row.s2xx++;
    if (s === 429) row.rateLimited++;
    if (r.usage !== undefined) {
      row.tokensIn += r.usage.input;
      row.tokensOut += r.usage.output;
    }
    row.lastSeen = now;
    row.perMinute.add(now);
  }

  get size(): number {
    return this.#rows.size;
  }

  get(client: string): Readonly<ClientCounts> | undefined {
    return this.#rows.get(client);
  }

  /** Most recently seen first. */
  entries(): [string, Readonly<ClientCounts>][] {
    return [...this.#rows].reverse();
  }
}
