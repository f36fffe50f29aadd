import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  parseCount,
  parseDuration,
  parseReset,
  parseResetTimestamp,
  parseRetryAfter,
  parseRetryAfterMs,
  resetDelayMs,
  type HeaderBag,
} from '../../src/keys/rate-limit-headers.js';
import { hostileHeaders, hostileValue, maxMsArb, nowArb } from './rate-limit-arbitraries.js';

const NOW = Date.parse('2026-11-28T12:00:00Z');
const HOUR = 3_600_000;
const SEC = Math.floor(NOW / 1000);

describe('parseDuration (OpenAI x-ratelimit-reset-*)', () => {
  it.each([
    ['20ms', 20],
    ['1s', 1000],
    ['6m0s', 360_000],
    ['0h2m3.5s', 123_500],
    ['1h2m3.5s', HOUR],
    ['0.5s', 500],
    ['7.66s', 7660],
    ['33.0125s', 33_013],
    ['1.5us', 1],
    ['2', 2000],
    ['1.2345', 1235],
    [' 1s ', 1000],
    ['0s', 0],
    // The 3,000-year reset: capped, not a block until restart.
    ['99999999999s', HOUR],
    ['2h', HOUR],
    // Epoch timestamps in a bare reset: read as times (30 s from now), not as 57 years.
    [String(SEC + 30), 30_000],
    [String(NOW + 4_500), 4_500],
    // A time already past: the window has reset.
    [String(SEC - 30), 0],
    [String(NOW - 1), 0],
    ['', undefined],
    ['   ', undefined],
    ['soon', undefined],
    ['1x', undefined],
    ['1s2', undefined],
    ['s', undefined],
    ['-1s', undefined],
    ['-5', undefined],
    ['1e3', undefined],
    ['1e400s', undefined],
    ['999999999999999999999h', undefined],
    ['1' + '0'.repeat(40) + 's', undefined],
    ['1' + '0'.repeat(400), undefined],
    ['1s'.repeat(30), 30_000],
    // Longer than MAX_VALUE_CHARS: never reaches a regex.
    ['1s'.repeat(40), undefined],
    ['Infinity', undefined],
    ['NaN', undefined],
    ['0x10', undefined],
    [undefined, undefined],
  ])('%j -> %j', (input, expected) => {
    expect(parseDuration(input, NOW, HOUR)).toBe(expected);
  });
});

describe('parseRetryAfter (RFC 9110 §10.2.3)', () => {
  it.each([
    ['2', 2000],
    ['0', 0],
    ['1.5', 1500],
    ['1.2345', 1235],
    ['Sat, 28 Nov 2026 12:00:30 GMT', 30_000],
    ['Sat, 28 Nov 2026 11:00:00 GMT', 0],
    ['Sun, 29 Nov 2026 12:00:00 GMT', HOUR],
    ['Fri, 31 Dec 9999 23:59:59 GMT', HOUR],
    ['172800', HOUR],
    [String(SEC + 90), 90_000],
    [String(SEC - 90), 0],
    [String(NOW + 250), 250],
    ['-3', undefined],
    ['', undefined],
    ['tomorrow', undefined],
    ['1 2', undefined],
    ['Infinity', undefined],
    ['1' + '0'.repeat(400), undefined],
    ['Foo, 99 Bad 2026 99:99:99 GMT', undefined],
    [`Sat, 28 Nov 2026 12:00:30 GMT${' '.repeat(60)}x`, undefined],
  ])('%j -> %j', (input, expected) => {
    expect(parseRetryAfter(input, NOW, HOUR)).toBe(expected);
  });
});

describe('parseRetryAfterMs (retry-after-ms, x-ms-retry-after-ms)', () => {
  it.each([
    ['250', 250],
    ['12.5', 13],
    ['0', 0],
    ['86400000', HOUR],
    // 1e9 ms is 11.6 days: a (capped) duration, never read as epoch seconds (which would be "the past").
    [String(SEC), HOUR],
    [String(NOW + 700), 700],
    [String(NOW - 700), 0],
    ['-1', undefined],
    ['x', undefined],
    ['Infinity', undefined],
    ['1e5', undefined],
  ])('%j -> %j', (input, expected) => {
    expect(parseRetryAfterMs(input, NOW, HOUR)).toBe(expected);
  });
});

describe('parseResetTimestamp (anthropic-ratelimit-*-reset)', () => {
  it.each([
    ['2026-11-28T12:00:05Z', 5000],
    ['2026-11-28T12:00:05.5+00:00', 5500],
    ['2026-11-28T11:00:00Z', 0],
    ['3026-11-28T12:00:00Z', HOUR],
    ['2026-11-28T99:00:00Z', undefined],
    ['5', undefined],
    ['', undefined],
  ])('%j -> %j', (input, expected) => {
    expect(parseResetTimestamp(input, NOW, HOUR)).toBe(expected);
  });
  it('parseReset reads either family', () => {
    expect(parseReset('6m0s', NOW, HOUR)).toBe(360_000);
    expect(parseReset('2026-11-28T12:00:05Z', NOW, HOUR)).toBe(5000);
    expect(parseReset('later', NOW, HOUR)).toBeUndefined();
  });
  it('parseCount takes plain non-negative decimals only', () => {
    expect(['42', '0', '3.5', '-1', '', 'NaN', 'Infinity', '1e3', '0x1'].map(parseCount)).toEqual([
      42, 0, 3.5, undefined, undefined, undefined, undefined, undefined, undefined,
    ]);
  });
});

