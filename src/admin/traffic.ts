// Every finished request, folded into plain counters once (app.proxy.onRequest): per upstream the
// requests by client and status, retries, refused replays, cut streams and three histograms; per key
// the attempts by result, rotations and rolling per-minute rates; per client the admin table. The
// admin view and /metrics read these; nothing here runs at scrape time but reads.
import type { Config } from '../config/load.js';
import type { RequestRecord } from '../proxy/request-record.js';
import { ClientTally } from './client-tally.js';
import { Buckets } from './histogram-family.js';
import { MinuteWindow } from './minute-window.js';

/** Distinct client label values in metrics; later clients share OTHER_CLIENT (a label per header value would let any caller grow the scrape without bound). */
export const MAX_CLIENT_LABELS = 100;
export const OTHER_CLIENT = '_other';
/** Distinct attempt results (statuses, failure phases) and cut reasons kept per key / upstream; the rest count as "other". */
const MAX_RESULTS = 64;

/** Seconds. Upstream time spans a fast error to a long completion. */
export const UPSTREAM_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
/** Seconds. keypool's own time per request: well under a millisecond when healthy. */
export const OVERHEAD_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5];
/** Seconds a request spent in the waiting room (only requests that waited). */
export const WAIT_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

/** The replay guard's refusal (proxy/retry-policy.ts, replay_refused). */
const REPLAY_REFUSED = 'keypool_upstream_may_have_processed';

export interface KeyTraffic {
  /** Attempts by what they came to: a status ('200', '429') or a failure phase ('connect', 'sent'). */
  readonly attempts: Map<string, number>;
  /** Attempts after which keypool rotated away from this key. */
  rotations: number;
  readonly perMinute: MinuteWindow;
  readonly rateLimitedPerMinute: MinuteWindow;
}

export interface UpstreamTraffic {
  /** Client label -> status -> requests. */
  readonly requests: Map<string, Map<number, number>>;
  /** Units of retry.maxRetries spent. */
  retries: number;
  replaysRefused: number;
  /** Requests for this upstream that a fallback answered, by the upstream that did. */
  readonly fallbacks: Map<string, number>;
  /** Answers cut after they had started, by why. */
  readonly cuts: Map<string, number>;
  readonly upstreamSeconds: Buckets;
  readonly overheadSeconds: Buckets;
  readonly waitSeconds: Buckets;
  readonly keys: Map<string, KeyTraffic>;
}

function newKey(): KeyTraffic {
  return { attempts: new Map(), rotations: 0, perMinute: new MinuteWindow(), rateLimitedPerMinute: new MinuteWindow() };
}

function bump<K>(m: Map<K, number>, k: K, n = 1): void {
  m.set(k, (m.get(k) ?? 0) + n);
}

function bumpBounded(m: Map<string, number>, k: string): void {
  bump(m, m.has(k) || m.size < MAX_RESULTS ? k : 'other');
}

export class Traffic {
  readonly upstreams = new Map<string, UpstreamTraffic>();
  readonly clients = new ClientTally();
  readonly #clientLabels = new Set<string>();

  /** Starts every configured upstream and key at zero, so they are listed before their first request. */
  constructor(config: Pick<Config, 'upstreams'>) {
    for (const u of config.upstreams) {
      const t = this.#upstream(u.name);
      for (const k of u.keys) t.keys.set(k.name, newKey());
    }
  }

  /** Folds one finished request in; `now` stamps the per-minute windows. */
  record(r: RequestRecord, now: number): void {
    this.clients.record(r, now);
    // Upstream and key names come from the config (a reload may add some), never from a client.
    const u = this.upstreams.get(r.upstream) ?? this.#upstream(r.upstream);
    const client = this.#clientLabel(r.client);
    let byStatus = u.requests.get(client);
    if (byStatus === undefined) {
      byStatus = new Map();
      u.requests.set(client, byStatus);
    }
    bump(byStatus, r.status);
    u.retries += r.retries;
    if (r.error === REPLAY_REFUSED) u.replaysRefused++;
    if (r.cut !== undefined) bumpBounded(u.cuts, r.cut);
    if (r.attempts > 0) u.upstreamSeconds.observe(r.upstreamMs / 1000);
    u.overheadSeconds.observe(Math.max(0, r.totalMs - r.upstreamMs - r.waitedMs) / 1000);
    if (r.waitedMs > 0) u.waitSeconds.observe(r.waitedMs / 1000);
    // A fallback served: counted on the upstream the request was for, by the one that answered.
    const asked = r.chain[0];
    if (asked !== undefined && asked !== r.upstream) {
      const p = this.upstreams.get(asked) ?? this.#upstream(asked);
      bump(p.fallbacks, r.upstream);
    }
    for (const step of r.trail) {
      // A chain's attempts may be on other upstreams: each counts where it went.
      const at = step.upstream === r.upstream ? u : (this.upstreams.get(step.upstream) ?? this.#upstream(step.upstream));
      let k = at.keys.get(step.key);
      if (k === undefined) {
        // A key added by a reload: names still come from the config, so the map stays bounded.
        k = newKey();
        at.keys.set(step.key, k);
      }
      bumpBounded(k.attempts, step.result);
      k.perMinute.add(now);
      if (step.result === '429') k.rateLimitedPerMinute.add(now);
      if (step.then === 'rotate') k.rotations++;
    }
  }

  /** The key's attempts and 429s over the last minute. */
  perMinute(upstream: string, key: string, now: number): { requests: number; rateLimited: number } {
    const k = this.upstreams.get(upstream)?.keys.get(key);
    return k === undefined ? { requests: 0, rateLimited: 0 } : { requests: k.perMinute.total(now), rateLimited: k.rateLimitedPerMinute.total(now) };
  }

  #upstream(name: string): UpstreamTraffic {
    const t: UpstreamTraffic = {
      requests: new Map(),
      retries: 0,
      replaysRefused: 0,
      fallbacks: new Map(),
      cuts: new Map(),
      upstreamSeconds: new Buckets(UPSTREAM_BUCKETS),
      overheadSeconds: new Buckets(OVERHEAD_BUCKETS),
      waitSeconds: new Buckets(WAIT_BUCKETS),
      keys: new Map(),
    };
    this.upstreams.set(name, t);
    return t;
  }

  #clientLabel(client: string): string {
    if (this.#clientLabels.has(client)) return client;
    if (this.#clientLabels.size >= MAX_CLIENT_LABELS) return OTHER_CLIENT;
    this.#clientLabels.add(client);
    return client;
  }
}
