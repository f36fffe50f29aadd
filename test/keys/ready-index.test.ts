// The tournament tree under the choice index, against a plain array: firstDue finds the first leaf at or
// after a position whose "not before" is due, walkBelow visits exactly the leaves whose bound is below a
// shrinking limit, for any sizes (powers of two and not) and any sequence of writes.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ReadyIndex } from '../../src/keys/ready-index.js';

type Write = { i: number; notBefore: number; bound: number } | { i: number; clear: true };

const time = fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 100 }), fc.constant(Infinity));
const write: fc.Arbitrary<Write> = fc.oneof(
  fc.record({ i: fc.nat(), notBefore: time, bound: time }),
  fc.record({ i: fc.nat(), clear: fc.constant(true as const) }),
);

describe('ReadyIndex', () => {
  it('answers firstDue and walkBelow as a scan of its leaves would', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 300 }), fc.array(write, { maxLength: 200 }), fc.integer({ min: 0, max: 100 }), fc.nat(), (n, writes, now, cap) => {
        const idx = new ReadyIndex(n);
        const nb = new Array<number>(n).fill(0);
        const lb = new Array<number>(n).fill(Infinity);
        for (const w of writes) {
          const i = w.i % n;
          if ('clear' in w) {
            idx.clear(i);
            nb[i] = 0;
            lb[i] = Infinity;
          } else {
            idx.set(i, w.notBefore, w.bound, false, 0);
            nb[i] = w.notBefore;
            lb[i] = w.bound;
          }
        }
        for (let from = 0; from <= n; from++) {
          let want = -1;
          for (let i = from; i < n; i++) {
            if (nb[i]! <= now) {
              want = i;
              break;
            }
          }
          expect(idx.firstDue(from, now)).toBe(want);
        }
        // A walk that keeps the least bound seen finds the least bound; one that never tightens sees every
        // leaf below the limit, each once.
        const least = Math.min(...lb);
        expect(idx.walkBelow(Infinity, (i, limit) => Math.min(limit, idx.bound(i)))).toBe(least);
        const limit = cap % 120;
        const seen: number[] = [];
        idx.walkBelow(limit, (i, l) => {
          seen.push(i);
          return l;
        });
        expect(seen.sort((a, b) => a - b)).toEqual(lb.flatMap((b, i) => (b < limit ? [i] : [])));
      }),
      { numRuns: 300 },
    );
  });
});
