// The rolling one-minute count against a model that keeps every event: equal at any read time.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MinuteWindow } from '../../src/admin/minute-window.js';

describe('MinuteWindow', () => {
  it('counts this second and the 59 before it, nothing older', () => {
    const w = new MinuteWindow();
    const t0 = Date.parse('2026-11-28T12:00:00.500Z');
    w.add(t0);
    w.add(t0 + 400, 2);
    expect(w.total(t0)).toBe(3);
    expect(w.total(t0 + 59_000)).toBe(3);
    expect(w.total(t0 + 59_600)).toBe(0);
    w.add(t0 + 60_000);
    expect(w.total(t0 + 60_000)).toBe(1);
    // A slot reused a minute later starts from nothing.
    expect(w.total(t0 + 120_100)).toBe(0);
  });

  it('matches a list of every event at any time (fast-check)', () => {
    const step = fc.record({ gap: fc.integer({ min: 0, max: 20_000 }), n: fc.integer({ min: 1, max: 5 }), readAfter: fc.integer({ min: 0, max: 90_000 }) });
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2e12 }), fc.array(step, { maxLength: 60 }), (start, steps) => {
        const w = new MinuteWindow();
        const events: [number, number][] = [];
        let now = start;
        for (const s of steps) {
          now += s.gap;
          w.add(now, s.n);
          events.push([now, s.n]);
          const at = now + s.readAfter;
          const second = Math.floor(at / 1000);
          const expected = events.filter(([t]) => Math.floor(t / 1000) > second - 60).reduce((a, [, n]) => a + n, 0);
          expect(w.total(at)).toBe(expected);
        }
      }),
    );
  });
});
