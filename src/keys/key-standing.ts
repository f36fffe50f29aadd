// What a pool knows of each key's standing, and every change to it: cooldowns, disables and their ends,
// resets, a model reopened, a probe over, a slot freed at another replica, facts from other replicas,
// snapshots, a reload's new key list, outcome counts. Each change goes through the rules (key-rules.ts)
// and then tells the listener, the choice index (choice-index.ts) and the watchers, so no change can
// skip one of them. KeyPool (pool.ts) extends it with choosing and taking keys: one object to callers.
import type { Key } from './key.js';
import { ChoiceIndex } from './choice-index.js';
import { newKeyState, type CoolReason, type DisableReason, type KeyState, type Scope } from './key-state.js';
import { coolKey, disableKey, earliestEnable, enableKey, expireDisables, reopenModel, resetKey } from './key-rules.js';
import { ModelAnswers, type UpstreamAnswer } from './model-answers.js';
import { rekey, type Rekeyed } from './pool-reload.js';
import { restorePool, snapshotPool, type PoolSnapshot } from './pool-snapshot.js';
import type { PoolListener } from './pool-types.js';
import { applyFact, factsOf, type SharedFact } from './shared-facts.js';

export class KeyStanding {
  readonly upstream: string;
  /** In config order; a key's `index` is its position. */
  protected keys: KeyState[];
  protected byFingerprint: ReadonlyMap<string, KeyState>;
  protected readonly groups = new Map<string, Map<string, Scope>>();
  protected readonly index: ChoiceIndex;
  protected probeAfterMs: number;
  readonly #listener: PoolListener | undefined;
  readonly #watchers = new Set<() => void>();
  readonly #answers = new ModelAnswers();
  #usable: number;
  /** The earliest end of a disable: availability checks before it need not look at disables. */
  #nextEnableAt = Infinity;

  protected constructor(upstream: string, keys: readonly Key[], listener: PoolListener | undefined, probeAfterMs: number) {
    this.upstream = upstream;
    this.keys = keys.map((k, i) => newKeyState(k, i));
    this.byFingerprint = new Map(this.keys.map((s) => [s.key.fingerprint, s] as const));
    for (const k of keys) if (k.options.group !== undefined) this.groups.set(k.options.group, new Map());
    this.index = new ChoiceIndex(this.keys, (s) => this.groupOf(s));
    this.#listener = listener;
    this.probeAfterMs = probeAfterMs;
    this.#usable = this.keys.length;
  }

  get size(): number {
    return this.keys.length;
  }

  /** Keys not disabled. */
  get usable(): number {
    return this.#usable;
  }

  states(): readonly KeyState[] {
    return this.keys;
  }

  /** Called after any change that may let a waiting request through (a slot freed, a limit learnt). */
  watch(fn: () => void): () => void {
    this.#watchers.add(fn);
    return () => this.#watchers.delete(fn);
  }

