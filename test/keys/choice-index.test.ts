// The choice index against the plain scan: twin pools, one indexed and one with `plainScan`, driven by
// the same random sequences of pool operations, must choose the same key on every acquire and give the
// same nextAvailableAt for every model and token count after every step. The operations are everything
// that changes what blocks a key: acquire / end / abandon / a probe's answer, cooldowns per model and
// key-wide, model refusals, disables with ends, enable, reset, reopen, rate-limit headers, facts from
// other replicas, a freed slot, holds from a shared store's refusals, snapshots restored, reloads,
// maxConcurrent / rpm / tpm / groups, and time moving. After every step the indexed twin's claims are
// also checked against blockedUntil directly: a key it calls blocked is blocked for every token count, no
// sooner than its bound, and exactly at its bound when it says it knows (this catches a change the index
// was not told of even when it does not change a choice yet).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_KEY_OPTIONS, Key, type KeyOptions } from '../../src/keys/key.js';
import { blockedUntil } from '../../src/keys/blocked.js';
import type { CoolReason, DisableReason } from '../../src/keys/key-state.js';
import type { Ledger, TakeResult } from '../../src/keys/ledger.js';
import type { PoolSnapshot } from '../../src/keys/pool-snapshot.js';
import { KeyPool, type Lease } from '../../src/keys/pool.js';
import type { StrategyName } from '../../src/keys/strategies.js';

const MODELS = ['', 'm1', 'm2'] as const;
/** Token counts nextAvailableAt is compared for after every step (a negative one goes the plain way). */
const PROBE_TOKENS = [0, 60, 2_000, -5];
/** Token counts the index's claims hold for. */
const CLAIM_TOKENS = [0, 1, 60, 2_000];
const T0 = 1_700_000_000_000;

type Answer = 'grant' | 'slots' | 'requests' | 'rpm' | 'local';

type Op =
  | { kind: 'acquire'; model: number; tokens: number; exclude: number[]; avoid: boolean; session: number; answer: Answer; untilMs: number }
  | { kind: 'end' | 'abandon'; lease: number }
  | { kind: 'answered'; lease: number; ok: boolean }
  | { kind: 'observe'; lease: number; limit: number; remaining: number; resetMs: number; tokens: boolean }
  | { kind: 'cool'; key: number; model: number; reason: CoolReason; ms: number; refining: boolean }
  | { kind: 'disable'; key: number; reason: DisableReason; ms: number }
  | { kind: 'enable' | 'reset' | 'freed'; key: number }
  | { kind: 'reopen'; key: number; model: number }
  | { kind: 'fact'; key: number; model: number; reason: CoolReason | 'disabled'; ms: number; streak: number }
  | { kind: 'tick'; ms: number }
  | { kind: 'save' | 'restore' }
  | { kind: 'reload'; drop: number; strategy: StrategyName };

