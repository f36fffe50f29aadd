// How long a key waits after the upstream refused it: the upstream's own reset when it names one
// (capped), else exponential backoff on the key's streak; out of credit and "not for this model" get
// their long, configured periods. Pure: time and randomness come in as arguments.
import { resetDelayMs, type HeaderBag } from './rate-limit-headers.js';

export interface CooldownSettings {
  readonly backoffBaseMs: number;
  readonly backoffMaxMs: number;
  readonly outOfCreditMs: number;
  readonly maxMs: number;
  readonly modelUnavailableMs: number;
  readonly disabledMs: number;
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

/**
 * When a rate-limited key may be tried again: the upstream's reset (Retry-After, retry-after-ms,
 * x-ms-retry-after-ms, x-ratelimit-reset-* of the exhausted limit), capped at `maxMs`, else backoff. Whole ms: Redis TTLs
 * and deadlines take integers only.
 */
export function rateLimitedUntil(headers: HeaderBag, now: number, streak: number, random: number, s: CooldownSettings): number {
  const told = resetDelayMs(headers, now, s.maxMs);
  // A 429 that says "now" (0 s, or a reset already past) is treated like one that says nothing: cooling
  // for 0 ms would let every request choose the key again at once, and the upstream answer 429 again.
  const ms = told !== undefined && told >= 1 ? Math.min(told, s.maxMs) : backoffMs(streak, random, s);
  return Math.ceil(now + ms);
}
