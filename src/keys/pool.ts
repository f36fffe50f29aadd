// One upstream's keys and what keypool knows about each. Every request shares one pool, so a cooldown
// one request sees applies to all at once. No I/O and no clock of its own: callers pass `now`.
// Taking a key yields a Lease (lease.ts): the attempt's own value, ended exactly once.
import type { Key } from './key.js';
import {
  blockedUntil,
  claimProbe,
  scopeFor,
  countRequest,
  headroomOf,
  newKeyState,
  scopeOf,
  type CoolReason,
  type Demand,
  type DisableReason,
  type KeyState,
  type Scope,
} from './key-state.js';
import { Lease, type LeaseOwner } from './lease.js';
import type { Ledger } from './ledger.js';
import type { HeaderBag } from './rate-limit-headers.js';
import { observeReport, readReport } from './rate-limit-report.js';
import { restoreKey, restoreScopes, snapshotKey, snapshotScopes, type PoolSnapshot } from './pool-snapshot.js';
import { StickySessions } from './sessions.js';
import { ModelAnswers, type UpstreamAnswer } from './model-answers.js';
import { SharedAdmission } from './shared-admission.js';
import { applyFact, extend, factsOf, type SharedFact } from './shared-facts.js';
import { STRATEGY, type ChoiceContext, type Strategy, type StrategyName } from './strategies.js';

export { Lease } from './lease.js';

/** What `observe` needs of an attempt: a Lease has all of it. */
export type ObservedAttempt = Pick<Lease, 'state' | 'demand' | 'mark' | 'sharedMark'>;
export { SLOT_RECHECK_MS } from './shared-admission.js';
export type { CoolReason, Demand, DisableReason, KeyState, KeyStats, Mark } from './key-state.js';

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
  | { type: 'disabled'; upstream: string; key: string; fingerprint: string; reason: DisableReason; until: number };

export type { UpstreamAnswer } from './model-answers.js';

export type { SharedFact } from './shared-facts.js';

export type PoolListener = (event: PoolEvent) => void;

