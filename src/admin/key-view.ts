// The key table as JSON (GET /admin/keys, the status page, `keypool status`): pure over the pool's
// key states, `now` and the per-minute rates. Names, fingerprints and masked forms only, never a secret.
import type { KeyState, Scope } from '../keys/key-state.js';
import { left, type Bucket } from '../keys/windows.js';

/**
 * The end an admin disable is given: the latest time a Date can hold, so it is a time every log line,
 * state file and store can carry, and no period ever runs it out. Shown as `until: null`.
 */
export const UNTIL_ENABLED = 8.64e15;

export type KeyStateName = 'ok' | 'cooling' | 'unavailable' | 'disabled';

export interface ModelRow {
  readonly model: string;
  readonly state: 'cooling' | 'unavailable';
  readonly reason: string;
  readonly until: string;
  readonly leftMs: number;
}

export interface BucketRow {
  readonly limit: number;
  readonly remaining: number;
  readonly resetAt: string;
}

export interface HeadroomRow {
  /** '' is the key-wide scope (requests whose model was not known). */
  readonly model: string;
  readonly requests: BucketRow | null;
  readonly tokens: BucketRow | null;
}

export interface KeyRow {
  readonly name: string;
  readonly fingerprint: string;
  readonly masked: string;
  readonly group: string | null;
  readonly state: KeyStateName;
  readonly reason: string | null;
  /** When the state ends by itself; null for ok, and for a disable only an operator ends. */
  readonly until: string | null;
  readonly leftMs: number | null;
  readonly models: readonly ModelRow[];
  readonly inflight: number;
  readonly requests: number;
  readonly successes: number;
  readonly rateLimited: number;
  readonly outOfCredit: number;
  readonly serverErrors: number;
  readonly tokensIn: number;
  readonly tokensOut: number;
  readonly perMinute: { readonly requests: number; readonly rateLimited: number };
  readonly headroom: readonly HeadroomRow[];
}

export interface UpstreamRow {
  readonly name: string;
  readonly prefix: string;
  /** Keys not disabled. */
  readonly usable: number;
  readonly size: number;
  readonly waiting: number;
  readonly keys: readonly KeyRow[];
}

export interface KeysView {
  readonly now: string;
  readonly upstreams: readonly UpstreamRow[];
}

export const iso = (ms: number): string => new Date(ms).toISOString();

/** The key's state as the table shows it (see OPS-SPEC: disabled > cooling key-wide > ok). */
export function keyStatus(s: KeyState, now: number): { state: KeyStateName; reason: string | null; untilMs: number | undefined } {
  if (s.disabled !== undefined && s.disabledUntil > now) {
    return { state: 'disabled', reason: s.disabled, untilMs: s.disabledUntil >= UNTIL_ENABLED ? undefined : s.disabledUntil };
  }
  let reason: string | null = null;
  let untilMs: number | undefined;
  if (s.creditUntil > now) {
    reason = 'out_of_credit';
    untilMs = s.creditUntil;
  }
  const wide = s.scopes.get('');
  if (wide !== undefined && wide.cooldownUntil > now && (untilMs === undefined || wide.cooldownUntil > untilMs)) {
    reason = wide.reason ?? 'rate_limited';
    untilMs = wide.cooldownUntil;
  }
  return untilMs === undefined ? { state: 'ok', reason: null, untilMs: undefined } : { state: 'cooling', reason, untilMs };
}

function bucketRow(b: Bucket | undefined, sent: number, now: number): BucketRow | null {
  if (b === undefined) return null;
  return { limit: b.limit, remaining: Math.max(0, left(b, sent, now)), resetAt: iso(b.resetAt) };
}

function modelRows(scopes: ReadonlyMap<string, Scope>, now: number): ModelRow[] {
  const out: ModelRow[] = [];
  for (const [model, sc] of scopes) {
    if (model === '' || sc.cooldownUntil <= now) continue;
    const reason = sc.reason ?? 'rate_limited';
    out.push({ model, state: reason === 'model_unavailable' ? 'unavailable' : 'cooling', reason, until: iso(sc.cooldownUntil), leftMs: sc.cooldownUntil - now });
  }
  return out.sort((a, b) => (a.model < b.model ? -1 : 1));
}

function headroomRows(scopes: ReadonlyMap<string, Scope>, now: number): HeadroomRow[] {
  const out: HeadroomRow[] = [];
  for (const [model, sc] of scopes) {
    if (sc.requests === undefined && sc.tokens === undefined) continue;
    out.push({ model, requests: bucketRow(sc.requests, sc.sent, now), tokens: bucketRow(sc.tokens, sc.sentTokens, now) });
  }
  return out.sort((a, b) => (a.model < b.model ? -1 : 1));
}

export function keyRow(s: KeyState, now: number, perMinute: { requests: number; rateLimited: number }): KeyRow {
  const { state, reason, untilMs } = keyStatus(s, now);
  return {
    name: s.key.name,
    fingerprint: s.key.fingerprint,
    masked: s.key.masked(),
    group: s.key.options.group ?? null,
    state,
    reason,
    until: untilMs === undefined ? null : iso(untilMs),
    leftMs: untilMs === undefined ? null : untilMs - now,
    models: modelRows(s.scopes, now),
    inflight: s.inflight,
    requests: s.stats.attempts,
    successes: s.stats.successes,
    rateLimited: s.stats.rateLimited,
    outOfCredit: s.stats.outOfCredit,
    serverErrors: s.stats.serverErrors,
    tokensIn: s.tokens.input,
    tokensOut: s.tokens.output,
    perMinute,
    headroom: headroomRows(s.scopes, now),
  };
}

/** What the view needs of one upstream. */
export interface UpstreamSource {
  readonly name: string;
  readonly prefix: string;
  readonly states: readonly KeyState[];
  readonly waiting: number;
  readonly perMinute: (key: string) => { requests: number; rateLimited: number };
}

export function upstreamRow(u: UpstreamSource, now: number): UpstreamRow {
  const keys = u.states.map((s) => keyRow(s, now, u.perMinute(s.key.name)));
  return { name: u.name, prefix: u.prefix, usable: keys.filter((k) => k.state !== 'disabled').length, size: keys.length, waiting: u.waiting, keys };
}
