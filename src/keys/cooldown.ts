// The cooldown policy: from one upstream response (status, headers, a peek at the body) decide what
// happens to the key and to the request. Pure: time and randomness come in as arguments.
import { resetDelayMs, type HeaderBag } from './rate-limit-headers.js';

export interface CooldownSettings {
  readonly backoffBaseMs: number;
  readonly backoffMaxMs: number;
  readonly outOfCreditMs: number;
  readonly maxMs: number;
}

export type Verdict =
  /** Hand the response to the client as it is (2xx, 3xx, and 4xx that another key would not fix). */
  | { readonly kind: 'deliver' }
  /** The key may not be used until `until`; try another key. */
  | { readonly kind: 'rotate'; readonly reason: 'rate_limited' | 'out_of_credit'; readonly until: number }
  /** The key is unusable (401/403) until restart; try another key. */
  | { readonly kind: 'disable'; readonly reason: 'unauthorized' | 'forbidden' }
  /** Not the key's fault (5xx, 408): retry, spending budget, without penalising the key. */
  | { readonly kind: 'retry'; readonly reason: 'server_error' };

export interface ResponseFacts {
  readonly status: number;
  readonly headers: HeaderBag;
  /** The start of the body, read only for statuses where it matters (429, 402). */
  readonly bodyText: string;
}

export interface PolicyInput {
  readonly now: number;
  /** Consecutive rate-limit failures of this key, including this one (>= 1). */
  readonly streak: number;
  /** A number in [0, 1) for jitter. */
  readonly random: number;
  readonly settings: CooldownSettings;
}

/** Statuses whose body `decide` needs to see. */
export function needsBody(status: number): boolean {
  return status === 429 || status === 402;
}

export function decide(res: ResponseFacts, p: PolicyInput): Verdict {
  const { status } = res;
  if (status < 400) return { kind: 'deliver' };
  if (status === 402 || (status === 429 && isOutOfCredit(res.bodyText))) {
    return { kind: 'rotate', reason: 'out_of_credit', until: p.now + p.settings.outOfCreditMs };
  }
  if (status === 429) {
    const ms = resetDelayMs(res.headers, p.now, p.settings.maxMs) ?? backoffMs(p.streak, p.random, p.settings);
    // Whole ms: headers may say 1.2345 s, and Redis TTLs and deadlines take integers only.
    return { kind: 'rotate', reason: 'rate_limited', until: Math.ceil(p.now + ms) };
  }
  if (status === 401) return { kind: 'disable', reason: 'unauthorized' };
  if (status === 403) return { kind: 'disable', reason: 'forbidden' };
  if (status >= 500 || status === 408) return { kind: 'retry', reason: 'server_error' };
  return { kind: 'deliver' };
}

/** OpenAI says `insufficient_quota` (as `error.code` or `error.type`) when a key is out of credit. */
export function isOutOfCredit(bodyText: string): boolean {
  return bodyText.includes('insufficient_quota');
}

/** Exponential backoff for a 429 that named no reset: base·2^(streak-1), capped, ±20 % jitter. */
export function backoffMs(streak: number, random: number, s: Pick<CooldownSettings, 'backoffBaseMs' | 'backoffMaxMs'>): number {
  const raw = Math.min(s.backoffMaxMs, s.backoffBaseMs * 2 ** Math.min(30, Math.max(0, streak - 1)));
  return Math.min(s.backoffMaxMs, Math.round(raw * (0.8 + 0.4 * random)));
}
