// The reference StateStore: replicas in one process share one hub (tests, and the semantics the Redis
// store must match: the same contract suite runs against both). Cooldowns only extend, entries expire at
// their deadline, publishers do not hear their own facts, slots of a silent replica stop counting.
import type { KeyStats } from '../keys/key-state.js';
import { countWindow, left, requestsShortUntil, roll, tokensShortUntil, windowFullUntil, type Bucket, type Window } from '../keys/windows.js';
import {
  DEFAULT_DISABLED_TTL_MS,
  DEFAULT_REPLICA_TIMEOUT_MS,
  expiryOf,
  factId,
  type BucketReport,
  type Refusal,
  type StateStore,
  type StoredFact,
  type TakeRequest,
  type TakeResult,
} from './store.js';

interface ScopeLedger {
  sent: number;
  sentTokens: number;
  requests: Bucket | undefined;
  tokens: Bucket | undefined;
}

interface KeyLedger {
  readonly rpm: Window;
  readonly tpm: Window;
  readonly scopes: Map<string, ScopeLedger>;
}

interface Replica {
  readonly slots: Map<string, number>;
  lastSeen: number;
  /** Stopped beating without closing: a crash, as far as the others can tell. */
  silent: boolean;
  readonly onFact: ((f: StoredFact) => void)[];
  readonly onFreed: ((upstream: string, fingerprint: string) => void)[];
}

/** A memory store client, plus what tests need to play a crash. */
export interface MemoryStoreClient extends StateStore {
  /** Stops as a crashed process would: no release, no goodbye; its slots count until it times out. */
  abandon(): void;
  /** Nothing waits here to be sent (as RedisStore.flush, for tests that run against both). */
  flush(): Promise<void>;
}

export interface MemoryHubOptions {
  /** How long a disabled key stays disabled. @default 86400000 (24 h) */
  readonly disabledTtlMs?: number | undefined;
}

export class MemoryHub {
  readonly #facts = new Map<string, { fact: StoredFact; expiresAt: number }>();
  readonly #replicas = new Set<Replica>();
  readonly #ledgers = new Map<string, KeyLedger>();
  readonly #tickets = new Map<string, number>();
  readonly #usage = new Map<string, Map<string, Partial<KeyStats>>>();
  readonly #now: () => number;
  readonly #replicaTimeoutMs: number;
  readonly #disabledTtlMs: number;

  constructor(now: () => number = Date.now, replicaTimeoutMs = DEFAULT_REPLICA_TIMEOUT_MS, o: MemoryHubOptions = {}) {
    this.#now = now;
    this.#replicaTimeoutMs = replicaTimeoutMs;
    this.#disabledTtlMs = o.disabledTtlMs ?? DEFAULT_DISABLED_TTL_MS;
  }

