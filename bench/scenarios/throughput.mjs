// @ts-check
// Scenario 1: request rate at 50 connections against the 0 ms upstream, direct vs floor vs keypool,
// in interleaved rounds (direct, floor, keypool, direct, ...) so drift hits all three alike; CPU µs
// per proxied request from /proc of the proxy process.
import { CHAT_BODY, CHAT_PATH, cleanRounds, jsonHeaders, keyNames } from '../lib/common.mjs';
import { runLoad } from '../lib/load.mjs';
import { fmt, median } from '../lib/stats.mjs';
import { startFloor, startKeypool } from '../lib/targets.mjs';


/**
 * @param {import('../lib/common.mjs').Ctx} ctx
 * @returns {Promise<import('../lib/common.mjs').SectionResult>}
 */
export async function throughput(ctx) {
  const { P, up0 } = ctx;
  const keys = keyNames('sk-plain', 10);
  const floor = await startFloor({ origin: up0.url, keys, cpuProfDir: ctx.cpuProfDir });
  const kp = await startKeypool({ dir: ctx.dir, name: 'keypool-throughput', upstreamUrl: up0.url, keysFile: ctx.keysFile('plain10', 'sk-plain', 10), cpuProfDir: ctx.cpuProfDir });
  try {
    const targets = [
      { name: 'direct', url: up0.url, pid: undefined },
      { name: 'floor', url: floor.url, pid: floor.pid },
      { name: 'keypool', url: kp.url, pid: kp.pid },
    ];
    const load = (/** @type {typeof targets[number]} */ t, /** @type {number} */ s) =>
      runLoad({ url: t.url, path: CHAT_PATH, headers: jsonHeaders('sk-plain-0'), body: CHAT_BODY, connections: P.connections, duration: s, pid: t.pid });

    for (const t of targets) await load(t, P.warmS);
    /** @type {Record<string, import('../lib/load.mjs').LoadResult[]>} */
    const runs = { direct: [], floor: [], keypool: [] };
    for (let r = 0; r < P.rounds; r++) {
      for (const t of targets) {
        const res = await load(t, P.roundS);
        runs[t.name].push(res);
        ctx.log(`  round ${r + 1} ${t.name.padEnd(7)} ${fmt(res.rps)} req/s${t.pid ? `, ${fmt(res.cpuUs / res.completed, 1)} µs CPU/req` : ''}`);
      }
    }
    const perRound = runs.direct.map((d, i) => ({
      kpFloor: runs.keypool[i].rps / runs.floor[i].rps,
      kpDirect: runs.keypool[i].rps / d.rps,
      floorDirect: runs.floor[i].rps / d.rps,
      cpuFloor: runs.floor[i].cpuUs / runs.floor[i].completed,
      cpuKp: runs.keypool[i].cpuUs / runs.keypool[i].completed,
      foreign: Math.max(d.foreignCores, runs.floor[i].foreignCores, runs.keypool[i].foreignCores),
    }));
    const { keep, note } = cleanRounds('throughput', perRound.map((x) => x.foreign));
    const m = (/** @type {keyof typeof perRound[number]} */ k) => median(perRound.filter((_, i) => keep(i)).map((x) => x[k]));
    const rps = (/** @type {string} */ name) => median(runs[name].filter((_, i) => keep(i)).map((x) => x.rps));
    const kpFloor = m('kpFloor');
    const cpuKp = m('cpuKp');

    /** @type {string[]} */
    const notes = [];
    for (const [name, list] of Object.entries(runs)) {
      const bad = list.reduce((a, x) => a + x.non2xx + x.errors, 0);
      if (bad > 0) notes.push(`throughput: ${name} saw ${bad} non-2xx or errors (${JSON.stringify(list.map((x) => x.statusCodes))})`);
    }

    if (note) notes.push(note);
    const details = [
      `| round | direct req/s | floor req/s | keypool req/s | keypool/floor | keypool/direct | floor CPU µs/req | keypool CPU µs/req | other processes, cores (max of the three runs) |`,
      `|---|---|---|---|---|---|---|---|---|`,
      ...perRound.map(
        (x, i) =>
          `| ${i + 1}${keep(i) ? '' : ' (left out)'} | ${fmt(runs.direct[i].rps)} | ${fmt(runs.floor[i].rps)} | ${fmt(runs.keypool[i].rps)} | ${fmt(x.kpFloor, 3)} | ${fmt(x.kpDirect, 3)} | ${fmt(x.cpuFloor, 1)} | ${fmt(x.cpuKp, 1)} | ${fmt(x.foreign, 2)} |`,
      ),
      `| **median** | ${fmt(rps('direct'))} | ${fmt(rps('floor'))} | ${fmt(rps('keypool'))} | **${fmt(kpFloor, 3)}** | ${fmt(m('kpDirect'), 3)} | ${fmt(m('cpuFloor'), 1)} | **${fmt(cpuKp, 1)}** | |`,
    ].join('\n');

    return {
      title: `1. Throughput: ${P.connections} connections, 0 ms upstream, POST ${CHAT_PATH} (${P.rounds} interleaved rounds of ${P.roundS} s)`,
      rows: [
        { section: '1', metric: 'Throughput keypool/floor (median of rounds)', value: fmt(kpFloor, 3), target: '≥ 0.95', pass: kpFloor >= 0.95 },
        { section: '1', metric: 'Throughput keypool/direct', value: fmt(m('kpDirect'), 3), target: '', pass: null },
        { section: '1', metric: 'Throughput floor/direct', value: fmt(m('floorDirect'), 3), target: '', pass: null },
        { section: '1', metric: 'CPU µs per proxied request, keypool', value: fmt(cpuKp, 1), target: '≤ 100', pass: cpuKp <= 100 },
        { section: '1', metric: 'CPU µs per proxied request, floor', value: fmt(m('cpuFloor'), 1), target: '', pass: null },
      ],
      details,
      notes,
    };
  } finally {
    await Promise.all([floor.stop(), kp.stop()]);
  }
}