const STRATEGIES: StrategyName[] = ['round_robin', 'fill_first', 'least_inflight', 'headroom', 'random', 'weighted'];
// Short ones, ones past probeAfterMs (1 s: the cooldown ends with a probe), long ones, "until enabled".
const ms = fc.oneof(fc.integer({ min: 1, max: 2_000 }), fc.integer({ min: 1_000, max: 5_000 }), fc.integer({ min: 1, max: 120_000 }), fc.constant(8.64e15 - T0));
const count = fc.oneof(fc.constantFrom(0, 1, 2, 5), fc.integer({ min: 0, max: 400 }));
const key = fc.nat(9);
const model = fc.nat(MODELS.length - 1);
const lease = fc.nat(20);

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({
    kind: fc.constant('acquire' as const),
    model,
    tokens: fc.oneof(fc.constantFrom(0, 1, 60, 300, 2_000, -5), fc.integer({ min: 0, max: 5_000 })),
    exclude: fc.array(key, { maxLength: 2 }),
    avoid: fc.boolean(),
    session: fc.nat(2),
    answer: fc.constantFrom<Answer>('grant', 'grant', 'slots', 'requests', 'rpm', 'local'),
    untilMs: fc.oneof(fc.integer({ min: 1, max: 5_000 }), fc.constant(Infinity)),
  }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constantFrom('end' as const, 'abandon' as const), lease }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('answered' as const), lease, ok: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('observe' as const), lease, limit: count.map((n) => Math.max(1, n)), remaining: count, resetMs: fc.oneof(fc.integer({ min: 0, max: 3_000 }), fc.integer({ min: 0, max: 90_000 })), tokens: fc.boolean() }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('cool' as const), key, model, reason: fc.constantFrom<CoolReason>('rate_limited', 'rate_limited', 'out_of_credit', 'model_unavailable'), ms, refining: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('disable' as const), key, reason: fc.constantFrom<DisableReason>('unauthorized', 'forbidden', 'admin'), ms }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constantFrom('enable' as const, 'reset' as const, 'freed' as const), key }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('reopen' as const), key, model }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('fact' as const), key, model, reason: fc.constantFrom<CoolReason | 'disabled'>('rate_limited', 'out_of_credit', 'model_unavailable', 'disabled'), ms, streak: fc.nat(4) }) },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('tick' as const), ms: fc.oneof(fc.integer({ min: 0, max: 1_500 }), fc.integer({ min: 0, max: 130_000 })) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constantFrom('save' as const, 'restore' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('reload' as const), drop: fc.nat(9), strategy: fc.constantFrom(...STRATEGIES) }) },
);

const keyOptions: fc.Arbitrary<Partial<KeyOptions>> = fc.record({
  weight: fc.integer({ min: 1, max: 3 }),
  group: fc.constantFrom(undefined, undefined, 'g1', 'g2'),
  rpm: fc.constantFrom(undefined, undefined, 2, 5),
  tpm: fc.constantFrom(undefined, undefined, 500),
  maxConcurrent: fc.constantFrom(undefined, undefined, 1, 2),
});

/** The indexed twin, which can check what its index claims. */
class AuditedPool extends KeyPool {
  /** The first claim of the index that blockedUntil contradicts at `now`, if any. */
  audit(now: number): string | undefined {
    for (const model of MODELS) {
      const idx = this.index.peek(model);
      if (idx === undefined) continue;
      for (const s of this.keys) {
        const i = s.index;
        const nb = idx.notBefore(i);
        if (nb <= now) continue;
        const known = idx.exact(i) && idx.stamp(i) === this.index.stampOf(i);
        for (const tokens of CLAIM_TOKENS) {
          const at = blockedUntil(s, { model, tokens }, now, this.groupOf(s));
          const where = `${s.key.name} for "${model}" with ${tokens} tokens (not before ${nb}, bound ${idx.bound(i)}): blockedUntil ${at}`;
          if (at === 0) return `free: ${where}`;
          if (at < idx.bound(i)) return `below its bound: ${where}`;
          if (known && at !== idx.bound(i)) return `not the exact answer: ${where}`;
        }
      }
    }
    return undefined;
  }
}

/** mulberry32: both twins draw the same numbers. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A ledger answering each take with what the running operation scripted (resolved at once). */
function scriptedLedger(next: () => TakeResult): Ledger {
  return {
    take: () => ({ answer: Promise.resolve(next()), release: () => undefined }),
    report: () => undefined,
    usage: async () => ({}),
    onFreed: () => undefined,
  };
}

const flush = async () => {
  for (let i = 0; i < 4; i++) await Promise.resolve();
};

interface Twin {
  pool: AuditedPool;
  leases: (Lease | undefined)[];
}