  client(): MemoryStoreClient {
    const me: Replica = { slots: new Map(), lastSeen: this.#now(), silent: false, onFact: [], onFreed: [] };
    this.#replicas.add(me);
    const hub = this;
    const beat = (): void => {
      if (!me.silent) me.lastSeen = hub.#now();
    };
    return {
      healthy: true,
      async publish(fact) {
        beat();
        const now = hub.#now();
        const expiresAt = expiryOf(fact, now, hub.#disabledTtlMs);
        const id = factId(fact);
        const held = hub.#facts.get(id);
        if (expiresAt <= now || (held !== undefined && held.expiresAt > now && held.expiresAt >= expiresAt)) return;
        hub.#facts.set(id, { fact, expiresAt });
        for (const r of hub.#replicas) if (r !== me) for (const fn of r.onFact) fn(fact);
      },
      async load() {
        const now = hub.#now();
        return [...hub.#facts.values()].filter((e) => e.expiresAt > now).map((e) => e.fact);
      },
      subscribe(fn) {
        me.onFact.push(fn);
      },
      onFreed(fn) {
        me.onFreed.push(fn);
      },
      onReconnect() {
        // Always reachable.
      },
      take(req) {
        beat();
        const result = hub.#take(req, me);
        let released = false;
        return {
          answer: Promise.resolve(result),
          release(outcome) {
            if (released) return;
            released = true;
            beat();
            if (outcome !== undefined) hub.#count(req.upstream, req.fingerprint, outcome);
            // A refused or untracked take holds no slot: its release frees nobody else's.
            if (result.ok === true && result.inflight !== undefined) hub.#release(req.upstream, req.fingerprint, req.limits.maxConcurrent, me);
          },
        };
      },
      report(req) {
        beat();
        const ledger = hub.#ledger(`${req.upstream}|${req.fingerprint}`);
        let scope = ledger.scopes.get(req.model);
        if (scope === undefined) {
          scope = { sent: 0, sentTokens: 0, requests: undefined, tokens: undefined };
          ledger.scopes.set(req.model, scope);
        }
        scope.requests = accepted(scope.requests, req.requests, req.mark.requests);
        scope.tokens = accepted(scope.tokens, req.tokens, req.mark.tokens);
      },
      async usage(upstream) {
        return Object.fromEntries([...(hub.#usage.get(upstream) ?? new Map<string, Partial<KeyStats>>())].map(([fp, c]) => [fp, { ...c }]));
      },
      async flush() {
        // Every change is applied at once.
      },
      abandon() {
        me.silent = true;
        me.onFact.length = 0;
        me.onFreed.length = 0;
      },
      async close() {
        hub.#replicas.delete(me);
      },
    };
  }

  #take(req: TakeRequest, me: Replica): TakeResult {
    const { now, tokens, limits } = req;
    const id = `${req.upstream}|${req.fingerprint}`;
    const ledger = this.#ledger(id);
    let until = 0;
    let why: Refusal = 'slots';
    const block = (at: number, reason: Refusal): void => {
      if (at > until) {
        until = at;
        why = reason;
      }
    };
    block(windowFullUntil(ledger.rpm, limits.rpm, 1, now), 'rpm');
    block(windowFullUntil(ledger.tpm, limits.tpm, tokens, now), 'tpm');
    let scope = ledger.scopes.get(req.model);
    if (scope !== undefined) {
      block(requestsShortUntil(scope.requests, scope.sent, now), 'requests');
      block(tokensShortUntil(scope.tokens, scope.sentTokens, tokens, now), 'tokens');
    }
    if (until > now) return { ok: false, why, until };
    // Slots are tracked only where someone reads them, as in the Lua script.
    const slots = req.countInflight === true || limits.maxConcurrent !== undefined;
    const inflight = slots ? this.#inflight(id, me, now) : 0;
    if (limits.maxConcurrent !== undefined && inflight >= limits.maxConcurrent) return { ok: false, why: 'slots', until: Infinity };

    // Windows count only requests made under a hand-set limit (the Lua script keeps no window otherwise).
    if (limits.rpm !== undefined || limits.tpm !== undefined) {
      countWindow(ledger.rpm, 1, now);
      countWindow(ledger.tpm, tokens, now);
    }
    if (scope === undefined) {
      scope = { sent: 0, sentTokens: 0, requests: undefined, tokens: undefined };
      ledger.scopes.set(req.model, scope);
    }
    if (scope.requests) roll(scope.requests, scope.sent, now);
    if (scope.tokens) roll(scope.tokens, scope.sentTokens, now);
    scope.sent++;
    scope.sentTokens += tokens;
    if (slots) me.slots.set(id, (me.slots.get(id) ?? 0) + 1);
    this.#count(req.upstream, req.fingerprint, 'attempts');
    const ticket = (this.#tickets.get(req.upstream) ?? 0) + 1;
    this.#tickets.set(req.upstream, ticket);
    return {
      ok: true,
      mark: { requests: scope.sent, tokens: scope.sentTokens },
      inflight: slots ? inflight + 1 : undefined,
      ticket,
      requests: leftAfter(scope.requests, scope.sent, now),
      tokens: leftAfter(scope.tokens, scope.sentTokens, now),
    };
  }

  #release(upstream: string, fingerprint: string, maxConcurrent: number | undefined, me: Replica): void {
    const id = `${upstream}|${fingerprint}`;
    const mine = me.slots.get(id) ?? 0;
    if (mine === 0) return;
    if (mine === 1) me.slots.delete(id);
    else me.slots.set(id, mine - 1);
    if (maxConcurrent !== undefined && this.#inflight(id, me, this.#now()) + 1 >= maxConcurrent) {
      for (const r of this.#replicas) for (const fn of r.onFreed) fn(upstream, fingerprint);
    }
  }

  #ledger(id: string): KeyLedger {
    let l = this.#ledgers.get(id);
    if (l === undefined) {
      l = { rpm: { start: 0, count: 0 }, tpm: { start: 0, count: 0 }, scopes: new Map() };
      this.#ledgers.set(id, l);
    }
    return l;
  }

  /** Slots on a key held by live replicas (`me` always counts: it knows it is alive). */
  #inflight(id: string, me: Replica, now: number): number {
    let n = 0;
    for (const r of this.#replicas) {
      if (r === me || !r.silent || now - r.lastSeen < this.#replicaTimeoutMs) n += r.slots.get(id) ?? 0;
    }
    return n;
  }

  #count(upstream: string, fingerprint: string, field: keyof KeyStats): void {
    let byKey = this.#usage.get(upstream);
    if (byKey === undefined) {
      byKey = new Map();
      this.#usage.set(upstream, byKey);
    }
    const c = byKey.get(fingerprint) ?? {};
    c[field] = (c[field] ?? 0) + 1;
    byKey.set(fingerprint, c);
  }
}

/** A bucket as a take reports it back: what is left after the request just counted. */
function leftAfter(b: Bucket | undefined, sent: number, now: number): BucketReport | undefined {
  return b === undefined ? undefined : { limit: b.limit, remaining: left(b, sent, now), resetAt: b.resetAt, period: b.period };
}

/** The held bucket after a report: the report unless it is older than what is held (by mark). */
function accepted(held: Bucket | undefined, fresh: BucketReport | undefined, base: number): Bucket | undefined {
  if (fresh === undefined || (held !== undefined && base < held.base)) return held;
  return { ...fresh, base, period: Math.max(fresh.period, held?.period ?? 0) };
}
