// One upstream's keys and what keypool knows about each. Every request shares one pool, so a cooldown
// one request sees applies to all at once. No I/O and no clock of its own: callers pass `now`.
import type { Key } from './key.js';
import {
  blockedUntil,
  claimProbe,
  countRequest,
  adoptShared,
  headroomOf,
  isTight,
  newKeyState,
  observeReport,
  readReport,
  scopeOf,
  type CoolReason,
  type Demand,
  type DisableReason,
  type KeyState,
  type Mark,
  type Scope,
} from './key-state.js';
import type { HeaderBag } from './rate-limit-headers.js';
import { restoreKey, restoreScopes, snapshotKey, snapshotScopes, type PoolSnapshot } from './pool-snapshot.js';
import { StickySessions } from './sessions.js';
import { applyFact, extend, factsOf, type SharedFact } from './shared-facts.js';
import { STRATEGY, type ChoiceContext, type Strategy, type StrategyName } from './strategies.js';
import type { Refusal, StateStore, TakeResult, UsageCounter } from '../state/store.js';

/** The part of the shared store a pool calls on its request path. */
export type Ledger = Pick<StateStore, 'take' | 'release' | 'report'>;

/** A key the shared store granted (or will be told of): where the request stands in the shared counts. */
export interface Granted {
  /**
   * Undefined until the store answers (a take not waited for), and when it was unreachable and this
   * replica decided alone. Read it when the response comes back.
   */
  mark: Mark | undefined;
}

/**
 * After a refusal for a full key, look again this soon even if no "freed" message arrives (one can pass
 * the refusal on the wire and find no hold to lift).
 */
export const SLOT_RECHECK_MS = 250;
/** This many responses without a rate-limit header: the upstream sends none, do not wait to learn them. */
const HEADERLESS_AFTER = 20;

export type { CoolReason, Demand, DisableReason, KeyState, KeyStats, Mark } from './key-state.js';
/** The scope whose probe an attempt is (see `lastProbe`); opaque to callers. */
export type Probe = Scope;

export type PoolEvent =
  | {
      type: 'cooldown';
      upstream: string;
      key: string;
      fingerprint: string;
      model: string;
      reason: CoolReason;
      until: number;
      extended: boolean;
      /** Consecutive rate limits of the key on this model (0 for credit stops). */
      streak: number;
    }
  | { type: 'disabled'; upstream: string; key: string; fingerprint: string; reason: DisableReason };

export type { SharedFact } from './shared-facts.js';

export type PoolListener = (event: PoolEvent) => void;

export interface PoolOptions {
  /** @default "round_robin" */
  strategy?: StrategyName;
  /** @default Math.random */
  random?: () => number;
  /** A cooldown at least this long ends with a single probe request. @default 60000 */
  probeAfterMs?: number;
  /** Longest a probe may hold its scope if its end is never reported (the request deadline). @default 600000 */
  probeLeaseMs?: number;
  /** Sessions remembered for sticky routing; 0 turns stickiness off. @default 0 */
  maxSessions?: number;
  listener?: PoolListener;
  /** Shared store confirming every choice against the other replicas. Absent: this pool is the whole truth. */
  ledger?: Ledger;
}

export interface AcquireRequest {
  readonly demand: Demand;
  readonly now: number;
  /** Keys this request already tried. */
  readonly exclude?: ReadonlySet<KeyState>;
  /** Groups that already failed this request: keys outside them are preferred. */
  readonly avoidGroups?: ReadonlySet<string>;
  /** Sticky session id: the same key while it is usable. */
  readonly session?: string | undefined;
}

const NO_REQUEST: AcquireRequest = Object.freeze({ demand: { model: '', tokens: 0 }, now: 0 });

