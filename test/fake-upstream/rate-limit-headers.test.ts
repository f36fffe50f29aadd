// The header dialects a 429 speaks, checked value by value.
import { describe, expect, it } from 'vitest';
import {
  openAiDuration,
  retryAfterDate,
  retryAfterSeconds,
  scriptedRateLimitHeaders,
  windowExceededHeaders,
} from '../../src/fake-upstream/rate-limit-headers.js';

describe('openAiDuration', () => {
  it.each([
    [0, '0s'],
    [-5, '0s'],
    [0.2, '1ms'],
    [20, '20ms'],
    [999, '999ms'],
    [1000, '1s'],
    [1500, '1.5s'],
    [8640, '8.64s'],
    [60_000, '1m0s'],
    [360_000, '6m0s'],
    [3_723_000, '1h2m3s'],
    [3_600_000, '1h0m0s'],
  ])('%d ms -> %s', (ms, text) => {
    expect(openAiDuration(ms)).toBe(text);
  });
});

describe('Retry-After', () => {
  it('rounds seconds up so an obedient client is never early', () => {
    expect([0, 1, 1000, 1001, 2500].map(retryAfterSeconds)).toEqual(['0', '1', '1', '2', '3']);
  });

  it('writes an HTTP-date rounded up to the next whole second', () => {
    expect(retryAfterDate(1000, Date.UTC(2024, 0, 1, 0, 0, 0, 1))).toBe('Mon, 01 Jan 2024 00:00:02 GMT');
    expect(retryAfterDate(1000, Date.UTC(2024, 0, 1))).toBe('Mon, 01 Jan 2024 00:00:01 GMT');
  });
});

describe('scriptedRateLimitHeaders', () => {
  const now = Date.UTC(2024, 0, 1);
  it.each([
    ['retry-after', { 'retry-after': '2' }],
    ['retry-after-ms', { 'retry-after-ms': '1200' }],
    ['retry-after-date', { 'retry-after': 'Mon, 01 Jan 2024 00:00:02 GMT' }],
    [
      'x-ratelimit',
      { 'x-ratelimit-limit-requests': '60', 'x-ratelimit-remaining-requests': '0', 'x-ratelimit-reset-requests': '1.2s' },
    ],
    ['none', {}],
  ] as const)('%s', (style, headers) => {
    expect(scriptedRateLimitHeaders(style, 1200, now, 60)).toEqual(headers);
  });
});

describe('windowExceededHeaders', () => {
  it('speaks every dialect at once', () => {
    expect(windowExceededHeaders(5, 650)).toEqual({
      'retry-after-ms': '650',
      'retry-after': '1',
      'x-ratelimit-limit-requests': '5',
      'x-ratelimit-remaining-requests': '0',
      'x-ratelimit-reset-requests': '650ms',
    });
  });
});
