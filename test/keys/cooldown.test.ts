import { describe, expect, it } from 'vitest';
import { backoffMs, isOutOfCredit, rateLimitedUntil } from '../../src/keys/cooldown.js';

const settings = { backoffBaseMs: 1000, backoffMaxMs: 60_000, outOfCreditMs: 3_600_000, maxMs: 3_600_000, modelUnavailableMs: 3_600_000, disabledMs: 86_400_000 };
const NOW = 1_000_000;

describe('rateLimitedUntil', () => {
  it('uses the upstream reset, in whole ms', () => {
    expect(rateLimitedUntil({ 'retry-after': '7' }, NOW, 1, 0.5, settings)).toBe(NOW + 7000);
    // Fractions round up to whole ms (the shared store's deadlines and TTLs are integers).
    expect(rateLimitedUntil({ 'retry-after': '1.2345' }, NOW, 1, 0.5, settings)).toBe(NOW + 1235);
    expect(rateLimitedUntil({ 'x-ratelimit-reset-requests': '20ms' }, NOW, 1, 0.5, settings)).toBe(NOW + 20);
  });
  it('caps what a header asks for at cooldown.maxMs', () => {
    expect(rateLimitedUntil({ 'retry-after': '999999' }, NOW, 1, 0.5, settings)).toBe(NOW + settings.maxMs);
    expect(rateLimitedUntil({ 'retry-after-ms': '99999999999999' }, NOW, 1, 0.5, settings)).toBe(NOW + settings.maxMs);
  });
  it('a 429 that says "retry now" backs off like one that says nothing (no 0 ms cooldown to hammer on)', () => {
    expect(rateLimitedUntil({ 'retry-after': '0' }, NOW, 1, 0.5, settings)).toBe(NOW + 1000);
    expect(rateLimitedUntil({ 'retry-after-ms': '0' }, NOW, 2, 0.5, settings)).toBe(NOW + 2000);
  });
  it('backs off exponentially per key streak without a header', () => {
    expect([1, 2, 3, 4].map((streak) => rateLimitedUntil({}, NOW, streak, 0.5, settings) - NOW)).toEqual([1000, 2000, 4000, 8000]);
    expect(rateLimitedUntil({}, NOW, 10, 0.5, settings) - NOW).toBe(60_000);
  });
});

describe('backoffMs', () => {
  it('jitters within ±20 % and never passes the cap', () => {
    expect(backoffMs(1, 0, settings)).toBe(800);
    expect(backoffMs(1, 0.999999, settings)).toBe(1200);
    expect(backoffMs(30, 0.999999, settings)).toBe(60_000);
  });
});

describe('isOutOfCredit', () => {
  it('reads insufficient_quota', () => {
    expect(isOutOfCredit('{"error":{"type":"insufficient_quota"}}')).toBe(true);
    expect(isOutOfCredit('{"error":{"type":"rate_limit_exceeded"}}')).toBe(false);
  });
});
