import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_KEY_OPTIONS, Key } from '../../src/keys/key.js';
import { newScope } from '../../src/keys/key-state.js';
import { KeyPool } from '../../src/keys/pool.js';
import type { HeaderBag } from '../../src/keys/rate-limit-headers.js';
import { MAX_BUCKET_COUNT, observeHeaders, readReport } from '../../src/keys/rate-limit-report.js';
import { left } from '../../src/keys/windows.js';
import { hostileHeaders, maxMsArb, nowArb } from './rate-limit-arbitraries.js';

const NOW = Date.parse('2026-11-28T12:00:00Z');
const HOUR = 3_600_000;
const SEC = Math.floor(NOW / 1000);

const req = (remaining: string | undefined, reset: string | undefined, limit: string | null = '60'): HeaderBag => ({
  'x-ratelimit-limit-requests': limit ?? undefined,
  'x-ratelimit-remaining-requests': remaining,
  'x-ratelimit-reset-requests': reset,
});

describe('readReport: times', () => {
  it.each([
    ['6m0s', NOW + 360_000, 360_000],
    ['33.0125s', NOW + 33_013, 33_013],
    // The 3,000-year reset blocks the model for maxMs, not until restart.
    ['99999999999s', NOW + HOUR, HOUR],
    // An epoch reset is a time: seconds, then ms.
    [String(SEC + 20), NOW + 20_000, 20_000],
    [String(NOW + 1500), NOW + 1500, 1500],
    [String(SEC + 86_400 * 365 * 57), NOW + HOUR, HOUR],
    // A reset in the past: the bucket is fresh now.
    [String(SEC - 60), NOW, 0],
    ['2026-11-28T11:00:00Z', NOW, 0],
  ])('reset %j -> resetAt %j, period %j', (reset, resetAt, period) => {
    expect(readReport(req('0', reset), NOW, HOUR)?.requests).toEqual({ limit: 60, remaining: 0, resetAt, period, base: 0 });
  });

  it('a reset in the past leaves the whole limit', () => {
    const b = readReport(req('0', String(SEC - 60)), NOW, HOUR)!.requests!;
    expect(left({ ...b, base: 0 }, 0, NOW)).toBe(60);
  });

  it.each(['Infinity', '1e400s', '1' + '0'.repeat(400) + 's', '999999999999999999999h', '-1s', '', 'soon', undefined])(
    'an unreadable reset %j gives no bucket',
    (reset) => {
      expect(readReport(req('0', reset), NOW, HOUR)).toBeUndefined();
    },
  );

  it('anthropic reset timestamps far ahead are capped too', () => {
    const r = readReport(
      {
        'anthropic-ratelimit-tokens-limit': '80000',
        'anthropic-ratelimit-tokens-remaining': '0',
        'anthropic-ratelimit-tokens-reset': '2126-11-28T12:00:00Z',
      },
      NOW,
      HOUR,
    );
    expect(r).toEqual({ requests: undefined, tokens: { limit: 80_000, remaining: 0, resetAt: NOW + HOUR, period: HOUR, base: 0 } });
  });
});

describe('readReport: counts', () => {
  it.each([
    ['-1', '60'],
    ['', '60'],
    ['NaN', '60'],
    ['Infinity', '60'],
    ['1e3', '60'],
    ['5', '-1'],
    ['5', 'Infinity'],
    ['5', 'many'],
  ])('remaining %j, limit %j: no bucket', (remaining, limit) => {
    expect(readReport(req(remaining, '1s', limit), NOW, HOUR)).toBeUndefined();
  });

  it('counts are whole and at most MAX_BUCKET_COUNT (the shared store holds integers)', () => {
    expect(readReport(req('3.7', '1s', '10.9'), NOW, HOUR)?.requests).toMatchObject({ remaining: 3, limit: 10 });
    expect(readReport(req('99999999999999999999', '1s', '1' + '0'.repeat(40)), NOW, HOUR)?.requests).toMatchObject({
      remaining: MAX_BUCKET_COUNT,
      limit: MAX_BUCKET_COUNT,
    });
  });

  it('a limit of 0 (or none, with nothing remaining) is 1: the first request after the reset asks again', () => {
    expect(readReport(req('0', '1s', '0'), NOW, HOUR)?.requests?.limit).toBe(1);
    expect(readReport(req('0', '1s', null), NOW, HOUR)?.requests?.limit).toBe(1);
    expect(readReport(req('7', '1s', null), NOW, HOUR)?.requests?.limit).toBe(7);
  });

  it('observeHeaders takes a capped report into the scope', () => {
    const scope = newScope();
    expect(observeHeaders(scope, req('0', '99999999999s'), NOW, HOUR, { requests: 0, tokens: 0 })).toBe(true);
    expect(scope.requests).toMatchObject({ resetAt: NOW + HOUR, period: HOUR });
  });
});

describe('the pool caps header times by maxHeaderMs', () => {
  const pool = (o: { maxHeaderMs?: number } = {}) =>
    new KeyPool('u', [new Key('k1', 'secret-1', DEFAULT_KEY_OPTIONS)], o);
  const GPT4 = { model: 'gpt-4o', tokens: 0 };
  const exhaust = (p: KeyPool, reset: string) => {
    const s = p.states()[0]!;
    p.observe({ state: s, demand: GPT4, mark: { requests: 0, tokens: 0 }, sharedMark: undefined }, req('0', reset), 0);
  };

  it('a 3,000-year reset keeps the model shut for maxHeaderMs only', () => {
    const p = pool({ maxHeaderMs: 5000 });
    exhaust(p, '99999999999s');
    expect(p.nextAvailableAt(GPT4, 1)).toBe(5000);
  });
  it('defaults to an hour', () => {
    const p = pool();
    exhaust(p, '99999999999s');
    expect(p.nextAvailableAt(GPT4, 1)).toBe(HOUR);
  });
  it('an Infinity reset leaves admission to the upstream instead of shutting the model', () => {
    const p = pool();
    exhaust(p, '1' + '0'.repeat(400) + 's');
    expect(p.nextAvailableAt(GPT4, 1)).toBe(1);
  });
});

describe('properties: readReport never throws and every time is capped', () => {
  it('resetAt in [now, now + maxMs], period in [0, maxMs], counts whole in [0, 1e9], limit >= 1', () => {
    fc.assert(
      fc.property(hostileHeaders, nowArb, maxMsArb, (h, now, maxMs) => {
        const r = readReport(h, now, maxMs);
        for (const b of [r?.requests, r?.tokens]) {
          if (b === undefined) continue;
          expect(Number.isInteger(b.resetAt) && b.resetAt >= now && b.resetAt <= now + maxMs).toBe(true);
          expect(Number.isInteger(b.period) && b.period >= 0 && b.period <= maxMs).toBe(true);
          expect(Number.isInteger(b.remaining) && b.remaining >= 0 && b.remaining <= MAX_BUCKET_COUNT).toBe(true);
          expect(Number.isInteger(b.limit) && b.limit >= 1 && b.limit <= MAX_BUCKET_COUNT).toBe(true);
        }
      }),
      { numRuns: 3000 },
    );
  });
});