/** What a reload may change about a pool (everything but its upstream name, listener and ledger). */
export type PoolSettings = Pick<PoolOptions, 'strategy' | 'probeAfterMs' | 'probeLeaseMs' | 'maxSessions' | 'maxHeaderMs'>;

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
  /** Ceiling on a reset time read from rate-limit headers (config `cooldown.maxMs`). @default 3600000 */
  maxHeaderMs?: number;
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
  #states: KeyState[];
  #strategy: Strategy;
  #strategyName: StrategyName;
  readonly #random: () => number;
  #probeAfterMs: number;
  #probeLeaseMs: number;
  #maxHeaderMs: number;
  readonly #listener: PoolListener | undefined;
  readonly #groups = new Map<string, Map<string, Scope>>();
  #sessions: StickySessions;
  readonly #watchers = new Set<() => void>();
  #byFingerprint: ReadonlyMap<string, KeyState>;
  readonly #admission: SharedAdmission | undefined;
  #cursor = 0;
  #usable: number;
  /** The earliest end of a disable: availability checks before it need not look at disables. */
  #nextEnableAt = Infinity;
  readonly #answers = new ModelAnswers();
  readonly #owner: LeaseOwner = {
    freeSlot: (s) => {
      s.inflight = Math.max(0, s.inflight - 1);
      this.#changed();
    },
    uncount: (s, demand) => this.#uncount(s, demand),
    probeOver: (probe, ok) => this.probeOver(probe, ok),
  };
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
    this.#strategyName = options.strategy ?? 'round_robin';
    this.#strategy = STRATEGY[this.#strategyName];
    this.#random = options.random ?? Math.random;
    this.#probeAfterMs = options.probeAfterMs ?? 60_000;
    this.#probeLeaseMs = options.probeLeaseMs ?? 600_000;
    this.#maxHeaderMs = options.maxHeaderMs ?? 3_600_000;
    this.#sessions = new StickySessions(options.maxSessions ?? 0);
    this.#listener = options.listener;
    const countInflight = options.strategy === 'least_inflight' || options.strategy === 'headroom';
    this.#admission =
      options.ledger === undefined
        ? undefined
        : new SharedAdmission(upstream, options.ledger, countInflight, {
            ticketDrawn: (s, ticket) => {
              // Starting at the ticket spreads round robin across replicas too. Only when no other request
              // moved the cursor since this one: a late answer must not send it back.
              const n = this.#states.length;
              if (this.#cursor === (s.index + 1) % n) this.#cursor = ticket % n;
            },
            changed: () => this.#changed(),
          });
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
    return this.#admission !== undefined;
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
   * counts the request and an in-flight slot. The lease it returns must be ended (or abandoned) once.
   */
  acquire(req: AcquireRequest): Lease | undefined {
    const { demand, now } = req;
    this.#expireDisables(now);
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
    if (chosen === undefined) return undefined;

    this.#cursor = (chosen.index + 1) % this.#states.length;
    if (req.session !== undefined) this.#sessions.remember(req.session, chosen);
    const probe = claimProbe(chosen, demand, now, now + this.#probeLeaseMs);
    chosen.inflight++;
    chosen.stats.attempts++;
    return new Lease(this.#owner, chosen, demand, countRequest(chosen, demand, now), probe);
  }

  /**
   * When some key can take the demand: `now` if one can, a later epoch ms, Infinity if only an event can
   * free one (an in-flight slot, a probe ending), undefined if every key is disabled.
   */
  nextAvailableAt(demand: Demand, now: number): number | undefined {
    this.#expireDisables(now);
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
   * With a shared store: has the store confirm a lease `acquire` just took (see SharedAdmission.confirm).
   * false: the store refused it, the lease is abandoned, acquire again. Without a store: true.
   */
  confirm(lease: Lease, now: number): boolean | Promise<boolean> {
    return this.#admission === undefined ? true : this.#admission.confirm(lease, now);
  }

  /** A slot of a full key was freed at some replica: lift this replica's hold on it (not an rpm/tpm hold). */
  freed(fingerprint: string): void {
    const s = this.#byFingerprint.get(fingerprint);
    const scope = s?.scopes.get('');
    if (scope === undefined || scope.heldUntil === 0 || scope.heldFor !== 'slots') return;
    scope.heldUntil = 0;
    this.#changed();
  }

  /** Undoes what `acquire` counted for an attempt that never went out. */
  #uncount(s: KeyState, demand: Demand): void {
    s.stats.attempts--;
    s.rpm.count = Math.max(0, s.rpm.count - 1);
    s.tpm.count = Math.max(0, s.tpm.count - demand.tokens);
    // The scope's counts are what its buckets are measured against: a request never sent must not use them up.
    const scope = scopeOf(s.scopes, demand.model);
    scope.sent = Math.max(0, scope.sent - 1);
    scope.sentTokens = Math.max(0, scope.sentTokens - demand.tokens);
  }

  /**
   * A probe's answer is in: the scope is open to everyone again, and owes no more probes if it succeeded
   * (a failure that cools the key again owes a new one through `cool`). Leases call it.
   */
  probeOver(probe: Scope, ok: boolean): void {
    probe.probeUntil = 0;
    if (ok) probe.probePending = false;
    this.#changed();
  }

  /** Records the upstream's rate-limit headers for the attempt's key and model, matched to its mark. */
  observe(lease: ObservedAttempt, headers: HeaderBag, now: number): void {
    const report = readReport(headers, now, this.#maxHeaderMs);
    let learnt = false;
    if (report !== undefined) {
      const scope = scopeOf(lease.state.scopes, lease.demand.model, now);
      const first = scope.requests === undefined && scope.tokens === undefined;
      learnt = observeReport(scope, report, lease.mark);
      this.#admission?.observed(lease, report, first, now);
    } else {
      this.#admission?.observed(lease, undefined, false, now);
    }
    if (learnt) this.#changed();
  }

  streakOf(s: KeyState, model: string): number {
    return s.scopes.get(model)?.streak ?? 0;
  }

  /** Adds what an answer's `usage` reported to the key's token counts. */
  countTokens(s: KeyState, input: number, output: number): void {
    s.tokens.input += input;
    s.tokens.output += output;
  }

  succeeded(s: KeyState, model: string): void {
    const scope = s.scopes.get(model);
    if (scope) scope.streak = 0;
    s.stats.successes++;
  }

  /**
   * Cools a key until `until`: for this model when rate-limited or not allowed the model, key-wide when
   * out of credit; the whole group too for limits and credit when the key has one (its keys share the
   * organisation's limits; model access is per project, so it is not spread). Only ever extended.
   */
  cool(s: KeyState, model: string, until: number, reason: CoolReason, now: number, refining = false): void {
    const group = this.#groupOf(s);
    let extended: boolean;
    let streak = 0;
    let scope: Scope;
    if (reason === 'rate_limited') {
      // Refining a cooldown set at the head from what the body says is the same 429: counted once.
      if (!refining) s.stats.rateLimited++;
      scope = scopeOf(s.scopes, model, now);
      // Requests already in flight when the first 429 cooled the key come back 429 too; they are the same
      // event, not a longer streak (else one burst would push the backoff to its ceiling).
      if (scope.cooldownUntil <= now) scope.streak++;
      streak = scope.streak;
      extended = extend(scope, until, reason);
      if (group) extend(scopeOf(group, model), until, reason);
    } else if (reason === 'model_unavailable') {
      // Never on the key-wide scope: a refusal of one model must not bar the key from every model.
      const own = model === '' ? undefined : scopeFor(s.scopes, model, now);
      if (own === undefined) return;
      scope = own;
      extended = extend(scope, until, reason);
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
    this.#changed();
  }

  /** The upstream rejected the key itself: unusable until `until` (then tried again), for every model. */
  disable(s: KeyState, reason: DisableReason, until: number): void {
    if (s.disabled !== undefined && s.disabledUntil >= until) return;
    if (s.disabled === undefined) this.#usable--;
    s.disabled = reason;
    s.disabledUntil = until;
    this.#nextEnableAt = Math.min(this.#nextEnableAt, until);
    this.#listener?.({ type: 'disabled', upstream: this.upstream, key: s.key.name, fingerprint: s.key.fingerprint, reason, until });
    this.#changed();
  }

  /** Makes a disabled key usable again (an operator's word, or its period ran out). */
  enable(s: KeyState): void {
    if (s.disabled === undefined) return;
    s.disabled = undefined;
    s.disabledUntil = 0;
    this.#usable++;
    this.#changed();
  }

  /** The key may use the model again (a probe said so): its refusal of that model ends now. */
  reopenModel(s: KeyState, model: string): void {
    const scope = s.scopes.get(model);
    if (scope === undefined || scope.reason !== 'model_unavailable') return;
    scope.cooldownUntil = 0;
    scope.reason = undefined;
    scope.probePending = false;
    this.#changed();
  }

  /**
   * An operator's reset: the key forgets its disable, credit stop, cooldowns, streaks, store holds and
   * probes, and is usable now. Its group's scopes stay: they speak for the group's other keys too.
   */
  reset(s: KeyState): void {
    this.enable(s);
    s.creditUntil = 0;
    for (const scope of s.scopes.values()) {
      scope.cooldownUntil = 0;
      scope.reason = undefined;
      scope.streak = 0;
      scope.heldUntil = 0;
      scope.probePending = false;
      scope.probeUntil = 0;
    }
    this.#changed();
  }

  /** Disables whose period has run out end here: called with `now` on every path that reads availability. */
  #expireDisables(now: number): void {
    if (now < this.#nextEnableAt) return;
    let next = Infinity;
    for (const s of this.#states) {
      if (s.disabled === undefined) continue;
      if (s.disabledUntil <= now) this.enable(s);
      else next = Math.min(next, s.disabledUntil);
    }
    this.#nextEnableAt = next;
  }

  /**
   * Remembers the upstream's own answer refusing a model (403/404 "no access to model"), to give to
   * later requests for that model while no key may use it.
   */
  rememberAnswer(model: string, answer: UpstreamAnswer): void {
    this.#answers.remember(model, answer);
  }

  /** The remembered answer for the model, if every usable key is barred from it right now. */
  answerFor(model: string, now: number): UpstreamAnswer | undefined {
    return this.#answers.forModel(model, this.#states, now);
  }

  /**
   * Takes a new key list and settings in place (a config reload): a key whose secret stays keeps all its
   * state (cooldowns, counts, slots in flight) under its new name and options; a new or changed secret
   * starts clean; a removed key is no longer chosen (attempts in flight on it end normally). Sticky
   * sessions are forgotten when the keys change. Returns what changed, by key name.
   */
  reconfigure(keys: readonly Key[], options: PoolSettings): { added: string[]; removed: string[]; kept: string[] } {
    const before = this.#byFingerprint;
    const states = keys.map((k, i) => {
      const s = before.get(k.fingerprint) ?? newKeyState(k, i);
      s.key = k;
      s.index = i;
      return s;
    });
    const now = new Set(keys.map((k) => k.fingerprint));
    const added = keys.filter((k) => !before.has(k.fingerprint)).map((k) => k.name);
    const removed = [...before.values()].filter((s) => !now.has(s.key.fingerprint)).map((s) => s.key.name);
    const kept = keys.filter((k) => before.has(k.fingerprint)).map((k) => k.name);
    this.#states = states;
    this.#byFingerprint = new Map(states.map((s) => [s.key.fingerprint, s] as const));
    this.#usable = states.filter((s) => s.disabled === undefined).length;
    this.#nextEnableAt = Math.min(Infinity, ...states.filter((s) => s.disabled !== undefined).map((s) => s.disabledUntil));
    for (const k of keys) if (k.options.group !== undefined && !this.#groups.has(k.options.group)) this.#groups.set(k.options.group, new Map());
    this.#cursor = 0;
    this.#strategyName = options.strategy ?? 'round_robin';
    this.#strategy = STRATEGY[this.#strategyName];
    this.#admission?.countInflightFor(this.#strategyName);
    this.#probeAfterMs = options.probeAfterMs ?? this.#probeAfterMs;
    this.#probeLeaseMs = options.probeLeaseMs ?? this.#probeLeaseMs;
    this.#maxHeaderMs = options.maxHeaderMs ?? this.#maxHeaderMs;
    if (added.length > 0 || removed.length > 0 || (options.maxSessions ?? 0) !== this.#sessions.capacity) {
      this.#sessions = new StickySessions(options.maxSessions ?? 0);
    }
    this.#changed();
    return { added, removed, kept };
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
    if (s.disabled !== undefined) this.#nextEnableAt = Math.min(this.#nextEnableAt, s.disabledUntil);
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
      if (s === undefined) continue;
      if (restoreKey(s, k, now, this.#probeAfterMs)) this.#usable--;
      if (s.disabled !== undefined) this.#nextEnableAt = Math.min(this.#nextEnableAt, s.disabledUntil);
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

