// The ledger batch's slot bookkeeping: a take's release frees exactly the slot that take holds, whatever
// order its answer and its attempt's end arrive in, and a reset of Redis writes exactly what is held.
import { describe, expect, it } from 'vitest';
import { LedgerBatch } from '../../src/state/ledger-batch.js';

/** How many slot releases the next flush would send. */
const releases = (b: LedgerBatch): number => {
  const args = b.drain(false);
  const n = Number(args[0]);
  let total = 0;
  for (let i = 1; i <= n; i++) total += Number(String(args[i]).split('|')[2]);
  return total;
};
const ask = (b: LedgerBatch) => b.ask('u', 'fp', undefined);

describe('LedgerBatch slots', () => {
  it('a grant is held until its release, which frees it once', () => {
    const b = new LedgerBatch();
    const c = ask(b);
    expect(b.answered(c, true)).toBe(false);
    expect(b.reset()).toEqual(['u|fp', 1]);
    expect(b.release(c)).toBe(true);
    expect(b.release(c)).toBe(false);
    expect(releases(b)).toBe(1);
    expect(b.reset()).toEqual([]);
  });

  it('a release before the grant is paid when the grant arrives', () => {
    const b = new LedgerBatch();
    const c = ask(b);
    expect(b.release(c)).toBe(false);
    expect(b.answered(c, true)).toBe(true);
    expect(releases(b)).toBe(1);
    expect(b.reset()).toEqual([]);
  });

  it('a refusal holds nothing: its release, before or after, frees no other take of the key', () => {
    const b = new LedgerBatch();
    const held = ask(b);
    b.answered(held, true);
    const early = ask(b);
    const late = ask(b);
    b.release(early);
    expect(b.answered(early, false)).toBe(false);
    expect(b.answered(late, false)).toBe(false);
    expect(b.release(late)).toBe(false);
    expect(releases(b)).toBe(0);
    expect(b.reset()).toEqual(['u|fp', 1]);
  });

  it('an early release is paid by its own grant, not by another take refused meanwhile', () => {
    const b = new LedgerBatch();
    const refused = ask(b);
    const granted = ask(b);
    b.release(refused);
    b.answered(refused, false);
    b.answered(granted, true);
    expect(releases(b)).toBe(0);
    expect(b.reset()).toEqual(['u|fp', 1]);
  });

  it('a failed take is held (served alone) unless its attempt already ended', () => {
    const b = new LedgerBatch();
    const served = ask(b);
    const gone = ask(b);
    b.release(gone);
    b.failed(served);
    b.failed(gone);
    expect(b.reset()).toEqual(['u|fp', 1]);
    expect(b.release(served)).toBe(true);
    expect(b.reset()).toEqual([]);
  });

  it('taken alone while Redis was away: held, and released like any other', () => {
    const b = new LedgerBatch();
    const c = b.hold('u', 'fp', 2);
    expect(b.reset()).toEqual(['u|fp', 1]);
    expect(b.release(c)).toBe(true);
    expect(b.drain(false).slice(0, 2)).toEqual([1, 'u|fp|1|2']);
  });

  it('a reset counts unanswered takes; one refused after it gives its slot back', () => {
    const b = new LedgerBatch();
    const granted = ask(b);
    const refused = ask(b);
    expect(b.reset()).toEqual(['u|fp', 2]);
    expect(b.answered(granted, true)).toBe(false);
    expect(b.answered(refused, false)).toBe(true);
    expect(releases(b)).toBe(1);
    expect(b.reset()).toEqual(['u|fp', 1]);
  });

  it('a reset drops pending releases (already out of the count), not usage or reports', () => {
    const b = new LedgerBatch();
    const c = b.hold('u', 'fp', undefined);
    b.release(c);
    b.count('u', 'fp:successes');
    b.reset();
    expect(b.pending(false)).toBe(false);
    expect(b.pending(true)).toBe(true);
    b.dropPending();
    expect(b.drain(true).slice(0, 5)).toEqual([0, 1, 'u', 'fp:successes', 1]);
  });

  it('keeps the newest report per key and model: a later one at an equal mark replaces, an older one does not', () => {
    const b = new LedgerBatch();
    const report = (requests: number, remaining: number) =>
      b.report({ upstream: 'u', fingerprint: 'fp', model: 'm', mark: { requests, tokens: 0 }, requests: { limit: 10, remaining, resetAt: 5, period: 5 }, tokens: undefined, now: 0 });
    report(3, 7);
    report(3, 6);
    report(2, 9);
    const args = b.drain(false);
    expect(args.slice(2)).toEqual([1, 'u', 'fp', 'm', '3,0,10,6,5,5,,,,']);
  });
});
