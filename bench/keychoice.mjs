// @ts-check
// Key choice in process, no HTTP (issue 15 item 3): what one acquire + end and one nextAvailableAt cost
// on a KeyPool of 10, 1,000 and 10,000 keys, with no key cooling and with every key but the last one
// cooling (as in `npm run bench`'s cooling pool: each choice has to pass over the cooling keys).
// Run: npm run build && node bench/keychoice.mjs   (BENCH_QUICK=1: shorter rounds; KEYCHOICE_DIST=DIR:
// measure another build's dist/, e.g. main's, for a before/after table)
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { fmt, median } from './lib/stats.mjs';
import { ROOT, assertBuilt } from './lib/targets.mjs';

/** @typedef {import('../src/keys/pool.js').KeyPool} KeyPool */
/** @typedef {import('../src/keys/strategies.js').StrategyName} StrategyName */

const QUICK = process.env.BENCH_QUICK === '1';
const ROUNDS = QUICK ? 3 : 7;
/** Each round runs for about this long. */
const ROUND_MS = QUICK ? 60 : 250;
const SIZES = [10, 1_000, 10_000];
const T0 = 1_800_000_000_000;
const COOL_MS = 600_000;
const DEMAND = Object.freeze({ model: 'gpt-4o-mini', tokens: 100 });
/** @type {StrategyName[]} */
const MAIN_STRATEGIES = ['round_robin', 'fill_first'];
/** @type {StrategyName[]} */
const OTHER_STRATEGIES = ['least_inflight', 'headroom', 'random', 'weighted'];

async function main() {
  const dist = process.env.KEYCHOICE_DIST ?? join(ROOT, 'dist');
  if (process.env.KEYCHOICE_DIST === undefined) assertBuilt();
  /** @type {{ KeyPool: new (upstream: string, keys: unknown[], options?: object) => KeyPool }} */
  const { KeyPool } = await import(pathToFileURL(join(dist, 'src/keys/pool.js')).href);
  /** @type {{ Key: new (name: string, secret: string) => unknown }} */
  const { Key } = await import(pathToFileURL(join(dist, 'src/keys/key.js')).href);

  /**
   * @param {number} n
   * @param {'none' | 'all but one'} cooling
   * @param {StrategyName} strategy
   */
  const poolOf = (n, cooling, strategy) => {
    const keys = Array.from({ length: n }, (_, i) => new Key(`k${i}`, `sk-keychoice-${n}-${i}`));
    const pool = new KeyPool('bench', keys, { strategy, random: seeded(1) });
    if (cooling === 'all but one') {
      const states = pool.states();
      for (let i = 0; i < n - 1; i++) pool.cool(states[i], DEMAND.model, T0 + COOL_MS, 'rate_limited', T0);
    }
    return pool;
  };

  /** µs per call of `op`, median over rounds (after one warm-up round). */
  const time = (/** @type {(i: number) => void} */ op) => {
    /** @type {number[]} */
    const per = [];
    let i = 0;
    for (let r = 0; r <= ROUNDS; r++) {
      const start = performance.now();
      let ops = 0;
      // Bounded: a round ends after ROUND_MS whatever the cost of one call.
      while (performance.now() - start < ROUND_MS) {
        for (let k = 0; k < 16; k++) op(i++);
        ops += 16;
      }
      if (r > 0) per.push(((performance.now() - start) * 1000) / ops);
    }
    return median(per);
  };

  /** @param {KeyPool} pool */
  const acquireEnd = (pool) =>
    time((i) => {
      const lease = pool.acquire({ demand: DEMAND, now: T0 + (i >> 10) });
      if (lease === undefined) throw new Error('no key: the bench pool is wrong');
      lease.end();
    });
  /** @param {KeyPool} pool */
  const nextAt = (pool) => time((i) => void pool.nextAvailableAt(DEMAND, T0 + (i >> 10)));

  const lines = [
    `Key choice in process (bench/keychoice.mjs), µs per call, median of ${ROUNDS} rounds of ${ROUND_MS} ms; demand ${DEMAND.model}, ${DEMAND.tokens} tokens.`,
    'Cooling: every key but the last cooling for this model (the cursor then lands on a cooling key every time).',
    '',
    '| strategy | keys | cooling | acquire + end µs | nextAvailableAt µs | nextAvailableAt µs, all cooling |',
    '|---|---|---|---|---|---|',
  ];
  for (const strategy of MAIN_STRATEGIES) {
    for (const n of SIZES) {
      for (const cooling of /** @type {const} */ (['none', 'all but one'])) {
        const a = acquireEnd(poolOf(n, cooling, strategy));
        const b = nextAt(poolOf(n, cooling, strategy));
        let c = '';
        if (cooling === 'all but one') {
          const all = poolOf(n, cooling, strategy);
          const states = all.states();
          all.cool(states[n - 1], DEMAND.model, T0 + COOL_MS + 1, 'rate_limited', T0);
          c = fmt(nextAt(all), 2);
        }
        lines.push(`| ${strategy} | ${fmt(n)} | ${cooling} | ${fmt(a, 2)} | ${fmt(b, 2)} | ${c} |`);
        process.stderr.write(`keychoice: ${strategy} ${n} ${cooling}\n`);
      }
    }
  }
  lines.push('', '| strategy | keys | cooling | acquire + end µs |', '|---|---|---|---|');
  for (const strategy of OTHER_STRATEGIES) {
    for (const cooling of /** @type {const} */ (['none', 'all but one'])) {
      lines.push(`| ${strategy} | 10,000 | ${cooling} | ${fmt(acquireEnd(poolOf(10_000, cooling, strategy)), 2)} |`);
      process.stderr.write(`keychoice: ${strategy} 10000 ${cooling}\n`);
    }
  }
  process.stdout.write(lines.join('\n') + '\n');
}

/** A small deterministic PRNG (mulberry32), so every run draws the same keys. */
function seeded(/** @type {number} */ seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

await main();
