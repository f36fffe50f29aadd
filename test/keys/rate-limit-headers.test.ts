import { describe, expect, it } from 'vitest';
import {
  parseDuration,
  parseResetTimestamp,
  parseRetryAfter,
  parseRetryAfterMs,
  resetDelayMs,
} from '../../src/keys/rate-limit-headers.js';

const NOW = Date.parse('2026-11-28T12:00:00Z');

describe('parseDuration (OpenAI x-ratelimit-reset-*)', () => {
  it.each([
    ['20ms', 20],
    ['1s', 1000],
    ['6m0s', 360_000],
    ['1h2m3.5s', 3_723_500],
    ['0.5s', 500],
    ['7.66s', 7660],
    ['2', 2000],
    [' 1s ', 1000],
    ['', undefined],
    ['soon', undefined],
    ['1x', undefined],
    ['-1s', undefined],
    [undefined, undefined],
  ])('%j -> %j', (input, expected) => {
    expect(parseDuration(input)).toBe(expected);
  });
});

describe('parseRetryAfter (RFC 9110 §10.2.3)', () => {
  it.each([
    ['2', 2000],
    ['0', 0],
    ['1.5', 1500],
    ['Sat, 28 Nov 2026 12:00:30 GMT', 30_000],
    ['Sat, 28 Nov 2026 11:00:00 GMT', 0],
    ['-3', undefined],
    ['tomorrow', undefined],
    ['1 2', undefined],
    ['Foo, 99 Bad 2026 99:99:99 GMT', undefined],
  ])('%j -> %j', (input, expected) => {
    expect(parseRetryAfter(input, NOW)).toBe(expected);
  });
});

describe('other parsers', () => {
  it('retry-after-ms takes non-negative numbers only', () => {
    expect(parseRetryAfterMs('250')).toBe(250);
    expect(parseRetryAfterMs('12.5')).toBe(12.5);
    expect(parseRetryAfterMs('-1')).toBeUndefined();
    expect(parseRetryAfterMs('x')).toBeUndefined();
  });
  it('anthropic reset timestamps are RFC 3339', () => {
    expect(parseResetTimestamp('2026-11-28T12:00:05Z', NOW)).toBe(5000);
    expect(parseResetTimestamp('5', NOW)).toBeUndefined();
  });
});

describe('resetDelayMs precedence', () => {
  it('retry-after-ms beats retry-after beats x-ratelimit-reset-*', () => {
    expect(resetDelayMs({ 'retry-after-ms': '150', 'retry-after': '9', 'x-ratelimit-reset-requests': '1m' }, NOW)).toBe(150);
    expect(resetDelayMs({ 'retry-after': '9', 'x-ratelimit-reset-requests': '1m' }, NOW)).toBe(9000);
  });
  it('uses the reset of the exhausted limit', () => {
    const h = {
      'x-ratelimit-remaining-requests': '0',
      'x-ratelimit-reset-requests': '20ms',
      'x-ratelimit-remaining-tokens': '5000',
      'x-ratelimit-reset-tokens': '6m0s',
    };
    expect(resetDelayMs(h, NOW)).toBe(20);
    expect(resetDelayMs({ ...h, 'x-ratelimit-remaining-tokens': '0', 'x-ratelimit-remaining-requests': '3' }, NOW)).toBe(360_000);
  });
  it('without remaining counts takes the longest reset', () => {
    expect(resetDelayMs({ 'x-ratelimit-reset-requests': '1s', 'x-ratelimit-reset-tokens': '3s' }, NOW)).toBe(3000);
  });
  it('reads anthropic headers', () => {
    expect(
      resetDelayMs({ 'anthropic-ratelimit-requests-remaining': '0', 'anthropic-ratelimit-requests-reset': '2026-11-28T12:00:10Z' }, NOW),
    ).toBe(10_000);
  });
  it('ignores garbage and says nothing', () => {
    expect(resetDelayMs({ 'retry-after': 'later', 'x-ratelimit-reset-requests': 'soon' }, NOW)).toBeUndefined();
    expect(resetDelayMs({}, NOW)).toBeUndefined();
  });
  it('takes the first of repeated headers', () => {
    expect(resetDelayMs({ 'retry-after': ['3', '9'] }, NOW)).toBe(3000);
  });
});
