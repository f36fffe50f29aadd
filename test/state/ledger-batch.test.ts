// The ledger batch's slot bookkeeping: every slot Redis granted is released exactly once, whatever order
// the take's answer and the attempt's end arrive in.
import { describe, expect, it } from 'vitest';
import { LedgerBatch } from '../../src/state/ledger-batch.js';

const end = { upstream: 'u', fingerprint: 'fp', outcome: undefined, maxConcurrent: undefined } as const;
/** How many slot releases the next flush would send. */
const releases = (b: LedgerBatch): number => {
  const args = b.drain(false);
  const n = Number(args[0]);
  let total = 0;
  for (let i = 1; i <= n; i++) total += Number(String(args[i]).split('|')[2]);
  return total;
};

describe('LedgerBatch slots', () => {
  it('a release before the grant is owed and paid when the grant arrives', () => {
    const b = new LedgerBatch();
    b.asked('u', 'fp');
    expect(b.release(end)).toBe(false);
    expect(b.answered('u', 'fp', true, undefined)).toBe(true);
    expect(releases(b)).toBe(1);
    expect(b.heldPairs()).toEqual([]);
  });

  it('a release before a refusal owes nothing', () => {
    const b = new LedgerBatch();
    b.asked('u', 'fp');
    b.release(end);
    expect(b.answered('u', 'fp', false, undefined)).toBe(false);
    b.asked('u', 'fp');
    expect(b.answered('u', 'fp', true, undefined)).toBe(false);
    expect(b.heldPairs()).toEqual(['u|fp', 1]);
    expect(releases(b)).toBe(0);
  });

  it('releases with no take outstanding (slots not tracked) leave nothing behind', () => {
    const b = new LedgerBatch();
    for (let i = 0; i < 5; i++) expect(b.release(end)).toBe(false);
    b.asked('u', 'fp');
    expect(b.answered('u', 'fp', true, undefined)).toBe(false);
    expect(b.heldPairs()).toEqual(['u|fp', 1]);
  });

  it('interleaved takes and ends: every grant released exactly once', () => {
    const b = new LedgerBatch();
    b.asked('u', 'fp');
    b.asked('u', 'fp');
    b.answered('u', 'fp', true, undefined);
    b.release(end);
    b.release(end);
    b.answered('u', 'fp', true, undefined);
    expect(releases(b)).toBe(2);
    expect(b.heldPairs()).toEqual([]);
  });
});