async function run(options: Partial<KeyOptions>[], strategy: StrategyName, shared: boolean, seed: number, ops: Op[]): Promise<void> {
  const makeKeys = (opts: Partial<KeyOptions>[]) => opts.map((o, i) => new Key(`k${i}`, `secret-${i}`, { ...DEFAULT_KEY_OPTIONS, ...o }));
  let now = T0;
  let answer: TakeResult = { ok: 'local' };
  const twins: Twin[] = [false, true].map((plainScan) => ({
    pool: new AuditedPool('u', makeKeys(options), {
      strategy,
      random: seeded(seed),
      probeAfterMs: 1_000,
      maxSessions: 4,
      plainScan,
      ledger: shared ? scriptedLedger(() => answer) : undefined,
    }),
    leases: [],
  }));
  let saved: PoolSnapshot | undefined;
  const at = (t: Twin, i: number) => t.pool.states()[i % t.pool.size];
  const leaseOf = (t: Twin, i: number): Lease | undefined => (t.leases.length === 0 ? undefined : t.leases[i % t.leases.length]);

  for (const [step, o] of ops.entries()) {
    const chosen: (string | undefined)[] = [];
    for (const t of twins) {
      const p = t.pool;
      switch (o.kind) {
        case 'acquire': {
          const exclude = new Set(o.exclude.map((i) => at(t, i)!));
          const group = at(t, o.exclude[0] ?? 0)?.key.options.group;
          answer =
            o.answer === 'grant'
              ? { ok: true, mark: { requests: 1, tokens: 1 }, inflight: 1, ticket: step, requests: undefined, tokens: undefined }
              : o.answer === 'local'
                ? { ok: 'local' }
                : { ok: false, why: o.answer, until: now + o.untilMs };
          const l = p.acquire({
            demand: { model: MODELS[o.model]!, tokens: o.tokens },
            now,
            exclude,
            avoidGroups: o.avoid && group !== undefined ? new Set([group]) : undefined,
            session: o.session === 0 ? undefined : `s${o.session}`,
          });
          chosen.push(l === undefined ? undefined : `${l.state.key.name}${l.probing ? ' (probe)' : ''}`);
          if (l !== undefined && (await p.confirm(l, now))) t.leases.push(l);
          break;
        }
        case 'end':
        case 'abandon': {
          const l = leaseOf(t, o.lease);
          if (l !== undefined) {
            if (o.kind === 'end') l.end('successes');
            else l.abandon();
            t.leases.splice(t.leases.indexOf(l), 1);
          }
          break;
        }
        case 'answered':
          leaseOf(t, o.lease)?.answered(o.ok);
          break;
        case 'observe': {
          const l = leaseOf(t, o.lease);
          const kind = o.tokens ? 'tokens' : 'requests';
          const headers = {
            [`x-ratelimit-limit-${kind}`]: String(o.limit),
            [`x-ratelimit-remaining-${kind}`]: String(Math.min(o.limit, o.remaining)),
            [`x-ratelimit-reset-${kind}`]: `${o.resetMs}ms`,
          };
          if (l !== undefined) p.observe(l, headers, now);
          break;
        }
        case 'cool':
          p.cool(at(t, o.key)!, MODELS[o.model]!, now + o.ms, o.reason, now, o.refining);
          break;
        case 'disable':
          p.disable(at(t, o.key)!, o.reason, now + o.ms);
          break;
        case 'enable':
          p.enable(at(t, o.key)!);
          break;
        case 'reset':
          p.reset(at(t, o.key)!);
          break;
        case 'freed':
          // Lifts a hold for slots, if a refusal ('slots') left one.
          p.freed(at(t, o.key)!.key.fingerprint);
          break;
        case 'reopen':
          p.reopenModel(at(t, o.key)!, MODELS[o.model]!);
          break;
        case 'fact': {
          const fingerprint = at(t, o.key)!.key.fingerprint;
          p.applyShared(
            o.reason === 'disabled'
              ? { kind: 'disabled', fingerprint, reason: 'forbidden', until: now + o.ms }
              : { kind: 'cooldown', fingerprint, model: MODELS[o.model]!, reason: o.reason, until: now + o.ms, streak: o.streak },
            now,
          );
          break;
        }
        case 'tick':
          break;
        case 'save':
          if (t === twins[1]) saved = p.snapshot(now);
          break;
        case 'restore':
          if (saved !== undefined) p.restore(saved, now);
          break;
        case 'reload': {
          // Drops one key (when there are two or more) and rotates the order: kept secrets keep their state.
          const all = makeKeys(options);
          const keys = all.length > 1 ? all.filter((_, i) => i !== o.drop % all.length) : all;
          const r = o.drop % keys.length;
          p.reconfigure([...keys.slice(r), ...keys.slice(0, r)], { strategy: o.strategy, probeAfterMs: 1_000, maxSessions: 4 });
          break;
        }
      }
    }
    await flush();
    if (o.kind === 'tick') now += o.ms;
    if (o.kind === 'acquire') expect(chosen[0], `step ${step}: acquire`).toBe(chosen[1]);
    const [a, b] = twins;
    expect(a!.pool.usable, `step ${step}: usable`).toBe(b!.pool.usable);
    expect(a!.pool.audit(now), `step ${step}: the index's claims`).toBeUndefined();
    for (const m of MODELS) {
      for (const tokens of PROBE_TOKENS) {
        const d = { model: m, tokens };
        expect(a!.pool.nextAvailableAt(d, now), `step ${step}: nextAvailableAt(${m}, ${tokens})`).toBe(b!.pool.nextAvailableAt(d, now));
      }
    }
  }
}