export class KeyPool {
  readonly upstream: string;
  readonly #states: KeyState[];
  readonly #strategy: Strategy;
  readonly #random: () => number;
  readonly #probeAfterMs: number;
  readonly #probeLeaseMs: number;
  readonly #listener: PoolListener | undefined;
  readonly #groups = new Map<string, Map<string, Scope>>();
  readonly #sessions: StickySessions;
  readonly #watchers = new Set<() => void>();
  readonly #byFingerprint: ReadonlyMap<string, KeyState>;
  readonly #ledger: Ledger | undefined;
  /** The strategy compares in-flight counts, so the shared store counts them across replicas. */
  readonly #countInflight: boolean;
  #cursor = 0;
  /** Responses seen, and how many carried rate-limit headers (an upstream may send none). */
  #responses = 0;
  #reporting = 0;
  #usable: number;
  #lastMark: Mark = { requests: 0, tokens: 0 };
  #lastProbe: Probe | undefined;
  // One context serves every acquire (strategies run synchronously), so choosing a key allocates nothing.
  #req: AcquireRequest = NO_REQUEST;
  #avoiding = false;
  readonly #eligible = (s: KeyState): boolean => {
    const r = this.#req;
    if (r.exclude?.has(s) === true) return false;
    if (this.#avoiding && r.avoidGroups?.has(s.key.options.group ?? '') === true) return false;
    return blockedUntil(s, r.demand, r.now, this.#groupOf(s)) === 0;
  };
  readonly #ctx: { start: number } & Omit<ChoiceContext, 'start'> = {
    start: 0,
    eligible: this.#eligible,
    headroom: (s) => headroomOf(s, this.#req.demand, this.#req.now),
    random: () => this.#random(),
  };

  constructor(upstream: string, keys: readonly Key[], options: PoolOptions = {}) {
    this.upstream = upstream;
    this.#states = keys.map((k, i) => newKeyState(k, i));
    this.#strategy = STRATEGY[options.strategy ?? 'round_robin'];
    this.#random = options.random ?? Math.random;
    this.#probeAfterMs = options.probeAfterMs ?? 60_000;
    this.#probeLeaseMs = options.probeLeaseMs ?? 600_000;
    this.#sessions = new StickySessions(options.maxSessions ?? 0);
    this.#listener = options.listener;
    this.#ledger = options.ledger;
    this.#countInflight = options.strategy === 'least_inflight' || options.strategy === 'headroom';
    this.#usable = this.#states.length;
    this.#byFingerprint = new Map(this.#states.map((s) => [s.key.fingerprint, s] as const));
    for (const k of keys) if (k.options.group !== undefined) this.#groups.set(k.options.group, new Map());
  }

  get size(): number {
    return this.#states.length;
  }

  /** Keys not disabled. */
  get usable(): number {
    return this.#usable;
  }

  /** True when a shared store must confirm each acquired key (`confirm`). */
  get shared(): boolean {
    return this.#ledger !== undefined;
  }

  states(): readonly KeyState[] {
    return this.#states;
  }

  /** Called after any change that may let a waiting request through (a slot freed, a limit learnt). */
  watch(fn: () => void): () => void {
    this.#watchers.add(fn);
    return () => this.#watchers.delete(fn);
  }

  /**
   * Chooses a key that can take the demand now (by the strategy, the sticky session first) and takes it:
   * counts the request and an in-flight slot. The caller must call `end` once the attempt is over.
   */
  acquire(req: AcquireRequest): KeyState | undefined {
    const { demand, now } = req;
    this.#req = req;
    this.#avoiding = req.avoidGroups !== undefined && req.avoidGroups.size > 0;

    let chosen: KeyState | undefined;
    const sticky = req.session === undefined ? undefined : this.#sessions.get(req.session);
    if (sticky !== undefined && this.#eligible(sticky)) chosen = sticky;
    if (chosen === undefined) {
      this.#ctx.start = this.#cursor;
      chosen = this.#strategy(this.#states, this.#ctx);
      if (chosen === undefined && this.#avoiding) {
        this.#avoiding = false;
        chosen = this.#strategy(this.#states, this.#ctx);
      }
    }
    this.#req = NO_REQUEST;
    this.#lastProbe = undefined;
    if (chosen === undefined) return undefined;

    this.#cursor = (chosen.index + 1) % this.#states.length;
    if (req.session !== undefined) this.#sessions.remember(req.session, chosen);
    this.#lastProbe = claimProbe(chosen, demand, now, now + this.#probeLeaseMs);
    chosen.inflight++;
    chosen.stats.attempts++;
    this.#lastMark = countRequest(chosen, demand, now);
    return chosen;
  }

  /**
   * When some key can take the demand: `now` if one can, a later epoch ms, Infinity if only an event can
   * free one (an in-flight slot, a probe ending), undefined if every key is disabled.
   */
  nextAvailableAt(demand: Demand, now: number): number | undefined {
    if (this.#usable === 0) return undefined;
    let soonest = Infinity;
    for (const s of this.#states) {
      const at = blockedUntil(s, demand, now, this.#groupOf(s));
      if (at === 0) return now;
      if (at < soonest) soonest = at;
    }
    return soonest;
  }

  /**
   * With a shared store: confirms a key `acquire` just took. Near a limit (a hand-set rpm, tpm or
   * maxConcurrent; a low bucket; a refusal within the last window) it waits for the store: a refusal
   * (another replica used up the limit or the slots) gives the key back, holds it until the limit frees,
   * and resolves undefined: acquire again. Far from every limit the take is sent without waiting: the
   * attempt goes out now and the shared counts catch up within a round trip (a refusal arriving then
   * holds the key for later attempts). Call it only on a shared pool.
   */
  async confirm(s: KeyState, demand: Demand, now: number): Promise<Granted | undefined> {
    const ledger = this.#ledger;
    if (ledger === undefined) return { mark: undefined };
    const o = s.key.options;
    const taking = ledger.take({
      upstream: this.upstream,
      fingerprint: s.key.fingerprint,
      model: demand.model,
      tokens: demand.tokens,
      limits: { rpm: o.rpm, tpm: o.tpm, maxConcurrent: o.maxConcurrent },
      now,
      countInflight: this.#countInflight,
    });
    const granted: Granted = { mark: undefined };
    if (o.rpm === undefined && o.tpm === undefined && o.maxConcurrent === undefined && !this.#mustAsk(s, demand, now)) {
      void taking.then((r) => {
        if (r.ok === false) this.#refused(s, demand, r.why, r.until, now);
        else if (r.ok === true) this.#granted(s, demand, r, granted, now);
      });
      return granted;
    }
    const r = await taking;
    if (r.ok === 'local') return granted;
    if (r.ok) {
      this.#granted(s, demand, r, granted, now);
      return granted;
    }
    this.#giveBack(s, demand);
    this.#refused(s, demand, r.why, r.until, now);
    return undefined;
  }

  /**
   * Whether an attempt must wait for the store's yes although the key has no hand-set limit: near the end
   * of a bucket, or when this replica has not seen the key's buckets for the model yet (another replica
   * may have used them up) and the upstream sends rate-limit headers at all.
   */
  #mustAsk(s: KeyState, demand: Demand, now: number): boolean {
    if (isTight(s, demand, now)) return true;
    const scope = s.scopes.get(demand.model);
    const known = scope !== undefined && (scope.requests !== undefined || scope.tokens !== undefined);
    return !known && (this.#reporting > 0 || this.#responses < HEADERLESS_AFTER);
  }

  #granted(s: KeyState, demand: Demand, r: Extract<TakeResult, { ok: true }>, granted: Granted, now: number): void {
    granted.mark = r.mark;
    // Less headroom can let no waiter through: nothing to announce.
    if (r.requests !== undefined || r.tokens !== undefined) adoptShared(scopeOf(s.scopes, demand.model), r, now);
    if (r.inflight !== undefined) s.remoteInflight = Math.max(0, r.inflight - s.inflight);
    // Tickets are consecutive over all replicas: starting there spreads round robin across them too. Only
    // when no other request moved the cursor since this one: a late answer must not send it back.
    const n = this.#states.length;
    if (this.#cursor === (s.index + 1) % n) this.#cursor = r.ticket % n;
  }

  /** Key-wide limits hold the key for every model; the upstream's buckets only for this one. */
  #refused(s: KeyState, demand: Demand, why: Refusal, until: number, now: number): void {
    const scope = scopeOf(s.scopes, why === 'requests' || why === 'tokens' ? demand.model : '');
    const end = Number.isFinite(until) ? until : now + SLOT_RECHECK_MS;
    if (end >= scope.heldUntil) {
      scope.heldUntil = end;
      scope.heldFor = why === 'slots' ? 'slots' : 'limit';
    }
    this.#changed();
  }

  /** A slot of a full key was freed at some replica: lift this replica's hold on it (not an rpm/tpm hold). */
  freed(fingerprint: string): void {
    const s = this.#byFingerprint.get(fingerprint);
    const scope = s?.scopes.get('');
    if (scope === undefined || scope.heldUntil === 0 || scope.heldFor !== 'slots') return;
    scope.heldUntil = 0;
    this.#changed();
  }

  /** The attempt with this key is over (answered, failed or cancelled); `outcome` feeds shared usage counters. */
  end(s: KeyState, outcome?: UsageCounter): void {
    s.inflight = Math.max(0, s.inflight - 1);
    this.#ledger?.release({ upstream: this.upstream, fingerprint: s.key.fingerprint, outcome, maxConcurrent: s.key.options.maxConcurrent });
    this.#changed();
  }

  /** Undoes what `acquire` counted for a key the shared store refused (the caller ends its probe). */
  #giveBack(s: KeyState, demand: Demand): void {
    s.inflight = Math.max(0, s.inflight - 1);
    s.stats.attempts--;
    s.rpm.count = Math.max(0, s.rpm.count - 1);
    s.tpm.count = Math.max(0, s.tpm.count - demand.tokens);
    // The scope's counts are what its buckets are measured against: a request never sent must not use them up.
    const scope = scopeOf(s.scopes, demand.model);
    scope.sent = Math.max(0, scope.sent - 1);
    scope.sentTokens = Math.max(0, scope.sentTokens - demand.tokens);
  }

  /**
   * Where the request just acquired stands in its scope's counts. Read it synchronously after `acquire`
   * and hand it back to `observe` with that request's response.
   */
  get lastMark(): Mark {
    return this.#lastMark;
  }

  /**
   * The scope the request just acquired probes, if it is a probe (read it with `lastMark`). Hand it to
   * `probeOver` once the attempt is answered, failed, refused or given back.
   */
  get lastProbe(): Probe | undefined {
    return this.#lastProbe;
  }

  /**
   * A probe's answer is in: the scope is open to everyone again, and owes no more probes if it succeeded
   * (a failure that cools the key again owes a new one through `cool`). Called at the response's head,
   * not its end: a successful probe's stream must not keep the key from others.
   */
  probeOver(probe: Probe | undefined, ok: boolean): void {
    if (probe === undefined) return;
    probe.probeUntil = 0;
    if (ok) probe.probePending = false;
    this.#changed();
  }

  /**
   * Records the upstream's rate-limit headers for this key and model, reported for the request at `mark`
   * (and `sharedMark` in the shared store's counts, when the store granted the key).
   */
  observe(s: KeyState, model: string, headers: HeaderBag, now: number, mark: Mark, sharedMark?: Mark): void {
    this.#responses++;
    const report = readReport(headers, now);
    if (report === undefined) return;
    this.#reporting++;
    const scope = scopeOf(s.scopes, model);
    const first = scope.requests === undefined && scope.tokens === undefined;
    const learnt = observeReport(scope, report, mark);
    // The store needs a bucket only near its end (admission) and once to start from: far from the limit
    // every replica learns enough from its own responses, and reports would cost Redis work per request.
    if (sharedMark !== undefined && this.#ledger !== undefined && (first || isTight(s, { model, tokens: 0 }, now))) {
      this.#ledger.report({ upstream: this.upstream, fingerprint: s.key.fingerprint, model, mark: sharedMark, ...report, now });
    }
    if (learnt) this.#changed();
  }

  streakOf(s: KeyState, model: string): number {
    return s.scopes.get(model)?.streak ?? 0;
  }

  succeeded(s: KeyState, model: string): void {
    const scope = s.scopes.get(model);
    if (scope) scope.streak = 0;
    s.stats.successes++;
  }

  /**
   * Cools a key until `until`: for this model when rate-limited, key-wide when out of credit; the whole
   * group too when the key has one (its keys share the organisation's limits). Only ever extended.
   */
  cool(s: KeyState, model: string, until: number, reason: CoolReason, now: number): void {
    const group = this.#groupOf(s);
    let extended: boolean;
    let streak = 0;
    let scope: Scope;
    if (reason === 'rate_limited') {
      s.stats.rateLimited++;
      scope = scopeOf(s.scopes, model);
      // Requests already in flight when the first 429 cooled the key come back 429 too; they are the same
      // event, not a longer streak (else one burst would push the backoff to its ceiling).
      if (scope.cooldownUntil <= now) scope.streak++;
      streak = scope.streak;
      extended = extend(scope, until, reason);
      if (group) extend(scopeOf(group, model), until, reason);
    } else {
      s.stats.outOfCredit++;
      scope = scopeOf(s.scopes, '');
      extended = until > s.creditUntil;
      if (extended) s.creditUntil = until;
      if (group) extend(scopeOf(group, ''), until, reason);
    }
    // The probe is owed where the limit was hit: this model's scope, or key-wide for credit.
    if (until - now >= this.#probeAfterMs) scope.probePending = true;
    this.#listener?.({
      type: 'cooldown',
      upstream: this.upstream,
      key: s.key.name,
      fingerprint: s.key.fingerprint,
      model,
      reason,
      until,
      extended,
      streak,
    });
  }

  disable(s: KeyState, reason: DisableReason): void {
    if (s.disabled !== undefined) return;
    s.disabled = reason;
    this.#usable--;
    this.#listener?.({ type: 'disabled', upstream: this.upstream, key: s.key.name, fingerprint: s.key.fingerprint, reason });
    this.#changed();
  }

  /**
   * Applies what another replica learnt. Extends cooldowns and disables keys like `cool` / `disable`, but
   * counts nothing and tells no listener: the fact is not news to pass on again. Returns the key's name
   * when the fact concerned a key of this pool.
   */
  applyShared(f: SharedFact, now: number): string | undefined {
    const s = this.#byFingerprint.get(f.fingerprint);
    if (s === undefined) return undefined;
    if (applyFact(s, this.#groupOf(s), f, now, this.#probeAfterMs)) this.#usable--;
    this.#changed();
    return s.key.name;
  }

  /** Facts worth sharing that hold now: active cooldowns and disabled keys (for a resync). */
  sharedFacts(now: number): SharedFact[] {
    return factsOf(this.#states, now);
  }

  serverError(s: KeyState): void {
    s.stats.serverErrors++;
  }

  #groupOf(s: KeyState): Map<string, Scope> | undefined {
    const g = s.key.options.group;
    return g === undefined ? undefined : this.#groups.get(g);
  }

  /** The state worth keeping across a restart (no secrets: keys by fingerprint). */
  snapshot(now: number): PoolSnapshot {
    const keys: PoolSnapshot['keys'] = {};
    for (const s of this.#states) keys[s.key.fingerprint] = snapshotKey(s, now);
    let groups: PoolSnapshot['groups'];
    for (const [name, scopes] of this.#groups) {
      const snap = snapshotScopes(scopes, now);
      if (snap) (groups ??= {})[name] = snap;
    }
    return { keys, groups };
  }

  /** Merges a snapshot in: keys no longer configured are ignored; cooldowns only ever extend. */
  restore(snap: PoolSnapshot, now: number): void {
    for (const [fp, k] of Object.entries(snap.keys)) {
      const s = this.#byFingerprint.get(fp);
      if (s !== undefined && restoreKey(s, k, now, this.#probeAfterMs)) this.#usable--;
    }
    for (const [name, scopes] of Object.entries(snap.groups ?? {})) {
      const g = this.#groups.get(name);
      // Group scopes are never chosen, so never probed.
      if (g !== undefined) restoreScopes(g, scopes, now, Infinity);
    }
    this.#changed();
  }

  #changed(): void {
    for (const fn of this.#watchers) fn();
  }
}