describe('resetDelayMs precedence', () => {
  it('retry-after-ms beats x-ms-retry-after-ms beats retry-after beats x-ratelimit-reset-*', () => {
    const all = { 'retry-after-ms': '150', 'x-ms-retry-after-ms': '300', 'retry-after': '9', 'x-ratelimit-reset-requests': '1m' };
    expect(resetDelayMs(all, NOW, HOUR)).toBe(150);
    expect(resetDelayMs({ ...all, 'retry-after-ms': undefined }, NOW, HOUR)).toBe(300);
    expect(resetDelayMs({ ...all, 'retry-after-ms': undefined, 'x-ms-retry-after-ms': undefined }, NOW, HOUR)).toBe(9000);
  });
  it('an unreadable header gives way to the next', () => {
    expect(resetDelayMs({ 'retry-after-ms': 'Infinity', 'x-ms-retry-after-ms': '-4', 'retry-after': '2' }, NOW, HOUR)).toBe(2000);
    expect(resetDelayMs({ 'retry-after-ms': '1e400', 'x-ratelimit-reset-requests': '3s' }, NOW, HOUR)).toBe(3000);
  });
  it('uses the reset of the exhausted limit', () => {
    const h = {
      'x-ratelimit-remaining-requests': '0',
      'x-ratelimit-reset-requests': '20ms',
      'x-ratelimit-remaining-tokens': '5000',
      'x-ratelimit-reset-tokens': '6m0s',
    };
    expect(resetDelayMs(h, NOW, HOUR)).toBe(20);
    expect(resetDelayMs({ ...h, 'x-ratelimit-remaining-tokens': '0', 'x-ratelimit-remaining-requests': '3' }, NOW, HOUR)).toBe(360_000);
  });
  it('without remaining counts takes the longest reset', () => {
    expect(resetDelayMs({ 'x-ratelimit-reset-requests': '1s', 'x-ratelimit-reset-tokens': '3s' }, NOW, HOUR)).toBe(3000);
  });
  it('reads anthropic headers', () => {
    expect(
      resetDelayMs({ 'anthropic-ratelimit-requests-remaining': '0', 'anthropic-ratelimit-requests-reset': '2026-11-28T12:00:10Z' }, NOW, HOUR),
    ).toBe(10_000);
  });
  it('caps every source: a 3,000-year reset, a two-day Retry-After, an epoch far ahead', () => {
    expect(resetDelayMs({ 'x-ratelimit-remaining-requests': '0', 'x-ratelimit-reset-requests': '99999999999s' }, NOW, HOUR)).toBe(HOUR);
    expect(resetDelayMs({ 'retry-after': '172800' }, NOW, HOUR)).toBe(HOUR);
    expect(resetDelayMs({ 'retry-after-ms': '172800000' }, NOW, 5000)).toBe(5000);
    expect(resetDelayMs({ 'x-ratelimit-reset-tokens': String(SEC + 10 * 365 * 86_400) }, NOW, HOUR)).toBe(HOUR);
  });
  it('reads an epoch reset as a time', () => {
    expect(resetDelayMs({ 'x-ratelimit-remaining-requests': '0', 'x-ratelimit-reset-requests': String(SEC + 42) }, NOW, HOUR)).toBe(42_000);
  });
  it('ignores garbage and says nothing, so the caller backs off', () => {
    expect(resetDelayMs({ 'retry-after': 'later', 'x-ratelimit-reset-requests': 'soon' }, NOW, HOUR)).toBeUndefined();
    expect(resetDelayMs({ 'retry-after': 'Infinity', 'x-ratelimit-reset-requests': '1e400s' }, NOW, HOUR)).toBeUndefined();
    expect(resetDelayMs({}, NOW, HOUR)).toBeUndefined();
  });
  it('takes the first of repeated headers', () => {
    expect(resetDelayMs({ 'retry-after': ['3', '9'] }, NOW, HOUR)).toBe(3000);
    expect(resetDelayMs({ 'x-ms-retry-after-ms': ['40', '9000'] }, NOW, HOUR)).toBe(40);
    expect(resetDelayMs({ 'retry-after': [] }, NOW, HOUR)).toBeUndefined();
  });
});

/** A duration every parser may return: whole ms in [0, maxMs]. */
function sane(ms: number | undefined, maxMs: number): boolean {
  return ms === undefined || (Number.isInteger(ms) && ms >= 0 && ms <= maxMs);
}

describe('properties: never a throw, never a negative, fractional or uncapped duration', () => {
  const runs = { numRuns: 3000 };
  const parsers = { parseRetryAfterMs, parseRetryAfter, parseDuration, parseResetTimestamp, parseReset };
  for (const [name, parse] of Object.entries(parsers)) {
    it(name, () => {
      fc.assert(
        fc.property(fc.option(hostileValue, { nil: undefined }), nowArb, maxMsArb, (v, now, maxMs) => sane(parse(v, now, maxMs), maxMs)),
        runs,
      );
    });
  }
  it('resetDelayMs', () => {
    fc.assert(fc.property(hostileHeaders, nowArb, maxMsArb, (h: HeaderBag, now, maxMs) => sane(resetDelayMs(h, now, maxMs), maxMs)), runs);
  });
  it('a readable Retry-After in seconds never shrinks below what it says (up to the cap)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 999_999_999 }), nowArb, maxMsArb, (s, now, maxMs) => {
        return parseRetryAfter(String(s), now, maxMs) === Math.min(s * 1000, maxMs);
      }),
    );
  });
  it('parseCount is never negative or non-finite', () => {
    fc.assert(
      fc.property(fc.option(hostileValue, { nil: undefined }), (v) => {
        const n = parseCount(v);
        return n === undefined || (Number.isFinite(n) && n >= 0);
      }),
      runs,
    );
  });
});