/** Counts the keys a pool looks at: every check of a key reads its scopes. */
function countLooks(pool: KeyPool): { looks: number } {
  const c = { looks: 0 };
  for (const s of pool.states()) {
    const get = s.scopes.get.bind(s.scopes);
    s.scopes.get = (k) => {
      c.looks++;
      return get(k);
    };
  }
  return c;
}

describe('choice index', () => {
  it('with 2,000 keys all but one cooling, a choice and nextAvailableAt look at a handful of keys, not the pool', () => {
    const n = 2_000;
    const pool = new KeyPool('u', Array.from({ length: n }, (_, i) => new Key(`k${i}`, `secret-${i}`)));
    const d = { model: 'm1', tokens: 100 };
    const states = pool.states();
    for (let i = 0; i < n - 1; i++) pool.cool(states[i]!, 'm1', T0 + 600_000, 'rate_limited', T0);
    // The first look at a model learns every key once.
    pool.acquire({ demand: d, now: T0 })!.end();
    const c = countLooks(pool);
    for (let r = 0; r < 50; r++) {
      const l = pool.acquire({ demand: d, now: T0 + r })!;
      expect(l.state.key.name).toBe(`k${n - 1}`);
      l.end();
      expect(pool.nextAvailableAt(d, T0 + r)).toBe(T0 + r);
    }
    expect(c.looks / 50).toBeLessThan(20);
    // All cooling: the earliest return, known without asking each key again.
    pool.cool(states[n - 1]!, 'm1', T0 + 700_000, 'rate_limited', T0);
    expect(pool.nextAvailableAt(d, T0 + 100)).toBe(T0 + 600_000);
    c.looks = 0;
    for (let r = 0; r < 50; r++) {
      expect(pool.nextAvailableAt(d, T0 + 100 + r)).toBe(T0 + 600_000);
      expect(pool.acquire({ demand: d, now: T0 + 100 + r })).toBeUndefined();
    }
    expect(c.looks / 50).toBeLessThan(20);
    // Time moving past the cooldowns: every key is free again, round robin goes on from the cursor.
    expect(pool.acquire({ demand: d, now: T0 + 600_000 })?.state.key.name).toBe('k0');
  });

  it('chooses exactly the key the plain scan chooses, and agrees on nextAvailableAt, for any sequence of pool operations', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(fc.array(keyOptions, { minLength: 1, maxLength: 3 }), fc.array(keyOptions, { minLength: 1, maxLength: 8 })),
        fc.constantFrom(...STRATEGIES),
        fc.boolean(),
        fc.nat(),
        fc.array(op, { minLength: 1, maxLength: 80 }),
        (options, strategy, shared, seed, ops) => run(options, strategy, shared, seed, ops),
      ),
      { numRuns: Number(process.env.CHOICE_RUNS ?? 1_000) },
    );
  });
});