  protected changed(): void {
    for (const fn of this.#watchers) fn();
  }

  protected groupOf(s: KeyState): Map<string, Scope> | undefined {
    const g = s.key.options.group;
    return g === undefined ? undefined : this.groups.get(g);
  }

  /** Disables whose period has run out end here: called with `now` on every path that reads availability. */
  protected expireDisables(now: number): void {
    if (now < this.#nextEnableAt) return;
    this.#nextEnableAt = expireDisables(this.keys, now, (s) => this.enable(s));
  }

  /** A reload's key list (see rekey: a kept secret keeps its state); the index starts over. */
  protected replaceKeys(keys: readonly Key[]): Rekeyed {
    const r = rekey(this.byFingerprint, keys);
    this.keys = r.states;
    this.byFingerprint = r.byFingerprint;
    this.#usable = r.states.filter((s) => s.disabled === undefined).length;
    this.#nextEnableAt = earliestEnable(r.states);
    for (const k of keys) if (k.options.group !== undefined && !this.groups.has(k.options.group)) this.groups.set(k.options.group, new Map());
    this.index.rebuild(r.states);
    return r;
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

  serverError(s: KeyState): void {
    s.stats.serverErrors++;
  }

  /** Cools a key until `until` (see coolKey: per model, key-wide for credit, spread to its group). Only ever extended. */
  cool(s: KeyState, model: string, until: number, reason: CoolReason, now: number, refining = false): void {
    const c = coolKey(s, this.groupOf(s), model, until, reason, now, refining, this.probeAfterMs);
    if (c === undefined) return;
    this.index.tightened(s);
    if (c.group) this.index.groupTightened(s.key.options.group);
    const { key } = s;
    this.#listener?.({ type: 'cooldown', upstream: this.upstream, key: key.name, fingerprint: key.fingerprint, model, reason, until, extended: c.extended, streak: c.streak });
    this.changed();
  }

  /** The upstream rejected the key itself: unusable until `until` (then tried again), for every model. */
  disable(s: KeyState, reason: DisableReason, until: number): void {
    const was = s.disabled === undefined;
    if (!disableKey(s, reason, until)) return;
    if (was) this.#usable--;
    this.#nextEnableAt = Math.min(this.#nextEnableAt, until);
    // Not "tightened": a disabled key's blockedUntil is the disable's end, even before a later cooldown's.
    this.index.loosened(s);
    this.#listener?.({ type: 'disabled', upstream: this.upstream, key: s.key.name, fingerprint: s.key.fingerprint, reason, until });
    this.changed();
  }

  /** Makes a disabled key usable again (an operator's word, or its period ran out). */
  enable(s: KeyState): void {
    if (!enableKey(s)) return;
    this.#usable++;
    this.index.loosened(s);
    this.changed();
  }

  /** The key may use the model again (a probe said so): its refusal of that model ends now. */
  reopenModel(s: KeyState, model: string): void {
    if (!reopenModel(s, model)) return;
    this.index.loosened(s, model);
    this.changed();
  }

  /**
   * An operator's reset: the key forgets its disable, credit stop, cooldowns, streaks, store holds and
   * probes, and is usable now. Its group's scopes stay: they speak for the group's other keys too.
   */
  reset(s: KeyState): void {
    this.enable(s);
    resetKey(s);
    this.index.loosened(s);
    this.changed();
  }

  /**
   * A probe's answer is in: the scope is open to everyone again, and owes no more probes if it succeeded
   * (a failure that cools the key again owes a new one through `cool`). Leases call it with their key;
   * without one, the choice index looks at every key again.
   */
  probeOver(probe: Scope, ok: boolean, s?: KeyState): void {
    probe.probeUntil = 0;
    if (ok) probe.probePending = false;
    if (s !== undefined) this.index.loosened(s);
    else this.index.rebuild(this.keys);
    this.changed();
  }

  /** A slot of a full key was freed at some replica: lift this replica's hold on it (not an rpm/tpm hold). */
  freed(fingerprint: string): void {
    const s = this.byFingerprint.get(fingerprint);
    const scope = s?.scopes.get('');
    if (s === undefined || scope === undefined || scope.heldUntil === 0 || scope.heldFor !== 'slots') return;
    scope.heldUntil = 0;
    this.index.loosened(s);
    this.changed();
  }

  /**
   * Applies what another replica learnt. Extends cooldowns and disables keys like `cool` / `disable`, but
   * counts nothing and tells no listener: the fact is not news to pass on again. Returns the key's name
   * when the fact concerned a key of this pool.
   */
  applyShared(f: SharedFact, now: number): string | undefined {
    const s = this.byFingerprint.get(f.fingerprint);
    if (s === undefined) return undefined;
    if (applyFact(s, this.groupOf(s), f, now, this.probeAfterMs)) this.#usable--;
    if (s.disabled !== undefined) this.#nextEnableAt = Math.min(this.#nextEnableAt, s.disabledUntil);
    // A cooldown only ever extends: the index's blocked keys stay blocked, only its exact answers age.
    // A disable changes blockedUntil's answer (its end, not the latest block): the key is looked at again.
    if (f.kind === 'disabled') this.index.loosened(s);
    else this.index.tightened(s);
    this.index.groupTightened(s.key.options.group);
    this.changed();
    return s.key.name;
  }

  /** Facts worth sharing that hold now: active cooldowns and disabled keys (for a resync). */
  sharedFacts(now: number): SharedFact[] {
    return factsOf(this.keys, now);
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
    return this.#answers.forModel(model, this.keys, now);
  }

  /** The state worth keeping across a restart (no secrets: keys by fingerprint). */
  snapshot(now: number): PoolSnapshot {
    return snapshotPool(this.keys, this.groups, now);
  }

  /** Merges a snapshot in: keys no longer configured are ignored; cooldowns only ever extend. */
  restore(snap: PoolSnapshot, now: number): void {
    this.#usable -= restorePool(snap, this.byFingerprint, this.groups, now, this.probeAfterMs);
    this.#nextEnableAt = Math.min(this.#nextEnableAt, earliestEnable(this.keys));
    this.index.rebuild(this.keys);
    this.changed();
  }
}
