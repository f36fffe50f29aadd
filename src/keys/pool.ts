// One upstream's keys and what keypool knows about each. Every request shares one pool, so a cooldown
// one request sees applies to all at once. No I/O and no clock of its own: callers pass `now`.
// KeyPool chooses (strategy, sticky session, groups, the choice index) and takes keys (counts, slots,
// probes, the shared store's confirmation, headers read); what changes a key's standing (cooldowns,
// disables, resets, shared facts, snapshots) is KeyStanding (key-standing.ts), which it extends.
// Taking a key yields a Lease (lease.ts): the attempt's own value, ended exactly once.
import type { Key } from './key.js';
import { blockedUntil } from './blocked.js';
import { claimProbe, countRequest, headroomOf, scopeOf, type Demand, type KeyState } from './key-state.js';
import { uncount } from './key-rules.js';
import { KeyStanding } from './key-standing.js';
import { Lease, type LeaseOwner } from './lease.js';
import type { AcquireRequest, ObservedAttempt, PoolOptions, PoolSettings } from './pool-types.js';
import type { HeaderBag } from './rate-limit-headers.js';
import { observeReport, readReport } from './rate-limit-report.js';
import type { ReadyIndex } from './ready-index.js';
import { StickySessions } from './sessions.js';
import { SharedAdmission } from './shared-admission.js';
import { STRATEGY, type ChoiceContext, type Strategy, type StrategyName } from './strategies.js';

export { Lease } from './lease.js';
export { SLOT_RECHECK_MS } from './shared-admission.js';
export type { CoolReason, Demand, DisableReason, KeyState, KeyStats, Mark } from './key-state.js';
export type { AcquireRequest, ObservedAttempt, PoolEvent, PoolListener, PoolOptions, PoolSettings } from './pool-types.js';
export type { UpstreamAnswer } from './model-answers.js';
export type { SharedFact } from './shared-facts.js';

const NO_REQUEST: AcquireRequest = Object.freeze({ demand: { model: '', tokens: 0 }, now: 0 });

