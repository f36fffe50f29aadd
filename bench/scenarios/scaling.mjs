// @ts-check
// Scenario 6: does key choice scan the pool? keypool with 10, 1,000 and 10,000 keys against the
// same 0 ms upstream (which accepts any key), interleaved rounds; the ratio to 10 keys per round.
import { CHAT_BODY, CHAT_PATH, cleanRounds, jsonHeaders } from '../lib/common.mjs';
import { runLoad } from '../lib/load.mjs';
import { fmt, median } from '../lib/stats.mjs';
import { startKeypool } from '../lib/targets.mjs';

const SIZES = [10, 1_000, 10_000];

/**
 * @param {import('../lib/common.mjs').Ctx} ctx
 * @returns {Promise<import('../lib/common.mjs').SectionResult>}
 */
export async function scaling(ctx) {
  const { P, up0 } = ctx;
  /** @type {import('../lib/procs.mjs').Proc[]} */
  const procs = [];
  try {
    for (const n of SIZES) {
      procs.push(await startKeypool({ dir: ctx.dir, name: `keypool-${n}-keys`, upstreamUrl: up0.url, keysFile: ctx.keysFile(`plain${n}`, 'sk-plain', n) }));
    }
    const load = (/** @type {import('../lib/procs.mjs').Proc} */ p, /** @type {number} */ s) =>
      runLoad({ url: p.url, path: CHAT_PATH, headers: jsonHeaders('sk-plain-0'), body: CHAT_BODY, connections: P.connections, duration: s, pid: p.pid });
    for (const p of procs) await load(p, P.warmS);
    /** @type {import('../lib/load.mjs').LoadResult[][]} */
    const all = SIZES.map(() => []);
    for (let r = 0; r < P.scaleRounds; r++) {
      for (let i = 0; i < procs.length; i++) {
        const res = await load(procs[i], P.scaleRoundS);
        all[i].push(res);
        ctx.log(`  round ${r + 1} ${String(SIZES[i]).padStart(6)} keys ${fmt(res.rps)} req/s, ${fmt(res.cpuUs / res.completed, 1)} µs CPU/req`);
      }
    }
    const { keep, note } = cleanRounds('scaling', all[0].map((_, r) => Math.max(...all.map((list) => list[r].foreignCores))));
    const runs = all.map((list) => list.filter((_, r) => keep(r)));
    const ratio = (/** @type {number} */ i) => median(runs[i].map((x, r) => x.rps / runs[0][r].rps));
    const cpuRatio = (/** @type {number} */ i) => median(runs[i].map((x, r) => x.cpuUs / x.completed / (runs[0][r].cpuUs / runs[0][r].completed)));
    const r10k = ratio(2);

    /** @type {string[]} */
    const notes = note ? [note] : [];
    all.forEach((list, i) => {
      const bad = list.reduce((a, x) => a + x.non2xx + x.errors, 0);
      if (bad > 0) notes.push(`scaling: ${SIZES[i]} keys saw ${bad} non-2xx or errors`);
    });
    const details = [
      `| keys | req/s | CPU µs/req | throughput ÷ 10 keys | CPU ÷ 10 keys |`,
      `|---|---|---|---|---|`,
      ...SIZES.map(
        (n, i) =>
          `| ${fmt(n)} | ${fmt(median(runs[i].map((x) => x.rps)))} | ${fmt(median(runs[i].map((x) => x.cpuUs / x.completed)), 1)} | ${fmt(ratio(i), 3)} | ${fmt(cpuRatio(i), 3)} |`,
      ),
      '',
      `Medians over ${P.scaleRounds} interleaved rounds of ${P.scaleRoundS} s at ${P.connections} connections.`,
    ].join('\n');
    return {
      title: '6. Key-count scaling',
      rows: [
        { section: '6', metric: 'Throughput with 10,000 keys ÷ 10 keys', value: fmt(r10k, 3), target: '≥ 0.95', pass: r10k >= 0.95 },
        { section: '6', metric: 'Throughput with 1,000 keys ÷ 10 keys', value: fmt(ratio(1), 3), target: '', pass: null },
      ],
      details,
      notes,
    };
  } finally {
    await Promise.all(procs.map((p) => p.stop()));
  }
}
