import { describe, expect, it } from 'vitest';
import { backoffMs, decide, type PolicyInput } from '../../src/keys/cooldown.js';

const settings = { backoffBaseMs: 1000, backoffMaxMs: 60_000, outOfCreditMs: 3_600_000, maxMs: 3_600_000 };
const NOW = 1_000_000;
const p = (over: Partial<PolicyInput> = {}): PolicyInput => ({ now: NOW, streak: 1, random: 0.5, settings, ...over });
const res = (status: number, headers: Record<string, string> = {}, bodyText = '') => ({ status, headers, bodyText });

describe('decide', () => {
  it.each([200, 201, 204, 301, 304])('%i is delivered', (status) => {
    expect(decide(res(status), p())).toEqual({ kind: 'deliver' });
  });
  it.each([400, 404, 409, 413, 422])('%i goes back to the client unchanged', (status) => {
    expect(decide(res(status), p())).toEqual({ kind: 'deliver' });
  });
  it('429 with retry-after cools until the reset', () => {
    expect(decide(res(429, { 'retry-after': '7' }), p())).toEqual({ kind: 'rotate', reason: 'rate_limited', until: NOW + 7000 });
    // Fractions round up to whole ms (the shared store's deadlines and TTLs are integers).
    expect(decide(res(429, { 'retry-after': '1.2345' }), p())).toEqual({ kind: 'rotate', reason: 'rate_limited', until: NOW + 1235 });
  });
  it('429 with x-ratelimit-reset-requests cools until that reset', () => {
    expect(decide(res(429, { 'x-ratelimit-reset-requests': '20ms' }), p())).toEqual({
      kind: 'rotate',
      reason: 'rate_limited',
      until: NOW + 20,
    });
  });
  it('a header asking for more than cooldown.maxMs is capped', () => {
    const v = decide(res(429, { 'retry-after': '999999' }), p());
    expect(v).toEqual({ kind: 'rotate', reason: 'rate_limited', until: NOW + settings.maxMs });
  });
  it('429 without headers backs off exponentially per key streak', () => {
    const until = (streak: number) => {
      const v = decide(res(429), p({ streak }));
      return v.kind === 'rotate' ? v.until - NOW : -1;
    };
    expect([1, 2, 3, 4].map(until)).toEqual([1000, 2000, 4000, 8000]);
    expect(until(10)).toBe(60_000);
  });
  it('402 and insufficient_quota are out of credit: long cooldown', () => {
    const body = '{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}';
    expect(decide(res(429, { 'retry-after': '1' }, body), p())).toEqual({
      kind: 'rotate',
      reason: 'out_of_credit',
      until: NOW + settings.outOfCreditMs,
    });
    expect(decide(res(402), p())).toEqual({ kind: 'rotate', reason: 'out_of_credit', until: NOW + settings.outOfCreditMs });
  });
  it('401 and 403 disable the key', () => {
    expect(decide(res(401), p())).toEqual({ kind: 'disable', reason: 'unauthorized' });
    expect(decide(res(403), p())).toEqual({ kind: 'disable', reason: 'forbidden' });
  });
  it.each([500, 502, 503, 504, 408])('%i is a server fault: retry without penalty', (status) => {
    expect(decide(res(status), p())).toEqual({ kind: 'retry', reason: 'server_error' });
  });
});

describe('backoffMs', () => {
  it('jitters within ±20 % and never passes the cap', () => {
    expect(backoffMs(1, 0, settings)).toBe(800);
    expect(backoffMs(1, 0.999999, settings)).toBe(1200);
    expect(backoffMs(30, 0.999999, settings)).toBe(60_000);
  });
});