export class KeyPool extends KeyStanding {
  #strategy: Strategy;
  #strategyName: StrategyName;
  readonly #random: () => number;
  #probeLeaseMs: number;
  #maxHeaderMs: number;
  #sessions: StickySessions;
  readonly #admission: SharedAdmission | undefined;
  readonly #plain: boolean;
  #cursor = 0;
  readonly #owner: LeaseOwner = {
    freeSlot: (s) => {
      s.inflight = Math.max(0, s.inflight - 1);
      // A free slot lets the key through sooner only where slots are limited.
      if (s.key.options.maxConcurrent !== undefined) this.index.loosened(s);
      this.changed();
    },
    uncount: (s, demand) => {
      uncount(s, demand);
      this.index.loosened(s);
    },
    probeOver: (s, probe, ok) => this.probeOver(probe, ok, s),
  };
  // One context serves every acquire (strategies run synchronously), so choosing a key allocates nothing.
  #req: AcquireRequest = NO_REQUEST;
  #avoiding = false;
  /** The demand's model's index during an acquire; undefined for a plain scan. */
  #idx: ReadyIndex | undefined;
  readonly #eligible = (s: KeyState): boolean => {
    const r = this.#req;
    if (r.exclude?.has(s) === true) return false;
    if (this.#avoiding && r.avoidGroups?.has(s.key.options.group ?? '') === true) return false;
    if (blockedUntil(s, r.demand, r.now, this.groupOf(s)) === 0) return true;
    // Found blocked: the index learns for how long, so the next choice passes over it without asking.
    const idx = this.#idx;
    if (idx !== undefined && this.keys[s.index] === s) this.index.refresh(idx, s.index, r.demand.model, r.now);
    return false;
  };
  readonly #ctx: { start: number } & Omit<ChoiceContext, 'start'> = {
    start: 0,
    next: (from) => {
      const idx = this.#idx;
      if (idx !== undefined) return idx.firstDue(from, this.#req.now);
      return from < this.keys.length ? from : -1;
    },
    eligible: this.#eligible,
    headroom: (s) => headroomOf(s, this.#req.demand, this.#req.now),
    random: () => this.#random(),
  };

  constructor(upstream: string, keys: readonly Key[], options: PoolOptions = {}) {
    super(upstream, keys, options.listener, options.probeAfterMs ?? 60_000);
    this.#strategyName = options.strategy ?? 'round_robin';
    this.#strategy = STRATEGY[this.#strategyName];
    this.#random = options.random ?? Math.random;
    this.#probeLeaseMs = options.probeLeaseMs ?? 600_000;
    this.#maxHeaderMs = options.maxHeaderMs ?? 3_600_000;
    this.#sessions = new StickySessions(options.maxSessions ?? 0);
    this.#plain = options.plainScan ?? false;
    const countInflight = options.strategy === 'least_inflight' || options.strategy === 'headroom';
    this.#admission =
      options.ledger === undefined
        ? undefined
        : new SharedAdmission(upstream, options.ledger, countInflight, {
            ticketDrawn: (s, ticket) => {
              // Starting at the ticket spreads round robin across replicas too. Only when no other request
              // moved the cursor since this one: a late answer must not send it back.
              const n = this.keys.length;
              if (this.#cursor === (s.index + 1) % n) this.#cursor = ticket % n;
            },
            changed: () => this.changed(),
            loosened: (s, model) => this.index.loosened(s, model),
            tightened: (s) => this.index.tightened(s),
          });
  }

  /** True when a shared store must confirm each acquired key (`confirm`). */
  get shared(): boolean {
    return this.#admission !== undefined;
  }

  /** Whether a demand goes through the choice index (a negative or NaN token count is asked of every key). */
  #indexed(d: Demand): boolean {
    return !this.#plain && d.tokens >= 0;
  }

  /**
   * Chooses a key that can take the demand now (by the strategy, the sticky session first) and takes it:
   * counts the request and an in-flight slot. The lease it returns must be ended (or abandoned) once.
   */
  acquire(req: AcquireRequest): Lease | undefined {
    const { demand, now } = req;
    this.expireDisables(now);
    this.#req = req;
    this.#idx = this.#indexed(demand) ? this.index.forModel(demand.model) : undefined;
    this.#avoiding = req.avoidGroups !== undefined && req.avoidGroups.size > 0;

    let chosen: KeyState | undefined;
    const sticky = req.session === undefined ? undefined : this.#sessions.get(req.session);
    if (sticky !== undefined && this.#eligible(sticky)) chosen = sticky;
    if (chosen === undefined) {
      this.#ctx.start = this.#cursor;
      chosen = this.#strategy(this.keys, this.#ctx);
      if (chosen === undefined && this.#avoiding) {
        this.#avoiding = false;
        chosen = this.#strategy(this.keys, this.#ctx);
      }
    }
    this.#req = NO_REQUEST;
    this.#idx = undefined;
    if (chosen === undefined) return undefined;

    this.#cursor = (chosen.index + 1) % this.keys.length;
    if (req.session !== undefined) this.#sessions.remember(req.session, chosen);
    const probe = claimProbe(chosen, demand, now, now + this.#probeLeaseMs);
    chosen.inflight++;
    chosen.stats.attempts++;
    const mark = countRequest(chosen, demand, now);
    this.index.tightened(chosen);
    return new Lease(this.#owner, chosen, demand, mark, probe);
  }

  /**
   * When some key can take the demand: `now` if one can, a later epoch ms, Infinity if only an event can
   * free one (an in-flight slot, a probe ending), undefined if every key is disabled.
   */
  nextAvailableAt(demand: Demand, now: number): number | undefined {
    this.expireDisables(now);
    if (this.usable === 0) return undefined;
    if (this.#indexed(demand)) return this.index.nextAvailableAt(demand, now);
    let soonest = Infinity;
    for (const s of this.keys) {
      const at = blockedUntil(s, demand, now, this.groupOf(s));
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

  /** Records the upstream's rate-limit headers for the attempt's key and model, matched to its mark. */
  observe(lease: ObservedAttempt, headers: HeaderBag, now: number): void {
    const report = readReport(headers, now, this.#maxHeaderMs);
    let learnt = false;
    if (report !== undefined) {
      const s = lease.state;
      const scope = scopeOf(s.scopes, lease.demand.model, now);
      const first = scope.requests === undefined && scope.tokens === undefined;
      learnt = observeReport(scope, report, lease.mark);
      if (learnt) this.index.loosened(s, scope === s.scopes.get('') ? '' : lease.demand.model);
      this.#admission?.observed(lease, report, first, now);
    } else {
      this.#admission?.observed(lease, undefined, false, now);
    }
    if (learnt) this.changed();
  }

  /**
   * Takes a new key list and settings in place (a config reload; see rekey for what each key keeps).
   * Sticky sessions are forgotten when the keys change. Returns what changed, by key name.
   */
  reconfigure(keys: readonly Key[], options: PoolSettings): { added: string[]; removed: string[]; kept: string[] } {
    const { added, removed, kept } = this.replaceKeys(keys);
    this.#cursor = 0;
    this.#strategyName = options.strategy ?? 'round_robin';
    this.#strategy = STRATEGY[this.#strategyName];
    this.#admission?.countInflightFor(this.#strategyName);
    this.probeAfterMs = options.probeAfterMs ?? this.probeAfterMs;
    this.#probeLeaseMs = options.probeLeaseMs ?? this.#probeLeaseMs;
    this.#maxHeaderMs = options.maxHeaderMs ?? this.#maxHeaderMs;
    if (added.length > 0 || removed.length > 0 || (options.maxSessions ?? 0) !== this.#sessions.capacity) {
      this.#sessions = new StickySessions(options.maxSessions ?? 0);
    }
    this.changed();
    return { added, removed, kept };
  }
}
